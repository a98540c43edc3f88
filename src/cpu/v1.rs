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
//! `xlstm.igate` the FORGET gate; [`SlstmBlockWeights`] names fields by role.
//!
//! Precision: arithmetic is f64 everywhere; activations and states are stored in a [`Real`] type
//! `S`. `S = f32` (the default) is the reference proper: like the rest of `crate::cpu` and like GPU
//! buffers, values are rounded to f32 wherever they are stored (it matches the package's float32
//! run within ~5e-5 on logits of ~15). `S = f64` keeps everything in double precision and matches
//! the package run in float64 (`model.double()`) to ~1e-13, which pins down the math exactly.
//!
//! Usage: `let (cfg, w) = V1Weights::load_dir(dir)?; let mut st = V1State::<f32>::default();
//! let logits = forward(&cfg, &w, &tokens, &mut st);` (then more `forward` calls continue the
//! sequence), or [`greedy`].

use super::ops::{argmax, log_sigmoid_f64, sigmoid_f64};
use crate::error::{Error, Result};
use crate::model::checkpoint::Checkpoint;
use crate::model::v1_config::{Activation, BlockKind, SlstmBackend, V1Config, V1_NORM_EPS};
use std::path::Path;

/// `eps` added to the v1 mLSTM output denominator (`recurrent_step_stabilized_simple`).
pub const MLSTM_CELL_EPS: f64 = 1e-6;

/// Weights of one v1 mLSTM block (`xlstm_block_stack.blocks.{i}.*`). `E` embedding, `I` inner
/// width, `NH` heads, `bs` the q/k/v block size, `KS` the conv width. Norm weights are stored as
/// in the checkpoint, i.e. as the OFFSET `w` of the effective scale `1 + w`.
#[derive(Clone, Debug, PartialEq)]
pub struct MlstmBlockWeights {
    /// `xlstm_norm.weight` (offset `w`; scale `1 + w`), `[E]`.
    pub norm: Vec<f32>,
    /// `xlstm.proj_up.weight` `[2I, E]` (first I rows: mLSTM branch, last I: z / output gate).
    pub proj_up: Vec<f32>,
    /// `xlstm.proj_up.bias` `[2I]` (only with `bias = true`).
    pub proj_up_bias: Option<Vec<f32>>,
    /// `xlstm.conv1d.conv.weight` `[I, 1, KS]` stored as `[I, KS]` (tap `KS−1` multiplies the newest input).
    pub conv_weight: Vec<f32>,
    /// `xlstm.conv1d.conv.bias` `[I]`.
    pub conv_bias: Vec<f32>,
    /// `xlstm.{q,k,v}_proj.weight` `[I/bs, bs, bs]`: `y[b·bs+o] = Σ_d x[b·bs+d] · W[b, o, d]`.
    pub q_proj: Vec<f32>,
    pub k_proj: Vec<f32>,
    pub v_proj: Vec<f32>,
    /// `xlstm.{q,k,v}_proj.bias` `[I]` (only with `bias = true`).
    pub q_bias: Option<Vec<f32>>,
    pub k_bias: Option<Vec<f32>>,
    pub v_bias: Option<Vec<f32>>,
    /// `xlstm.mlstm_cell.igate.weight` `[NH, 3I]` over `[q; k; v]`, and `.bias` `[NH]`.
    pub igate_weight: Vec<f32>,
    pub igate_bias: Vec<f32>,
    /// `xlstm.mlstm_cell.fgate.weight` `[NH, 3I]`, `.bias` `[NH]`.
    pub fgate_weight: Vec<f32>,
    pub fgate_bias: Vec<f32>,
    /// `xlstm.mlstm_cell.outnorm.weight` (offset `w`; scale `1 + w`), `[I]`.
    pub outnorm: Vec<f32>,
    /// `xlstm.learnable_skip` `[I]`.
    pub learnable_skip: Vec<f32>,
    /// `xlstm.proj_down.weight` `[E, I]`, optional `.bias` `[E]`.
    pub proj_down: Vec<f32>,
    pub proj_down_bias: Option<Vec<f32>>,
}

