// gemv.wgsl — decode projections for one token: y[y_offset + n] (+)= sum_k x[x_offset + k] * W[n, k]
//
// Bindings (group 0): 0 uniform Params; 1 x: array<vec4<f32>> (read; read as vec4 when x_offset
//   and k are multiples of 4, element by element otherwise); 2 w: packed weight rows of one
//   row-part, row stride kp elements, zero padded (read); 3 y: array<f32> (read_write).
// Workgroup: 256 invocations = ROWS rows x LANES lanes. Each lane reads 8 weights (16 bytes in f16,
//   32 in f32) per load, two loads in flight per iteration, strided across the row so loads
//   coalesce; lanes reduce through workgroup memory, so the kernel needs no subgroup support and
//   works for any subgroup size.
// Grid: (ceil(n / ROWS), 1, 1).
// Epilogue: accumulate != 0 adds into y (residuals); soft_cap > 0 applies cap * tanh(v / cap).
// Precision: weights f32 or f16 (WEIGHT_F16), accumulation f32.

const WEIGHT_F16: bool = false;
const LANES: u32 = 64u;
const ROWS: u32 = 4u; // 256 / LANES

struct Params {
    n: u32,
    k: u32,
    kp: u32,
    x_offset: u32,
    y_offset: u32,
    accumulate: u32,
    soft_cap: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, 256>;

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

// x[k .. k + 4] (zero past k), for k a multiple of 4.
fn load_x4(k: u32) -> vec4<f32> {
    if (p.x_offset % 4u == 0u && k + 4u <= p.k) {
        return x[(p.x_offset + k) / 4u];
    }
    var v = vec4<f32>();
    for (var j = 0u; j < 4u; j++) {
        if (k + j < p.k) {
            let e = p.x_offset + k + j;
            v[j] = x[e / 4u][e % 4u];
        }
    }
    return v;
}

fn dot8(r: u32, k: u32) -> f32 {
    let m = load_w8(r * p.kp + k);
    return dot(m[0], load_x4(k)) + dot(m[1], load_x4(k + 4u));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let r = wid.x * ROWS + lid / LANES;
    var s0 = 0.0;
    var s1 = 0.0;
    if (r < p.n) {
        let step = 16u * LANES;
        var k = lane * 8u;
        for (; k + 8u * LANES < p.kp; k += step) {
            s0 += dot8(r, k);
            s1 += dot8(r, k + 8u * LANES);
        }
        if (k < p.kp) {
            s0 += dot8(r, k);
        }
    }
    partial[lid] = s0 + s1;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    if (lane == 0u && r < p.n) {
        let o = p.y_offset + r;
        var v = partial[lid];
        if (p.accumulate != 0u) {
            v += y[o];
        }
        if (p.soft_cap > 0.0) {
            v = p.soft_cap * tanh(v / p.soft_cap);
        }
        y[o] = v;
    }
}
