//! The original xLSTM (`xLSTMLMModel`: v1 mLSTM and sLSTM blocks) on the GPU: weights uploaded a
//! block at a time, the recurrent state, the activation buffers of a segment, and the plan of one
//! forward pass (reference/xlstm.md §3; the plain-Rust reference is `xlstm_reference::v1`).
//!
//! ```text
//! x = embedding[ids]
//! mLSTM block:  xn = LN(x); [x_m | z] = proj_up(xn); x_c = SiLU(conv(x_m))
//!               q | k | v = headwise(x_c, x_c, x_m); i | f = W_{i,f} [q; k; v]   (one row each)
//!               h = mLSTM cell (chunkwise, or the step kernel)  — no gate soft cap, eps 1e-6
//!               x += proj_down((GN(h) + skip ⊙ x_c) ⊙ SiLU(z))
//! sLSTM block:  xn = LN(x); x_c = SiLU(conv(xn)) (or xn); wx = headwise(x_c, x_c, xn, xn)
//!               y = sLSTM recurrence; x += GN(y); x += proj_down(act(gate) ⊙ up), [gate | up] = proj_up(LN(x))
//! logits = lm_head(LN_post(x))       (lm_head = the embedding when tied)
//! ```
//! LN/GN: LayerNorm / per-head GroupNorm with scale 1 + w and eps 1e-5.

mod forward;
mod load;

pub use forward::{record_forward, V1Net};

use super::checkpoint::Checkpoint;
use super::mlstm_cell::{record_cell, Cell, CellBuffers, CellPass, CellScratch, CellState};
use super::state::StateTensor;
use super::v1_config::{Activation, BlockKind, V1Config, V1_NORM_EPS};
use super::weights::{GpuMatrix, WeightDtype};
use super::SegmentShape;
use crate::error::{Error, Result};
use crate::gpu::{BufferPool, Category, Gpu, GpuBuffer, PlanBuilder, Slice};
use crate::ops::{self, CellLayout, Ops};

/// `eps` added to the v1 mLSTM output denominator (`recurrent_step_stabilized_simple`); the
/// reference computes in f64 with this value, the kernels in f32.
pub const MLSTM_CELL_EPS: f64 = 1e-6;
const CELL_EPS: f32 = MLSTM_CELL_EPS as f32;

/// One v1 mLSTM block on the GPU.
pub struct MlstmBlock {
    pub norm: GpuBuffer,
    pub proj_up: GpuMatrix,
    pub proj_up_bias: Option<GpuBuffer>,
    /// [I, KS] and [I].
    pub conv_weight: GpuBuffer,
    pub conv_bias: GpuBuffer,
    /// The q, k and v block-diagonal projections, [3, I/bs, bs, bs].
    pub qkv: GpuBuffer,
    pub qkv_bias: Option<GpuBuffer>,
    /// Input-gate rows then forget-gate rows, [2·NH, 3I] (f32: tiny).
    pub gates: GpuBuffer,
    /// Input-gate biases then forget-gate biases, [2·NH].
    pub gate_bias: GpuBuffer,
    pub outnorm: GpuBuffer,
    pub skip: GpuBuffer,
    pub proj_down: GpuMatrix,
    pub proj_down_bias: Option<GpuBuffer>,
}

/// The gated feed-forward of an sLSTM block.
pub struct Ffn {
    pub dim: usize,
    pub norm: GpuBuffer,
    pub proj_up: GpuMatrix,
    pub proj_up_bias: Option<GpuBuffer>,
    pub proj_down: GpuMatrix,
    pub proj_down_bias: Option<GpuBuffer>,
}

/// One sLSTM block on the GPU.
pub struct SlstmBlock {
    pub norm: GpuBuffer,
    /// Conv weight [E, KS] and bias [E] (absent when the conv width is 0).
    pub conv: Option<(GpuBuffer, GpuBuffer)>,
    /// The i, f, z, o block-diagonal projections by role, [4, NH, DH, DH].
    pub gates: GpuBuffer,
    /// [NH, 4·DH, DH] (vanilla layout; cuda-layout checkpoints are converted on load).
    pub recurrent: GpuBuffer,
    /// [4, E], gate-major.
    pub bias: GpuBuffer,
    pub group_norm: GpuBuffer,
    pub ffn: Option<Ffn>,
}

