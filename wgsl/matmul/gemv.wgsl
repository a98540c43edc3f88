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
// Workgroup: 256 invocations = ROWS rows x LANES lanes. Each lane reads one 16-byte block per
//   load (8 weights in f16, 16 in q8, 32 in q4, 4 in f32) and dequantizes it in registers, four
//   loads in flight per iteration, strided across the row so loads coalesce; lanes reduce
//   through workgroup memory, so the kernel needs no subgroup support and works for any
//   subgroup size.
// Grid: (ceil(n / ROWS), 1, 1).
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

var<workgroup> partial: array<f32, 256>;

// raw x[at .. at + 4] relative to x_offset (zero at or past `end`), for `at` a multiple of 4
// relative to the start of the input row.
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

// The (transformed) input x[k .. k + 4], zero past p.k, for k a multiple of 4.
fn load_x4(k: u32) -> vec4<f32> {
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

// The block of row r at column k times the (transformed) input: the codes are multiplied
// first and the group's scale (and q4 bias, times the input sum) applied once.
fn dot_block(r: u32, k: u32) -> f32 {
    let e = r * p.kp + k;
    let b = block_at(e);
    var acc = 0.0;
    var sum = 0.0;
    for (var j = 0u; j < block_elems() / 4u; j++) {
        let xv = load_x4(k + 4u * j);
        acc += dot(block_codes4(b, j), xv);
        if (WEIGHT_FORMAT == 3u) {
            sum += dot(xv, vec4<f32>(1.0));
        }
    }
    if (WEIGHT_FORMAT == 2u) {
        return acc * group_scale(e, p.n, p.kp).x;
    }
    if (WEIGHT_FORMAT == 3u) {
        let s = group_scale(e, p.n, p.kp);
        return acc * s.x + sum * s.y;
    }
    return acc;
}

// 1 / sqrt(mean(x^2) + eps) over the raw input row (mode 1), reduced by the whole workgroup.
fn inv_rms(lid: u32) -> f32 {
    var s = 0.0;
    for (var k = lid * 4u; k < p.k; k += 1024u) {
        let v = raw_x4(k, p.k);
        s += dot(v, v);
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half /= 2u) {
        if (lid < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    let r = inverseSqrt(partial[0] / f32(p.k) + p.eps);
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var scale = 1.0;
    if (X_MODE == 1u) {
        scale = inv_rms(lid);
    }
    let lane = lid % LANES;
    let r = wid.x * ROWS + lid / LANES;
    var s0 = 0.0;
    var s1 = 0.0;
    var s2 = 0.0;
    var s3 = 0.0;
    if (r < p.n) {
        // Four independent 16-byte loads in flight per lane per iteration.
        let stride = block_elems() * LANES;
        var k = lane * block_elems();
        for (; k + 3u * stride < p.kp; k += 4u * stride) {
            s0 += dot_block(r, k);
            s1 += dot_block(r, k + stride);
            s2 += dot_block(r, k + 2u * stride);
            s3 += dot_block(r, k + 3u * stride);
        }
        for (; k < p.kp; k += stride) {
            s0 += dot_block(r, k);
        }
    }
    partial[lid] = (s0 + s1) + (s2 + s3);
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    if (lane == 0u && r < p.n) {
        let o = p.y_offset + r;
        var v = partial[lid] * scale;
        if (p.accumulate != 0u) {
            v += y[o];
        }
        if (p.soft_cap > 0.0) {
            v = p.soft_cap * tanh(v / p.soft_cap);
        }
        y[o] = v;
    }
}
