# Generates gemm_coop variants.  opts: bk, packed, direct, fast, tm (token-major grid)
import sys

HEADER = """enable f16;
enable wgpu_cooperative_matrix;

struct Params {
    tokens: u32,
    n: u32,
    k: u32,
    kp: u32,
    x_stride: u32,
    x_offset: u32,
    y_stride: u32,
    y_offset: u32,
    accumulate: u32,
    soft_cap: f32,
    _pad0: u32,
    _pad1: u32,
}
"""

def gen(bk=64, packed=False, direct=False, fast=False, tm=True, fb=2):
    tn = 64 * fb  # rows per tile: 4 subgroups x 16 fb
    o = []
    w = o.append
    w("// PROBE grid=%s tn=%d bk=%d packed=%d direct=%d fast=%d" % ("token" if tm else "row", tn, bk, packed, direct, fast))
    w(HEADER)
    tpr = bk // 4          # threads per staged x row (vec4 each)
    rp = 256 // tpr        # rows per pass
    nl = 128 // rp         # loads per thread per operand
    if packed:
        ldsu = (bk + 8) // 2
        w("const LDSU: u32 = %du; // u32 words per staged row: %d halves + 8 padding" % (ldsu, bk))
        w("@group(0) @binding(0) var<uniform> p: Params;")
        w("@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;")
        w("@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;")
        w("@group(0) @binding(3) var<storage, read_write> y: array<f32>;")
        w("var<workgroup> xa: array<u32, %d>;" % (128 * ldsu))
        w("var<workgroup> wb: array<u32, %d>;" % (tn * ldsu))
        tprw = bk // 8
        rpw = 256 // tprw
        nlw = tn // rpw
    else:
        lds = bk + 8
        w("const LDS: u32 = %du;" % lds)
        w("@group(0) @binding(0) var<uniform> p: Params;")
        w("@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;")
        w("@group(0) @binding(2) var<storage, read> w: array<vec4<f16>>;")
        w("@group(0) @binding(3) var<storage, read_write> y: array<f32>;")
        w("var<workgroup> xa: array<f16, %d>;" % (128 * lds))
        w("var<workgroup> wb: array<f16, %d>;" % (tn * lds))
        nlw = tn // rp
    w("var<workgroup> scratch: array<f32, 2048>;")
    w("""
fn load_x4(t: u32, k: u32) -> vec4<f32> {
    if (t >= p.tokens) {
        return vec4<f32>();
    }
    let e = p.x_offset + t * p.x_stride + k;
    if (e % 4u == 0u && k + 4u <= p.k) {
        return x[e / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < 4u; j++) {
        if (k + j < p.k) {
            v[j] = x[(e + j) / 4u][(e + j) % 4u];
        }
    }
    return v;
}
""")
    if packed:
        w("""
// Eight f16 weights W[r, k .. k + 8] as raw bits (zero outside the part), k a multiple of 8.
fn load_w8(r: u32, k: u32) -> vec4<u32> {
    if (r < p.n && k < p.kp) {
        return w[(r * p.kp + k) / 8u];
    }
    return vec4<u32>();
}

// Stores four activations (two packed words) of row r at halves c; lanes of the odd half-warp
// write their two words in the other order so one store instruction touches 32 banks.
fn put_x(r: u32, c: u32, v: vec4<f32>, h: u32) {
    let lo = pack2x16float(v.xy);
    let hi = pack2x16float(v.zw);
    let b = r * LDSU + c / 2u;
    xa[b + h] = select(lo, hi, h == 1u);
    xa[b + 1u - h] = select(hi, lo, h == 1u);
}

// Stores eight weights (four words) of row r at halves c, rotated by the row against bank
// conflicts.
fn put_w(r: u32, c: u32, v: vec4<u32>) {
    let b = r * LDSU + c / 2u;
    for (var j = 0u; j < 4u; j++) {
        let jj = (j + r) & 3u;
        wb[b + jj] = v[jj];
    }
}
""")
    else:
        w("""
fn load_w4(r: u32, k: u32) -> vec4<f16> {
    if (r < p.n && k < p.kp) {
        return w[(r * p.kp + k) / 4u];
    }
    return vec4<f16>();
}

fn put_x(r: u32, c: u32, v: vec4<f16>) {
    xa[r * LDS + c] = v.x;
    xa[r * LDS + c + 1u] = v.y;
    xa[r * LDS + c + 2u] = v.z;
    xa[r * LDS + c + 3u] = v.w;
}

fn put_w(r: u32, c: u32, v: vec4<f16>) {
    wb[r * LDS + c] = v.x;
    wb[r * LDS + c + 1u] = v.y;
    wb[r * LDS + c + 2u] = v.z;
    wb[r * LDS + c + 3u] = v.w;
}
""")
    w("""
fn store_frag(c: coop_mat16x16<f32, C>, base: u32) {
    coopStoreT(c, &scratch[base], 16u);
}

fn write_out(t: u32, r: u32, acc: f32) {
    if (t >= p.tokens || r >= p.n) {
        return;
    }
    let o = p.y_offset + t * p.y_stride + r;
    var v = acc;
    if (p.accumulate != 0u) {
        v += y[o];
    }
    if (p.soft_cap > 0.0) {
        v = p.soft_cap * tanh(v / p.soft_cap);
    }
    y[o] = v;
}

fn emit(c: coop_mat16x16<f32, C>, sg: u32, lane: u32, t0: u32, r0: u32) {
    store_frag(c, sg * 256u);
    workgroupBarrier();
    for (var e = 0u; e < 8u; e++) {
        let idx = lane * 8u + e;
        write_out(t0 + idx / 16u, r0 + idx % 16u, scratch[sg * 256u + idx]);
    }
    workgroupBarrier();
}
""")
    if direct:
        w("""
// y fragment at element o, row-major with the output's row stride (16-byte aligned: checked by
// the caller).
fn load_y(o: u32, stride: u32) -> coop_mat16x16<f32, C> {
    return coopLoadT<coop_mat16x16<f32, C>>(&y[o], stride);
}

// (naga's SPIR-V writer needs the store's offset and stride as plain values: function arguments)
fn store_y(c: coop_mat16x16<f32, C>, o: u32, stride: u32) {
    coopStoreT(c, &y[o], stride);
}

fn emit_direct(c: coop_mat16x16<f32, C>, t0: u32, r0: u32) {
    let stride = p.y_stride;
    let o = p.y_offset + t0 * stride + r0;
    var v = c;
    if (p.accumulate != 0u) {
        v = v + load_y(o, stride);
    }
    store_y(v, o, stride);
}
""")
    # main
    w("@compute @workgroup_size(256)")
    w("fn main(")
    w("    @builtin(workgroup_id) wid: vec3<u32>,")
    w("    @builtin(local_invocation_index) lid: u32,")
    w("    @builtin(subgroup_id) sg: u32,")
    w("    @builtin(subgroup_invocation_id) lane: u32,")
    w(") {")
    if tm:
        w("    let tok0 = wid.x * 128u;")
        w("    let row0 = wid.y * %du;" % tn)
    else:
        w("    let row0 = wid.x * %du;" % tn)
        w("    let tok0 = wid.y * 128u;")
    w("    let wm = (sg % 2u) * 64u;")
    w("    let wn = (sg / 2u) * %du;" % (16 * fb))
    for a in range(4):
        for b in range(fb):
            w("    var c%d%d = coop_mat16x16<f32, C>();" % (a, b))
    w("    let lr = lid / %du;" % tpr)
    w("    let lc = (lid %% %du) * 4u;" % tpr)
    if packed:
        w("    let hx = (lid / %du) & 1u;" % tpr)
        w("    let lrw = lid / %du;" % tprw)
        w("    let lcw = (lid %% %du) * 8u;" % tprw)
    # prefetch regs
    for i in range(nl):
        w("    var xr%d = load_x4(tok0 + lr + %du, lc);" % (i, rp * i))
    if packed:
        for i in range(nlw):
            w("    var wr%d = load_w8(row0 + lrw + %du, lcw);" % (i, rpw * i))
    else:
        for i in range(nlw):
            w("    var wr%d = load_w4(row0 + lr + %du, lc);" % (i, rp * i))
    if fast:
        w("    // Interior tiles with aligned rows and whole K slices load without per-element checks.")
        w("    let interior = (tok0 + 128u <= p.tokens) & (row0 + %du <= p.n) & (p.x_offset %% 4u == 0u) & (p.x_stride %% 4u == 0u) & (p.k == p.kp) & (p.k %% %du == 0u);" % (tn, bk))
        w("    let xb = (p.x_offset + (tok0 + lr) * p.x_stride + lc) / 4u;")
        w("    let xs = %du * p.x_stride / 4u;" % rp)
        if packed:
            w("    let wbase = ((row0 + lrw) * p.kp + lcw) / 8u;")
            w("    let ws = %du * p.kp / 8u;" % rpw)
        else:
            w("    let wbase = ((row0 + lr) * p.kp + lc) / 4u;")
            w("    let ws = %du * p.kp / 4u;" % rp)
    w("    for (var k0 = 0u; k0 < p.kp; k0 += %du) {" % bk)
    for i in range(nl):
        if packed:
            w("        put_x(lr + %du, lc, xr%d, hx);" % (rp * i, i))
        else:
            w("        put_x(lr + %du, lc, vec4<f16>(xr%d));" % (rp * i, i))
    if packed:
        for i in range(nlw):
            w("        put_w(lrw + %du, lcw, wr%d);" % (rpw * i, i))
    else:
        for i in range(nlw):
            w("        put_w(lr + %du, lc, wr%d);" % (rp * i, i))
    w("        workgroupBarrier();")
    w("        let kn = k0 + %du;" % bk)
    w("        if (kn < p.kp) {")
    if fast:
        w("            if (interior) {")
        for i in range(nl):
            w("                xr%d = x[xb + %du * xs + kn / 4u];" % (i, i))
        if packed:
            for i in range(nlw):
                w("                wr%d = w[wbase + %du * ws + kn / 8u];" % (i, i))
        else:
            for i in range(nlw):
                w("                wr%d = w[wbase + %du * ws + kn / 4u];" % (i, i))
        w("            } else {")
    ind = "                " if fast else "            "
    for i in range(nl):
        w(ind + "xr%d = load_x4(tok0 + lr + %du, kn + lc);" % (i, rp * i))
    if packed:
        for i in range(nlw):
            w(ind + "wr%d = load_w8(row0 + lrw + %du, kn + lcw);" % (i, rpw * i))
    else:
        for i in range(nlw):
            w(ind + "wr%d = load_w4(row0 + lr + %du, kn + lc);" % (i, rp * i))
    if fast:
        w("            }")
    w("        }")
    for kk in range(0, bk, 16):
        for a in range(4):
            if packed:
                w("        let a%d_%d = coopLoadT<coop_mat16x16<f16, A>>(&xa[(wm + %du) * LDSU + %du], LDSU);" % (a, kk, 16 * a, kk // 2))
            else:
                w("        let a%d_%d = coopLoadT<coop_mat16x16<f16, A>>(&xa[(wm + %du) * LDS + %du], LDS);" % (a, kk, 16 * a, kk))
        for b in range(fb):
            if packed:
                w("        let b%d_%d = coopLoad<coop_mat16x16<f16, B>>(&wb[(wn + %du) * LDSU + %du], LDSU);" % (b, kk, 16 * b, kk // 2))
            else:
                w("        let b%d_%d = coopLoad<coop_mat16x16<f16, B>>(&wb[(wn + %du) * LDS + %du], LDS);" % (b, kk, 16 * b, kk))
        for a in range(4):
            for b in range(fb):
                w("        c%d%d = coopMultiplyAdd(a%d_%d, b%d_%d, c%d%d);" % (a, b, a, kk, b, kk, a, b))
    w("        workgroupBarrier();")
    w("    }")
    w("    let t = tok0 + wm;")
    w("    let r = row0 + wn;")
    if direct:
        w("    let whole = (p.soft_cap <= 0.0) & (tok0 + 128u <= p.tokens) & (row0 + %du <= p.n) & (p.y_offset %% 4u == 0u) & (p.y_stride %% 4u == 0u);" % tn)
        w("    if (whole) {")
        for a in range(4):
            for b in range(fb):
                w("        emit_direct(c%d%d, t + %du, r + %du);" % (a, b, 16 * a, 16 * b))
        w("        return;")
        w("    }")
    for a in range(4):
        for b in range(fb):
            w("    emit(c%d%d, sg, lane, t + %du, r + %du);" % (a, b, 16 * a, 16 * b))
    w("}")
    return "\n".join(o) + "\n"

if __name__ == "__main__":
    out = sys.argv[1]
    import os
    os.makedirs(out, exist_ok=True)
    V = {
        "gemm_1tm32": dict(bk=32, tm=True),
        "gemm_2tm64": dict(bk=64, tm=True),
        "gemm_3tm64f": dict(bk=64, tm=True, fast=True),
        "gemm_4tm64fd": dict(bk=64, tm=True, fast=True, direct=True),
        "gemm_5tm64p": dict(bk=64, tm=True, packed=True),
        "gemm_6tm64pfd": dict(bk=64, tm=True, packed=True, fast=True, direct=True),
        "gemm_7tm32pfd": dict(bk=32, tm=True, packed=True, fast=True, direct=True),
        "gemm_8rm64fd": dict(bk=64, tm=False, fast=True, direct=True),
        "gemm_9tm32fd": dict(bk=32, tm=True, fast=True, direct=True),
        "gemm_Atm32pfdW": dict(bk=32, tm=True, packed=True, fast=True, direct=True, fb=4),
        "gemm_Btm32fdW": dict(bk=32, tm=True, fast=True, direct=True, fb=4),
    }
    for name, o in V.items():
        open(os.path.join(out, name + ".wgsl"), "w").write(gen(**o))

def gen_bdirect(bk=64):
    """Interior tiles: activations staged through workgroup memory, weight fragments loaded
    straight from global memory one slice ahead. Edge tiles: everything staged."""
    tpr = bk // 4
    rp = 256 // tpr
    nl = 128 // rp
    lds = bk + 8
    o = []
    w = o.append
    w("// PROBE grid=token tn=128 bk=%d bdirect=1" % bk)
    w(HEADER)
    w("const LDS: u32 = %du;" % lds)
    w("@group(0) @binding(0) var<uniform> p: Params;")
    w("@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;")
    w("@group(0) @binding(2) var<storage, read> wh: array<f16>;")
    w("@group(0) @binding(3) var<storage, read_write> y: array<f32>;")
    w("var<workgroup> xa: array<f16, %d>;" % (128 * lds))
    w("var<workgroup> wb: array<f16, %d>;" % (128 * lds))
    w("var<workgroup> scratch: array<f32, 2048>;")
    w("""
fn load_x4(t: u32, k: u32) -> vec4<f32> {
    if (t >= p.tokens) {
        return vec4<f32>();
    }
    let e = p.x_offset + t * p.x_stride + k;
    if (e % 4u == 0u && k + 4u <= p.k) {
        return x[e / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < 4u; j++) {
        if (k + j < p.k) {
            v[j] = x[(e + j) / 4u][(e + j) % 4u];
        }
    }
    return v;
}

fn load_w4(r: u32, k: u32) -> vec4<f16> {
    if (r < p.n && k < p.kp) {
        let e = r * p.kp + k;
        return vec4<f16>(wh[e], wh[e + 1u], wh[e + 2u], wh[e + 3u]);
    }
    return vec4<f16>();
}

fn load_b(e: u32, stride: u32) -> coop_mat16x16<f16, B> {
    return coopLoad<coop_mat16x16<f16, B>>(&wh[e], stride);
}

fn put_x(r: u32, c: u32, v: vec4<f16>) {
    xa[r * LDS + c] = v.x;
    xa[r * LDS + c + 1u] = v.y;
    xa[r * LDS + c + 2u] = v.z;
    xa[r * LDS + c + 3u] = v.w;
}

fn put_w(r: u32, c: u32, v: vec4<f16>) {
    wb[r * LDS + c] = v.x;
    wb[r * LDS + c + 1u] = v.y;
    wb[r * LDS + c + 2u] = v.z;
    wb[r * LDS + c + 3u] = v.w;
}

fn store_frag(c: coop_mat16x16<f32, C>, base: u32) {
    coopStoreT(c, &scratch[base], 16u);
}

fn write_out(t: u32, r: u32, acc: f32) {
    if (t >= p.tokens || r >= p.n) {
        return;
    }
    let o = p.y_offset + t * p.y_stride + r;
    var v = acc;
    if (p.accumulate != 0u) {
        v += y[o];
    }
    if (p.soft_cap > 0.0) {
        v = p.soft_cap * tanh(v / p.soft_cap);
    }
    y[o] = v;
}

fn emit(c: coop_mat16x16<f32, C>, sg: u32, lane: u32, t0: u32, r0: u32) {
    store_frag(c, sg * 256u);
    workgroupBarrier();
    for (var e = 0u; e < 8u; e++) {
        let idx = lane * 8u + e;
        write_out(t0 + idx / 16u, r0 + idx % 16u, scratch[sg * 256u + idx]);
    }
    workgroupBarrier();
}
""")
    w("@compute @workgroup_size(256)")
    w("fn main(")
    w("    @builtin(workgroup_id) wid: vec3<u32>,")
    w("    @builtin(local_invocation_index) lid: u32,")
    w("    @builtin(subgroup_id) sg: u32,")
    w("    @builtin(subgroup_invocation_id) lane: u32,")
    w(") {")
    w("    let tok0 = wid.x * 128u;")
    w("    let row0 = wid.y * 128u;")
    w("    let wm = (sg % 2u) * 64u;")
    w("    let wn = (sg / 2u) * 32u;")
    for a in range(4):
        for b in range(2):
            w("    var c%d%d = coop_mat16x16<f32, C>();" % (a, b))
    w("    let lr = lid / %du;" % tpr)
    w("    let lc = (lid %% %du) * 4u;" % tpr)
    w("    let kp = p.kp;")
    w("    // (non-short-circuit & keeps the condition uniform for naga: && lowers to a local variable)")
    w("    let interior = (tok0 + 128u <= p.tokens) & (row0 + 128u <= p.n) & (p.x_offset %% 4u == 0u) & (p.x_stride %% 4u == 0u) & (p.k == p.kp) & (p.k %% %du == 0u);" % bk)
    kks = list(range(0, bk, 16))
    def compute(ind, bname):
        for kk in kks:
            for a in range(4):
                w(ind + "let a%d_%d = coopLoadT<coop_mat16x16<f16, A>>(&xa[(wm + %du) * LDS + %du], LDS);" % (a, kk, 16 * a, kk))
            if bname is None:
                for b in range(2):
                    w(ind + "let b%d_%d = coopLoad<coop_mat16x16<f16, B>>(&wb[(wn + %du) * LDS + %du], LDS);" % (b, kk, 16 * b, kk))
            for a in range(4):
                for b in range(2):
                    bb = ("b%d_%d" % (b, kk)) if bname is None else ("%s%d_%d" % (bname, b, kk))
                    w(ind + "c%d%d = coopMultiplyAdd(a%d_%d, %s, c%d%d);" % (a, b, a, kk, bb, a, b))
    w("    if (interior) {")
    w("        let xb = (p.x_offset + (tok0 + lr) * p.x_stride + lc) / 4u;")
    w("        let xs = %du * p.x_stride / 4u;" % rp)
    w("        let wrow = (row0 + wn) * kp;")
    for i in range(nl):
        w("        var xr%d = x[xb + %du * xs];" % (i, i))
    for kk in kks:
        for b in range(2):
            w("        var bf%d_%d = load_b(wrow + %du * kp + %du, kp);" % (b, kk, 16 * b, kk))
            w("        var nb%d_%d = coop_mat16x16<f16, B>();" % (b, kk))
    w("        for (var k0 = 0u; k0 < kp; k0 += %du) {" % bk)
    for i in range(nl):
        w("            put_x(lr + %du, lc, vec4<f16>(xr%d));" % (rp * i, i))
    w("            workgroupBarrier();")
    w("            let kn = k0 + %du;" % bk)
    w("            if (kn < kp) {")
    for i in range(nl):
        w("                xr%d = x[xb + %du * xs + kn / 4u];" % (i, i))
    w("            }")
    w("            // (no branch around cooperative loads: the last slice is fetched again)")
    w("            let kb = min(kn, kp - %du);" % bk)
    for kk in kks:
        for b in range(2):
            w("            nb%d_%d = load_b(wrow + %du * kp + kb + %du, kp);" % (b, kk, 16 * b, kk))
    compute("            ", "bf")
    for kk in kks:
        for b in range(2):
            w("            bf%d_%d = nb%d_%d;" % (b, kk, b, kk))
    w("            workgroupBarrier();")
    w("        }")
    w("    } else {")
    for i in range(nl):
        w("        var xr%d = load_x4(tok0 + lr + %du, lc);" % (i, rp * i))
    for i in range(nl):
        w("        var wr%d = load_w4(row0 + lr + %du, lc);" % (i, rp * i))
    w("        for (var k0 = 0u; k0 < kp; k0 += %du) {" % bk)
    for i in range(nl):
        w("            put_x(lr + %du, lc, vec4<f16>(xr%d));" % (rp * i, i))
    for i in range(nl):
        w("            put_w(lr + %du, lc, wr%d);" % (rp * i, i))
    w("            workgroupBarrier();")
    w("            let kn = k0 + %du;" % bk)
    w("            if (kn < kp) {")
    for i in range(nl):
        w("                xr%d = load_x4(tok0 + lr + %du, kn + lc);" % (i, rp * i))
    for i in range(nl):
        w("                wr%d = load_w4(row0 + lr + %du, kn + lc);" % (i, rp * i))
    w("            }")
    compute("            ", None)
    w("            workgroupBarrier();")
    w("        }")
    w("    }")
    w("    let t = tok0 + wm;")
    w("    let r = row0 + wn;")
    for a in range(4):
        for b in range(2):
            w("    emit(c%d%d, sg, lane, t + %du, r + %du);" % (a, b, 16 * a, 16 * b))
    w("}")
    return "\n".join(o) + "\n"

def round2(out):
    import os
    V = {
        "gemm_3tm64f": dict(bk=64, tm=True, fast=True),
        "gemm_Crm64f": dict(bk=64, tm=False, fast=True),
        "gemm_Dtm32f": dict(bk=32, tm=True, fast=True),
        "gemm_Erm32f": dict(bk=32, tm=False, fast=True),
        "gemm_Ftm32fW": dict(bk=32, tm=True, fast=True, fb=4),
    }
    for name, o in V.items():
        open(os.path.join(out, name + ".wgsl"), "w").write(gen(**o))
    open(os.path.join(out, "gemm_Gtm64fB.wgsl"), "w").write(gen_bdirect(64))
    open(os.path.join(out, "gemm_Itm64fd.wgsl"), "w").write(gen(bk=64, tm=True, fast=True, direct=True))
    open(os.path.join(out, "gemm_Htm32fB.wgsl"), "w").write(gen_bdirect(32))
