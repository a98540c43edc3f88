//! Building blocks of the v1 layers on one row: f64 arithmetic, results rounded to the storage
//! type `S`.

use super::state::Real;
use crate::ops::sigmoid_f64;
use xlstm_wgpu::model::v1_config::{Activation, V1_NORM_EPS};

/// Dot product of an activation row and an f32 weight row, in f64.
pub(super) fn dot<S: Real>(x: &[S], w: &[f32]) -> f64 {
    debug_assert_eq!(x.len(), w.len());
    x.iter().zip(w).map(|(&a, &b)| a.to_f64() * f64::from(b)).sum()
}

/// Per-group LayerNorm without bias (`groups = 1`: LayerNorm; `groups = NH`: the package's
/// MultiHeadLayerNorm / GroupNorm): centre, divide by `sqrt(biased var + eps)`, round to `S`, then
/// multiply by the effective scale `1 + w` (itself rounded to `S`, like torch's `1.0 + weight`).
pub fn group_norm<S: Real>(x: &[S], offset: &[f32], groups: usize) -> Vec<S> {
    assert_eq!(x.len(), offset.len(), "group_norm: width");
    let width = x.len() / groups;
    let eps = V1_NORM_EPS;
    let mut y = Vec::with_capacity(x.len());
    for (xg, wg) in x.chunks_exact(width).zip(offset.chunks_exact(width)) {
        let mean = xg.iter().map(|v| v.to_f64()).sum::<f64>() / width as f64;
        let var = xg.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / width as f64;
        let inv = 1.0 / (var + eps).sqrt();
        y.extend(xg.iter().zip(wg).map(|(v, &w)| {
            let scale = S::from_f64(1.0 + f64::from(w)).to_f64();
            S::from_f64(S::from_f64((v.to_f64() - mean) * inv).to_f64() * scale)
        }));
    }
    y
}

/// `y = x Wᵀ (+ b)` for one row; `w` is `[n, k]`.
pub(super) fn linear<S: Real>(x: &[S], w: &[f32], bias: Option<&Vec<f32>>, n: usize) -> Vec<S> {
    let k = x.len();
    assert_eq!(w.len(), n * k, "linear: weight is not [{n}, {k}]");
    w.chunks_exact(k)
        .enumerate()
        .map(|(j, row)| {
            let sum = S::from_f64(dot(x, row));
            match bias {
                Some(b) => S::from_f64(sum.to_f64() + f64::from(b[j])),
                None => sum,
            }
        })
        .collect()
}

/// The v1 mLSTM's gate projection of one row: `w` [n, len(x)] (input-gate rows, then forget-gate
/// rows) times concat(q, k, v), f64 accumulation, without the gate bias (the GPU's
/// `mlstm_v1_gates` leaves the bias to the gate kernel; [`super::forward`] adds it here).
pub fn gate_projection(x: &[f32], w: &[f32], n: usize) -> Vec<f32> {
    linear(x, w, None, n)
}

/// Block-diagonal projection (`LinearHeadwiseExpand`, expand 1): `w` is `[nb, bs, bs]` and
/// `y[b·bs + o] = Σ_d x[b·bs + d] · w[b, o, d]` (+ bias).
pub fn headwise<S: Real>(x: &[S], w: &[f32], bias: Option<&Vec<f32>>, bs: usize) -> Vec<S> {
    assert_eq!(
        x.len() * bs,
        w.len(),
        "headwise: weight is not [nb, bs, bs] for the input"
    );
    let mut y = Vec::with_capacity(x.len());
    for (xb, wb) in x.chunks_exact(bs).zip(w.chunks_exact(bs * bs)) {
        for row in wb.chunks_exact(bs) {
            y.push(S::from_f64(dot(xb, row)));
        }
    }
    if let Some(b) = bias {
        for (y, &b) in y.iter_mut().zip(b) {
            *y = S::from_f64(y.to_f64() + f64::from(b));
        }
    }
    y
}

