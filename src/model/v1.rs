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

use super::checkpoint::Checkpoint;
use super::mlstm_cell::{record_cell, CellBuffers, CellPass, CellScratch, CellState};
use super::state::StateTensor;
use super::v1_config::{Activation, BlockKind, MlstmLayerConfig, SlstmLayerConfig, V1Config, V1_NORM_EPS};
use super::v1_weights::{load_block, BlockWeights, BLOCK_PREFIX};
use super::weights::{upload_f32, upload_matrix, GpuMatrix, WeightDtype};
use crate::error::{Error, Result};
use crate::gpu::{BufferPool, Category, Gpu, GpuBuffer, PlanBuilder, Slice};
use crate::ops::slstm::{self, SlstmMode};
use crate::ops::v1::{self as v1ops, NormOut};
use crate::ops::{self, mlstm_v1, CellLayout, Epilogue, Ops, Rows};

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

fn upload_opt(gpu: &Gpu, pool: &BufferPool, data: &Option<Vec<f32>>, label: &str) -> Result<Option<GpuBuffer>> {
    data.as_ref()
        .map(|d| upload_f32(gpu, pool, d, Category::Weights, label))
        .transpose()
}

/// The mLSTM layer config of a model with mLSTM blocks (`validate` guarantees it; a config built
/// in code without it is an error here rather than a panic).
fn mlstm_of(cfg: &V1Config) -> Result<&MlstmLayerConfig> {
    cfg.mlstm
        .as_ref()
        .ok_or_else(|| Error::Config("mLSTM blocks without an mLSTM layer config".into()))
}

/// The sLSTM layer config of a model with sLSTM blocks.
fn slstm_of(cfg: &V1Config) -> Result<&SlstmLayerConfig> {
    cfg.slstm
        .as_ref()
        .ok_or_else(|| Error::Config("sLSTM blocks without an sLSTM layer config".into()))
}

/// The tensors one after another (`[&Vec<f32>]` does not coerce for `<[_]>::concat`).
fn concat(parts: &[&[f32]]) -> Vec<f32> {
    parts.concat()
}

