//! The whole xLSTM Large forward pass (reference §1.2) on the CPU: the end-to-end oracle for the
//! GPU model. Weights use the checkpoint's single-weight layout (§1.3), `[out, in]` per linear.

use crate::mlstm::{self, CellShape, CellState};
use crate::ops::{head_layer_norm, matmul_t, rms_norm, sigmoid, soft_cap, swiglu};
use xlstm_wgpu::model::config::LargeConfig;
use xlstm_wgpu::rng::SplitMix64;
use xlstm_wgpu::{Error, Result};

/// One block's weights (`backbone.blocks.{i}.*`). `E` embedding, `QK`/`V` the q/k and v widths
/// over all heads, `NH` heads, `F` the FFN width.
#[derive(Clone, Debug, PartialEq)]
pub struct LargeBlockWeights {
    /// `norm_mlstm.weight` `[E]`.
    pub norm_mlstm: Vec<f32>,
    /// `mlstm_layer.q.weight` `[QK, E]`.
    pub wq: Vec<f32>,
    /// `mlstm_layer.k.weight` `[QK, E]`.
    pub wk: Vec<f32>,
    /// `mlstm_layer.v.weight` `[V, E]`.
    pub wv: Vec<f32>,
    /// `mlstm_layer.ogate_preact.weight` `[V, E]`.
    pub wo: Vec<f32>,
    /// `mlstm_layer.igate_preact.weight` `[NH, E]`.
    pub wi: Vec<f32>,
    /// `mlstm_layer.igate_preact.bias` `[NH]`.
    pub bi: Vec<f32>,
    /// `mlstm_layer.fgate_preact.weight` `[NH, E]`.
    pub wf: Vec<f32>,
    /// `mlstm_layer.fgate_preact.bias` `[NH]`.
    pub bf: Vec<f32>,
    /// `mlstm_layer.multihead_norm.weight` `[V]`.
    pub multihead_norm: Vec<f32>,
    /// `mlstm_layer.out_proj.weight` `[E, V]`.
    pub out_proj: Vec<f32>,
    /// `norm_ffn.weight` `[E]`.
    pub norm_ffn: Vec<f32>,
    /// `ffn.proj_up_gate.weight` `[F, E]`.
    pub ffn_gate: Vec<f32>,
    /// `ffn.proj_up.weight` `[F, E]`.
    pub ffn_up: Vec<f32>,
    /// `ffn.proj_down.weight` `[E, F]`.
    pub ffn_down: Vec<f32>,
}

/// All weights of an xLSTM Large model.
#[derive(Clone, Debug, PartialEq)]
pub struct LargeWeights {
    /// `backbone.embeddings.weight` `[vocab, E]`.
    pub embedding: Vec<f32>,
    pub blocks: Vec<LargeBlockWeights>,
    /// `backbone.out_norm.weight` `[E]`.
    pub out_norm: Vec<f32>,
    /// `lm_head.weight` `[vocab, E]` (not tied to the embedding).
    pub lm_head: Vec<f32>,
}

/// How the mLSTM cell processes a multi-token call. Both must give the same result; the choice
/// only selects which GPU kernel a test is checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellMode {
    /// Token-by-token recurrence (§2.3).
    Recurrent,
    /// Chunkwise-parallel form (§2.4) with this chunk size.
    Chunkwise(usize),
}

/// The cell shape of every block of `cfg`.
pub fn cell_shape(cfg: &LargeConfig) -> CellShape {
    CellShape {
        num_heads: cfg.num_heads,
        dqk: cfg.head_dim_qk(),
        dv: cfg.head_dim_v(),
        eps: cfg.cell_eps,
    }
}

