// gemv_rows.wgsl — the inner step both GEMVs share (appended to gemv.wgsl and
// gemv_head_norm.wgsl after weight_formats.wgsl): four rows times one block of the input.
// The kernel defines `fn input4(k: u32) -> vec4<f32>`, its (transformed) input x[k .. k + 4]
// (zero past its end), and its Params `p` with the part's rows `n` and row stride `kp`.
// The rows a lane multiplies share each input load and transform (on the H200 four rows instead
// of two took q4 decode from 110 to 150 tok/s); the q8/q4 group scale is applied once per block
// (q4's bias times the block's input sum).
// INT_DOT (q8/q4 only): the block's inputs are rounded to int8 with one scale per lane block
// (max |x| / 127, as llama.cpp's Q8_1 activations are) and multiplied with the codes by packed
// 4 x 8-bit integer dot products: one instruction per four weights where the GPU has them
// (SPIR-V SDot, DXIL dot4add) instead of a shift, mask, convert and FMA per weight. The q4 bias
// term multiplies the sum of the ROUNDED inputs (as llama.cpp's Q8_1 stores it): then the
// rounding error is sum(w e) as in q8. With the exact sum it would be sum((w - b) e), and b is
// about -8 d, the size of the largest weight: on the shipped xLSTM Large model that made q4's
// decode steps 2-3x further from the float path than q8's, and 1e-5 changes of the state moved
// the logits by 0.3.

const INT_DOT: u32 = 0u;

// The inputs of one 16-byte block in column order, four per vector: x0 in f32, x0..x1 in f16,
// x0..x3 in q8, x0..x7 in q4 (the rest unused).
struct BlockInputs {
    x0: vec4<f32>,
    x1: vec4<f32>,
    x2: vec4<f32>,
    x3: vec4<f32>,
    x4: vec4<f32>,
    x5: vec4<f32>,
    x6: vec4<f32>,
    x7: vec4<f32>,
    // q4: the sum of the block's inputs (its bias term; under INT_DOT of the rounded inputs),
    // 0 otherwise.
    sum: f32,
    // INT_DOT: the inputs as int8, four per word in column order (q8 uses q0, q4 q0 and q1),
    // and their scale.
    q0: vec4<u32>,
    q1: vec4<u32>,
    sx: f32,
}

// Four inputs as int8 at 1 / scale `inv`.
fn q8_inputs(v: vec4<f32>, inv: f32) -> u32 {
    return pack4xI8(vec4<i32>(round(v * inv)));
}

fn quantize_inputs(b: ptr<function, BlockInputs>) {
    var m = max(abs((*b).x0), abs((*b).x1));
    m = max(m, max(abs((*b).x2), abs((*b).x3)));
    if (WEIGHT_FORMAT == 3u) {
        m = max(m, max(max(abs((*b).x4), abs((*b).x5)), max(abs((*b).x6), abs((*b).x7))));
    }
    let amax = max(max(m.x, m.y), max(m.z, m.w));
    let inv = select(0.0, 127.0 / amax, amax > 0.0);
    (*b).sx = amax / 127.0;
    (*b).q0 = vec4<u32>(q8_inputs((*b).x0, inv), q8_inputs((*b).x1, inv), q8_inputs((*b).x2, inv),
        q8_inputs((*b).x3, inv));
    if (WEIGHT_FORMAT == 3u) {
        (*b).q1 = vec4<u32>(q8_inputs((*b).x4, inv), q8_inputs((*b).x5, inv), q8_inputs((*b).x6, inv),
            q8_inputs((*b).x7, inv));
        let ones = vec4<u32>(0x01010101u);
        let q = (*b).q0;
        let r = (*b).q1;
        let qsum = ((dot4I8Packed(q.x, ones.x) + dot4I8Packed(q.y, ones.y))
            + (dot4I8Packed(q.z, ones.z) + dot4I8Packed(q.w, ones.w)))
            + ((dot4I8Packed(r.x, ones.x) + dot4I8Packed(r.y, ones.y))
            + (dot4I8Packed(r.z, ones.z) + dot4I8Packed(r.w, ones.w)));
        (*b).sum = (*b).sx * f32(qsum);
    }
}

fn block_inputs(k: u32) -> BlockInputs {
    var b: BlockInputs;
    b.x0 = input4(k);
    if (WEIGHT_FORMAT >= 1u) {
        b.x1 = input4(k + 4u);
    }
    if (WEIGHT_FORMAT >= 2u) {
        b.x2 = input4(k + 8u);
        b.x3 = input4(k + 12u);
    }
    if (WEIGHT_FORMAT == 3u) {
        b.x4 = input4(k + 16u);
        b.x5 = input4(k + 20u);
        b.x6 = input4(k + 24u);
        b.x7 = input4(k + 28u);
        if (INT_DOT == 0u) {
            b.sum = dot(((b.x0 + b.x1) + (b.x2 + b.x3)) + ((b.x4 + b.x5) + (b.x6 + b.x7)), vec4<f32>(1.0));
        }
    }
    if (INT_DOT == 1u && WEIGHT_FORMAT >= 2u) {
        quantize_inputs(&b);
    }
    return b;
}