/// The gated feed-forward of an sLSTM block, width `F` (taken from the weight shapes).
#[derive(Clone, Debug, PartialEq)]
pub struct FfnWeights {
    /// `F`.
    pub dim: usize,
    /// `ffn_norm.weight` (offset `w`; scale `1 + w`), `[E]`.
    pub norm: Vec<f32>,
    /// `ffn.proj_up.weight` `[2F, E]` (first F rows: gate pre-activation, last F: up).
    pub proj_up: Vec<f32>,
    pub proj_up_bias: Option<Vec<f32>>,
    /// `ffn.proj_down.weight` `[E, F]`.
    pub proj_down: Vec<f32>,
    pub proj_down_bias: Option<Vec<f32>>,
}

/// Weights of one sLSTM block, in one canonical layout whatever the checkpoint's backend.
#[derive(Clone, Debug, PartialEq)]
pub struct SlstmBlockWeights {
    /// `xlstm_norm.weight` (offset `w`; scale `1 + w`), `[E]`.
    pub norm: Vec<f32>,
    /// `xlstm.conv1d.conv.weight` as `[E, KS]` and `.bias` `[E]`; `None` when `conv1d_kernel_size = 0`.
    pub conv: Option<(Vec<f32>, Vec<f32>)>,
    /// Input-gate projection `[NH, DH, DH]` — the checkpoint's `xlstm.fgate.weight` (sic).
    pub w_input: Vec<f32>,
    /// Forget-gate projection `[NH, DH, DH]` — the checkpoint's `xlstm.igate.weight` (sic).
    pub w_forget: Vec<f32>,
    /// `xlstm.zgate.weight` `[NH, DH, DH]` (applied to the un-convolved input).
    pub w_z: Vec<f32>,
    /// `xlstm.ogate.weight` `[NH, DH, DH]` (applied to the un-convolved input).
    pub w_o: Vec<f32>,
    /// Recurrent kernel in the vanilla layout `[NH, 4·DH, DH]`: gate `g`, output unit `j`, input
    /// unit `d` of head `h` at `[h, g·DH + j, d]`; gates ordered (i, f, z, o).
    pub recurrent: Vec<f32>,
    /// Gate biases in the vanilla layout `[4, NH, DH]` (gate-major, gates i, f, z, o).
    pub bias: Vec<f32>,
    /// `xlstm.group_norm.weight` (offset `w`; scale `1 + w`), `[E]` (zeros when `group_norm_weight = false`).
    pub group_norm: Vec<f32>,
    /// The block's feed-forward (`None` when the config's `feedforward` is null).
    pub ffn: Option<FfnWeights>,
}

/// One block's weights.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockWeights {
    Mlstm(MlstmBlockWeights),
    Slstm(SlstmBlockWeights),
}

/// All weights of an `xLSTMLMModel`.
#[derive(Clone, Debug, PartialEq)]
pub struct V1Weights {
    /// `token_embedding.weight` `[V, E]`.
    pub embedding: Vec<f32>,
    pub blocks: Vec<BlockWeights>,
    /// `xlstm_block_stack.post_blocks_norm.weight` (offset `w`; scale `1 + w`), `[E]`; `None` without the norm.
    pub post_norm: Option<Vec<f32>>,
    /// `lm_head.weight` `[V, E]` (a copy of the embedding when `tied`).
    pub lm_head: Vec<f32>,
    /// lm_head is the token embedding (`tie_weights`).
    pub tied: bool,
}

/// Reads tensors of one block, naming them by their suffix.
struct BlockReader<'a> {
    ckpt: &'a Checkpoint,
    prefix: String,
}

impl BlockReader<'_> {
    fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
    fn get(&self, suffix: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.ckpt.tensor_f32(&self.name(suffix), shape)
    }
    fn get_if(&self, on: bool, suffix: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        if on {
            self.get(suffix, shape).map(Some)
        } else {
            Ok(None)
        }
    }
    fn shape(&self, suffix: &str) -> Result<&[usize]> {
        self.ckpt
            .shape(&self.name(suffix))
            .ok_or_else(|| Error::Checkpoint(format!("missing tensor `{}`", self.name(suffix))))
    }
}

