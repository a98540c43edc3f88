//! The sLSTM cell over a sequence: the reference the GPU sLSTM kernels (sequence and per-token)
//! are tested against.

/// The sLSTM recurrence of reference/xlstm.md §3.4, in f64, token by token, with the package's
/// first-step rule (m' = ĩ at a step where the layer's n is all zero). `wx` [tokens, 4, E]
/// input pre-activations (gate order i, f, z, o), `bias` [4, E], `r` [NH, 4·DH, DH], `state`
/// [4, E] = (y, c, n, m) updated in place; returns y at every step [tokens, E].
pub fn sequence(
    wx: &[f32],
    bias: &[f32],
    r: &[f32],
    state: &mut [f32],
    tokens: usize,
    nh: usize,
    dh: usize,
) -> Vec<f32> {
    let e = nh * dh;
    let mut out = Vec::with_capacity(tokens * e);
    let ls = |v: f64| v.min(0.0) - (-v.abs()).exp().ln_1p();
    for t in 0..tokens {
        let first = state[2 * e..3 * e].iter().all(|&v| v == 0.0);
        let y_prev: Vec<f64> = state[..e].iter().map(|&v| v as f64).collect();
        let mut raw = vec![0.0f64; 4 * e];
        for h in 0..nh {
            for g in 0..4 {
                for j in 0..dh {
                    let row = (h * 4 * dh + g * dh + j) * dh;
                    let ry: f64 = (0..dh).map(|d| r[row + d] as f64 * y_prev[h * dh + d]).sum();
                    let u = h * dh + j;
                    raw[g * e + u] = wx[(t * 4 + g) * e + u] as f64 + bias[g * e + u] as f64 + ry;
                }
            }
        }
        for u in 0..e {
            let (i_raw, f_raw, z_raw, o_raw) = (raw[u], raw[e + u], raw[2 * e + u], raw[3 * e + u]);
            let (c, n, m) = (state[e + u] as f64, state[2 * e + u] as f64, state[3 * e + u] as f64);
            let lfm = m + ls(f_raw);
            let m_new = if first { i_raw } else { i_raw.max(lfm) };
            let ig = (i_raw - m_new).exp().min(1.0);
            let fg = (lfm - m_new).exp().min(1.0);
            let c2 = fg * c + ig * z_raw.tanh();
            let n2 = fg * n + ig;
            let y = c2 / n2 / (1.0 + (-o_raw).exp());
            state[u] = y as f32;
            state[e + u] = c2 as f32;
            state[2 * e + u] = n2 as f32;
            state[3 * e + u] = m_new as f32;
        }
        out.extend_from_slice(&state[..e]);
    }
    out
}
