//! How a row of weights is stored in each [`WeightDtype`], above all the quantized ones, and
//! where the rows and their group scales lie in a matrix part's buffer.
//!
//! A part holding `n` rows with row stride `kp` elements (a multiple of [`GROUP`] in the
//! quantized formats) is laid out as
//! - the values of all `n` rows, row-major:
//!   - `f32`: one little-endian f32 per weight; `f16`: one f16 per weight (two per u32);
//!   - `q8`: one i8 per weight (two's complement, in [-127, 127]);
//!   - `q4`: 4 bits per weight, eight weights per little-endian u32 word: the weight at column
//!     `8 w + j` of a row is in byte `j % 4` of word `w`, in its low nibble for `j < 4` and its
//!     high nibble for `j >= 4` (so each nibble half of a word is four consecutive weights, which
//!     the kernels expand with one shift and mask per half);
//! - then, for the quantized formats, the group scales of all `n` rows: group `g` of row `r` (the
//!   columns `32 g .. 32 g + 32`) is entry `r * kp / 32 + g`:
//!   - `q8`: one f16 `d` (entries packed two per u32, the even entry in the low half); a weight
//!     is `d * q`;
//!   - `q4`: one u32 per group holding the f16 pair (`d` low, `b` high); a weight is `d * q + b`.
//!
//! The padding columns `cols .. kp` hold zeros (f32/f16), or a quantized value next to zero
//! whose group statistics ignore it; kernels multiply them by zero inputs either way.
//! q8 is symmetric absmax quantization (`d = max|w| / 127`); q4 affine, starting from the min/max
//! grid of the MLX convention (`d = (max - min) / 15`, `b = min`) and refined by least squares
//! where that lowers the group's error; both round to nearest. `d` and `b` are rounded to f16
//! first and the values quantized against the rounded scales, so the stored pair is the best
//! the format can say. ARCHITECTURE.md describes the same layout for the on-disk checkpoints of
//! `xlstm quantize`.

use super::matrix::{to_f16, WeightDtype};
use crate::error::{Error, Result};
use half::f16;

/// Weights per quantization group (along a row, i.e. the input dimension).
pub const GROUP: usize = 32;

/// Encodes one row into its value bytes (`values`, [`WeightDtype::row_layout`]'s first size)
/// and its group scales (`scales`, the second). `row` holds the `kp` values of the row, zeros
/// past `cols`; `tensor` and `first` (the row's first element in that tensor) name a value that
/// the format cannot hold.
pub(crate) fn encode_row(
    dtype: WeightDtype,
    row: &[f32],
    cols: usize,
    values: &mut [u8],
    scales: &mut [u8],
    tensor: &str,
    first: usize,
) -> Result<()> {
    let kp = row.len();
    debug_assert_eq!((values.len(), scales.len()), dtype.row_layout(kp));
    match dtype {
        WeightDtype::F32 => values.copy_from_slice(bytemuck::cast_slice(row)),
        WeightDtype::F16 => {
            for (c, (v, d)) in row.iter().zip(values.chunks_exact_mut(2)).enumerate() {
                d.copy_from_slice(&to_f16(*v, tensor, first + c)?.to_le_bytes());
            }
        }
        WeightDtype::Q8 => {
            for (g, (group, out)) in row.chunks_exact(GROUP).zip(values.chunks_exact_mut(GROUP)).enumerate() {
                let real = &group[..cols.saturating_sub(g * GROUP).min(GROUP)];
                let d = encode_q8(real, out).map_err(|v| out_of_range(tensor, first + g * GROUP, v))?;
                scales[2 * g..2 * g + 2].copy_from_slice(&d.to_le_bytes());
            }
        }
        WeightDtype::Q4 => {
            for (g, (group, out)) in row
                .chunks_exact(GROUP)
                .zip(values.chunks_exact_mut(GROUP / 2))
                .enumerate()
            {
                let real = &group[..cols.saturating_sub(g * GROUP).min(GROUP)];
                let (d, b) = encode_q4(real, out).map_err(|v| out_of_range(tensor, first + g * GROUP, v))?;
                scales[4 * g..4 * g + 2].copy_from_slice(&d.to_le_bytes());
                scales[4 * g + 2..4 * g + 4].copy_from_slice(&b.to_le_bytes());
            }
        }
    }
    Ok(())
}

fn out_of_range(tensor: &str, element: usize, v: f32) -> Error {
    Error::Checkpoint(format!(
        "tensor `{tensor}`: the group from element {element} needs a scale of {v}, which f16 cannot hold; load it with f32 or f16 weights"
    ))
}

/// Quantizes the real values of one group (at most 32; the rest of `out` is padding) to q8;
/// returns d, or the scale that does not fit f16.
fn encode_q8(real: &[f32], out: &mut [u8]) -> std::result::Result<f16, f32> {
    let amax = real.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = f16::from_f32(amax / 127.0);
    if !d.is_finite() || !amax.is_finite() {
        return Err(amax / 127.0);
    }
    let df = d.to_f32();
    let inv = if df > 0.0 { 1.0 / df } else { 0.0 };
    out.fill(0);
    for (o, v) in out.iter_mut().zip(real) {
        *o = ((v * inv).round().clamp(-127.0, 127.0) as i8) as u8;
    }
    Ok(d)
}

