//! xLSTM Large (the xLSTM-7B architecture) on the GPU: weight loading with the checkpoint name
//! maps, and the plans for a prefill segment and for decode steps (reference/xlstm.md §1.2).

use super::checkpoint::{Checkpoint, TensorEntry};
use super::config::LargeConfig;
use super::weights::{upload_f32, upload_matrix, GpuMatrix, WeightDtype};

use super::mlstm_cell::{record_cell, CellBuffers, CellScratch, CellState};
use super::schedule::PrefillSchedule;
use crate::error::{Error, Result};
use crate::gpu::{BufferPool, Category, Gpu, GpuBuffer, PlanBuilder, Slice};
use crate::ops::{self, CellLayout, Epilogue, Ops, Rows};

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

impl LargeWeights {
    /// Uploads every tensor, checking names, shapes and dtypes against the config.
    pub fn load(
        gpu: &Gpu,
        pool: &BufferPool,
        ckpt: &Checkpoint,
        cfg: &LargeConfig,
        dtype: WeightDtype,
    ) -> Result<Self> {
        cfg.validate()?;
        ckpt.check_block_count("backbone.blocks.", cfg.num_blocks)?;
        let (e, v, nh) = (cfg.embedding_dim, cfg.vocab_size, cfg.num_heads);
        let (qk, vd, f) = (cfg.qk_dim(), cfg.v_dim(), cfg.ffn_dim);
        let emb_name = ["backbone.embeddings.weight", "embedding.weight"]
            .into_iter()
            .find(|n| ckpt.contains(n))
            .ok_or_else(|| {
                Error::Checkpoint("missing tensor `backbone.embeddings.weight` (or `embedding.weight`)".into())
            })?;
        let embedding = upload_matrix(
            gpu,
            pool,
            ckpt,
            &[ckpt.entry(emb_name, &[v, e])?],
            e,
            dtype,
            "embedding",
        )?;

        let mut blocks = Vec::with_capacity(cfg.num_blocks);
        for i in 0..cfg.num_blocks {
            let n = BlockNames {
                prefix: format!("backbone.blocks.{i}."),
            };
            let small = |rest: &str, len: usize, cat: Category| -> Result<GpuBuffer> {
                let data = ckpt.tensor_f32(&n.name(rest), &[len])?;
                upload_f32(gpu, pool, &data, cat, &n.name(rest))
            };
            let fused = ckpt.contains(&n.name("mlstm_layer.qkv_opreact.weight"));
            let (proj_src, gate_bias): (Vec<&TensorEntry>, Vec<f32>) = if fused {
                let qkvo = ckpt.entry(&n.name("mlstm_layer.qkv_opreact.weight"), &[2 * qk + 2 * vd, e])?;
                let ifw = ckpt.entry(&n.name("mlstm_layer.ifgate_preact.weight"), &[2 * nh, e])?;
                let bias = ckpt.tensor_f32(&n.name("mlstm_layer.ifgate_preact.bias"), &[2 * nh])?;
                (vec![qkvo, ifw], bias)
            } else {
                let mut bias = ckpt.tensor_f32(&n.name("mlstm_layer.igate_preact.bias"), &[nh])?;
                bias.extend(ckpt.tensor_f32(&n.name("mlstm_layer.fgate_preact.bias"), &[nh])?);
                (
                    vec![
                        ckpt.entry(&n.name("mlstm_layer.q.weight"), &[qk, e])?,
                        ckpt.entry(&n.name("mlstm_layer.k.weight"), &[qk, e])?,
                        ckpt.entry(&n.name("mlstm_layer.v.weight"), &[vd, e])?,
                        ckpt.entry(&n.name("mlstm_layer.ogate_preact.weight"), &[vd, e])?,
                        ckpt.entry(&n.name("mlstm_layer.igate_preact.weight"), &[nh, e])?,
                        ckpt.entry(&n.name("mlstm_layer.fgate_preact.weight"), &[nh, e])?,
                    ],
                    bias,
                )
            };
            let ffn_src: Vec<&TensorEntry> = if ckpt.contains(&n.name("ffn.proj_up_gate_z.weight")) {
                vec![ckpt.entry(&n.name("ffn.proj_up_gate_z.weight"), &[2 * f, e])?]
            } else {
                vec![
                    ckpt.entry(&n.name("ffn.proj_up_gate.weight"), &[f, e])?,
                    ckpt.entry(&n.name("ffn.proj_up.weight"), &[f, e])?,
                ]
            };
            blocks.push(LargeBlock {
                norm_mlstm: small("norm_mlstm.weight", e, Category::Weights)?,
                proj: upload_matrix(gpu, pool, ckpt, &proj_src, e, dtype, &n.name("mlstm_layer"))?,
                gate_bias: upload_f32(gpu, pool, &gate_bias, Category::Weights, "gate bias")?,
                head_norm: small("mlstm_layer.multihead_norm.weight", vd, Category::Weights)?,
                out_proj: upload_matrix(
                    gpu,
                    pool,
                    ckpt,
                    &[ckpt.entry(&n.name("mlstm_layer.out_proj.weight"), &[e, vd])?],
                    vd,
                    dtype,
                    &n.name("out_proj"),
                )?,
                norm_ffn: small("norm_ffn.weight", e, Category::Weights)?,
                ffn_up: upload_matrix(gpu, pool, ckpt, &ffn_src, e, dtype, &n.name("ffn.up"))?,
                ffn_down: upload_matrix(
                    gpu,
                    pool,
                    ckpt,
                    &[ckpt.entry(&n.name("ffn.proj_down.weight"), &[e, f])?],
                    f,
                    dtype,
                    &n.name("ffn.down"),
                )?,
            });
        }
        let out_norm = if cfg.add_out_norm {
            let data = ckpt.tensor_f32("backbone.out_norm.weight", &[e])?;
            Some(upload_f32(gpu, pool, &data, Category::Weights, "out_norm")?)
        } else {
            None
        };
        let lm_head = upload_matrix(
            gpu,
            pool,
            ckpt,
            &[ckpt.entry("lm_head.weight", &[v, e])?],
            e,
            dtype,
            "lm_head",
        )?;
        Ok(LargeWeights {
            embedding,
            blocks,
            out_norm,
            lm_head,
        })
    }
}

