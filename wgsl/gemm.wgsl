// gemm.wgsl — prefill projections: y[t, y_col + n] (+)= sum_k x[t, k] * W[n, k]  (nn.Linear, y = x W^T)
//
// Bindings (group 0): 0 uniform Params; 1 x: array<f32> rows at x_offset + t * x_stride (read);
//   2 w: packed weight rows of one row-part, row stride kp elements, zero padded (read);
//   3 y: array<f32> rows at y_offset + t * y_stride (read_write).
// Workgroup: 256 invocations computing a 64 (tokens) x 64 (rows) tile, 4 x 4 per invocation,
//   K staged through workgroup memory in slices of 32 (16 KiB).
// Grid: (ceil(n / 64), ceil(tokens / 64), 1).
// Epilogue: accumulate != 0 adds into y (residual connections); soft_cap > 0 applies
//   cap * tanh(v / cap) (the output logit cap).
// Precision: weights f32 or f16 (WEIGHT_F16), activations and accumulation f32.
// This is the portable tiled path that every adapter runs.

const WEIGHT_F16: bool = false;

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

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> xs: array<array<f32, 64>, 32>; // [k][token]
var<workgroup> ws: array<array<f32, 64>, 32>; // [k][row]

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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.x * 64u;
    let tok0 = wid.y * 64u;
    let tx = lid % 16u; // rows tx*4 .. tx*4+3
    let ty = lid / 16u; // tokens ty*4 .. ty*4+3
    let load_r = lid / 4u;        // row / token this invocation stages
    let load_k = (lid % 4u) * 8u; // first of the 8 k values it stages

    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < p.kp; k0 += 32u) {
        // Stage 8 activations of one token and 8 weights of one row.
        let t = tok0 + load_r;
        for (var j = 0u; j < 8u; j++) {
            let kk = k0 + load_k + j;
            var v = 0.0;
            if (t < p.tokens && kk < p.k) {
                v = x[p.x_offset + t * p.x_stride + kk];
            }
            xs[load_k + j][load_r] = v;
        }
        let r = row0 + load_r;
        var m = mat2x4<f32>();
        if (r < p.n && k0 + load_k < p.kp) {
            m = load_w8(r * p.kp + k0 + load_k);
        }
        for (var j = 0u; j < 8u; j++) {
            ws[load_k + j][load_r] = m[j / 4u][j % 4u];
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 32u; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = xs[kk][ty * 4u + i];
                b[i] = ws[kk][tx * 4u + i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let t = tok0 + ty * 4u + i;
        if (t >= p.tokens) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let r = row0 + tx * 4u + j;
            if (r >= p.n) {
                continue;
            }
            let o = p.y_offset + t * p.y_stride + r;
            var v = acc[i][j];
            if (p.accumulate != 0u) {
                v += y[o];
            }
            if (p.soft_cap > 0.0) {
                v = p.soft_cap * tanh(v / p.soft_cap);
            }
            y[o] = v;
        }
    }
}
