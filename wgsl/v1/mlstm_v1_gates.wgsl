// mlstm_v1_gates.wgsl — the original (v1) mLSTM's gate pre-activations, written into the cell's
// projection rows next to the q | k | v they are computed from:
//   P[t, gate_col + r] = sum_{j < k} P[t, j] * W[r, j]      r < rows (input gates, then forget gates)
// i.e. Linear(3I -> NH) for each gate over concat(q, k, v), which are the first k = 3I columns of
// the same row. The gate biases are added later by the cell kernels (mlstm_gates, mlstm_step).
// One buffer holds both operands (columns < k are read, columns >= gate_col are written), so it is
// bound once, read_write.
//
// Bindings (group 0): 0 uniform Params; 1 w: array<f32> [rows, k] (read);
//   2 proj: array<f32> rows of `stride` floats (read_write).
// Workgroup: 64 invocations per (gate row, token): strided partial dot products, then a tree
//   reduction in workgroup memory (no subgroup operations, so any subgroup size works).
// Grid: (rows, tokens, 1).
// Precision: f32.

struct Params {
    tokens: u32,
    rows: u32,
    k: u32,
    stride: u32,
    gate_col: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> proj: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.x;
    let t = wid.y;
    let row = t * p.stride;
    var acc = 0.0;
    if (r < p.rows && t < p.tokens) {
        for (var j = lid; j < p.k; j += WG) {
            acc += proj[row + j] * w[r * p.k + j];
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u && r < p.rows && t < p.tokens) {
        proj[row + p.gate_col + r] = partial[0];
    }
}