impl LargeBlockWeights {
    /// `(name, actual length, expected length)` of every tensor, for shape checking.
    fn lengths(&self, cfg: &LargeConfig) -> [(&'static str, usize, usize); 15] {
        let (e, nh, f) = (cfg.embedding_dim, cfg.num_heads, cfg.ffn_dim);
        let (qk, v) = (cfg.qk_dim(), cfg.v_dim());
        [
            ("norm_mlstm", self.norm_mlstm.len(), e),
            ("q", self.wq.len(), qk * e),
            ("k", self.wk.len(), qk * e),
            ("v", self.wv.len(), v * e),
            ("ogate_preact", self.wo.len(), v * e),
            ("igate_preact.weight", self.wi.len(), nh * e),
            ("igate_preact.bias", self.bi.len(), nh),
            ("fgate_preact.weight", self.wf.len(), nh * e),
            ("fgate_preact.bias", self.bf.len(), nh),
            ("multihead_norm", self.multihead_norm.len(), v),
            ("out_proj", self.out_proj.len(), e * v),
            ("norm_ffn", self.norm_ffn.len(), e),
            ("proj_up_gate", self.ffn_gate.len(), f * e),
            ("proj_up", self.ffn_up.len(), f * e),
            ("proj_down", self.ffn_down.len(), e * f),
        ]
    }

    /// Random but well-scaled weights: linear layers keep unit-variance activations unit-variance,
    /// norm weights lie around 1, and gate biases are spread so that some heads remember (large
    /// forget bias) and others forget, exercising the stabiliser.
    fn random(cfg: &LargeConfig, rng: &mut SplitMix64) -> Self {
        let (e, nh, f) = (cfg.embedding_dim, cfg.num_heads, cfg.ffn_dim);
        let (qk, v) = (cfg.qk_dim(), cfg.v_dim());
        let mut linear = |out: usize, inp: usize, gain: f32| {
            let bound = gain * (3.0 / inp as f32).sqrt();
            rng.uniform_vec(out * inp, -bound, bound)
        };
        let wq = linear(qk, e, 1.0);
        let wk = linear(qk, e, 1.0);
        let wv = linear(v, e, 1.0);
        let wo = linear(v, e, 1.0);
        let wi = linear(nh, e, 2.0);
        let wf = linear(nh, e, 2.0);
        let out_proj = linear(e, v, 0.5);
        let ffn_gate = linear(f, e, 1.0);
        let ffn_up = linear(f, e, 1.0);
        let ffn_down = linear(e, f, 0.5);
        Self {
            norm_mlstm: rng.uniform_vec(e, 0.8, 1.2),
            wq,
            wk,
            wv,
            wo,
            wi,
            bi: rng.uniform_vec(nh, -4.0, 3.0),
            wf,
            bf: rng.uniform_vec(nh, -1.0, 6.0),
            multihead_norm: rng.uniform_vec(v, 0.8, 1.2),
            out_proj,
            norm_ffn: rng.uniform_vec(e, 0.8, 1.2),
            ffn_gate,
            ffn_up,
            ffn_down,
        }
    }
}

impl LargeWeights {
    /// Deterministic random weights for `cfg` (test data; see [`LargeBlockWeights`] scaling).
    pub fn random(cfg: &LargeConfig, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let (e, vocab) = (cfg.embedding_dim, cfg.vocab_size);
        let embedding = rng.uniform_vec(vocab * e, -1.0, 1.0);
        let blocks = (0..cfg.num_blocks)
            .map(|_| LargeBlockWeights::random(cfg, &mut rng))
            .collect();
        let out_norm = rng.uniform_vec(e, 0.8, 1.2);
        let bound = 2.0 * (3.0 / e as f32).sqrt();
        let lm_head = rng.uniform_vec(vocab * e, -bound, bound);
        Self {
            embedding,
            blocks,
            out_norm,
            lm_head,
        }
    }

