// layer_norm.wgsl — the original xLSTM's LayerNorm / MultiHeadLayerNorm (GroupNorm), per row and
// per group of gw = width / groups columns:
//   n[r, j] = (x[r, j] - mean_g) / sqrt(var_g + eps) * (1 + weight[j])   (weight absent: scale 1)
// with the biased variance and no bias, followed by the epilogue MODE:
//   0: out[r, j] = n[r, j]
//   1: out[r, j] += n[r, j]                                   (residual add)
//   2: out[r, j] = (n[r, j] + skip[j] * xc[r, j]) * silu(z[r, j])   (v1 mLSTM output gate)
// Every matrix is a strided view: row r of x starts at x_offset + r * x_stride, likewise for out,
// xc and z (their own offsets and strides); weight and skip are [width].
//
// Bindings (group 0): 0 uniform Params; 1 x; 2 weight (has_weight = 0: any buffer); 3 out;
//   4 skip; 5 xc; 6 z (MODE 0/1: any buffers). All array<f32>, all read_write, so a caller may
//   place any of them in one buffer (wgpu rejects a buffer bound read-only and read-write in the
//   same dispatch). out may alias x row for row (each value is read before it is written by the
//   same invocation); it must not overlap other rows of x, xc or z.
// Workgroup: WG invocations per (row, group), looping over the group's columns; mean and variance
//   are two passes over x with tree reductions in workgroup memory (no subgroups).
// Grid: rows * groups workgroups, linear index wid.x + wid.y * grid_x (grid_x <= 65535).
// Precision: f32; centred two-pass variance.

const MODE: u32 = 0u;
const WG: u32 = 256u;

struct Params {
    rows: u32,
    width: u32,
    groups: u32,
    gw: u32,
    x_offset: u32,
    x_stride: u32,
    out_offset: u32,
    out_stride: u32,
    xc_offset: u32,
    xc_stride: u32,
    z_offset: u32,
    z_stride: u32,
    has_weight: u32,
    grid_x: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> skip: array<f32>;
@group(0) @binding(5) var<storage, read_write> xc: array<f32>;
@group(0) @binding(6) var<storage, read_write> z: array<f32>;

var<workgroup> red: array<f32, WG>;

fn reduce(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            red[lid] += red[lid + half];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * p.grid_x;
    if (w >= p.rows * p.groups) {
        return;
    }
    let r = w / p.groups;
    let c0 = (w % p.groups) * p.gw;
    let xb = p.x_offset + r * p.x_stride + c0;
    var s = 0.0;
    for (var c = lid; c < p.gw; c += WG) {
        s += x[xb + c];
    }
    let mean = reduce(lid, s) / f32(p.gw);
    var sq = 0.0;
    for (var c = lid; c < p.gw; c += WG) {
        let d = x[xb + c] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(reduce(lid, sq) / f32(p.gw) + p.eps);
    let ob = p.out_offset + r * p.out_stride + c0;
    for (var c = lid; c < p.gw; c += WG) {
        let j = c0 + c;
        var scale = 1.0;
        if (p.has_weight != 0u) {
            scale = 1.0 + weight[j];
        }
        let v = (x[xb + c] - mean) * inv * scale;
        if (MODE == 0u) {
            out[ob + c] = v;
        } else if (MODE == 1u) {
            out[ob + c] = out[ob + c] + v;
        } else {
            let zz = z[p.z_offset + r * p.z_stride + j];
            let gate = zz / (1.0 + exp(-zz));
            out[ob + c] = (v + skip[j] * xc[p.xc_offset + r * p.xc_stride + j]) * gate;
        }
    }
}
