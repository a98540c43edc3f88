//! Elementwise and row-wise building blocks of the xLSTM Large forward pass (reference §1.2).
//!
//! Inputs and outputs are f32; every sum (dot products, norm statistics) is accumulated in f64 and
//! the nonlinearities are evaluated in f64 before rounding once to f32. The functions panic on
//! inconsistent lengths: they are a test oracle, and a silent mismatch would hide a bug.

/// Dot product of two equally long f32 slices, accumulated in f64.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum()
}

/// `y = x W^T` for an `nn.Linear` weight: `x` is `[rows, k]`, `w` is `[n, k]`, `y` is `[rows, n]`,
/// `y[r, j] = Σ_k x[r, k] · w[j, k]`, each sum accumulated in f64 and rounded once to f32.
pub fn matmul_t(x: &[f32], w: &[f32], rows: usize, k: usize, n: usize) -> Vec<f32> {
    assert_eq!(x.len(), rows * k, "matmul_t: x is not [rows={rows}, k={k}]");
    assert_eq!(w.len(), n * k, "matmul_t: w is not [n={n}, k={k}]");
    if k == 0 {
        return vec![0.0; rows * n];
    }
    let mut y = Vec::with_capacity(rows * n);
    for x_row in x.chunks_exact(k) {
        y.extend(w.chunks_exact(k).map(|w_row| dot(x_row, w_row) as f32));
    }
    y
}

/// RMSNorm over rows of width `weight.len()`: `y = x / sqrt(mean(x²) + eps) * weight`.
///
/// Like the reference (XL `RMSNorm`), the normalised value is rounded to the storage dtype (f32)
/// before the weight is applied.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let width = weight.len();
    assert!(width > 0, "rms_norm: empty weight");
    assert_eq!(x.len() % width, 0, "rms_norm: x is not rows of width {width}");
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(width) {
        let mean_square = dot(row, row) / width as f64;
        let inv_rms = 1.0 / (mean_square + f64::from(eps)).sqrt();
        y.extend(
            row.iter()
                .zip(weight)
                .map(|(&v, &w)| (f64::from(v) * inv_rms) as f32 * w),
        );
    }
    y
}

/// Per-head LayerNorm without bias (XL `MultiHeadLayerNorm`, i.e. GroupNorm with `num_heads`
/// groups): each head's slice of a row is centred and divided by `sqrt(biased variance + eps)`,
/// then the whole row is multiplied by the per-channel `weight` (width `num_heads * dh`).
pub fn head_layer_norm(x: &[f32], weight: &[f32], num_heads: usize, eps: f32) -> Vec<f32> {
    let width = weight.len();
    assert!(width > 0 && num_heads > 0, "head_layer_norm: empty shape");
    assert_eq!(width % num_heads, 0, "head_layer_norm: width not divisible by heads");
    assert_eq!(x.len() % width, 0, "head_layer_norm: x is not rows of width {width}");
    let dh = width / num_heads;
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(width) {
        for (head, head_weight) in row.chunks_exact(dh).zip(weight.chunks_exact(dh)) {
            let mean = head.iter().map(|&v| f64::from(v)).sum::<f64>() / dh as f64;
            let variance = head.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / dh as f64;
            let inv_std = 1.0 / (variance + f64::from(eps)).sqrt();
            y.extend(
                head.iter()
                    .zip(head_weight)
                    .map(|(&v, &w)| ((f64::from(v) - mean) * inv_std) as f32 * w),
            );
        }
    }
    y
}

/// `cap · tanh(x / cap)`: squashes gate pre-activations and logits into `(-cap, cap)`.
/// A cap `<= 0` means "no cap" (xLSTM configs use 0/None to disable it) and returns `x`.
pub fn soft_cap(x: f32, cap: f32) -> f32 {
    if cap <= 0.0 {
        return x;
    }
    let cap = f64::from(cap);
    (cap * (f64::from(x) / cap).tanh()) as f32
}

/// Logistic sigmoid in f64; `1 / (1 + e^-x)` is already stable in f64 for every input.
pub(crate) fn sigmoid_f64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `ln σ(x) = min(x, 0) − ln(1 + e^{−|x|})`, which neither overflows nor loses the tail.
pub(crate) fn log_sigmoid_f64(x: f64) -> f64 {
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

/// Logistic sigmoid `1 / (1 + e^-x)`.
pub fn sigmoid(x: f32) -> f32 {
    sigmoid_f64(f64::from(x)) as f32
}

/// SiLU (swish) `x · σ(x)`.
pub fn silu(x: f32) -> f32 {
    let x = f64::from(x);
    (x * sigmoid_f64(x)) as f32
}

/// Numerically stable `ln σ(x)`, the mLSTM forget-gate activation in log space.
pub fn log_sigmoid(x: f32) -> f32 {
    log_sigmoid_f64(f64::from(x)) as f32
}

/// SwiGLU combination of the FFN's two up-projections: `silu(gate) · up`, elementwise.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "swiglu: lengths differ");
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| {
            let g = f64::from(g);
            (g * sigmoid_f64(g) * f64::from(u)) as f32
        })
        .collect()
}