impl LargeWeights {
    /// Random weights of the given shape generated on the GPU (benchmarks: no checkpoint file).
    /// Matrices are uniform with variance 1/fan_in, norm weights 1, gate biases spread so some
    /// heads forget fast and some slowly.
    pub fn random(
        gpu: &std::sync::Arc<Gpu>,
        pool: &BufferPool,
        ops: &Ops,
        cfg: &LargeConfig,
        dtype: WeightDtype,
        seed: u32,
    ) -> Result<Self> {
        let (e, v, nh) = (cfg.embedding_dim, cfg.vocab_size, cfg.num_heads);
        let (vd, f) = (cfg.v_dim(), cfg.ffn_dim);
        let mut pb = PlanBuilder::new(gpu.clone());
        let mut next_seed = seed;
        let mut matrix = |pb: &mut PlanBuilder, rows: usize, cols: usize, label: &str| -> Result<GpuMatrix> {
            let m = GpuMatrix::allocate(gpu, pool, rows, cols, dtype, label)?;
            next_seed = next_seed.wrapping_add(0x9e37_79b9);
            // Uniform in [-a, a] has variance a^2 / 3.
            ops::fill_random(pb, ops, &m, next_seed, (3.0 / cols as f32).sqrt())?;
            Ok(m)
        };
        let embedding = matrix(&mut pb, v, e, "embedding")?;
        let ones = |n: usize| vec![1.0f32; n];
        let mut blocks = Vec::with_capacity(cfg.num_blocks);
        for _ in 0..cfg.num_blocks {
            let mut bias: Vec<f32> = (0..nh).map(|h| -2.0 + h as f32 * 0.5).collect();
            bias.extend((0..nh).map(|h| 1.0 + 6.0 * h as f32 / nh as f32));
            blocks.push(LargeBlock {
                norm_mlstm: upload_f32(gpu, pool, &ones(e), Category::Weights, "norm")?,
                proj: matrix(&mut pb, cfg.fused_proj_rows(), e, "proj")?,
                gate_bias: upload_f32(gpu, pool, &bias, Category::Weights, "gate bias")?,
                head_norm: upload_f32(gpu, pool, &ones(vd), Category::Weights, "head norm")?,
                out_proj: matrix(&mut pb, e, vd, "out_proj")?,
                norm_ffn: upload_f32(gpu, pool, &ones(e), Category::Weights, "norm")?,
                ffn_up: matrix(&mut pb, 2 * f, e, "ffn up")?,
                ffn_down: matrix(&mut pb, e, f, "ffn down")?,
            });
        }
        let out_norm = if cfg.add_out_norm {
            Some(upload_f32(gpu, pool, &ones(e), Category::Weights, "out_norm")?)
        } else {
            None
        };
        let lm_head = matrix(&mut pb, v, e, "lm_head")?;
        pb.finish(pool)?.run(gpu, crate::gpu::SubmitBudget::default())?;
        gpu.wait()?;
        Ok(LargeWeights {
            embedding,
            blocks,
            out_norm,
            lm_head,
        })
    }
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
    /// `logit_rows`: how many rows of logits the segment produces (all tokens, or just one).
    /// `ids_len`: length of the id buffer (decode keeps the ids of several steps there).
    pub fn new(
        pool: &BufferPool,
        cfg: &LargeConfig,
        tokens: usize,
        chunk: usize,
        logit_rows: usize,
        ids_len: usize,
    ) -> Result<Self> {
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
        })
    }
}

