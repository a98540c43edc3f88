// conv_silu.wgsl — the original xLSTM's causal depthwise conv1d + SiLU over a segment of tokens,
// continuing from the decode state (the package's conv1d_step applied token by token):
//   out[t, f] = silu(bias[f] + sum_{j < ks} weight[f, j] * in(t - (ks - 1) + j, f)),
//   in(s, f) = x[s, f] for s >= 0, state[ks + s, f] for s < 0,
// and then (entry point `update`, a SECOND dispatch) the state update: state [ks, width] (the
// last ks inputs, newest last) becomes the last ks rows of (state ++ x).
// Rows of x start at x_offset + t * x_stride, rows of out at out_offset + t * out_stride.
//
// Bindings (group 0): 0 uniform Params; 1 x: array<f32> (read_write, only read); 2 state:
//   array<f32> [ks, width] (read_write; only read by `main`); 3 weight: array<f32> [width, ks]
//   (read); 4 bias: array<f32> [width] (read); 5 out: array<f32> (read_write). `update` uses
//   bindings 0..2 only. x, state and out may share a buffer; out must not overlap x or state.
// Workgroup: 256 invocations, one column each. `main`: one (token, column); `update`: one column,
//   rows in increasing order (row r reads the old row r + tokens, which only this invocation
//   writes, later), so the in-place update has no race.
// Grid: `main`: tokens * ceil(width / 256) workgroups, `update`: ceil(width / 256) workgroups;
//   linear index wid.x + wid.y * grid_x (grid_x <= 65535).
// Precision: f32.

const WG: u32 = 256u;

struct Params {
    tokens: u32,
    width: u32,
    ks: u32,
    col_groups: u32,
    x_offset: u32,
    x_stride: u32,
    out_offset: u32,
    out_stride: u32,
    grid_x: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = wid.x + wid.y * p.grid_x;
    let t = w / p.col_groups;
    let f = (w % p.col_groups) * WG + lid;
    if (t >= p.tokens || f >= p.width) {
        return;
    }
    var acc = 0.0;
    for (var j = 0u; j < p.ks; j++) {
        // Input position t - (ks - 1) + j; negative positions come from the state, whose row
        // ks + s is row t + j + 1.
        var v: f32;
        if (t + j + 1u >= p.ks) {
            v = x[p.x_offset + (t + j + 1u - p.ks) * p.x_stride + f];
        } else {
            v = state[(t + j + 1u) * p.width + f];
        }
        acc = fma(weight[f * p.ks + j], v, acc);
    }
    let pre = acc + bias[f];
    out[p.out_offset + t * p.out_stride + f] = pre / (1.0 + exp(-pre));
}

@compute @workgroup_size(WG)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let f = (wid.x + wid.y * p.grid_x) * WG + lid;
    if (f >= p.width) {
        return;
    }
    for (var r = 0u; r < p.ks; r++) {
        let src = p.tokens + r;
        var v: f32;
        if (src < p.ks) {
            v = state[src * p.width + f];
        } else {
            v = x[p.x_offset + (src - p.ks) * p.x_stride + f];
        }
        state[r * p.width + f] = v;
    }
}