fn load_mlstm(cfg: &V1Config, r: &BlockReader) -> Result<MlstmBlockWeights> {
    let m = cfg.mlstm_layer();
    let (e, i, nh, bs, ks) = (
        cfg.embedding_dim,
        m.inner_dim,
        m.num_heads,
        m.qkv_proj_blocksize,
        m.conv1d_kernel_size,
    );
    let b = cfg.bias;
    Ok(MlstmBlockWeights {
        norm: r.get("xlstm_norm.weight", &[e])?,
        proj_up: r.get("xlstm.proj_up.weight", &[2 * i, e])?,
        proj_up_bias: r.get_if(b, "xlstm.proj_up.bias", &[2 * i])?,
        conv_weight: r.get("xlstm.conv1d.conv.weight", &[i, 1, ks])?,
        conv_bias: r.get("xlstm.conv1d.conv.bias", &[i])?,
        q_proj: r.get("xlstm.q_proj.weight", &[i / bs, bs, bs])?,
        k_proj: r.get("xlstm.k_proj.weight", &[i / bs, bs, bs])?,
        v_proj: r.get("xlstm.v_proj.weight", &[i / bs, bs, bs])?,
        q_bias: r.get_if(b, "xlstm.q_proj.bias", &[i])?,
        k_bias: r.get_if(b, "xlstm.k_proj.bias", &[i])?,
        v_bias: r.get_if(b, "xlstm.v_proj.bias", &[i])?,
        igate_weight: r.get("xlstm.mlstm_cell.igate.weight", &[nh, 3 * i])?,
        igate_bias: r.get("xlstm.mlstm_cell.igate.bias", &[nh])?,
        fgate_weight: r.get("xlstm.mlstm_cell.fgate.weight", &[nh, 3 * i])?,
        fgate_bias: r.get("xlstm.mlstm_cell.fgate.bias", &[nh])?,
        outnorm: r.get("xlstm.mlstm_cell.outnorm.weight", &[i])?,
        learnable_skip: r.get("xlstm.learnable_skip", &[i])?,
        proj_down: r.get("xlstm.proj_down.weight", &[e, i])?,
        proj_down_bias: r.get_if(b, "xlstm.proj_down.bias", &[e])?,
    })
}

fn load_slstm(cfg: &V1Config, r: &BlockReader) -> Result<SlstmBlockWeights> {
    let s = cfg.slstm_layer();
    let (e, nh, dh, ks) = (cfg.embedding_dim, s.num_heads, s.head_dim, s.conv1d_kernel_size);
    let conv = if ks > 0 {
        Some((
            r.get("xlstm.conv1d.conv.weight", &[e, 1, ks])?,
            r.get("xlstm.conv1d.conv.bias", &[e])?,
        ))
    } else {
        None
    };
    let head = [nh, dh, dh];
    // Recurrent kernel and bias: convert the cuda layout to the canonical (vanilla) one.
    let r_name = "xlstm.slstm_cell._recurrent_kernel_";
    let r_shape = r.shape(r_name)?.to_vec();
    let (vanilla_shape, cuda_shape) = ([nh, 4 * dh, dh], [nh, dh, 4 * dh]);
    let recurrent = match s.backend {
        SlstmBackend::Vanilla => {
            if r_shape == cuda_shape {
                return Err(Error::Checkpoint(format!(
                    "`{}` has the cuda layout {r_shape:?} but the config says backend \"vanilla\" \
                     (expected {vanilla_shape:?})",
                    r.name(r_name)
                )));
            }
            r.get(r_name, &vanilla_shape)?
        }
        SlstmBackend::Cuda => {
            if r_shape == vanilla_shape {
                return Err(Error::Checkpoint(format!(
                    "`{}` has the vanilla layout {r_shape:?} but the config says backend \"cuda\" \
                     (expected {cuda_shape:?})",
                    r.name(r_name)
                )));
            }
            let cuda = r.get(r_name, &cuda_shape)?;
            // R_vanilla[h, gj, d] = R_cuda[h, d, gj]
            let mut out = vec![0.0; cuda.len()];
            for h in 0..nh {
                for gj in 0..4 * dh {
                    for d in 0..dh {
                        out[(h * 4 * dh + gj) * dh + d] = cuda[(h * dh + d) * 4 * dh + gj];
                    }
                }
            }
            out
        }
    };
    let raw_bias = r.get("xlstm.slstm_cell._bias_", &[4 * e])?;
    let bias = match s.backend {
        SlstmBackend::Vanilla => raw_bias,
        SlstmBackend::Cuda => {
            // [head][gate][DH] -> [gate][head][DH]
            let mut out = vec![0.0; raw_bias.len()];
            for h in 0..nh {
                for g in 0..4 {
                    for j in 0..dh {
                        out[(g * nh + h) * dh + j] = raw_bias[(h * 4 + g) * dh + j];
                    }
                }
            }
            out
        }
    };
    let group_norm = if s.group_norm_weight {
        r.get("xlstm.group_norm.weight", &[e])?
    } else {
        vec![0.0; e]
    };
    let ffn = match &cfg.feedforward {
        None => None,
        Some(ff) => {
            let down_shape = r.shape("ffn.proj_down.weight")?.to_vec();
            if down_shape.len() != 2 || down_shape[0] != e || down_shape[1] == 0 {
                return Err(Error::Checkpoint(format!(
                    "`{}` has shape {down_shape:?}, expected [{e}, F]",
                    r.name("ffn.proj_down.weight")
                )));
            }
            let f = down_shape[1];
            Some(FfnWeights {
                dim: f,
                norm: r.get("ffn_norm.weight", &[e])?,
                proj_up: r.get("ffn.proj_up.weight", &[2 * f, e])?,
                proj_up_bias: r.get_if(ff.bias, "ffn.proj_up.bias", &[2 * f])?,
                proj_down: r.get("ffn.proj_down.weight", &[e, f])?,
                proj_down_bias: r.get_if(ff.bias, "ffn.proj_down.bias", &[e])?,
            })
        }
    };
    Ok(SlstmBlockWeights {
        norm: r.get("xlstm_norm.weight", &[e])?,
        conv,
        w_input: r.get("xlstm.fgate.weight", &head)?,
        w_forget: r.get("xlstm.igate.weight", &head)?,
        w_z: r.get("xlstm.zgate.weight", &head)?,
        w_o: r.get("xlstm.ogate.weight", &head)?,
        recurrent,
        bias,
        group_norm,
        ffn,
    })
}

