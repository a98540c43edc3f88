// weight_formats.wgsl — how the weight kernels read a matrix part in each storage format. It is
// appended to every kernel that reads weight matrices (gemm, gemm_coop, gemv, gemv_head_norm,
// embed; `gpu::kernels::SOURCES`), which bind the part at binding 2 and call these functions.
// (The GEMVs also append gemv_rows.wgsl, their shared inner step.)
//
// Formats (WEIGHT_FORMAT; the layout is `gpu::quant`'s, described in ARCHITECTURE.md):
//   0 f32; 1 f16 (two per u32); 2 q8: i8 values, then one f16 scale d per 32 inputs (w = d q);
//   3 q4: 4-bit values (eight per u32: the low nibbles of the four bytes are columns 0..3 of the
//     word, the high nibbles columns 4..7), then one u32 per 32 inputs holding the f16 pair
//     (d, b) (w = d q + b).
// A part of n rows of kp elements (kp a multiple of 8, of 32 for q8/q4) holds all the rows'
// values, then all their scales. Weight kernels read in blocks of 16 bytes: BLOCK elements of
// one row (4 in f32, 8 in f16, 16 in q8, 32 in q4), never straddling a quantization group.

const WEIGHT_FORMAT: u32 = 1u;

@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;

// Elements of one 16-byte block.
fn block_elems() -> u32 {
    switch (WEIGHT_FORMAT) {
        case 0u: { return 4u; }
        case 1u: { return 8u; }
        case 2u: { return 16u; }
        default: { return 32u; }
    }
}

fn word(i: u32) -> u32 {
    return w[i / 4u][i % 4u];
}

// (d, b) of the group holding element e (e = row * kp + column) of a part of n rows of kp
// elements; (1, 0) for the float formats.
fn group_scale(e: u32, n: u32, kp: u32) -> vec2<f32> {
    let g = e / 32u;
    if (WEIGHT_FORMAT == 2u) {
        let h = unpack2x16float(word(n * kp / 4u + g / 2u));
        return vec2<f32>(select(h.x, h.y, (g & 1u) == 1u), 0.0);
    }
    if (WEIGHT_FORMAT == 3u) {
        return unpack2x16float(word(n * kp / 8u + g));
    }
    return vec2<f32>(1.0, 0.0);
}

// Codes are turned into floats without integer conversions (slow on some GPUs): a code c
// below 2^8 placed in the mantissa of 2^23 (bits 0x4B000000) is the float 2^23 + c.

// Four i8 values of a word as f32 (the byte XOR 0x80 is the value plus 128).
fn q8x4(u: u32) -> vec4<f32> {
    let v = ((vec4<u32>(u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u)) ^ vec4<u32>(0x4B000080u);
    return bitcast<vec4<f32>>(v) - vec4<f32>(8388736.0);
}

// The low (columns 0..3) or high (4..7) nibbles of a q4 word as f32.
fn q4x4(u: u32, high: bool) -> vec4<f32> {
    let s = select(vec4<u32>(0u, 8u, 16u, 24u), vec4<u32>(4u, 12u, 20u, 28u), high);
    let v = ((vec4<u32>(u) >> s) & vec4<u32>(15u)) | vec4<u32>(0x4B000000u);
    return bitcast<vec4<f32>>(v) - vec4<f32>(8388608.0);
}

// One 16-byte block's codes times its inputs, per format (x0 .. the block's inputs in column
// order, four each): the GEMVs apply the group scale (and bias) once per block.
fn codes_dot_f32(b: vec4<u32>, x0: vec4<f32>) -> f32 {
    return dot(bitcast<vec4<f32>>(b), x0);
}

fn codes_dot_f16(b: vec4<u32>, x0: vec4<f32>, x1: vec4<f32>) -> f32 {
    return dot(vec4<f32>(unpack2x16float(b.x), unpack2x16float(b.y)), x0)
        + dot(vec4<f32>(unpack2x16float(b.z), unpack2x16float(b.w)), x1);
}

fn codes_dot_q8(b: vec4<u32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> f32 {
    return (dot(q8x4(b.x), x0) + dot(q8x4(b.y), x1)) + (dot(q8x4(b.z), x2) + dot(q8x4(b.w), x3));
}

fn codes_dot_q4(b: vec4<u32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
                x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> f32 {
    return ((dot(q4x4(b.x, false), x0) + dot(q4x4(b.x, true), x1))
        + (dot(q4x4(b.y, false), x2) + dot(q4x4(b.y, true), x3)))
        + ((dot(q4x4(b.z, false), x4) + dot(q4x4(b.z, true), x5))
        + (dot(q4x4(b.w, false), x6) + dot(q4x4(b.w, true), x7)));
}

// The 16-byte block holding element e (a multiple of block_elems()).
fn block_at(e: u32) -> vec4<u32> {
    return w[e / block_elems()];
}

// Eight weights from element e (a multiple of 8) of a part of n rows of kp elements, dequantized.
fn weights8(e: u32, n: u32, kp: u32) -> mat2x4<f32> {
    switch (WEIGHT_FORMAT) {
        case 0u: { return mat2x4<f32>(bitcast<vec4<f32>>(w[e / 4u]), bitcast<vec4<f32>>(w[e / 4u + 1u])); }
        case 1u: {
            let b = w[e / 8u];
            return mat2x4<f32>(
                vec4<f32>(unpack2x16float(b.x), unpack2x16float(b.y)),
                vec4<f32>(unpack2x16float(b.z), unpack2x16float(b.w)));
        }
        case 2u: {
            let d = group_scale(e, n, kp).x;
            let i = e / 4u;
            return mat2x4<f32>(q8x4(word(i)) * d, q8x4(word(i + 1u)) * d);
        }
        default: {
            let s = group_scale(e, n, kp);
            let u = word(e / 8u);
            return mat2x4<f32>(q4x4(u, false) * s.x + s.y, q4x4(u, true) * s.x + s.y);
        }
    }
}