/// Quantizes the real values of one group to q4 (16 bytes, the nibble order of the module
/// doc); returns (d, b), or the value that does not fit f16. Starts from the min/max grid and
/// refits (d, b) by least squares to the codes chosen (twice), keeping a fit only where it lowers
/// the group's squared error: on the shipped models that takes q4's perplexity cost from
/// +1.9% / +1.5% to the figures in BENCHMARKS.md.
fn encode_q4(real: &[f32], out: &mut [u8]) -> std::result::Result<(f16, f16), f32> {
    let (lo, hi) = real
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let (lo, hi) = if real.is_empty() { (0.0, 0.0) } else { (lo, hi) };
    let b = f16::from_f32(lo);
    if !b.is_finite() || !lo.is_finite() || !hi.is_finite() {
        return Err(if lo.is_finite() { hi } else { lo });
    }
    let d = f16::from_f32((hi - b.to_f32()).max(0.0) / 15.0);
    if !d.is_finite() {
        return Err((hi - b.to_f32()) / 15.0);
    }
    let mut q = [0u8; GROUP];
    let mut best = (d, b, q4_codes(real, d, b, &mut q));
    let mut best_q = q;
    for _ in 0..2 {
        let Some((d1, b1)) = q4_fit(real, &q) else { break };
        let sse = q4_codes(real, d1, b1, &mut q);
        if sse >= best.2 {
            break;
        }
        best = (d1, b1, sse);
        best_q = q;
    }
    let (d, b, _) = best;
    // The padding's code: the one nearest zero.
    let (df, bf) = (d.to_f32(), b.to_f32());
    let pad = if df > 0.0 {
        (-bf / df).round().clamp(0.0, 15.0) as u8
    } else {
        0
    };
    best_q[real.len()..].fill(pad);
    for (w, word) in out.chunks_exact_mut(4).enumerate() {
        for (j, byte) in word.iter_mut().enumerate() {
            *byte = best_q[8 * w + j] | (best_q[8 * w + j + 4] << 4);
        }
    }
    Ok((d, b))
}

/// The nearest q4 codes of `real` under (d, b), into `q`; returns their squared error.
fn q4_codes(real: &[f32], d: f16, b: f16, q: &mut [u8; GROUP]) -> f32 {
    let (df, bf) = (d.to_f32(), b.to_f32());
    let inv = if df > 0.0 { 1.0 / df } else { 0.0 };
    let mut sse = 0.0;
    for (qi, v) in q.iter_mut().zip(real) {
        *qi = ((v - bf) * inv).round().clamp(0.0, 15.0) as u8;
        let e = df * *qi as f32 + bf - v;
        sse += e * e;
    }
    sse
}

/// The least-squares (d, b) of `real` ≈ d q + b for the codes `q`, rounded to f16; `None` when
/// the codes do not vary or the fit is not a usable scale.
fn q4_fit(real: &[f32], q: &[u8; GROUP]) -> Option<(f16, f16)> {
    let n = real.len() as f64;
    if n == 0.0 {
        return None;
    }
    let (mut sq, mut sw) = (0.0f64, 0.0f64);
    for (qi, v) in q.iter().zip(real) {
        sq += *qi as f64;
        sw += *v as f64;
    }
    let (mq, mw) = (sq / n, sw / n);
    let (mut var, mut cov) = (0.0f64, 0.0f64);
    for (qi, v) in q.iter().zip(real) {
        let dq = *qi as f64 - mq;
        var += dq * dq;
        cov += dq * (*v as f64 - mw);
    }
    if var <= 0.0 || cov <= 0.0 {
        return None;
    }
    let d = cov / var;
    let (d, b) = (f16::from_f64(d), f16::from_f64(mw - d * mq));
    (d.is_finite() && b.is_finite() && d.to_f32() > 0.0).then_some((d, b))
}

/// A matrix quantized on the host, in the layout of one part holding all its rows: what
/// `xlstm quantize` writes and the tests compare the kernels with.
pub struct EncodedMatrix {
    pub dtype: WeightDtype,
    pub rows: usize,
    pub cols: usize,
    pub kp: usize,
    /// `rows` rows of value bytes.
    pub values: Vec<u8>,
    /// `rows` rows of scale bytes (empty for the float formats).
    pub scales: Vec<u8>,
}

impl EncodedMatrix {
    /// Encodes a row-major `[rows, cols]` matrix.
    pub fn encode(dtype: WeightDtype, data: &[f32], rows: usize, cols: usize, label: &str) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(Error::Input(format!(
                "{label}: {} values are not [{rows}, {cols}]",
                data.len()
            )));
        }
        let kp = dtype.padded_cols(cols);
        let (vb, sb) = dtype.row_layout(kp);
        let mut values = vec![0u8; rows * vb];
        let mut scales = vec![0u8; rows * sb];
        let mut row = vec![0f32; kp];
        for r in 0..rows {
            row[..cols].copy_from_slice(&data[r * cols..][..cols]);
            encode_row(
                dtype,
                &row,
                cols,
                &mut values[r * vb..][..vb],
                &mut scales[r * sb..][..sb],
                label,
                r * cols,
            )?;
        }
        Ok(EncodedMatrix {
            dtype,
            rows,
            cols,
            kp,
            values,
            scales,
        })
    }
}
