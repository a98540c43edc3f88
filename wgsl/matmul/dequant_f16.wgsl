// dequant_f16.wgsl — expands rows of a quantized weight part to f16 rows (the prefill GEMMs on the
// matrix units then read f16 weights at full speed; ops::matmul stages a part this way when a
// segment is long enough to amortise the pass):
//   out[r - row0, c] = f16(W[r, c]) for row0 <= r < row0 + rows, c < kp.
//
// Bindings (group 0): 0 uniform Params; 1 out: array<vec4<u32>> (read_write), f16 rows of kp
//   elements, two per u32; 2 w: the part in its format (weight_formats.wgsl, appended) (read).
// Workgroup: 256 invocations, 8 elements each.
// Grid: (min(ceil(groups / 256), 65535), ceil(groups / (256 * 65535)), 1) over groups = rows * kp / 8;
//   group = x + y * 65535 * 256.
// Precision: dequantized in f32 (weight_formats.wgsl's weights8), rounded to f16 once — the same
//   values gemm_coop.wgsl stages when it dequantizes itself.

struct Params {
    n: u32,    // rows of the part
    kp: u32,   // row stride in elements
    row0: u32, // first row expanded
    rows: u32, // rows expanded
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i >= p.rows * (p.kp / 8u)) {
        return;
    }
    let m = weights8(p.row0 * p.kp + i * 8u, p.n, p.kp);
    out[i] = vec4<u32>(pack2x16float(m[0].xy), pack2x16float(m[0].zw), pack2x16float(m[1].xy), pack2x16float(m[1].zw));
}
