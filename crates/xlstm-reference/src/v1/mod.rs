//! The ORIGINAL xLSTM language model (`xlstm.xLSTMLMModel`: v1 mLSTM and sLSTM blocks) on the CPU,
//! token by token: the end-to-end oracle for a GPU implementation of the v1 family. Math exactly as
//! reference `shared/reference/xlstm.md` §3 and the package's `step()` path (xlstm 2.0.6):
//!
//! ```text
//! x = embedding[token]
//! for each block:   x += layer(LN(x))             (LN: LayerNorm, scale 1+w, eps 1e-5, no bias)
//!                   sLSTM blocks: x += FFN(LN'(x)) (gated FFN: proj_down(act(gate) * up))
//! logits = lm_head · LN_post(x)                   (LN_post absent when add_post_blocks_norm = false)
//! ```
//!
//! v1 mLSTM layer (per token; I inner width, NH heads of DH = I/NH):
//! `[x_m | z] = proj_up(xn)`, `x_c = SiLU(conv(x_m))`, `q = Q x_c`, `k = K x_c`, `v = V x_m`
//! (block-diagonal `bs × bs` projections), `ĩ, f̃ = W_{i,f} [q; k; v] + b` (one per head), then the
//! stabilised recurrent cell with `k/√DH` in both `C` and `n` and `m0 = 0`:
//! `m' = max(logσ(f̃) + m, ĩ)`, `C' = e^{logσ(f̃)+m−m'} C + e^{ĩ−m'} (k/√DH) vᵀ`, `n'` likewise,
//! `h = qᵀC' / (max(|qᵀn'|, e^{−m'}) + 1e-6)`; then per-head GroupNorm (1+w, eps 1e-5),
//! `(h + skip ⊙ x_c) ⊙ SiLU(z)` and `proj_down`.
//!
//! sLSTM layer: `x_c = SiLU(conv(xn))` (or `xn` without conv); gate pre-activations from
//! block-diagonal `DH × DH` projections — input and forget gate from `x_c`, z and o from `xn` —
//! plus the block-diagonal recurrent term `R y_{t-1}` and the bias; stabilised exponential gating
//! with the package's first-step rule (`m' = ĩ` when the WHOLE layer's `n` is exactly zero, a global
//! check, else `max(ĩ, m + logσ(f̃))`), `y = σ(õ) · c / n`; per-head GroupNorm (1+w, eps 1e-5).
//! NOTE the checkpoint's module names are swapped: `xlstm.fgate` makes the INPUT gate and
//! `xlstm.igate` the FORGET gate; [`SlstmBlockWeights`] (the library's loader) names fields by role.
//!
//! Precision: arithmetic is f64 everywhere; activations and states are stored in a [`Real`] type
//! `S`. `S = f32` (the default) is the reference proper: like the rest of this crate and like GPU
//! buffers, values are rounded to f32 wherever they are stored (it matches the package's float32
//! run within ~5e-5 on logits of ~15). `S = f64` keeps everything in double precision and matches
//! the package run in float64 (`model.double()`) to ~1e-13, which pins down the math exactly.
//!
//! Usage: `let (cfg, w) = V1Weights::load_dir(dir)?; let mut st = V1State::<f32>::default();
//! let logits = forward(&cfg, &w, &tokens, &mut st);` (then more `forward` calls continue the
//! sequence), or [`greedy`].

mod math;
mod state;
mod weights;

pub use math::{activation, conv_silu_step, gate_projection, gelu, group_norm, headwise};
pub use state::{BlockState, MlstmState, Real, SlstmState, V1State};
pub use weights::V1Weights;
pub use xlstm_wgpu::model::v1::MLSTM_CELL_EPS;
pub use xlstm_wgpu::model::v1_weights::{BlockWeights, FfnWeights, MlstmBlockWeights, SlstmBlockWeights};

