// swiglu.wgsl — the SwiGLU activation of xLSTM Large's FFN: y[t, f] = silu(u[t, f]) * u[t, ffn + f],
// where u is the fused [gate | up] projection output.
//
// Bindings (group 0): 0 uniform Params; 1 u: array<f32> [tokens, 2 * ffn] (read);
//   2 y: array<f32> [tokens, ffn] (read_write).
// Workgroup: 256 invocations, one element each.
// Grid: (ceil(ffn / 256), tokens, 1).
// Precision: f32.

struct Params {
    tokens: u32,
    ffn: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let f = gid.x;
    let t = gid.y;
    if (f >= p.ffn || t >= p.tokens) {
        return;
    }
    let g = u[t * 2u * p.ffn + f];
    y[t * p.ffn + f] = g / (1.0 + exp(-g)) * u[t * 2u * p.ffn + p.ffn + f];
}
