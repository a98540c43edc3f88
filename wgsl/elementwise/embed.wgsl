// embed.wgsl — embedding gather: out[t, :] = f32(W[ids[ids_offset + t], :])
//
// Bindings (group 0): 0 uniform Params; 1 ids: array<u32> (read); 2 w: one row-part [row0, row0 + rows)
//   of the table in any weight format (matmul/weight_formats.wgsl, appended) (read); 3 out: array<f32> [tokens, dim] (read_write).
// Workgroup: 64 invocations; each handles 8 consecutive columns of one token.
// Grid: (ceil(dim / 512), tokens, 1). One dispatch per weight part; ids outside the part are skipped.
// Precision: weights in any format (WEIGHT_FORMAT), dequantized; output f32.

struct Params {
    tokens: u32,
    dim: u32,
    kp: u32,        // row stride of w in elements (`WeightDtype::padded_cols`)
    row0: u32,      // first vocabulary row stored in this part
    rows: u32,      // rows stored in this part
    ids_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col0 = gid.x * 8u;
    let t = gid.y;
    if (col0 >= p.dim || t >= p.tokens) {
        return;
    }
    let id = ids[p.ids_offset + t];
    if (id < p.row0 || id >= p.row0 + p.rows) {
        return;
    }
    let m = weights8((id - p.row0) * p.kp + col0, p.rows, p.kp);
    for (var j = 0u; j < 8u; j++) {
        let col = col0 + j;
        if (col < p.dim) {
            out[t * p.dim + col] = m[j / 4u][j % 4u];
        }
    }
}
