// rms_norm.wgsl — y = x / sqrt(mean(x^2) + eps) * weight, one row per workgroup.
//
// Bindings (group 0): 0 uniform Params; 1 x: array<f32> (read); 2 weight: array<f32> [dim] (read);
//   3 y: array<f32> (read_write). Rows are read at x_offset + r * x_stride, written likewise.
// Workgroup: WG invocations, tree reduction in workgroup memory (no subgroups needed).
// Grid: (rows, 1, 1).
// Precision: f32 throughout (the reference forces f32 norm statistics).

const WG: u32 = 256u;

struct Params {
    rows: u32,
    dim: u32,
    x_stride: u32,
    x_offset: u32,
    y_stride: u32,
    y_offset: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.x;
    let xb = p.x_offset + r * p.x_stride;
    var s = 0.0;
    for (var c = lid; c < p.dim; c += WG) {
        let v = x[xb + c];
        s += v * v;
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(partial[0] / f32(p.dim) + p.eps);
    let yb = p.y_offset + r * p.y_stride;
    for (var c = lid; c < p.dim; c += WG) {
        y[yb + c] = x[xb + c] * inv * weight[c];
    }
}
