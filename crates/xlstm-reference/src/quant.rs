//! The quantized weight formats read back from their bytes, written from the layout described in
//! `xlstm_wgpu::gpu::quant` (and ARCHITECTURE.md) independently of the library's encoder, so a
//! test that compares the kernels with these weights also checks the encoder and the layout.

use half::f16;
use xlstm_wgpu::gpu::WeightDtype;

/// Weights per group.
pub const GROUP: usize = 32;

/// The `[rows, cols]` matrix that `rows` rows of `kp` stored elements mean: `values` holds the
/// rows' values, `scales` their group scales, in the layout of one part.
pub fn dequantize(dtype: WeightDtype, values: &[u8], scales: &[u8], rows: usize, cols: usize, kp: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    let h = |b: &[u8], i: usize| f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32();
    for r in 0..rows {
        for c in 0..cols {
            let e = r * kp + c;
            let g = r * (kp / GROUP) + c / GROUP;
            out.push(match dtype {
                WeightDtype::F32 => f32::from_le_bytes(values[4 * e..4 * e + 4].try_into().unwrap()),
                WeightDtype::F16 => h(values, e),
                WeightDtype::Q8 => h(scales, g) * (values[e] as i8) as f32,
                WeightDtype::Q4 => {
                    // Word e / 8, column j = e % 8: byte j % 4, high nibble for j >= 4.
                    let j = e % 8;
                    let byte = values[4 * (e / 8) + j % 4];
                    let q = if j >= 4 { byte >> 4 } else { byte & 15 };
                    let (d, b) = (h(scales, 2 * g), h(scales, 2 * g + 1));
                    d * q as f32 + b
                }
            });
        }
    }
    out
}

/// Elements of a 16-byte block of a row: the unit one GEMV lane reads (16 in q8, 32 in q4).
fn block_elems(dtype: WeightDtype) -> usize {
    match dtype {
        WeightDtype::F32 => 4,
        WeightDtype::F16 => 8,
        WeightDtype::Q8 => 16,
        WeightDtype::Q4 => 32,
    }
}

/// What the quantized decode GEMV computes with integer dot products (gemv_rows.wgsl's
/// INT_DOT), y[r] = sum over the row's 16-byte blocks of d * sx * sum(q * qx) (+ b * sx * sum(qx)
/// in q4: the bias times the sum of the rounded inputs), where each block's inputs are rounded
/// to int8 at sx = max |x| / 127 (ties to even, as WGSL's `round`). Also returns, per row, how
/// far the result may move if the GPU's own transformed input rounds one value of a block the
/// other way (an input within a rounding error of a half step): sx * max |w| over the row's
/// blocks (w = d q, or d q + b in q4).
pub fn gemv_int_dot(
    dtype: WeightDtype,
    values: &[u8],
    scales: &[u8],
    rows: usize,
    kp: usize,
    x: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    assert!(matches!(dtype, WeightDtype::Q8 | WeightDtype::Q4));
    let be = block_elems(dtype);
    let h = |b: &[u8], i: usize| f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32();
    let xk = |c: usize| x.get(c).copied().unwrap_or(0.0);
    let mut y = Vec::with_capacity(rows);
    let mut slack = Vec::with_capacity(rows);
    for r in 0..rows {
        let (mut acc, mut worst) = (0f64, 0f32);
        for b0 in (0..kp).step_by(be) {
            let amax = (b0..b0 + be).fold(0f32, |m, c| m.max(xk(c).abs()));
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let sx = amax / 127.0;
            let g = r * (kp / GROUP) + b0 / GROUP;
            let (mut dot, mut qxsum) = (0i64, 0i64);
            let mut codes = Vec::with_capacity(be);
            for c in b0..b0 + be {
                let e = r * kp + c;
                let q = match dtype {
                    WeightDtype::Q8 => (values[e] as i8) as i64,
                    _ => {
                        let j = e % 8;
                        let byte = values[4 * (e / 8) + j % 4];
                        (if j >= 4 { byte >> 4 } else { byte & 15 }) as i64
                    }
                };
                let qx = (xk(c) * inv).round_ties_even() as i64;
                dot += q * qx;
                qxsum += qx;
                codes.push(q);
            }
            let (d, bias) = match dtype {
                WeightDtype::Q8 => (h(scales, g), 0.0),
                _ => (h(scales, 2 * g), h(scales, 2 * g + 1)),
            };
            acc += sx as f64 * (d as f64 * dot as f64 + bias as f64 * qxsum as f64);
            let wmax = codes.iter().fold(0f32, |m, &q| m.max((d * q as f32 + bias).abs()));
            worst = worst.max(sx * wmax);
        }
        y.push(acc as f32);
        slack.push(worst);
    }
    (y, slack)
}
