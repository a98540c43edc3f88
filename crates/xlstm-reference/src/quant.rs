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