use crate::ops::{argmax, log_sigmoid_f64, sigmoid_f64};
use math::{activation_f64, dot, linear, silu_f64};
use xlstm_wgpu::model::v1_config::V1Config;

// ------------------------------------------------------------------------------------------------
// layers (one token)

/// The v1 mLSTM layer on one normalised row `xn [E]`; returns its output `[E]`.
fn mlstm_layer<S: Real>(cfg: &V1Config, w: &MlstmBlockWeights, xn: &[S], st: &mut MlstmState<S>) -> Vec<S> {
    let m = cfg
        .mlstm_layer()
        .expect("validated config: mLSTM blocks have a layer config");
    let (e, i, nh, dh, bs) = (
        cfg.embedding_dim,
        m.inner_dim,
        m.num_heads,
        m.head_dim(),
        m.qkv_proj_blocksize,
    );
    let up = linear(xn, &w.proj_up, w.proj_up_bias.as_ref(), 2 * i);
    let (x_m, z) = up.split_at(i);
    let x_c = conv_silu_step(&mut st.conv, x_m, &w.conv_weight, &w.conv_bias);
    let q = headwise(&x_c, &w.q_proj, w.q_bias.as_ref(), bs);
    let k = headwise(&x_c, &w.k_proj, w.k_bias.as_ref(), bs);
    let v = headwise(x_m, &w.v_proj, w.v_bias.as_ref(), bs);
    let qkv: Vec<S> = q.iter().chain(&k).chain(&v).copied().collect();
    let i_pre = linear(&qkv, &w.igate_weight, Some(&w.igate_bias), nh);
    let f_pre = linear(&qkv, &w.fgate_weight, Some(&w.fgate_bias), nh);

    let k_scale = 1.0 / (dh as f64).sqrt();
    let mut h = vec![S::default(); i];
    for head in 0..nh {
        let qh = &q[head * dh..][..dh];
        let kh = &k[head * dh..][..dh];
        let vh = &v[head * dh..][..dh];
        let c = &mut st.c[head * dh * dh..][..dh * dh];
        let n = &mut st.n[head * dh..][..dh];
        let m_old = st.m[head].to_f64();
        let log_f = log_sigmoid_f64(f_pre[head].to_f64());
        let i_raw = i_pre[head].to_f64();
        let m_new = (log_f + m_old).max(i_raw);
        let f_act = (log_f + m_old - m_new).exp();
        let i_act = (i_raw - m_new).exp();
        for a in 0..dh {
            let ka = kh[a].to_f64() * k_scale;
            let row = &mut c[a * dh..][..dh];
            for (cb, vb) in row.iter_mut().zip(vh) {
                *cb = S::from_f64(f_act * cb.to_f64() + i_act * ka * vb.to_f64());
            }
            n[a] = S::from_f64(f_act * n[a].to_f64() + i_act * ka);
        }
        st.m[head] = S::from_f64(m_new);
        let mut num = vec![0.0f64; dh];
        let mut qn = 0.0f64;
        for a in 0..dh {
            let qa = qh[a].to_f64();
            qn += qa * n[a].to_f64();
            for (o, cb) in num.iter_mut().zip(&c[a * dh..][..dh]) {
                *o += qa * cb.to_f64();
            }
        }
        let den = qn.abs().max((-m_new).exp()) + MLSTM_CELL_EPS;
        for (o, x) in h[head * dh..][..dh].iter_mut().zip(num) {
            *o = S::from_f64(x / den);
        }
    }
    let h_norm = group_norm(&h, &w.outnorm, nh);
    let gated: Vec<S> = (0..i)
        .map(|j| {
            let skip = S::from_f64(h_norm[j].to_f64() + f64::from(w.learnable_skip[j]) * x_c[j].to_f64());
            S::from_f64(skip.to_f64() * silu_f64(z[j].to_f64()))
        })
        .collect();
    debug_assert_eq!(w.proj_down.len(), e * i);
    linear(&gated, &w.proj_down, w.proj_down_bias.as_ref(), e)
}

