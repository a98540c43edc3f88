# GEMV variants: rpg rows per lane group (x shared), sg subgroup reduction, fused sumsq (mode 1).
import sys, os

def gen(rpg=1, sg=True, unroll=None):
    if unroll is None:
        unroll = 4 if rpg == 1 else 2
    o = []
    w = o.append
    w("// PROBE gemv rpg=%d sg=%d unroll=%d" % (rpg, sg, unroll))
    w("const WEIGHT_F16: bool = false;")
    w("const LANES: u32 = 64u;")
    w("const ROWS: u32 = 4u; // 256 / LANES")
    w("const X_MODE: u32 = 0u;")
    w("const RPG: u32 = %du; // rows per lane group" % rpg)
    w("""
struct Params {
    n: u32,
    k: u32,
    kp: u32,
    x_offset: u32,
    y_offset: u32,
    accumulate: u32,
    soft_cap: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<vec4<f32>>;

var<workgroup> partial: array<vec4<f32>, 256>;
var<workgroup> partial2: array<f32, 256>;

fn load_w8(e: u32) -> mat2x4<f32> {
    if (WEIGHT_F16) {
        let u = w[e / 8u];
        return mat2x4<f32>(
            vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)),
            vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w)));
    }
    let i = e / 4u;
    return mat2x4<f32>(bitcast<vec4<f32>>(w[i]), bitcast<vec4<f32>>(w[i + 1u]));
}

fn raw_x4(at: u32, end: u32) -> vec4<f32> {
    if ((p.x_offset + at) % 4u == 0u && at + 4u <= end) {
        return x[(p.x_offset + at) / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < 4u; j++) {
        if (at + j < end) {
            let e = p.x_offset + at + j;
            v[j] = x[e / 4u][e % 4u];
        }
    }
    return v;
}

fn aux4(k: u32) -> vec4<f32> {
    if (k + 4u <= p.k) {
        return aux[k / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < 4u; j++) {
        if (k + j < p.k) {
            v[j] = aux[(k + j) / 4u][(k + j) % 4u];
        }
    }
    return v;
}

// The (transformed) input x[k .. k + 8] as two vec4 and, in mode 1, the raw values' sum of
// squares, for k a multiple of 8.
struct X8 {
    a: vec4<f32>,
    b: vec4<f32>,
    sq: f32,
}

fn load_x8(k: u32) -> X8 {
    var r: X8;
    if (X_MODE == 1u) {
        let a = raw_x4(k, p.k);
        let b = raw_x4(k + 4u, p.k);
        r.a = a * aux4(k);
        r.b = b * aux4(k + 4u);
        r.sq = dot(a, a) + dot(b, b);
    } else if (X_MODE == 2u) {
        let g0 = raw_x4(k, p.k);
        let g1 = raw_x4(k + 4u, p.k);
        let u0 = raw_x4(p.k + k, 2u * p.k);
        let u1 = raw_x4(p.k + k + 4u, 2u * p.k);
        r.a = g0 / (vec4<f32>(1.0) + exp(-g0)) * u0;
        r.b = g1 / (vec4<f32>(1.0) + exp(-g1)) * u1;
    } else {
        r.a = raw_x4(k, p.k);
        r.b = raw_x4(k + 4u, p.k);
    }
    return r;
}

fn dotw(row: u32, k: u32, xv: X8) -> f32 {
    let m = load_w8(row * p.kp + k);
    return dot(m[0], xv.a) + dot(m[1], xv.b);
}
""")
    if sg:
        w("""
// Sum over the LANES lanes of a lane group (lanes are consecutive invocations of one subgroup,
// or whole subgroups when LANES exceeds the subgroup size).
fn group_sum(v: vec4<f32>, sgs: u32, sgid: u32, sgl: u32, flat: u32) -> vec4<f32> {
    var s = v;
    let span = min(LANES, sgs);
    for (var off = 1u; off < span; off *= 2u) {
        s += subgroupShuffleXor(s, off);
    }
    if (LANES <= sgs) {
        return s;
    }
    workgroupBarrier();
    if (sgl == 0u) {
        partial[sgid] = s;
    }
    workgroupBarrier();
    let per = LANES / sgs;
    let first = (flat / LANES) * per;
    var t = vec4<f32>();
    for (var i = 0u; i < per; i++) {
        t += partial[first + i];
    }
    return t;
}
""")
    else:
        w("""
fn group_sum(v: vec4<f32>, lid: u32) -> vec4<f32> {
    let lane = lid % LANES;
    workgroupBarrier();
    partial[lid] = v;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    return partial[lid - lane];
}
""")
    w("@compute @workgroup_size(256)")
    if sg:
        w("fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_size) sgs: u32, @builtin(subgroup_id) sgid: u32, @builtin(subgroup_invocation_id) sgl: u32) {")
        w("    let flat = sgid * sgs + sgl;")
    else:
        w("fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {")
        w("    let flat = lid;")
    w("    let lane = flat % LANES;")
    w("    let r0 = (wid.x * ROWS + flat / LANES) * RPG;")
    w("    let last = p.n - 1u;")
    for q in range(rpg):
        w("    let row%d = min(r0 + %du, last);" % (q, q))
    for q in range(rpg):
        for u in range(unroll):
            w("    var s%d_%d = 0.0;" % (q, u))
    w("    var sq = 0.0;")
    w("    let stride = 8u * LANES;")
    w("    var k = lane * 8u;")
    w("    if (r0 < p.n) {")
    w("        for (; k + %du * stride < p.kp; k += %du * stride) {" % (unroll - 1, unroll))
    for u in range(unroll):
        w("            let x%d = load_x8(k + %du * stride);" % (u, u))
    for u in range(unroll):
        for q in range(rpg):
            w("            s%d_%d += dotw(row%d, k + %du * stride, x%d);" % (q, u, q, u, u))
    w("            sq += " + " + ".join("x%d.sq" % u for u in range(unroll)) + ";")
    w("        }")
    w("        for (; k < p.kp; k += stride) {")
    w("            let x0 = load_x8(k);")
    for q in range(rpg):
        w("            s%d_0 += dotw(row%d, k, x0);" % (q, q))
    w("            sq += x0.sq;")
    w("        }")
    w("    }")
    sums = []
    for q in range(rpg):
        sums.append("(" + " + ".join("s%d_%d" % (q, u) for u in range(unroll)) + ")")
    while len(sums) < 3:
        sums.append("0.0")
    w("    let v = vec4<f32>(%s, %s, %s, sq);" % (sums[0], sums[1], sums[2]))
    if sg:
        w("    let t = group_sum(v, sgs, sgid, sgl, flat);")
    else:
        w("    let t = group_sum(v, lid);")
    if rpg == 4:
        w("    let v3 = vec4<f32>(%s, 0.0, 0.0, 0.0);" % sums[3])
        if sg:
            w("    let t3 = group_sum(v3, sgs, sgid, sgl, flat);")
        else:
            w("    let t3 = group_sum(v3, lid);")
    w("    var scale = 1.0;")
    w("    if (X_MODE == 1u) {")
    w("        scale = inverseSqrt(t.w / f32(p.k) + p.eps);")
    w("    }")
    w("    if (lane < RPG && r0 + lane < p.n) {")
    w("        let r = r0 + lane;")
    if rpg == 4:
        w("        var d = t3.x;")
        w("        if (lane < 3u) { d = t[lane]; }")
    else:
        w("        let d = t[lane];")
    w("""        let o = p.y_offset + r;
        var v = d * scale;
        if (p.accumulate != 0u) {
            v += y[o];
        }
        if (p.soft_cap > 0.0) {
            v = p.soft_cap * tanh(v / p.soft_cap);
        }
        y[o] = v;
    }
}""")
    return "\n".join(o) + "\n"

if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    V = {
        "gemv_1r1": dict(rpg=1, sg=False),
        "gemv_2r1sg": dict(rpg=1, sg=True),
        "gemv_3r2sg": dict(rpg=2, sg=True),
        "gemv_4r4sg": dict(rpg=4, sg=True),
        "gemv_5r1sgu8": dict(rpg=1, sg=True, unroll=8),
    }
    for name, o in V.items():
        open(os.path.join(out, name + ".wgsl"), "w").write(gen(**o))
