// bias_add.wgsl — y[t, j] += bias[j] for j < width, t < tokens; row t of y starts at
// y_offset + t * y_stride.
//
// Bindings (group 0): 0 uniform Params; 1 y: array<f32> (read_write); 2 bias: array<f32> [width]
//   (read).
// Workgroup: 256 invocations, one element each.
// Grid: tokens * ceil(width / 256) workgroups, linear index wid.x + wid.y * grid_x
//   (grid_x <= 65535).
// Precision: f32.

struct Params {
    tokens: u32,
    width: u32,
    y_offset: u32,
    y_stride: u32,
    col_groups: u32,
    grid_x: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * p.grid_x;
    let t = w / p.col_groups;
    let j = (w % p.col_groups) * 256u + lid;
    if (t >= p.tokens || j >= p.width) {
        return;
    }
    let i = p.y_offset + t * p.y_stride + j;
    y[i] = y[i] + bias[j];
}