pub enum Block {
    Mlstm(MlstmBlock),
    Slstm(SlstmBlock),
}

/// All weights of an original-xLSTM model on the GPU.
pub struct Weights {
    pub embedding: GpuMatrix,
    pub blocks: Vec<Block>,
    pub post_norm: Option<GpuBuffer>,
    /// `None` with tied embeddings: the embedding matrix is the output projection.
    pub lm_head: Option<GpuMatrix>,
    pub act: Activation,
}

/// The widths a segment's buffers are sized by.
struct Dims {
    e: usize,
    v: usize,
    /// mLSTM inner width, heads, head width (0 without mLSTM blocks).
    i: usize,
    nh: usize,
    dh: usize,
    ffn: usize,
}

impl Dims {
    fn of(cfg: &V1Config, w: &Weights) -> Dims {
        let (i, nh, dh) = match &cfg.mlstm {
            Some(m) if cfg.blocks.contains(&BlockKind::Mlstm) => (m.inner_dim, m.num_heads, m.head_dim()),
            _ => (0, 0, 0),
        };
        Dims {
            e: cfg.embedding_dim,
            v: cfg.vocab_size,
            i,
            nh,
            dh,
            ffn: w.ffn_dim(),
        }
    }
    /// Columns of the mLSTM cell's projection rows: q | k | v | i | f.
    fn proj_stride(&self) -> usize {
        3 * self.i + 2 * self.nh
    }
    fn up(&self) -> usize {
        (2 * self.i).max(2 * self.ffn)
    }
    fn wide(&self) -> usize {
        self.i.max(self.e)
    }
    fn hidden(&self) -> usize {
        self.i.max(self.ffn)
    }
    fn cell_layout(&self) -> CellLayout {
        let i = self.i;
        CellLayout {
            num_heads: self.nh,
            dqk: self.dh,
            dv: self.dh,
            proj_stride: self.proj_stride(),
            q_col: 0,
            k_col: i,
            v_col: 2 * i,
            // The v1 output gate is SiLU(z) from proj_up, applied with the group norm.
            o_col: 0,
            i_col: 3 * i,
            f_col: 3 * i + self.nh,
            soft_cap: 0.0,
            eps: CELL_EPS,
        }
    }
}

/// Bytes of the largest single activation row set, used to bound the segment length.
pub fn max_row_bytes(cfg: &V1Config, w: &Weights) -> usize {
    let d = Dims::of(cfg, w);
    [d.up(), d.proj_stride(), 4 * d.e, d.wide(), d.hidden(), d.v]
        .into_iter()
        .max()
        .unwrap_or(1)
        * 4
}

/// Bytes of one mLSTM cell state (bounds the chunk-boundary buffers), 0 without mLSTM blocks.
pub fn cell_state_bytes(cfg: &V1Config, w: &Weights) -> usize {
    let d = Dims::of(cfg, w);
    d.nh * d.dh * d.dh * 4
}

/// The recurrent state of one block on the GPU.
pub enum BlockState {
    /// The conv window [KS, I] and the cell state (C, and n/m double-buffered by parity).
    Mlstm { conv: GpuBuffer, cell: CellState },
    /// The conv window [KS, E] (without conv: none), the cell state [4, E] = (y, c, n, m) and the
    /// per-token kernel's ping-pong copy of it.
    Slstm {
        conv: Option<GpuBuffer>,
        state: GpuBuffer,
        scratch: GpuBuffer,
    },
}