/// Appends one whole forward pass over `ws.tokens` tokens (ids already in `ws.ids` at
/// `ids_offset`) to the plan: embedding, every block, final norm and lm_head for the last
/// `ws.logit_rows` tokens. `parity` is the state's n/m parity before the segment; the return
/// value is the parity after it.
#[allow(clippy::too_many_arguments)]
pub fn record_forward(
    pb: &mut PlanBuilder,
    ops: &Ops,
    cfg: &LargeConfig,
    w: &LargeWeights,
    state: &[CellState],
    ws: &Workspace,
    ids_offset: usize,
    parity: u32,
    sched: &PrefillSchedule,
) -> Result<u32> {
    let t = ws.tokens;
    let e = cfg.embedding_dim;
    let layout = CellLayout::fused(
        cfg.num_heads,
        cfg.head_dim_qk(),
        cfg.head_dim_v(),
        cfg.gate_soft_cap,
        cfg.cell_eps,
    );
    let s = |b: &GpuBuffer| Slice::all(b);
    let x = Rows::new(&s(&ws.x), e);
    let xn = Rows::new(&s(&ws.xn), e);
    let proj = Rows::new(&s(&ws.proj), layout.proj_stride);
    let hn = Rows::new(&s(&ws.hn), cfg.v_dim());
    let ffn_u = Rows::new(&s(&ws.ffn_u), 2 * cfg.ffn_dim);
    let ffn_a = Rows::new(&s(&ws.ffn_a), cfg.ffn_dim);
    let residual = Epilogue {
        accumulate: true,
        soft_cap: 0.0,
    };
    let mut parity_out = parity;

    ops::embed(pb, ops, &s(&ws.ids), ids_offset, t, &w.embedding, &s(&ws.x))?;
    // One token: the norms and the SwiGLU run inside the GEMVs (fewer dispatches per token).
    let fuse = t == 1;
    let h = Rows::new(&s(&ws.h), cfg.v_dim());
    for (block, st) in w.blocks.iter().zip(state) {
        if fuse {
            ops::gemv_rms_norm(
                pb,
                ops,
                &x,
                &s(&block.norm_mlstm),
                cfg.norm_eps,
                &block.proj,
                &proj,
                Epilogue::default(),
            )?;
        } else {
            ops::rms_norm(pb, ops, &x, &s(&block.norm_mlstm), e, cfg.norm_eps, t, &xn)?;
            ops::matmul(pb, ops, &xn, t, &block.proj, &proj, Epilogue::default())?;
        }
        let scratch = cell_scratch(ws);
        parity_out = record_cell(pb, ops, &layout, &s(&block.gate_bias), st, &scratch, parity, sched)?;
        if fuse && ops::gemv_head_norm_fits(ops, layout.num_heads, layout.dv, block.out_proj.kp) {
            // One token: the head norm and output gate run inside the out_proj GEMV.
            let gate = Rows {
                offset: layout.o_col,
                ..proj.clone()
            };
            ops::gemv_head_norm_gate(
                pb,
                ops,
                &h,
                layout.dv,
                &s(&block.head_norm),
                &gate,
                cfg.norm_eps,
                &block.out_proj,
                &x,
                residual,
            )?;
        } else {
            ops::head_norm_gate(
                pb,
                ops,
                &layout,
                &s(&ws.h),
                &s(&block.head_norm),
                &s(&ws.proj),
                t,
                cfg.norm_eps,
                &s(&ws.hn),
            )?;
            ops::matmul(pb, ops, &hn, t, &block.out_proj, &x, residual)?;
        }
        if fuse {
            ops::gemv_rms_norm(
                pb,
                ops,
                &x,
                &s(&block.norm_ffn),
                cfg.norm_eps,
                &block.ffn_up,
                &ffn_u,
                Epilogue::default(),
            )?;
            ops::gemv_swiglu(pb, ops, &ffn_u, &block.ffn_down, &x, residual)?;
        } else {
            ops::rms_norm(pb, ops, &x, &s(&block.norm_ffn), e, cfg.norm_eps, t, &xn)?;
            ops::matmul(pb, ops, &xn, t, &block.ffn_up, &ffn_u, Epilogue::default())?;
            ops::swiglu(pb, ops, &s(&ws.ffn_u), t, cfg.ffn_dim, &s(&ws.ffn_a))?;
            ops::matmul(pb, ops, &ffn_a, t, &block.ffn_down, &x, residual)?;
        }
    }
    if ws.logit_rows > 0 {
        let first = t - ws.logit_rows;
        let cap = Epilogue {
            accumulate: false,
            soft_cap: cfg.output_logit_soft_cap,
        };
        let logits = Rows::new(&s(&ws.logits), cfg.vocab_size);
        match &w.out_norm {
            Some(norm) if ws.logit_rows == 1 => ops::gemv_rms_norm(
                pb,
                ops,
                &x.from_row(first),
                &s(norm),
                cfg.norm_eps,
                &w.lm_head,
                &logits,
                cap,
            )?,
            Some(norm) => {
                ops::rms_norm(
                    pb,
                    ops,
                    &x.from_row(first),
                    &s(norm),
                    e,
                    cfg.norm_eps,
                    ws.logit_rows,
                    &xn,
                )?;
                ops::matmul(pb, ops, &xn, ws.logit_rows, &w.lm_head, &logits, cap)?;
            }
            None => ops::matmul(pb, ops, &x.from_row(first), ws.logit_rows, &w.lm_head, &logits, cap)?,
        }
    }
    Ok(parity_out)
}

/// The cell's view of a segment's workspace.
fn cell_scratch(ws: &Workspace) -> CellScratch<'_> {
    CellScratch {
        tokens: ws.tokens,
        proj: &ws.proj,
        cell: &ws.cell,
        h: &ws.h,
    }
}
