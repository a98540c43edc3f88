//! The quantized formats on the host: the library's encoder (`gpu::quant`) read back by the
//! reference's independent decoder (`xlstm_reference::quant`) stays within the format's rounding
//! bound on awkward shapes, keeps representable values exact, and refuses what f16 scales cannot hold.
//! The kernels reading the same bytes are checked in `tests/kernels/` (`DTYPES`).

use xlstm_reference::quant::dequantize;
use xlstm_wgpu::gpu::quant::{EncodedMatrix, GROUP};
use xlstm_wgpu::gpu::WeightDtype;
use xlstm_wgpu::rng::SplitMix64;

fn roundtrip(dtype: WeightDtype, w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let m = EncodedMatrix::encode(dtype, w, rows, cols, "t").expect("encodes");
    assert_eq!(m.kp % GROUP, 0);
    assert_eq!(m.values.len(), rows * dtype.row_layout(m.kp).0);
    assert_eq!(m.scales.len(), rows * dtype.row_layout(m.kp).1);
    dequantize(dtype, &m.values, &m.scales, rows, cols, m.kp)
}

/// Every element is within half a quantization step of its group (plus the f16 rounding of the
/// scale and bias), on shapes whose rows end inside a group, one-row and one-column matrices.
#[test]
fn quantized_rows_stay_within_half_a_step() {
    let mut r = SplitMix64::new(7);
    for (rows, cols) in [(1, 1), (1, 31), (3, 32), (5, 33), (2, 100), (7, 257), (1, 1000)] {
        let w = r.uniform_vec(rows * cols, -3.0, 3.0);
        for dtype in [WeightDtype::Q8, WeightDtype::Q4] {
            let got = roundtrip(dtype, &w, rows, cols);
            for row in 0..rows {
                for g0 in (0..cols).step_by(GROUP) {
                    let g = &w[row * cols + g0..row * cols + (g0 + GROUP).min(cols)];
                    let (lo, hi) = g.iter().fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
                    let amax = lo.abs().max(hi.abs());
                    let step = match dtype {
                        WeightDtype::Q8 => amax / 127.0,
                        _ => (hi - lo) / 15.0,
                    };
                    for (i, v) in g.iter().enumerate() {
                        let q = got[row * cols + g0 + i];
                        // Half a step, plus the f16 rounding of d (over up to 127 or 15 steps)
                        // and of the bias.
                        let bound = 0.5 * step * 1.02 + amax * 2e-3 + 1e-6;
                        assert!(
                            (q - v).abs() <= bound,
                            "{dtype:?} [{rows}, {cols}] row {row} col {}: {v} became {q} (bound {bound})",
                            g0 + i
                        );
                    }
                }
            }
        }
    }
}

/// Values the formats hold exactly come back exactly: zeros, constant groups in q4, and in q8
/// multiples of a power-of-two step.
#[test]
fn representable_values_are_exact() {
    let zeros = vec![0.0f32; 2 * 40];
    for dtype in [WeightDtype::Q8, WeightDtype::Q4] {
        assert_eq!(roundtrip(dtype, &zeros, 2, 40), zeros, "{dtype:?} zeros");
    }
    // q4's bias holds a constant group exactly (d = 0).
    let constant = vec![0.75f32; 3 * 33];
    assert_eq!(roundtrip(WeightDtype::Q4, &constant, 3, 33), constant, "q4 constant");
    // Multiples of 1/16 in groups whose largest magnitude is 127/16: d = 1/16 exactly.
    let mut scaled: Vec<f32> = (0..64).map(|i| (i as f32 - 32.0) / 16.0).collect();
    scaled[0] = 127.0 / 16.0;
    scaled[32] = -127.0 / 16.0;
    assert_eq!(roundtrip(WeightDtype::Q8, &scaled, 1, 64), scaled);
}

/// A group whose scale f16 cannot hold is refused with the tensor named, not stored as infinity.
#[test]
fn unrepresentable_scales_are_refused() {
    let mut w = vec![1.0f32; 40];
    w[3] = 1e9;
    for dtype in [WeightDtype::Q8, WeightDtype::Q4] {
        let e = EncodedMatrix::encode(dtype, &w, 1, 40, "blocks.0.proj")
            .err()
            .unwrap_or_else(|| panic!("{dtype:?}: 1e9 accepted"));
        let text = e.to_string();
        assert!(text.contains("blocks.0.proj") && text.contains("f16"), "{text}");
    }
    assert!(
        EncodedMatrix::encode(WeightDtype::Q8, &w, 2, 40, "t").is_err(),
        "wrong length accepted"
    );
}

/// q4's least-squares refinement only ever lowers a group's squared error against the plain
/// min/max grid (computed here from its definition), and on groups with outliers it lowers it.
#[test]
fn q4_refinement_never_does_worse_than_min_max() {
    use half::f16;
    let mut r = SplitMix64::new(11);
    let (mut total_lib, mut total_minmax) = (0.0f64, 0.0f64);
    for g in 0..400 {
        let mut w = r.uniform_vec(GROUP, -1.0, 1.0);
        if g % 3 == 0 {
            w[g % GROUP] *= 6.0; // an outlier
        }
        let got = roundtrip(WeightDtype::Q4, &w, 1, GROUP);
        let (lo, hi) = w.iter().fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let b = f16::from_f32(lo).to_f32();
        let d = f16::from_f32((hi - b) / 15.0).to_f32();
        let minmax: Vec<f32> = w
            .iter()
            .map(|v| d * ((v - b) / d).round().clamp(0.0, 15.0) + b)
            .collect();
        let sse = |x: &[f32]| x.iter().zip(&w).map(|(a, v)| ((a - v) as f64).powi(2)).sum::<f64>();
        let (lib, mm) = (sse(&got), sse(&minmax));
        assert!(lib <= mm * (1.0 + 1e-5) + 1e-12, "group {g}: {lib} > min/max {mm}");
        total_lib += lib;
        total_minmax += mm;
    }
    assert!(
        total_lib < 0.95 * total_minmax,
        "refinement gained nothing: {total_lib} vs {total_minmax}"
    );
}
