// head_norm_gate.wgsl — per-head LayerNorm of the mLSTM output times the sigmoid output gate:
//   y[t, h*dv + v] = (x - mean_h) / sqrt(var_h + eps) * weight[h*dv + v] * sigmoid(P[t, o_col + h*dv + v])
// (xLSTM Large's MultiHeadLayerNorm: mean-subtracting, biased variance, no bias.)
//
// Bindings (group 0): 0 uniform Params; 1 x: array<f32> [tokens, num_heads * dv] (read);
//   2 weight: array<f32> [num_heads * dv] (read); 3 proj: array<f32> [tokens, proj_stride], the
//   output-gate pre-activations at o_col (read); 4 y: array<f32> [tokens, num_heads * dv] (read_write).
// Workgroup: 256 invocations, one (token, head); tree reductions in workgroup memory.
// Grid: (num_heads, tokens, 1).
// Precision: f32.

struct Params {
    tokens: u32,
    num_heads: u32,
    dv: u32,
    proj_stride: u32,
    o_col: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> proj: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 256>;

fn reduce(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half /= 2u) {
        if (lid < half) {
            red[lid] += red[lid + half];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let width = p.num_heads * p.dv;
    let base = t * width + h * p.dv;
    var s = 0.0;
    for (var v = lid; v < p.dv; v += 256u) {
        s += x[base + v];
    }
    let mean = reduce(lid, s) / f32(p.dv);
    var sq = 0.0;
    for (var v = lid; v < p.dv; v += 256u) {
        let d = x[base + v] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(reduce(lid, sq) / f32(p.dv) + p.eps);
    for (var v = lid; v < p.dv; v += 256u) {
        let o = proj[t * p.proj_stride + p.o_col + h * p.dv + v];
        y[base + v] = (x[base + v] - mean) * inv * weight[h * p.dv + v] / (1.0 + exp(-o));
    }
}