/// The sLSTM layer on one normalised row `xn [E]`; returns the GroupNorm'd output `[E]`.
#[allow(clippy::needless_range_loop)] // u indexes five parallel arrays
fn slstm_layer<S: Real>(cfg: &V1Config, w: &SlstmBlockWeights, xn: &[S], st: &mut SlstmState<S>) -> Vec<S> {
    let s = cfg
        .slstm_layer()
        .expect("validated config: sLSTM blocks have a layer config");
    let (e, nh, dh) = (cfg.embedding_dim, s.num_heads, s.head_dim);
    let x_c: Vec<S> = match &w.conv {
        Some((cw, cb)) => conv_silu_step(&mut st.conv, xn, cw, cb),
        None => xn.to_vec(),
    };
    // Gate-major pre-activations [4, E] = W x + R y_{t-1} + b (input and forget gate from x_c).
    let wx = [
        headwise(&x_c, &w.w_input, None, dh),
        headwise(&x_c, &w.w_forget, None, dh),
        headwise(xn, &w.w_z, None, dh),
        headwise(xn, &w.w_o, None, dh),
    ];
    let mut raw = [vec![0.0f64; e], vec![0.0f64; e], vec![0.0f64; e], vec![0.0f64; e]];
    for (g, raw_g) in raw.iter_mut().enumerate() {
        for h in 0..nh {
            let y_h = &st.y[h * dh..][..dh];
            for j in 0..dh {
                let r_row = &w.recurrent[(h * 4 * dh + g * dh + j) * dh..][..dh];
                let ry = S::from_f64(dot(y_h, r_row)).to_f64();
                let u = h * dh + j;
                raw_g[u] = S::from_f64(wx[g][u].to_f64() + ry + f64::from(w.bias[g * e + u])).to_f64();
            }
        }
    }
    // The package's first-step rule: ONE global check over the whole n state of the layer.
    let first = st.n.iter().all(|&n| n.to_f64() == 0.0);
    for u in 0..e {
        let (i_raw, f_raw, z_raw, o_raw) = (raw[0][u], raw[1][u], raw[2][u], raw[3][u]);
        let log_f_plus_m = st.m[u].to_f64() + log_sigmoid_f64(f_raw);
        let m_new = if first { i_raw } else { i_raw.max(log_f_plus_m) };
        let i_act = (i_raw - m_new).exp().min(1.0);
        let f_act = (log_f_plus_m - m_new).exp().min(1.0);
        let c_new = f_act * st.c[u].to_f64() + i_act * z_raw.tanh();
        let n_new = f_act * st.n[u].to_f64() + i_act;
        let y_new = sigmoid_f64(o_raw) * c_new / n_new;
        st.y[u] = S::from_f64(y_new);
        st.c[u] = S::from_f64(c_new);
        st.n[u] = S::from_f64(n_new);
        st.m[u] = S::from_f64(m_new);
    }
    group_norm(&st.y, &w.group_norm, nh)
}

/// The gated feed-forward on one normalised row.
fn feed_forward<S: Real>(cfg: &V1Config, f: &FfnWeights, xn: &[S]) -> Vec<S> {
    // Invariant: `load_block` builds FFN weights only from a config that has a feedforward section.
    let act = cfg
        .feedforward
        .as_ref()
        .expect("FFN weights without a feedforward config")
        .act_fn;
    let up = linear(xn, &f.proj_up, f.proj_up_bias.as_ref(), 2 * f.dim);
    let (gate, up) = up.split_at(f.dim);
    let hidden: Vec<S> = gate
        .iter()
        .zip(up)
        .map(|(g, u)| S::from_f64(S::from_f64(activation_f64(act, g.to_f64())).to_f64() * u.to_f64()))
        .collect();
    linear(&hidden, &f.proj_down, f.proj_down_bias.as_ref(), cfg.embedding_dim)
}

fn add_into<S: Real>(x: &mut [S], y: &[S]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a = S::from_f64(a.to_f64() + b.to_f64());
    }
}