    /// Checks every tensor's length against `cfg`, naming the first one that is wrong.
    pub fn check_shapes(&self, cfg: &LargeConfig) -> Result<()> {
        let (e, vocab) = (cfg.embedding_dim, cfg.vocab_size);
        let wrong = |name: &str, got: usize, want: usize| {
            Err(Error::Checkpoint(format!("{name} has {got} values, expected {want}")))
        };
        if self.blocks.len() != cfg.num_blocks {
            return wrong("blocks", self.blocks.len(), cfg.num_blocks);
        }
        let top = [
            ("embeddings", self.embedding.len(), vocab * e),
            ("out_norm", self.out_norm.len(), e),
            ("lm_head", self.lm_head.len(), vocab * e),
        ];
        for (name, got, want) in top {
            if got != want {
                return wrong(name, got, want);
            }
        }
        for (index, block) in self.blocks.iter().enumerate() {
            for (name, got, want) in block.lengths(cfg) {
                if got != want {
                    return wrong(&format!("blocks.{index}.{name}"), got, want);
                }
            }
        }
        Ok(())
    }
}

/// Embedding rows of `tokens`, `[T, E]`.
fn embed(cfg: &LargeConfig, w: &LargeWeights, tokens: &[u32]) -> Vec<f32> {
    let e = cfg.embedding_dim;
    let mut x = Vec::with_capacity(tokens.len() * e);
    for &token in tokens {
        let token = token as usize;
        assert!(token < cfg.vocab_size, "token {token} >= vocab {}", cfg.vocab_size);
        x.extend_from_slice(&w.embedding[token * e..][..e]);
    }
    x
}

/// A soft-capped gate pre-activation `cap·tanh((x·wᵀ + b)/cap)`, `[T, NH]`.
fn gate(cfg: &LargeConfig, xn: &[f32], weight: &[f32], bias: &[f32], t: usize) -> Vec<f32> {
    let nh = cfg.num_heads;
    let mut pre = matmul_t(xn, weight, t, cfg.embedding_dim, nh);
    for row in pre.chunks_exact_mut(nh) {
        for (g, &b) in row.iter_mut().zip(bias) {
            *g = soft_cap(*g + b, cfg.gate_soft_cap);
        }
    }
    pre
}

/// The mLSTM layer on normalised input `xn` `[T, E]`; returns its output `[T, E]` (before the
/// residual) and advances `state`.
fn mlstm_layer(
    cfg: &LargeConfig,
    b: &LargeBlockWeights,
    xn: &[f32],
    t: usize,
    state: &mut CellState,
    mode: CellMode,
) -> Vec<f32> {
    let (e, nh) = (cfg.embedding_dim, cfg.num_heads);
    let (qk, v_dim) = (cfg.qk_dim(), cfg.v_dim());
    let q = matmul_t(xn, &b.wq, t, e, qk);
    let k = matmul_t(xn, &b.wk, t, e, qk);
    let v = matmul_t(xn, &b.wv, t, e, v_dim);
    let o_pre = matmul_t(xn, &b.wo, t, e, v_dim);
    let i_pre = gate(cfg, xn, &b.wi, &b.bi, t);
    let f_pre = gate(cfg, xn, &b.wf, &b.bf, t);

    let shape = cell_shape(cfg);
    let h = match mode {
        CellMode::Recurrent => mlstm::recurrent(&shape, t, &q, &k, &v, &i_pre, &f_pre, state),
        CellMode::Chunkwise(chunk) => mlstm::chunkwise(&shape, chunk, t, &q, &k, &v, &i_pre, &f_pre, state),
    };
    let h_norm = head_layer_norm(&h, &b.multihead_norm, nh, cfg.norm_eps);
    let gated: Vec<f32> = h_norm.iter().zip(&o_pre).map(|(&h, &o)| sigmoid(o) * h).collect();
    matmul_t(&gated, &b.out_proj, t, v_dim, e)
}

/// The SwiGLU feed-forward on normalised input `xn` `[T, E]`; returns `[T, E]`.
fn feed_forward(cfg: &LargeConfig, b: &LargeBlockWeights, xn: &[f32], t: usize) -> Vec<f32> {
    let (e, f) = (cfg.embedding_dim, cfg.ffn_dim);
    let gate = matmul_t(xn, &b.ffn_gate, t, e, f);
    let up = matmul_t(xn, &b.ffn_up, t, e, f);
    matmul_t(&swiglu(&gate, &up), &b.ffn_down, t, f, e)
}

fn add_residual(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// One pre-norm block: `x += mLSTM(RMSNorm(x)); x += FFN(RMSNorm(x))`.
fn block(cfg: &LargeConfig, b: &LargeBlockWeights, x: &mut [f32], t: usize, state: &mut CellState, mode: CellMode) {
    let xn = rms_norm(x, &b.norm_mlstm, cfg.norm_eps);
    add_residual(x, &mlstm_layer(cfg, b, &xn, t, state, mode));
    let xn = rms_norm(x, &b.norm_ffn, cfg.norm_eps);
    add_residual(x, &feed_forward(cfg, b, &xn, t));
}

/// Final norm, lm_head and output soft cap: `[T, E]` hidden states to `[T, vocab]` logits.
fn logits(cfg: &LargeConfig, w: &LargeWeights, x: &[f32], t: usize) -> Vec<f32> {
    let normed;
    let x = if cfg.add_out_norm {
        normed = rms_norm(x, &w.out_norm, cfg.norm_eps);
        &normed
    } else {
        x
    };
    let mut logits = matmul_t(x, &w.lm_head, t, cfg.embedding_dim, cfg.vocab_size);
    for l in &mut logits {
        *l = soft_cap(*l, cfg.output_logit_soft_cap);
    }
    logits
}

/// Runs `tokens` through the model and returns logits `[T, vocab]`.
///
/// `state` holds one [`CellState`] per block; an empty vector starts a fresh sequence (zeros).
/// The final states are left in `state`, so calling again with more tokens continues the same
/// sequence (prefill, then decode one token at a time).
///
/// Panics if the weights do not match `cfg` or a token is out of range (test oracle).
pub fn forward(
    cfg: &LargeConfig,
    w: &LargeWeights,
    tokens: &[u32],
    state: &mut Vec<CellState>,
    mode: CellMode,
) -> Vec<f32> {
    if let Err(e) = w.check_shapes(cfg) {
        panic!("forward: {e}");
    }
    let shape = cell_shape(cfg);
    if state.is_empty() {
        state.resize(cfg.num_blocks, CellState::zeros(&shape));
    }
    assert_eq!(state.len(), cfg.num_blocks, "forward: need one state per block");

    let t = tokens.len();
    let mut x = embed(cfg, w, tokens);
    for (b, cell) in w.blocks.iter().zip(state.iter_mut()) {
        block(cfg, b, &mut x, t, cell, mode);
    }
    logits(cfg, w, &x, t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::argmax;

    /// E=32, NH=2 (dqk=8, dv=16), 2 blocks, vocab 53, FFN 64.
    fn small_config() -> LargeConfig {
        LargeConfig::from_json(&serde_json::json!({
            "embedding_dim": 32,
            "num_heads": 2,
            "num_blocks": 2,
            "vocab_size": 53,
            "ffn_proj_factor": 2.0,
            "ffn_round_up_to_multiple_of": 16,
        }))
        .unwrap()
    }

    fn tokens(cfg: &LargeConfig, len: usize, seed: u64) -> Vec<u32> {
        let mut rng = SplitMix64::new(seed);
        (0..len)
            .map(|_| (rng.next_u64() % cfg.vocab_size as u64) as u32)
            .collect()
    }

    fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        let scale = b.iter().map(|y| y.abs()).fold(1e-30, f32::max);
        assert!(diff <= tol * scale, "{what}: max diff {diff:e} (scale {scale})");
    }

    fn assert_states_close(a: &[CellState], b: &[CellState]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_close("C", &x.c, &y.c, 1e-5);
            assert_close("n", &x.n, &y.n, 1e-5);
            assert_close("m", &x.m, &y.m, 1e-5);
        }
    }

    #[test]
    fn config_has_expected_shapes() {
        let cfg = small_config();
        assert_eq!((cfg.head_dim_qk(), cfg.head_dim_v(), cfg.ffn_dim), (8, 16, 64));
        LargeWeights::random(&cfg, 1).check_shapes(&cfg).unwrap();
    }

    #[test]
    fn recurrent_and_chunkwise_agree() {
        let cfg = small_config();
        let w = LargeWeights::random(&cfg, 2);
        let tokens = tokens(&cfg, 37, 3);
        let mut recurrent_state = Vec::new();
        let reference = forward(&cfg, &w, &tokens, &mut recurrent_state, CellMode::Recurrent);
        for chunk in [4, 64] {
            let mut state = Vec::new();
            let logits = forward(&cfg, &w, &tokens, &mut state, CellMode::Chunkwise(chunk));
            assert_close(&format!("chunk {chunk}"), &logits, &reference, 1e-5);
            assert_states_close(&state, &recurrent_state);
        }
    }

    #[test]
    fn logits_are_nontrivial_and_capped() {
        let cfg = small_config();
        let w = LargeWeights::random(&cfg, 4);
        let tokens = tokens(&cfg, 37, 5);
        let logits = forward(&cfg, &w, &tokens, &mut Vec::new(), CellMode::Chunkwise(4));
        assert_eq!(logits.len(), 37 * 53);
        let cap = cfg.output_logit_soft_cap;
        assert!(logits.iter().all(|l| l.is_finite() && l.abs() < cap));
        let mean = logits.iter().sum::<f32>() / logits.len() as f32;
        let var = logits.iter().map(|l| (l - mean).powi(2)).sum::<f32>() / logits.len() as f32;
        assert!(var > 0.5, "logit variance {var}");
        let picks: std::collections::HashSet<usize> = logits.chunks_exact(53).map(argmax).collect();
        assert!(picks.len() > 3, "argmax barely varies: {picks:?}");
    }

    #[test]
    fn prefill_then_continue_equals_whole() {
        let cfg = small_config();
        let w = LargeWeights::random(&cfg, 6);
        let tokens = tokens(&cfg, 37, 7);
        let mut whole_state = Vec::new();
        let whole = forward(&cfg, &w, &tokens, &mut whole_state, CellMode::Recurrent);
        let (prefix, rest) = tokens.split_at(20);
        for mode in [CellMode::Recurrent, CellMode::Chunkwise(4), CellMode::Chunkwise(64)] {
            let mut state = Vec::new();
            let mut logits = forward(&cfg, &w, prefix, &mut state, mode);
            logits.extend(forward(&cfg, &w, rest, &mut state, mode));
            assert_close(&format!("{mode:?} split"), &logits, &whole, 1e-5);
            assert_states_close(&state, &whole_state);

            // Prefill, then decode one token per call as generation does.
            let mut state = Vec::new();
            let mut logits = forward(&cfg, &w, prefix, &mut state, mode);
            for token in rest {
                logits.extend(forward(&cfg, &w, &[*token], &mut state, CellMode::Recurrent));
            }
            assert_close(&format!("{mode:?} decode"), &logits, &whole, 1e-5);
        }
    }

    #[test]
    fn optional_out_norm_and_cap() {
        let mut cfg = small_config();
        cfg.add_out_norm = false;
        cfg.output_logit_soft_cap = 0.0;
        let w = LargeWeights::random(&cfg, 8);
        let tokens = tokens(&cfg, 9, 9);
        let a = forward(&cfg, &w, &tokens, &mut Vec::new(), CellMode::Recurrent);
        let b = forward(&cfg, &w, &tokens, &mut Vec::new(), CellMode::Chunkwise(4));
        assert_close("no norm, no cap", &b, &a, 1e-5);
        let normed = forward(&small_config(), &w, &tokens, &mut Vec::new(), CellMode::Recurrent);
        assert_ne!(a, normed);
    }

    #[test]
    fn check_shapes_names_the_bad_tensor() {
        let cfg = small_config();
        let mut w = LargeWeights::random(&cfg, 10);
        w.blocks[1].ffn_down.pop();
        let message = w.check_shapes(&cfg).unwrap_err().to_string();
        assert!(message.contains("blocks.1.proj_down"), "{message}");
    }
}