// One block's codes times its inputs; `s` is the block's group (d, b).
fn block_dot(c: vec4<u32>, x: BlockInputs, s: vec2<f32>) -> f32 {
    if (INT_DOT == 1u && WEIGHT_FORMAT == 2u) {
        let d = (dot4I8Packed(c.x, x.q0.x) + dot4I8Packed(c.y, x.q0.y))
            + (dot4I8Packed(c.z, x.q0.z) + dot4I8Packed(c.w, x.q0.w));
        return s.x * x.sx * f32(d);
    }
    if (INT_DOT == 1u && WEIGHT_FORMAT == 3u) {
        // Low nibbles are columns 0..3 of a word, high nibbles 4..7: as bytes they are int8
        // codes 0..15.
        let m = vec4<u32>(0x0F0F0F0Fu);
        let lo = c & m;
        let hi = (c >> vec4<u32>(4u)) & m;
        let d = ((dot4I8Packed(lo.x, x.q0.x) + dot4I8Packed(hi.x, x.q0.y))
            + (dot4I8Packed(lo.y, x.q0.z) + dot4I8Packed(hi.y, x.q0.w)))
            + ((dot4I8Packed(lo.z, x.q1.x) + dot4I8Packed(hi.z, x.q1.y))
            + (dot4I8Packed(lo.w, x.q1.z) + dot4I8Packed(hi.w, x.q1.w)));
        return s.x * x.sx * f32(d) + s.y * x.sum;
    }
    switch (WEIGHT_FORMAT) {
        case 0u: { return codes_dot_f32(c, x.x0); }
        case 1u: { return codes_dot_f16(c, x.x0, x.x1); }
        case 2u: { return s.x * codes_dot_q8(c, x.x0, x.x1, x.x2, x.x3); }
        default: {
            return s.x * codes_dot_q4(c, x.x0, x.x1, x.x2, x.x3, x.x4, x.x5, x.x6, x.x7) + s.y * x.sum;
        }
    }
}

// The blocks at column k of rows r .. r + 3 (clamped to the part's last row; the caller
// discards repeats) and their group scales, loaded before any is used.
struct Rows4 {
    c0: vec4<u32>,
    c1: vec4<u32>,
    c2: vec4<u32>,
    c3: vec4<u32>,
    s0: vec2<f32>,
    s1: vec2<f32>,
    s2: vec2<f32>,
    s3: vec2<f32>,
}

fn load_rows4(r: u32, k: u32) -> Rows4 {
    let last = p.n - 1u;
    let e0 = min(r, last) * p.kp + k;
    let e1 = min(r + 1u, last) * p.kp + k;
    let e2 = min(r + 2u, last) * p.kp + k;
    let e3 = min(r + 3u, last) * p.kp + k;
    return Rows4(block_at(e0), block_at(e1), block_at(e2), block_at(e3), group_scale(e0, p.n, p.kp),
        group_scale(e1, p.n, p.kp), group_scale(e2, p.n, p.kp), group_scale(e3, p.n, p.kp));
}

fn dot_loaded4(w: Rows4, x: BlockInputs) -> vec4<f32> {
    return vec4<f32>(block_dot(w.c0, x, w.s0), block_dot(w.c1, x, w.s1), block_dot(w.c2, x, w.s2),
        block_dot(w.c3, x, w.s3));
}

// Rows r .. r + 3 times the inputs `x` of the block at column k.
fn dot_rows4(r: u32, k: u32, x: BlockInputs) -> vec4<f32> {
    return dot_loaded4(load_rows4(r, k), x);
}

// Rows r .. r + 3 times the input over the blocks k0, k0 + stride, ... of the row. The float
// formats take two blocks per iteration (eight 16-byte loads in flight); q8 and q4 one (their
// blocks hold more weights, and on the H200 the lower register count is worth more: q4 decode
// 145 -> 161 tok/s, q8 191 -> 198; f16 the other way, 182 -> 185).
fn rows4_over_k(r: u32, k0: u32, stride: u32) -> vec4<f32> {
    var s0 = vec4<f32>();
    var s1 = vec4<f32>();
    var k = k0;
    if (WEIGHT_FORMAT <= 1u) {
        for (; k + stride < p.kp; k += 2u * stride) {
            s0 += dot_rows4(r, k, block_inputs(k));
            s1 += dot_rows4(r, k + stride, block_inputs(k + stride));
        }
    }
    for (; k < p.kp; k += stride) {
        s0 += dot_rows4(r, k, block_inputs(k));
    }
    return s0 + s1;
}