/// Logits `[V]` of one token, advancing `state`.
fn token<S: Real>(cfg: &V1Config, w: &V1Weights, tok: u32, state: &mut V1State<S>) -> Vec<S> {
    let e = cfg.embedding_dim;
    let t = tok as usize;
    assert!(t < cfg.vocab_size, "token {t} >= vocab {}", cfg.vocab_size);
    let mut x: Vec<S> = w.embedding[t * e..][..e]
        .iter()
        .map(|&v| S::from_f64(f64::from(v)))
        .collect();
    for (b, s) in w.blocks.iter().zip(state.blocks.iter_mut()) {
        match (b, s) {
            (BlockWeights::Mlstm(b), BlockState::Mlstm(s)) => {
                let xn = group_norm(&x, &b.norm, 1);
                add_into(&mut x, &mlstm_layer(cfg, b, &xn, s));
            }
            (BlockWeights::Slstm(b), BlockState::Slstm(s)) => {
                let xn = group_norm(&x, &b.norm, 1);
                add_into(&mut x, &slstm_layer(cfg, b, &xn, s));
                if let Some(f) = &b.ffn {
                    let xn = group_norm(&x, &f.norm, 1);
                    add_into(&mut x, &feed_forward(cfg, f, &xn));
                }
            }
            _ => panic!("forward: state block kinds do not match the weights"),
        }
    }
    if let Some(offset) = &w.post_norm {
        x = group_norm(&x, offset, 1);
    }
    linear(&x, &w.lm_head, None, cfg.vocab_size)
}

/// Runs `tokens` through the model one at a time (the package's `step()` path) and returns the
/// logits `[T, V]`. An empty `state` (`V1State::default()`) starts a fresh sequence; the final state
/// is left in `state`, so a later call continues the sequence.
///
/// `S = f32` is the reference proper (f32 storage like GPU buffers); `S = f64` keeps everything in
/// double precision and matches the package run in float64.
///
/// Panics if the weights do not match `cfg`, the state does not fit, or a token is out of range
/// (test oracle).
pub fn forward<S: Real>(cfg: &V1Config, w: &V1Weights, tokens: &[u32], state: &mut V1State<S>) -> Vec<S> {
    assert_eq!(
        w.blocks.len(),
        cfg.num_blocks,
        "forward: weights have the wrong block count"
    );
    if state.blocks.is_empty() {
        *state = V1State::new(cfg);
    }
    assert_eq!(
        state.blocks.len(),
        cfg.num_blocks,
        "forward: state has the wrong block count"
    );
    let mut logits = Vec::with_capacity(tokens.len() * cfg.vocab_size);
    for &t in tokens {
        logits.extend(token(cfg, w, t, state));
    }
    logits
}

/// Greedy decoding: feeds `prompt`, then `n − 1` more tokens, each the argmax of the previous
/// logits. Returns (n generated ids, their logits `[n, V]`); row 0 is the prompt's last row.
pub fn greedy<S: Real>(
    cfg: &V1Config,
    w: &V1Weights,
    prompt: &[u32],
    n: usize,
    state: &mut V1State<S>,
) -> (Vec<u32>, Vec<S>) {
    assert!(!prompt.is_empty(), "greedy: empty prompt");
    let v = cfg.vocab_size;
    let all = forward(cfg, w, prompt, state);
    let mut last = all[all.len() - v..].to_vec();
    let (mut ids, mut rows) = (Vec::with_capacity(n), Vec::with_capacity(n * v));
    for step in 0..n {
        if step > 0 {
            // Invariant: step > 0, so the previous step pushed an id.
            last = forward(cfg, w, &[*ids.last().unwrap()], state);
        }
        let row: Vec<f32> = last.iter().map(|x| x.to_f64() as f32).collect();
        ids.push(argmax(&row) as u32);
        rows.extend_from_slice(&last);
    }
    (ids, rows)
}
