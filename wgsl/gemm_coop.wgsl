// gemm_coop.wgsl — prefill projections on the GPU's matrix units (cooperative matrices):
//   y[t, n] (+)= sum_k x[t, k] * W[n, k]   (nn.Linear, y = x W^T)
//
// Bindings (group 0): 0 uniform Params; 1 x: array<vec4<f32>>, rows at x_offset + t * x_stride
//   elements (read); 2 w: array<vec4<f16>>, f16 weight rows of one row-part, row stride kp
//   elements (a multiple of 8), zero padded (read); 3 y: array<f32> rows at y_offset + t * y_stride
//   (read_write).
// Workgroup: 256 invocations = 8 subgroups of 32 (the host uses this kernel only where the
//   subgroup size is 32). The workgroup computes a 128 (tokens) x 128 (rows) tile; subgroup s owns
//   64 tokens x 32 rows = 4 x 2 fragments of 16x16 with f32 accumulators. K is staged through
//   workgroup memory in slices of 32, activations converted to f16 on the way, the next slice
//   fetched into registers while the current one is multiplied (rows padded by 8
//   halves against bank conflicts). The epilogue goes through a per-subgroup 16x16 scratch tile.
//   Workgroup memory: 28 KiB.
// Grid: (ceil(n / 128), ceil(tokens / 128), 1).
// Epilogue: accumulate != 0 adds into y (residuals); soft_cap > 0 applies cap * tanh(v / cap).
// Precision: f16 x f16 products accumulated in f32 (the f16-weight mode; --dtype f32 uses gemm.wgsl).
// Requires: SHADER_F16, SUBGROUP, EXPERIMENTAL_COOPERATIVE_MATRIX with 16x16x16 f16 -> f32.

enable f16;
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

const LDS: u32 = 40u; // 32 + 8 padding halves per staged row

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> xa: array<f16, 5120>; // [128 tokens][LDS]
var<workgroup> wb: array<f16, 5120>; // [128 rows][LDS]
var<workgroup> scratch: array<f32, 2048>; // [8 subgroups][16 x 16]

// Four activations x[t, k .. k + 4] (zero outside the matrix), k a multiple of 4.
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

// Four f16 weights W[r, k .. k + 4] (zero outside the part), k a multiple of 4.
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

// Publishes one 16x16 fragment at (t0, r0) through the subgroup's scratch tile.
fn emit(c: coop_mat16x16<f32, C>, sg: u32, lane: u32, t0: u32, r0: u32) {
    store_frag(c, sg * 256u);
    workgroupBarrier();
    for (var e = 0u; e < 8u; e++) {
        let idx = lane * 8u + e;
        write_out(t0 + idx / 16u, r0 + idx % 16u, scratch[sg * 256u + idx]);
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row0 = wid.x * 128u;
    let tok0 = wid.y * 128u;
    let wm = (sg % 2u) * 64u; // this subgroup's tokens within the tile
    let wn = (sg / 2u) * 32u; // and its rows

    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c20 = coop_mat16x16<f32, C>();
    var c21 = coop_mat16x16<f32, C>();
    var c30 = coop_mat16x16<f32, C>();
    var c31 = coop_mat16x16<f32, C>();

    // Each invocation stages rows lr, lr + 32, lr + 64, lr + 96 at columns lc .. lc + 3 of both
    // tiles. The next slice is fetched into registers while the current one is multiplied.
    let lr = lid / 8u;
    let lc = (lid % 8u) * 4u;
    var xr0 = load_x4(tok0 + lr, lc);
    var xr1 = load_x4(tok0 + lr + 32u, lc);
    var xr2 = load_x4(tok0 + lr + 64u, lc);
    var xr3 = load_x4(tok0 + lr + 96u, lc);
    var wr0 = load_w4(row0 + lr, lc);
    var wr1 = load_w4(row0 + lr + 32u, lc);
    var wr2 = load_w4(row0 + lr + 64u, lc);
    var wr3 = load_w4(row0 + lr + 96u, lc);
    for (var k0 = 0u; k0 < p.kp; k0 += 32u) {
        put_x(lr, lc, vec4<f16>(xr0));
        put_x(lr + 32u, lc, vec4<f16>(xr1));
        put_x(lr + 64u, lc, vec4<f16>(xr2));
        put_x(lr + 96u, lc, vec4<f16>(xr3));
        put_w(lr, lc, wr0);
        put_w(lr + 32u, lc, wr1);
        put_w(lr + 64u, lc, wr2);
        put_w(lr + 96u, lc, wr3);
        workgroupBarrier();
        let kn = k0 + 32u;
        if (kn < p.kp) {
            xr0 = load_x4(tok0 + lr, kn + lc);
            xr1 = load_x4(tok0 + lr + 32u, kn + lc);
            xr2 = load_x4(tok0 + lr + 64u, kn + lc);
            xr3 = load_x4(tok0 + lr + 96u, kn + lc);
            wr0 = load_w4(row0 + lr, kn + lc);
            wr1 = load_w4(row0 + lr + 32u, kn + lc);
            wr2 = load_w4(row0 + lr + 64u, kn + lc);
            wr3 = load_w4(row0 + lr + 96u, kn + lc);
        }
        for (var kk = 0u; kk < 32u; kk += 16u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xa[(wm + 0u) * LDS + kk], LDS);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xa[(wm + 16u) * LDS + kk], LDS);
            let a2 = coopLoadT<coop_mat16x16<f16, A>>(&xa[(wm + 32u) * LDS + kk], LDS);
            let a3 = coopLoadT<coop_mat16x16<f16, A>>(&xa[(wm + 48u) * LDS + kk], LDS);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&wb[(wn + 0u) * LDS + kk], LDS);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&wb[(wn + 16u) * LDS + kk], LDS);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
        }
        workgroupBarrier();
    }
    let t = tok0 + wm;
    let r = row0 + wn;
    emit(c00, sg, lane, t, r);
    emit(c01, sg, lane, t, r + 16u);
    emit(c10, sg, lane, t + 16u, r);
    emit(c11, sg, lane, t + 16u, r + 16u);
    emit(c20, sg, lane, t + 32u, r);
    emit(c21, sg, lane, t + 32u, r + 16u);
    emit(c30, sg, lane, t + 48u, r);
    emit(c31, sg, lane, t + 48u, r + 16u);
}