impl Weights {
    /// Uploads every tensor, a block at a time, checking names and shapes against the config.
    pub fn load(gpu: &Gpu, pool: &BufferPool, ckpt: &Checkpoint, cfg: &V1Config, dtype: WeightDtype) -> Result<Self> {
        cfg.validate()?;
        ckpt.check_block_count(BLOCK_PREFIX, cfg.num_blocks)?;
        let (e, v) = (cfg.embedding_dim, cfg.vocab_size);
        let w = |rows, cols, data: &[f32], label: &str| GpuMatrix::from_f32(gpu, pool, data, rows, cols, dtype, label);
        let f32buf = |data: &[f32], label: &str| upload_f32(gpu, pool, data, Category::Weights, label);
        let embedding = upload_matrix(
            gpu,
            pool,
            ckpt,
            &[ckpt.entry("token_embedding.weight", &[v, e])?],
            e,
            dtype,
            "embedding",
        )?;
        let mut blocks = Vec::with_capacity(cfg.num_blocks);
        for index in 0..cfg.num_blocks {
            let label = |s: &str| format!("block {index} {s}");
            // The matrices converted to the device format are labelled with their tensor names,
            // which errors about out-of-range values give.
            let tensor = |s: &str| format!("{BLOCK_PREFIX}{index}.{s}");
            blocks.push(match load_block(cfg, ckpt, index)? {
                BlockWeights::Mlstm(b) => {
                    let i = mlstm_of(cfg)?.inner_dim;
                    let qkv_bias = match (&b.q_bias, &b.k_bias, &b.v_bias) {
                        (Some(q), Some(k), Some(v)) => Some(concat(&[q, k, v])),
                        _ => None,
                    };
                    Block::Mlstm(MlstmBlock {
                        norm: f32buf(&b.norm, &label("norm"))?,
                        proj_up: w(2 * i, e, &b.proj_up, &tensor("xlstm.proj_up.weight"))?,
                        proj_up_bias: upload_opt(gpu, pool, &b.proj_up_bias, &label("proj_up bias"))?,
                        conv_weight: f32buf(&b.conv_weight, &label("conv"))?,
                        conv_bias: f32buf(&b.conv_bias, &label("conv bias"))?,
                        qkv: f32buf(&concat(&[&b.q_proj, &b.k_proj, &b.v_proj]), &label("qkv"))?,
                        qkv_bias: upload_opt(gpu, pool, &qkv_bias, &label("qkv bias"))?,
                        gates: f32buf(&concat(&[&b.igate_weight, &b.fgate_weight]), &label("gates"))?,
                        gate_bias: f32buf(&concat(&[&b.igate_bias, &b.fgate_bias]), &label("gate bias"))?,
                        outnorm: f32buf(&b.outnorm, &label("outnorm"))?,
                        skip: f32buf(&b.learnable_skip, &label("skip"))?,
                        proj_down: w(e, i, &b.proj_down, &tensor("xlstm.proj_down.weight"))?,
                        proj_down_bias: upload_opt(gpu, pool, &b.proj_down_bias, &label("proj_down bias"))?,
                    })
                }
                BlockWeights::Slstm(b) => {
                    let conv = match &b.conv {
                        Some((cw, cb)) => Some((f32buf(cw, &label("conv"))?, f32buf(cb, &label("conv bias"))?)),
                        None => None,
                    };
                    let ffn = match &b.ffn {
                        Some(f) => Some(Ffn {
                            dim: f.dim,
                            norm: f32buf(&f.norm, &label("ffn norm"))?,
                            proj_up: w(2 * f.dim, e, &f.proj_up, &tensor("ffn.proj_up.weight"))?,
                            proj_up_bias: upload_opt(gpu, pool, &f.proj_up_bias, &label("ffn up bias"))?,
                            proj_down: w(e, f.dim, &f.proj_down, &tensor("ffn.proj_down.weight"))?,
                            proj_down_bias: upload_opt(gpu, pool, &f.proj_down_bias, &label("ffn down bias"))?,
                        }),
                        None => None,
                    };
                    Block::Slstm(SlstmBlock {
                        norm: f32buf(&b.norm, &label("norm"))?,
                        conv,
                        gates: f32buf(&concat(&[&b.w_input, &b.w_forget, &b.w_z, &b.w_o]), &label("gates"))?,
                        recurrent: f32buf(&b.recurrent, &label("recurrent"))?,
                        bias: f32buf(&b.bias, &label("bias"))?,
                        group_norm: f32buf(&b.group_norm, &label("group norm"))?,
                        ffn,
                    })
                }
            });
        }
        let post_norm = if cfg.add_post_blocks_norm {
            let data = ckpt.tensor_f32("xlstm_block_stack.post_blocks_norm.weight", &[e])?;
            Some(f32buf(&data, "post_blocks_norm")?)
        } else {
            None
        };
        let lm_head = if cfg.tie_weights {
            None
        } else {
            Some(upload_matrix(
                gpu,
                pool,
                ckpt,
                &[ckpt.entry("lm_head.weight", &[v, e])?],
                e,
                dtype,
                "lm_head",
            )?)
        };
        let act = cfg.feedforward.as_ref().map_or(Activation::Gelu, |f| f.act_fn);
        Ok(Weights {
            embedding,
            blocks,
            post_norm,
            lm_head,
            act,
        })
    }

    /// The widest feed-forward (0 without any).
    fn ffn_dim(&self) -> usize {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Slstm(s) => s.ffn.as_ref().map(|f| f.dim),
                Block::Mlstm(_) => None,
            })
            .max()
            .unwrap_or(0)
    }
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
                let m = mlstm_of(cfg)?;
                BlockState::Mlstm {
                    conv: pool.storage(f(m.conv1d_kernel_size * m.inner_dim), Category::State, "conv state")?,
                    cell: CellState::with_dims(pool, m.num_heads, m.head_dim(), m.head_dim())?,
                }
            }
            BlockKind::Slstm => {
                let ks = slstm_of(cfg)?.conv1d_kernel_size;
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
}

