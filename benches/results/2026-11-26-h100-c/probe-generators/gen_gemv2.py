import sys, os
base = open('/work/main/wgsl/gemv.wgsl').read()

def sub(s, old, new):
    assert old in s, old
    return s.replace(old, new)

MAIN_OLD = base[base.index("@compute @workgroup_size(256)"):]

def variant(sq=False, red="tree", unroll=4):
    s = base
    s = sub(s, "var<workgroup> partial: array<f32, 256>;", "var<workgroup> partial: array<f32, 256>;\nvar<workgroup> partial_q: array<f32, 256>;")
    if sq:
        s = sub(s, "fn dot8(r: u32, k: u32) -> f32 {", """// (dot, sum of raw squares) for mode 1.
fn dot8q(r: u32, k: u32) -> vec2<f32> {
    let m = load_w8(r * p.kp + k);
    let a = raw_x4(k, p.k);
    let b = raw_x4(k + 4u, p.k);
    return vec2<f32>(dot(m[0], a * aux4(k)) + dot(m[1], b * aux4(k + 4u)), dot(a, a) + dot(b, b));
}

fn dot8(r: u32, k: u32) -> f32 {""")
    head = "@compute @workgroup_size(256)\n"
    if red == "sg":
        head += "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_size) sgs: u32) {\n"
    else:
        head += "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {\n"
    body = "    var scale = 1.0;\n"
    if not sq:
        body += "    if (X_MODE == 1u) {\n        scale = inv_rms(lid);\n    }\n"
    body += "    let lane = lid % LANES;\n    let r = wid.x * ROWS + lid / LANES;\n"
    for u in range(unroll):
        body += "    var s%d = 0.0;\n    var q%d = 0.0;\n" % (u, u)
    body += "    if (r < p.n) {\n        let stride = 8u * LANES;\n        var k = lane * 8u;\n"
    body += "        for (; k + %du * stride < p.kp; k += %du * stride) {\n" % (unroll - 1, unroll)
    for u in range(unroll):
        if sq:
            body += "            if (X_MODE == 1u) {\n                let d = dot8q(r, k + %du * stride);\n                s%d += d.x;\n                q%d += d.y;\n            } else {\n                s%d += dot8(r, k + %du * stride);\n            }\n" % (u, u, u, u, u)
        else:
            body += "            s%d += dot8(r, k + %du * stride);\n" % (u, u)
    body += "        }\n        for (; k < p.kp; k += stride) {\n"
    if sq:
        body += "            if (X_MODE == 1u) {\n                let d = dot8q(r, k);\n                s0 += d.x;\n                q0 += d.y;\n            } else {\n                s0 += dot8(r, k);\n            }\n"
    else:
        body += "            s0 += dot8(r, k);\n"
    body += "        }\n    }\n"
    body += "    var tot = " + " + ".join("s%d" % u for u in range(unroll)) + ";\n"
    body += "    var totq = " + " + ".join("q%d" % u for u in range(unroll)) + ";\n"
    if red == "tree":
        body += """    partial[lid] = tot;
    partial_q[lid] = totq;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            partial[lid] += partial[lid + half];
            partial_q[lid] += partial_q[lid + half];
        }
        workgroupBarrier();
    }
    let dsum = partial[lid];
    let qsum = partial_q[lid];
"""
    elif red == "two":
        body += """    partial[lid] = tot;
    partial_q[lid] = totq;
    workgroupBarrier();
    // Two steps: eight lanes per row each add LANES / 8 partials, then lane 0 adds those eight.
    let per = LANES / 8u;
    let rb = lid - lane;
    var a = 0.0;
    var aq = 0.0;
    if (lane < 8u) {
        for (var i = 0u; i < per; i++) {
            a += partial[rb + lane * per + i];
            aq += partial_q[rb + lane * per + i];
        }
    }
    workgroupBarrier();
    if (lane < 8u) {
        partial[rb + lane] = a;
        partial_q[rb + lane] = aq;
    }
    workgroupBarrier();
    var dsum = 0.0;
    var qsum = 0.0;
    if (lane == 0u) {
        for (var i = 0u; i < 8u; i++) {
            dsum += partial[rb + i];
            qsum += partial_q[rb + i];
        }
    }
"""
    elif red == "sg":
        body += """    // LANES >= subgroup size here: each subgroup lies in one row.
    let ds = subgroupAdd(tot);
    let qs = subgroupAdd(totq);
    if (lid % sgs == 0u) {
        partial[lid / sgs] = ds;
        partial_q[lid / sgs] = qs;
    }
    workgroupBarrier();
    var dsum = 0.0;
    var qsum = 0.0;
    if (lane == 0u) {
        let first = lid / sgs;
        for (var i = 0u; i < LANES / sgs; i++) {
            dsum += partial[first + i];
            qsum += partial_q[first + i];
        }
    }
"""
    if sq:
        body += "    if (X_MODE == 1u) {\n        scale = inverseSqrt(qsum / f32(p.k) + p.eps);\n    }\n"
    body += """    if (lane == 0u && r < p.n) {
        let o = p.y_offset + r;
        var v = dsum * scale;
        if (p.accumulate != 0u) {
            v += y[o];
        }
        if (p.soft_cap > 0.0) {
            v = p.soft_cap * tanh(v / p.soft_cap);
        }
        y[o] = v;
    }
}
"""
    s = s.replace(MAIN_OLD, head + body)
    return "// PROBE gemv sq=%d red=%s unroll=%d\n" % (sq, red, unroll) + s

if __name__ == "__main__":
    out = sys.argv[1]
    V = {
        "gemv_Atree": dict(),
        "gemv_Bsq": dict(sq=True),
        "gemv_Ctwo": dict(red="two"),
        "gemv_Dsqtwo": dict(sq=True, red="two"),
        "gemv_Esg": dict(red="sg"),
        "gemv_Fsqsg": dict(sq=True, red="sg"),
        "gemv_Gu8": dict(unroll=8),
        "gemv_Hsqtwou8": dict(sq=True, red="two", unroll=8),
    }
    for name, o in V.items():
        open(os.path.join(out, name + ".wgsl"), "w").write(variant(**o))