/// Index of the largest value; the first one wins ties (greedy decoding must be deterministic).
/// NaN never wins; an all-NaN row gives 0.
pub fn argmax(row: &[f32]) -> usize {
    assert!(!row.is_empty(), "argmax: empty row");
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in row.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best
}

/// What the GPU `argmax` kernel chooses for a row: [`argmax`], or
/// [`xlstm_wgpu::ops::NON_FINITE_ID`] when the row holds a NaN or an infinity.
pub fn argmax_or_non_finite(row: &[f32]) -> u32 {
    if row.iter().any(|v| !v.is_finite()) {
        return xlstm_wgpu::ops::NON_FINITE_ID;
    }
    argmax(row) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn matmul_t_uses_linear_layout() {
        // x = [[1, 2], [3, 4], [5, 6]], W = [[1, 0], [0, 1], [1, -1], [2, 3]] (out=4, in=2).
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [1.0, 0.0, 0.0, 1.0, 1.0, -1.0, 2.0, 3.0];
        let y = matmul_t(&x, &w, 3, 2, 4);
        assert_eq!(y, vec![1.0, 2.0, -1.0, 8.0, 3.0, 4.0, -1.0, 18.0, 5.0, 6.0, -1.0, 28.0]);
        assert_eq!(matmul_t(&[], &[], 2, 0, 3), vec![0.0; 6]);
    }

    #[test]
    fn rms_norm_matches_hand_computation() {
        let x = [3.0, 4.0, 0.0, -2.0];
        let w = [1.0, 2.0];
        let y = rms_norm(&x, &w, 0.0);
        let r0 = (12.5f32).sqrt();
        let r1 = (2.0f32).sqrt();
        let want = [3.0 / r0, 8.0 / r0, 0.0, -4.0 / r1];
        for (a, b) in y.iter().zip(want) {
            assert!(close(*a, b, 1e-6), "{y:?}");
        }
        // eps keeps a zero row finite.
        assert_eq!(rms_norm(&[0.0, 0.0], &w, 1e-6), vec![0.0, 0.0]);
    }

    #[test]
    fn head_layer_norm_normalises_each_head_separately() {
        // Two heads of width 2 with very different scales; each becomes (-1, 1) before weighting.
        let x = [1.0, 3.0, 100.0, 300.0];
        let w = [1.0, 2.0, 0.5, -1.0];
        let y = head_layer_norm(&x, &w, 2, 0.0);
        let want = [-1.0, 2.0, -0.5, -1.0];
        for (a, b) in y.iter().zip(want) {
            assert!(close(*a, b, 1e-6), "{y:?}");
        }
        // Biased variance: a head [0, 0, 0, 4] has mean 1 and variance 3.
        let y = head_layer_norm(&[0.0, 0.0, 0.0, 4.0], &[1.0; 4], 1, 0.0);
        assert!(close(y[3], 3.0 / 3f32.sqrt(), 1e-6), "{y:?}");
    }

    #[test]
    fn scalar_activations() {
        assert!(close(soft_cap(15.0, 15.0), 15.0 * 1f32.tanh(), 1e-7));
        assert!(close(soft_cap(-1e9, 30.0), -30.0, 1e-7));
        assert_eq!(soft_cap(123.0, 0.0), 123.0);
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(-1e4), 0.0);
        assert_eq!(sigmoid(1e4), 1.0);
        assert!(close(silu(2.0), 2.0 / (1.0 + (-2f32).exp()), 1e-7));
        assert!(close(log_sigmoid(0.0), -(2f32.ln()), 1e-7));
        assert!(close(log_sigmoid(-100.0), -100.0, 1e-7));
        assert!(close(log_sigmoid(30.0), -(-30f32).exp(), 1e-6));
        assert!(log_sigmoid(1e4) == 0.0 && log_sigmoid(-1e30) == -1e30);
        let (g, u) = ([1.0, -3.0], [2.0, 0.5]);
        assert_eq!(swiglu(&g, &u), vec![silu(1.0) * 2.0, silu(-3.0) * 0.5]);
    }

    #[test]
    fn argmax_first_max_wins() {
        assert_eq!(argmax(&[1.0, 5.0, 5.0, -2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 2.0, 1.0]), 1);
        assert_eq!(argmax(&[-7.0]), 0);
    }
}