/// Reads the weights of block `index` (its kind from `cfg`) from an opened checkpoint, converting
/// cuda-layout sLSTM tensors. (The GPU loader reads a block at a time with this.)
pub(crate) fn load_block(cfg: &V1Config, ckpt: &Checkpoint, index: usize) -> Result<BlockWeights> {
    let reader = BlockReader {
        ckpt,
        prefix: format!("xlstm_block_stack.blocks.{index}."),
    };
    Ok(match cfg.block_kind(index) {
        BlockKind::Mlstm => BlockWeights::Mlstm(load_mlstm(cfg, &reader)?),
        BlockKind::Slstm => BlockWeights::Slstm(load_slstm(cfg, &reader)?),
    })
}

impl V1Weights {
    /// Reads every tensor of `cfg`'s model from an opened checkpoint (any of F32/F16/BF16),
    /// converting cuda-layout sLSTM tensors and resolving tied embeddings. Missing tensors and wrong
    /// shapes are `Error::Checkpoint`.
    pub fn load(cfg: &V1Config, ckpt: &Checkpoint) -> Result<Self> {
        cfg.validate()?;
        let (e, v) = (cfg.embedding_dim, cfg.vocab_size);
        let embedding = ckpt.tensor_f32("token_embedding.weight", &[v, e])?;
        let mut blocks = Vec::with_capacity(cfg.num_blocks);
        for (index, kind) in cfg.blocks.iter().enumerate() {
            let reader = BlockReader {
                ckpt,
                prefix: format!("xlstm_block_stack.blocks.{index}."),
            };
            blocks.push(match kind {
                BlockKind::Mlstm => BlockWeights::Mlstm(load_mlstm(cfg, &reader)?),
                BlockKind::Slstm => BlockWeights::Slstm(load_slstm(cfg, &reader)?),
            });
        }
        let post_norm = if cfg.add_post_blocks_norm {
            Some(ckpt.tensor_f32("xlstm_block_stack.post_blocks_norm.weight", &[e])?)
        } else {
            None
        };
        let lm_head = if cfg.tie_weights {
            embedding.clone()
        } else {
            ckpt.tensor_f32("lm_head.weight", &[v, e])?
        };
        Ok(Self {
            embedding,
            blocks,
            post_norm,
            lm_head,
            tied: cfg.tie_weights,
        })
    }

    /// Opens a model directory (config.json + safetensors) and loads config and weights.
    pub fn load_dir(dir: &Path) -> Result<(V1Config, Self)> {
        let cfg = V1Config::from_dir(dir)?;
        let ckpt = Checkpoint::open(dir)?;
        let w = Self::load(&cfg, &ckpt)?;
        Ok((cfg, w))
    }
}