/// One step of the depthwise causal conv (XL `conv1d_step`) followed by SiLU: shift the window
/// left, append `x`, `SiLU(Σ_t window[t, f] · w[f, t] + b[f])`. `w` is `[F, KS]`.
pub fn conv_silu_step<S: Real>(window: &mut [S], x: &[S], w: &[f32], b: &[f32]) -> Vec<S> {
    let f = x.len();
    let ks = w.len() / f;
    window.copy_within(f.., 0);
    window[(ks - 1) * f..].copy_from_slice(x);
    (0..f)
        .map(|ch| {
            let taps = &w[ch * ks..][..ks];
            let sum: f64 = (0..ks).map(|t| window[t * f + ch].to_f64() * f64::from(taps[t])).sum();
            let pre = S::from_f64(sum + f64::from(b[ch])).to_f64();
            S::from_f64(silu_f64(pre))
        })
        .collect()
}

pub(super) fn silu_f64(x: f64) -> f64 {
    x * sigmoid_f64(x)
}

fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2))
}

/// Exact (erf) GELU, `x · Φ(x)`, as torch's default `F.gelu`.
pub fn gelu(x: f32) -> f32 {
    gelu_f64(f64::from(x)) as f32
}

pub(super) fn activation_f64(act: Activation, x: f64) -> f64 {
    const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
    const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
    match act {
        Activation::Gelu => gelu_f64(x),
        Activation::Relu => x.max(0.0),
        Activation::Relu2 => x.max(0.0) * x.max(0.0),
        Activation::Sigmoid => sigmoid_f64(x),
        Activation::Swish => silu_f64(x),
        Activation::Selu => SELU_SCALE * if x > 0.0 { x } else { SELU_ALPHA * x.exp_m1() },
    }
}

/// The feed-forward activation, f64 inside.
pub fn activation(act: Activation, x: f32) -> f32 {
    activation_f64(act, f64::from(x)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_gelu_is_exact() {
        // x·Φ(x) reference values (Python math.erf).
        let cases = [
            (-3.0, -0.004_049_694_094_890_31_f64),
            (-1.0, -0.158_655_253_931_457_05),
            (0.5, 0.345_731_230_637_006_56),
            (1.0, 0.841_344_746_068_542_9),
            (2.5, 2.484_475_836_685_559_7),
        ];
        for (x, want) in cases {
            let got = f64::from(gelu(x as f32));
            assert!(
                (got - want).abs() <= 1e-7 * want.abs().max(1e-3),
                "gelu({x}) = {got}, want {want}"
            );
        }
        assert_eq!(gelu(0.0), 0.0);
    }

    #[test]
    fn headwise_uses_hod_layout() {
        // Two blocks of 2: W[b, o, d].
        let x = [1.0, 2.0, 3.0, 4.0];
        let w = [1.0, 0.0, 1.0, 1.0, /* block 1 */ 0.0, 2.0, -1.0, 0.0];
        assert_eq!(headwise(&x, &w, None, 2), vec![1.0, 3.0, 8.0, -3.0]);
    }

    #[test]
    fn conv_step_matches_causal_conv() {
        // One channel, KS=3, w = [a, b, c]: y_t = SiLU(a x_{t-2} + b x_{t-1} + c x_t + bias).
        let w = [0.5, -1.0, 2.0];
        let mut window = vec![0.0f64; 3];
        let ys: Vec<f64> = [1.0f64, 2.0, 3.0, 4.0]
            .iter()
            .map(|&x| conv_silu_step(&mut window, &[x], &w, &[0.25])[0])
            .collect();
        let want: Vec<f64> = [2.25f64, 3.25, 4.75, 6.25].iter().map(|&p| silu_f64(p)).collect();
        assert_eq!(ys, want);
        assert_eq!(window, vec![2.0, 3.0, 4.0]);
    }

    #[test]
    fn group_norm_per_group() {
        // Two groups of 2 with scales; each group becomes (-1, 1) before scaling (eps 1e-5 aside).
        // Offsets w (scale 1 + w) for the scales 1, 2, 0.5, -1.
        let y = group_norm(&[1.0f64, 3.0, 100.0, 300.0], &[0.0, 1.0, -0.5, -2.0], 2);
        let want = [-1.0, 2.0, -0.5, -1.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-4, "{y:?}");
        }
    }

    #[test]
    fn activations() {
        assert_eq!(activation(Activation::Relu, -2.0), 0.0);
        assert_eq!(activation(Activation::Relu2, 3.0), 9.0);
        assert!((activation(Activation::Swish, 1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((activation(Activation::Selu, -1.0) - (-1.111_330_7)).abs() < 1e-6);
        assert!((activation(Activation::Sigmoid, 0.0) - 0.5).abs() < 1e-7);
    }
}
