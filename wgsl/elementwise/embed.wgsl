// embed.wgsl — embedding gather: out[t, :] = f32(W[ids[ids_offset + t], :])
//
// Bindings (group 0): 0 uniform Params; 1 ids: array<u32> (read); 2 w: packed weight rows of one
//   row-part [row0, row0 + rows) (read); 3 out: array<f32> [tokens, dim] (read_write).
// Workgroup: 64 invocations; each handles 8 consecutive columns of one token.
// Grid: (ceil(dim / 512), tokens, 1). One dispatch per weight part; ids outside the part are skipped.
// Precision: weights f32 or f16 (WEIGHT_F16, two halves per u32), output f32.

const WEIGHT_F16: bool = false;

struct Params {
    tokens: u32,
    dim: u32,
    kp: u32,        // row stride of w in elements (dim rounded up to a multiple of 8)
    row0: u32,      // first vocabulary row stored in this part
    rows: u32,      // rows stored in this part
    ids_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Eight consecutive weights starting at element e (a multiple of 8).
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
    let m = load_w8((id - p.row0) * p.kp + col0);
    for (var j = 0u; j < 8u; j++) {
        let col = col0 + j;
        if (col < p.dim) {
            out[t * p.dim + col] = m[j / 4u][j % 4u];
        }
    }
}
