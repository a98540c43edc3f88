// gemv.wgsl — decode projections for one token: y[y_offset + n] (+)= sum_k x[x_offset + k] * W[n, k]
//
// Bindings (group 0): 0 uniform Params; 1 x: array<f32> (read); 2 w: packed weight rows of one
//   row-part, row stride kp elements, zero padded (read); 3 y: array<f32> (read_write).
// Workgroup: 256 invocations = 8 rows x 32 lanes; each lane reads 8 weights (16 or 32 bytes) per
//   step, strided across the row so loads coalesce; lanes reduce through workgroup memory, so the
//   kernel needs no subgroup support and works for any subgroup size.
// Grid: (ceil(n / 8), 1, 1).
// Epilogue: accumulate != 0 adds into y (residuals); soft_cap > 0 applies cap * tanh(v / cap).
// Precision: weights f32 or f16 (WEIGHT_F16), accumulation f32.

const WEIGHT_F16: bool = false;

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
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

fn load_x4(k: u32) -> vec4<f32> {
    var v = vec4<f32>();
    for (var j = 0u; j < 4u; j++) {
        if (k + j < p.k) {
            v[j] = x[p.x_offset + k + j];
        }
    }
    return v;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % 32u;
    let r = wid.x * 8u + lid / 32u;
    var s = 0.0;
    if (r < p.n) {
        for (var k = lane * 8u; k < p.kp; k += 256u) {
            let m = load_w8(r * p.kp + k);
            s += dot(m[0], load_x4(k)) + dot(m[1], load_x4(k + 4u));
        }
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var half = 16u; half > 0u; half /= 2u) {
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
