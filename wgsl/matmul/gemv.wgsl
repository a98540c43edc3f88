// gemv.wgsl — decode projections for one token: y[y_offset + n] (+)= sum_k x[x_offset + k] * W[n, k]
//
// The input can be transformed on the fly so decode needs fewer dispatches (X_MODE):
//   0: x as is;
//   1: RMSNorm: x * g / sqrt(mean(x^2) + eps), g = aux[0 .. k]; every workgroup computes the
//      norm of x itself (k floats from cache), and the 1/rms factor is applied after the dot;
//   2: SwiGLU: silu(x[k']) * x[k + k'] for k' < k (x holds the fused [gate | up] projection).
// Bindings (group 0): 0 uniform Params; 1 x: array<vec4<f32>> (read; read as vec4 when x_offset
//   and k are multiples of 4, element by element otherwise); 2 w: one row-part of the matrix in
//   any weight format (weight_formats.wgsl, appended) (read); 3 y: array<f32> (read_write);
//   4 aux: array<vec4<f32>> (read; the RMSNorm weight in mode 1, otherwise any buffer).
// Workgroup: 256 invocations = ROWS groups of four rows x LANES lanes. Each lane reads one
//   16-byte block per load (8 weights in f16, 16 in q8, 32 in q4, 4 in f32) of each of its four
//   rows and dequantizes it in registers (gemv_rows.wgsl), four or eight loads in flight per iteration,
//   strided across the row so loads coalesce; the four rows share each input load and
//   transform. Lanes reduce through workgroup memory, so the kernel needs no subgroup support
//   and works for any subgroup size.
// Grid: (ceil(n / (4 ROWS)), 1, 1).
// Epilogue: accumulate != 0 adds into y (residuals); soft_cap > 0 applies cap * tanh(v / cap).
// Precision: weights in any format (WEIGHT_FORMAT), dequantized and accumulated in f32.

const LANES: u32 = 64u;
const ROWS: u32 = 4u; // 256 / LANES
const X_MODE: u32 = 0u;

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
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<vec4<f32>>;

var<workgroup> partial: array<vec4<f32>, 256>;

// raw x[at .. at + 4] relative to x_offset (zero at or past `end`), for `at` a multiple of 4
// relative to the start of the input row.
fn raw_x4(at: u32, end: u32) -> vec4<f32> {
    // `&`, not `&&`: naga lowers a short-circuit through a local variable and a branch.
    if (((p.x_offset + at) % 4u == 0u) & (at + 4u <= end)) {
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

// The (transformed) input x[k .. k + 4], zero past p.k, for k a multiple of 4 (what
// gemv_rows.wgsl's dot_rows4 reads).
fn input4(k: u32) -> vec4<f32> {
    if (X_MODE == 1u) {
        return raw_x4(k, p.k) * aux4(k);
    }
    if (X_MODE == 2u) {
        let g = raw_x4(k, p.k);
        let u = raw_x4(p.k + k, 2u * p.k);
        return g / (vec4<f32>(1.0) + exp(-g)) * u;
    }
    return raw_x4(k, p.k);
}

// 1 / sqrt(mean(x^2) + eps) over the raw input row (mode 1), reduced by the whole workgroup.
fn inv_rms(lid: u32) -> f32 {
    var s = 0.0;
    for (var k = lid * 4u; k < p.k; k += 1024u) {
        let v = raw_x4(k, p.k);
        s += dot(v, v);
    }
    partial[lid] = vec4<f32>(s, 0.0, 0.0, 0.0);
    workgroupBarrier();
    for (var half = 128u; half > 0u; half /= 2u) {
        if (lid < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    let r = inverseSqrt(partial[0].x / f32(p.k) + p.eps);
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    // Rows r .. r + 3: the four share every input load.
    let r = (wid.x * ROWS + lid / LANES) * 4u;
    var acc = vec4<f32>();
    if (r < p.n) {
        acc = rows4_over_k(r, lane * block_elems(), block_elems() * LANES);
    }
    // The RMSNorm factor scales the whole dot product, so it is computed after the weight loads
    // were issued (its barriers would otherwise hold them back).
    var scale = 1.0;
    if (X_MODE == 1u) {
        scale = inv_rms(lid);
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        for (var i = 0u; i < 4u; i++) {
            if (r + i < p.n) {
                let o = p.y_offset + r + i;
                var v = partial[lid][i] * scale;
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
}
