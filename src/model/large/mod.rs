//! xLSTM Large (the xLSTM-7B architecture) on the GPU (reference/xlstm.md §1.2): its weights
//! (`load`: checkpoint name maps, fused projections), the workspace of a segment, and the two plans
//! that run it, each its own data flow: `prefill` (a prompt segment through the GEMMs and the
//! chunkwise cell) and `decode` (one token through the fused GEMVs and the step kernel).

mod decode;
mod load;
mod prefill;

use super::checkpoint::Checkpoint;
use super::config::LargeConfig;
use super::mlstm_cell::{CellBuffers, CellScratch};
use super::weights::GpuMatrix;
use super::SegmentShape;
use crate::error::Result;
use crate::gpu::{BufferPool, Category, GpuBuffer};
use crate::ops::{CellLayout, Epilogue, Ops};

/// One block's weights on the GPU. The q|k|v|o|i|f projections are one matrix (one GEMM/GEMV
/// per token instead of six) and so are the FFN's gate|up projections.
pub struct LargeBlock {
    pub norm_mlstm: GpuBuffer,
    pub proj: GpuMatrix,
    /// Input-gate biases then forget-gate biases, [2 * NH].
    pub gate_bias: GpuBuffer,
    pub head_norm: GpuBuffer,
    pub out_proj: GpuMatrix,
    pub norm_ffn: GpuBuffer,
    pub ffn_up: GpuMatrix,
    pub ffn_down: GpuMatrix,
}

/// All weights of an xLSTM Large model on the GPU.
pub struct LargeWeights {
    pub embedding: GpuMatrix,
    pub blocks: Vec<LargeBlock>,
    pub out_norm: Option<GpuBuffer>,
    pub lm_head: GpuMatrix,
}

/// Tensor names of one block in a checkpoint.
struct BlockNames {
    prefix: String,
}

impl BlockNames {
    fn name(&self, rest: &str) -> String {
        format!("{}{}", self.prefix, rest)
    }
}

/// Finds the FFN width from the weights (the config's rounding can differ from the checkpoint's).
pub fn ffn_dim_from_checkpoint(ckpt: &Checkpoint) -> Option<usize> {
    // `first()`: a 0-d tensor gives None here and is reported by the shape check at load time.
    if let Some(s) = ckpt.shape("backbone.blocks.0.ffn.proj_up_gate.weight") {
        return s.first().copied();
    }
    ckpt.shape("backbone.blocks.0.ffn.proj_up_gate_z.weight")
        .and_then(|s| s.first())
        .map(|r| r / 2)
}

/// Activation buffers of a prefill segment of `tokens` tokens.
pub struct Workspace {
    pub tokens: usize,
    pub ids: GpuBuffer,
    pub x: GpuBuffer,
    pub xn: GpuBuffer,
    pub proj: GpuBuffer,
    pub cell: CellBuffers,
    pub h: GpuBuffer,
    pub hn: GpuBuffer,
    pub ffn_u: GpuBuffer,
    pub ffn_a: GpuBuffer,
    pub logits: GpuBuffer,
    pub logit_rows: usize,
    /// Where long GEMMs over quantized weights expand them to f16 (`ops::matmul`), if they do.
    pub weight_staging: Option<GpuBuffer>,
}

/// Bytes of the largest single activation row set, used to bound the segment length.
pub fn max_row_bytes(cfg: &LargeConfig) -> usize {
    let widths = [
        cfg.fused_proj_rows(),
        2 * cfg.ffn_dim,
        cfg.vocab_size,
        cfg.embedding_dim,
    ];
    widths.iter().max().copied().unwrap_or(1) * 4
}

impl Workspace {
    /// The buffers of a segment of `shape`; `weight_staging` as `Model::workspace` decides.
    pub fn new(
        pool: &BufferPool,
        cfg: &LargeConfig,
        shape: &SegmentShape,
        weight_staging: Option<GpuBuffer>,
    ) -> Result<Self> {
        let SegmentShape {
            tokens,
            chunk,
            logit_rows,
            ids_len,
        } = *shape;
        let f = |n: usize| (n * 4) as u64;
        let nh = cfg.num_heads;
        let (dqk, dv) = (cfg.head_dim_qk(), cfg.head_dim_v());
        let a = Category::Activations;
        Ok(Workspace {
            tokens,
            ids: pool.storage(f(ids_len.max(tokens)), a, "ids")?,
            x: pool.storage(f(tokens * cfg.embedding_dim), a, "x")?,
            xn: pool.storage(f(tokens * cfg.embedding_dim), a, "x normed")?,
            proj: pool.storage(f(tokens * cfg.fused_proj_rows()), a, "proj")?,
            cell: CellBuffers::new(pool, nh, dqk, dv, tokens, chunk)?,
            h: pool.storage(f(tokens * cfg.v_dim()), a, "h")?,
            hn: pool.storage(f(tokens * cfg.v_dim()), a, "h gated")?,
            ffn_u: pool.storage(f(tokens * 2 * cfg.ffn_dim), a, "ffn up")?,
            ffn_a: pool.storage(f(tokens * cfg.ffn_dim), a, "ffn act")?,
            logits: pool.storage(f(logit_rows.max(1) * cfg.vocab_size), a, "logits")?,
            logit_rows,
            weight_staging,
        })
    }
}

/// What a plan of the model reads: the kernels, the config and the weights.
pub struct LargeNet<'a> {
    pub ops: &'a Ops,
    pub cfg: &'a LargeConfig,
    pub w: &'a LargeWeights,
}

impl LargeNet<'_> {
    /// Column layout of the fused projection rows and the cell's dimensions.
    fn cell_layout(&self) -> CellLayout {
        let cfg = self.cfg;
        CellLayout::fused(
            cfg.num_heads,
            cfg.head_dim_qk(),
            cfg.head_dim_v(),
            cfg.gate_soft_cap,
            cfg.cell_eps,
        )
    }
}

/// Adds the product into the output: the residual connections.
const RESIDUAL: Epilogue = Epilogue {
    accumulate: true,
    soft_cap: 0.0,
};

/// The cell's view of a segment's workspace.
fn cell_scratch(ws: &Workspace) -> CellScratch<'_> {
    CellScratch {
        tokens: ws.tokens,
        proj: &ws.proj,
        cell: &ws.cell,
        h: &ws.h,
    }
}