/// The storage precision of activations and states: `f32` (like GPU buffers and the package's
/// float32 run; the default) or `f64` (every value kept in double precision, which reproduces the
/// package run in float64 — `model.double()` — to ~1e-12 and so checks the math itself).
/// Arithmetic is f64 in both cases; values are rounded to `Self` wherever they are stored.
pub trait Real: Copy + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(x: f64) -> Self;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}

/// Recurrent state of one v1 mLSTM block, in the package's `step()` convention.
#[derive(Clone, Debug, PartialEq)]
pub struct MlstmState<S = f32> {
    /// Conv input window `[KS, I]`, oldest first, newest at row `KS−1` (the package's `conv_state`).
    pub conv: Vec<S>,
    /// `C [NH, DH, DH]` (`C[h, a, b]` accumulates `k_a/√DH · v_b`).
    pub c: Vec<S>,
    /// `n [NH, DH]` (accumulates `k/√DH`).
    pub n: Vec<S>,
    /// Stabiliser `m [NH]` (0 initially).
    pub m: Vec<S>,
}

/// Recurrent state of one sLSTM block: the package's `slstm_state` `[4, E]` = (y, c, n, m) and the
/// conv window (empty without conv).
#[derive(Clone, Debug, PartialEq)]
pub struct SlstmState<S = f32> {
    /// Conv input window `[KS, E]`, newest at row `KS−1`.
    pub conv: Vec<S>,
    pub y: Vec<S>,
    pub c: Vec<S>,
    pub n: Vec<S>,
    pub m: Vec<S>,
}

/// One block's state.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockState<S = f32> {
    Mlstm(MlstmState<S>),
    Slstm(SlstmState<S>),
}

/// The whole model's recurrent state. An empty state (`V1State::default()`, no blocks) is filled
/// with zeros by the first [`forward`] call; [`V1State::new`] builds the zero state explicitly.
#[derive(Clone, Debug, PartialEq)]
pub struct V1State<S = f32> {
    pub blocks: Vec<BlockState<S>>,
}

impl<S: Real> Default for V1State<S> {
    fn default() -> Self {
        Self { blocks: Vec::new() }
    }
}

impl<S: Real> V1State<S> {
    /// The zero state of every block (what the package's `step(idx, state=None)` starts from).
    pub fn new(cfg: &V1Config) -> Self {
        let e = cfg.embedding_dim;
        let zeros = |len: usize| vec![S::default(); len];
        let blocks = cfg
            .blocks
            .iter()
            .map(|kind| match kind {
                BlockKind::Mlstm => {
                    let m = cfg.mlstm_layer();
                    let (nh, dh) = (m.num_heads, m.head_dim());
                    BlockState::Mlstm(MlstmState {
                        conv: zeros(m.conv1d_kernel_size * m.inner_dim),
                        c: zeros(nh * dh * dh),
                        n: zeros(nh * dh),
                        m: zeros(nh),
                    })
                }
                BlockKind::Slstm => BlockState::Slstm(SlstmState {
                    conv: zeros(cfg.slstm_layer().conv1d_kernel_size * e),
                    y: zeros(e),
                    c: zeros(e),
                    n: zeros(e),
                    m: zeros(e),
                }),
            })
            .collect();
        Self { blocks }
    }
}

// ------------------------------------------------------------------------------------------------
// building blocks (one row; f64 arithmetic, results rounded to the storage type S)

/// Dot product of an activation row and an f32 weight row, in f64.
fn dot<S: Real>(x: &[S], w: &[f32]) -> f64 {
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
fn linear<S: Real>(x: &[S], w: &[f32], bias: Option<&Vec<f32>>, n: usize) -> Vec<S> {
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

fn silu_f64(x: f64) -> f64 {
    x * sigmoid_f64(x)
}

fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2))
}

/// Exact (erf) GELU, `x · Φ(x)`, as torch's default `F.gelu`.
pub fn gelu(x: f32) -> f32 {
    gelu_f64(f64::from(x)) as f32
}

fn activation_f64(act: Activation, x: f64) -> f64 {
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

// ------------------------------------------------------------------------------------------------
// layers (one token)

/// The v1 mLSTM layer on one normalised row `xn [E]`; returns its output `[E]`.
fn mlstm_layer<S: Real>(cfg: &V1Config, w: &MlstmBlockWeights, xn: &[S], st: &mut MlstmState<S>) -> Vec<S> {
    let m = cfg.mlstm_layer();
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
    let s = cfg.slstm_layer();
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