impl BlockState {
    pub fn new(pool: &BufferPool, cfg: &V1Config, kind: BlockKind) -> Result<Self> {
        let f = |n: usize| (n * 4) as u64;
        let e = cfg.embedding_dim;
        Ok(match kind {
            BlockKind::Mlstm => {
                let m = cfg.mlstm_layer()?;
                BlockState::Mlstm {
                    conv: pool.storage(f(m.conv1d_kernel_size * m.inner_dim), Category::State, "conv state")?,
                    cell: CellState::with_dims(pool, m.num_heads, m.head_dim(), m.head_dim())?,
                }
            }
            BlockKind::Slstm => {
                let ks = cfg.slstm_layer()?.conv1d_kernel_size;
                BlockState::Slstm {
                    conv: if ks > 0 {
                        Some(pool.storage(f(ks * e), Category::State, "conv state")?)
                    } else {
                        None
                    },
                    state: pool.storage(f(4 * e), Category::State, "sLSTM state")?,
                    scratch: pool.storage(f(4 * e), Category::State, "sLSTM state copy")?,
                }
            }
        })
    }

    /// Every buffer (zeroed by a reset).
    pub fn buffers(&self) -> Vec<&GpuBuffer> {
        match self {
            BlockState::Mlstm { conv, cell } => vec![conv, &cell.c, &cell.n, &cell.m],
            BlockState::Slstm { conv, state, scratch } => conv.iter().chain([state, scratch]).collect(),
        }
    }

    /// The tensors that make up the state, in save order.
    pub fn tensors(&self) -> Vec<StateTensor<'_>> {
        match self {
            BlockState::Mlstm { conv, cell } => {
                let mut t = vec![StateTensor::whole(conv)];
                t.extend(cell.tensors());
                t
            }
            BlockState::Slstm { conv, state, .. } => conv
                .iter()
                .map(StateTensor::whole)
                .chain([StateTensor::whole(state)])
                .collect(),
        }
    }
}

/// Activation buffers of a segment of `tokens` tokens.
pub struct Workspace {
    pub tokens: usize,
    pub ids: GpuBuffer,
    pub x: GpuBuffer,
    pub xn: GpuBuffer,
    /// proj_up outputs: [x_m | z] of mLSTM blocks, [gate | up] of feed-forwards.
    pub up: GpuBuffer,
    /// Conv outputs.
    pub xc: GpuBuffer,
    /// mLSTM cell inputs q | k | v | i | f.
    pub proj: GpuBuffer,
    pub cell: CellBuffers,
    /// Cell outputs (mLSTM h, sLSTM y).
    pub h: GpuBuffer,
    /// Gated mLSTM outputs and feed-forward hidden rows.
    pub hg: GpuBuffer,
    /// sLSTM gate pre-activations [tokens, 4, E].
    pub wx: GpuBuffer,
    pub logits: GpuBuffer,
    pub logit_rows: usize,
    /// Where long GEMMs over quantized weights expand them to f16 (`ops::matmul`), if they do.
    pub weight_staging: Option<GpuBuffer>,
}

impl Workspace {
    /// The buffers of a segment of `shape`; `weight_staging` as `Model::workspace` decides.
    pub fn new(
        pool: &BufferPool,
        cfg: &V1Config,
        w: &Weights,
        shape: &SegmentShape,
        weight_staging: Option<GpuBuffer>,
    ) -> Result<Self> {
        let SegmentShape {
            tokens,
            chunk,
            logit_rows,
            ids_len,
        } = *shape;
        let d = Dims::of(cfg, w);
        let f = |n: usize| (n.max(1) * 4) as u64;
        let a = Category::Activations;
        let t = tokens;
        Ok(Workspace {
            tokens,
            ids: pool.storage(f(ids_len.max(t)), a, "ids")?,
            x: pool.storage(f(t * d.e), a, "x")?,
            xn: pool.storage(f(t * d.e), a, "x normed")?,
            up: pool.storage(f(t * d.up()), a, "proj up")?,
            xc: pool.storage(f(t * d.wide()), a, "conv out")?,
            proj: pool.storage(f(t * d.proj_stride()), a, "proj")?,
            cell: CellBuffers::new(pool, d.nh, d.dh, d.dh, t, chunk)?,
            h: pool.storage(f(t * d.wide()), a, "h")?,
            hg: pool.storage(f(t * d.hidden()), a, "h gated")?,
            wx: pool.storage(f(t * 4 * d.e), a, "sLSTM wx")?,
            logits: pool.storage(f(logit_rows.max(1) * d.v), a, "logits")?,
            logit_rows,
            weight_staging,
        })
    }
}