impl Workspace {
    /// `logit_rows`: rows of logits the segment produces; `ids_len`: length of the id buffer.
    pub fn new(
        pool: &BufferPool,
        cfg: &V1Config,
        w: &Weights,
        tokens: usize,
        chunk: usize,
        logit_rows: usize,
        ids_len: usize,
    ) -> Result<Self> {
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
        })
    }
}

fn add_bias(pb: &mut PlanBuilder, ops: &Ops, y: &Rows, bias: &Option<GpuBuffer>, t: usize, width: usize) -> Result<()> {
    match bias {
        Some(b) => v1ops::bias_add(pb, ops, y, &Slice::all(b), t, width),
        None => Ok(()),
    }
}

/// Appends one forward pass over `ws.tokens` tokens (ids in `ws.ids` at `ids_offset`): embedding,
/// every block, post norm and lm_head for the last `ws.logit_rows` tokens. `pass` says how the
/// mLSTM cells run: a prompt segment by the prefill schedule, or one decode step (a one-token
/// workspace; the matrix products of one row run the GEMV kernel). `parity` is the mLSTM states'
/// n/m parity before the segment; returns the parity after it.
#[allow(clippy::too_many_arguments)]
pub fn record_forward(
    pb: &mut PlanBuilder,
    ops: &Ops,
    cfg: &V1Config,
    w: &Weights,
    state: &[BlockState],
    ws: &Workspace,
    ids_offset: usize,
    parity: u32,
    pass: CellPass,
) -> Result<u32> {
    let t = ws.tokens;
    let d = Dims::of(cfg, w);
    let e = d.e;
    let eps = V1_NORM_EPS as f32;
    let s = |b: &GpuBuffer| Slice::all(b);
    let x = Rows::new(&s(&ws.x), e);
    let xn = Rows::new(&s(&ws.xn), e);
    let residual = Epilogue {
        accumulate: true,
        soft_cap: 0.0,
    };
    let mut parity_out = parity;

    ops::embed(pb, ops, &s(&ws.ids), ids_offset, t, &w.embedding, &s(&ws.x))?;
    for (block, st) in w.blocks.iter().zip(state) {
        match (block, st) {
            (Block::Mlstm(b), BlockState::Mlstm { conv, cell }) => {
                let i = d.i;
                let layout = d.cell_layout();
                let up = Rows::new(&s(&ws.up), 2 * i);
                let xc = Rows::new(&s(&ws.xc), i);
                let proj = Rows::new(&s(&ws.proj), layout.proj_stride);
                let h = Rows::new(&s(&ws.h), i);
                let hg = Rows::new(&s(&ws.hg), i);
                let m = mlstm_of(cfg)?;
                v1ops::layer_norm(pb, ops, &x, Some(&s(&b.norm)), t, e, 1, eps, &xn, NormOut::Write)?;
                ops::matmul(pb, ops, &xn, t, &b.proj_up, &up, Epilogue::default())?;
                add_bias(pb, ops, &up, &b.proj_up_bias, t, 2 * i)?;
                v1ops::conv_silu(
                    pb,
                    ops,
                    &up,
                    t,
                    i,
                    m.conv1d_kernel_size,
                    &s(&b.conv_weight),
                    &s(&b.conv_bias),
                    &s(conv),
                    &xc,
                )?;
                let qkv_bias = b.qkv_bias.as_ref().map(s);
                v1ops::headwise(
                    pb,
                    ops,
                    &xc,
                    &up,
                    2,
                    3,
                    t,
                    i,
                    m.qkv_proj_blocksize,
                    &s(&b.qkv),
                    qkv_bias.as_ref(),
                    &proj,
                )?;
                mlstm_v1::gates(
                    pb,
                    ops,
                    &s(&b.gates),
                    &s(&ws.proj),
                    t,
                    2 * d.nh,
                    3 * i,
                    layout.proj_stride,
                    layout.i_col,
                )?;
                let scratch = CellScratch {
                    tokens: t,
                    proj: &ws.proj,
                    cell: &ws.cell,
                    h: &ws.h,
                };
                parity_out = record_cell(pb, ops, &layout, &s(&b.gate_bias), cell, &scratch, parity, pass)?;
                let gate = NormOut::MlstmGate {
                    skip: &s(&b.skip),
                    xc: &xc,
                    z: &up.col(i),
                };
                v1ops::layer_norm(pb, ops, &h, Some(&s(&b.outnorm)), t, i, d.nh, eps, &hg, gate)?;
                ops::matmul(pb, ops, &hg, t, &b.proj_down, &x, residual)?;
                add_bias(pb, ops, &x, &b.proj_down_bias, t, e)?;
            }
            (Block::Slstm(b), BlockState::Slstm { conv, state, scratch }) => {
                let l = slstm_of(cfg)?;
                v1ops::layer_norm(pb, ops, &x, Some(&s(&b.norm)), t, e, 1, eps, &xn, NormOut::Write)?;
                let xc = Rows::new(&s(&ws.xc), e);
                let gate_in = match (&b.conv, conv) {
                    (Some((cw, cb)), Some(cs)) => {
                        v1ops::conv_silu(pb, ops, &xn, t, e, l.conv1d_kernel_size, &s(cw), &s(cb), &s(cs), &xc)?;
                        &xc
                    }
                    _ => &xn,
                };
                let wx = Rows::new(&s(&ws.wx), 4 * e);
                v1ops::headwise(pb, ops, gate_in, &xn, 2, 4, t, e, l.head_dim, &s(&b.gates), None, &wx)?;
                slstm::slstm(
                    pb,
                    ops,
                    &s(&ws.wx),
                    &s(&b.bias),
                    &s(&b.recurrent),
                    &s(state),
                    &s(scratch),
                    &s(&ws.h),
                    t,
                    l.num_heads,
                    l.head_dim,
                    SlstmMode::Auto,
                )?;
                let h = Rows::new(&s(&ws.h), e);
                v1ops::layer_norm(
                    pb,
                    ops,
                    &h,
                    Some(&s(&b.group_norm)),
                    t,
                    e,
                    l.num_heads,
                    eps,
                    &x,
                    NormOut::Accumulate,
                )?;
                if let Some(f) = &b.ffn {
                    let up = Rows::new(&s(&ws.up), 2 * f.dim);
                    let hid = Rows::new(&s(&ws.hg), f.dim);
                    v1ops::layer_norm(pb, ops, &x, Some(&s(&f.norm)), t, e, 1, eps, &xn, NormOut::Write)?;
                    ops::matmul(pb, ops, &xn, t, &f.proj_up, &up, Epilogue::default())?;
                    add_bias(pb, ops, &up, &f.proj_up_bias, t, 2 * f.dim)?;
                    v1ops::gated_act(pb, ops, w.act, &up, t, f.dim, &hid)?;
                    ops::matmul(pb, ops, &hid, t, &f.proj_down, &x, residual)?;
                    add_bias(pb, ops, &x, &f.proj_down_bias, t, e)?;
                }
            }
            _ => return Err(Error::Gpu("v1 state blocks do not match the model's blocks".into())),
        }
    }
    if ws.logit_rows > 0 {
        let rows = ws.logit_rows;
        let last = x.from_row(t - rows);
        let logits = Rows::new(&s(&ws.logits), d.v);
        let head = w.lm_head.as_ref().unwrap_or(&w.embedding);
        match &w.post_norm {
            Some(norm) => {
                v1ops::layer_norm(pb, ops, &last, Some(&s(norm)), rows, e, 1, eps, &xn, NormOut::Write)?;
                ops::matmul(pb, ops, &xn, rows, head, &logits, Epilogue::default())?;
            }
            None => ops::matmul(pb, ops, &last, rows, head, &logits, Epilogue::default())?,
        }
    }
    Ok(parity_out)
}
