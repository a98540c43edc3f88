// gemv_rows.wgsl — the inner step both GEMVs share (appended to gemv.wgsl and
// gemv_head_norm.wgsl after weight_formats.wgsl): four rows times one block of the input.
// The kernel defines `fn input4(k: u32) -> vec4<f32>`, its (transformed) input x[k .. k + 4]
// (zero past its end), and its Params `p` with the part's rows `n` and row stride `kp`.
// Four rows share each input load and transform (on the H200 that took q4 decode from 110 to
// 150 tok/s over two rows); the q8/q4 group scale is applied once per block (q4's bias times
// the block's input sum).

// Rows r .. r + 3 (clamped to the part's last row; the caller discards repeats) times the input
// over the block at column k: four rows share each input load and transform.
fn dot_rows4(r: u32, k: u32) -> vec4<f32> {
    let last = p.n - 1u;
    let e0 = r * p.kp + k;
    let e1 = min(r + 1u, last) * p.kp + k;
    let e2 = min(r + 2u, last) * p.kp + k;
    let e3 = min(r + 3u, last) * p.kp + k;
    let b0 = block_at(e0);
    let b1 = block_at(e1);
    let b2 = block_at(e2);
    let b3 = block_at(e3);
    let x0 = input4(k);
    if (WEIGHT_FORMAT == 0u) {
        return vec4<f32>(codes_dot_f32(b0, x0), codes_dot_f32(b1, x0), codes_dot_f32(b2, x0), codes_dot_f32(b3, x0));
    }
    let x1 = input4(k + 4u);
    if (WEIGHT_FORMAT == 1u) {
        return vec4<f32>(codes_dot_f16(b0, x0, x1), codes_dot_f16(b1, x0, x1), codes_dot_f16(b2, x0, x1),
            codes_dot_f16(b3, x0, x1));
    }
    let x2 = input4(k + 8u);
    let x3 = input4(k + 12u);
    if (WEIGHT_FORMAT == 2u) {
        let d = vec4<f32>(group_scale(e0, p.n, p.kp).x, group_scale(e1, p.n, p.kp).x, group_scale(e2, p.n, p.kp).x,
            group_scale(e3, p.n, p.kp).x);
        return d * vec4<f32>(codes_dot_q8(b0, x0, x1, x2, x3), codes_dot_q8(b1, x0, x1, x2, x3),
            codes_dot_q8(b2, x0, x1, x2, x3), codes_dot_q8(b3, x0, x1, x2, x3));
    }
    let x4 = input4(k + 16u);
    let x5 = input4(k + 20u);
    let x6 = input4(k + 24u);
    let x7 = input4(k + 28u);
    let sum = dot(((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)), vec4<f32>(1.0));
    let s0 = group_scale(e0, p.n, p.kp);
    let s1 = group_scale(e1, p.n, p.kp);
    let s2 = group_scale(e2, p.n, p.kp);
    let s3 = group_scale(e3, p.n, p.kp);
    let c = vec4<f32>(codes_dot_q4(b0, x0, x1, x2, x3, x4, x5, x6, x7), codes_dot_q4(b1, x0, x1, x2, x3, x4, x5, x6, x7),
        codes_dot_q4(b2, x0, x1, x2, x3, x4, x5, x6, x7), codes_dot_q4(b3, x0, x1, x2, x3, x4, x5, x6, x7));
    return c * vec4<f32>(s0.x, s1.x, s2.x, s3.x) + sum * vec4<f32>(s0.y, s1.y, s2.y, s3.y);
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
            s0 += dot_rows4(r, k);
            s1 += dot_rows4(r, k + stride);
        }
    }
    for (; k < p.kp; k += stride) {
        s0 += dot_rows4(r, k);
    }
    return s0 + s1;
}
