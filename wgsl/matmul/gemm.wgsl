// gemm.wgsl — prefill projections: y[t, y_col + n] (+)= sum_k x[t, k] * W[n, k]  (nn.Linear, y = x W^T)
//
// Bindings (group 0): 0 uniform Params; 1 x: array<f32> rows at x_offset + t * x_stride (read);
//   2 w: one row-part of the matrix in any weight format (weight_formats.wgsl, appended; dequantized
//   while staging) (read);
//   3 y: array<f32> rows at y_offset + t * y_stride (read_write).
// Workgroup: 256 invocations computing a 64 (tokens) x 64 (rows) tile, 4 x 4 per invocation,
//   K staged through workgroup memory in slices of 32 (16 KiB).
// Grid: (ceil(n / 64), ceil(tokens / 64), 1).
// Epilogue (gemm_store.wgsl, appended): accumulate != 0 adds into y (residual connections); soft_cap > 0 applies
//   cap * tanh(v / cap) (the output logit cap).
// Precision: weights in any format (WEIGHT_FORMAT), dequantized to f32; activations and accumulation f32.
// This is the portable tiled path that every adapter runs.

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
    y_aligned: u32, // read by gemm_coop.wgsl only (the two share the host's GemmParams)
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// Workgroup tiles hold 4 consecutive tokens (xs) or rows (ws) per vec4, so the inner loop reads
// two vec4s and does 16 FMAs with no dynamic indexing (which would spill to local memory).
var<workgroup> xs: array<array<vec4<f32>, 16>, 32>; // [k][token / 4]
var<workgroup> ws: array<array<vec4<f32>, 16>, 32>; // [k][row / 4]

fn load_x(t: u32, k: u32) -> f32 {
    if (t < p.tokens && k < p.k) {
        return x[p.x_offset + t * p.x_stride + k];
    }
    return 0.0;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.x * 64u;
    let tok0 = wid.y * 64u;
    let tx = lid % 16u; // rows tx*4 .. tx*4+3
    let ty = lid / 16u; // tokens ty*4 .. ty*4+3
    let load_r = lid / 4u;        // row / token this invocation stages
    let load_k = (lid % 4u) * 8u; // first of the 8 k values it stages
    let lq = load_r / 4u;
    let lc = load_r % 4u;

    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var k0 = 0u; k0 < p.kp; k0 += 32u) {
        // Stage 8 activations of one token and 8 weights of one row.
        let t = tok0 + load_r;
        let kb = k0 + load_k;
        xs[load_k][lq][lc] = load_x(t, kb);
        xs[load_k + 1u][lq][lc] = load_x(t, kb + 1u);
        xs[load_k + 2u][lq][lc] = load_x(t, kb + 2u);
        xs[load_k + 3u][lq][lc] = load_x(t, kb + 3u);
        xs[load_k + 4u][lq][lc] = load_x(t, kb + 4u);
        xs[load_k + 5u][lq][lc] = load_x(t, kb + 5u);
        xs[load_k + 6u][lq][lc] = load_x(t, kb + 6u);
        xs[load_k + 7u][lq][lc] = load_x(t, kb + 7u);
        let r = row0 + load_r;
        var m = mat2x4<f32>();
        if (r < p.n && kb < p.kp) {
            m = weights8(r * p.kp + kb, p.n, p.kp);
        }
        ws[load_k][lq][lc] = m[0].x;
        ws[load_k + 1u][lq][lc] = m[0].y;
        ws[load_k + 2u][lq][lc] = m[0].z;
        ws[load_k + 3u][lq][lc] = m[0].w;
        ws[load_k + 4u][lq][lc] = m[1].x;
        ws[load_k + 5u][lq][lc] = m[1].y;
        ws[load_k + 6u][lq][lc] = m[1].z;
        ws[load_k + 7u][lq][lc] = m[1].w;
        workgroupBarrier();
        for (var kk = 0u; kk < 32u; kk++) {
            let a = xs[kk][ty];
            let b = ws[kk][tx];
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }
    let t = tok0 + ty * 4u;
    let r = row0 + tx * 4u;
    store_row(t, r, acc0);
    store_row(t + 1u, r, acc1);
    store_row(t + 2u, r, acc2);
    store_row(t + 3u, r, acc3);
}
