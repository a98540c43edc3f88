//! Loading xLSTM Large weights: the checkpoint's names and shapes checked against the config, the
//! projections fused, or random weights of a config's shape generated on the GPU (benchmarks).

use super::{BlockNames, LargeBlock, LargeWeights};
use crate::error::{Error, Result};
use crate::gpu::{BufferPool, Category, Gpu, GpuBuffer, PlanBuilder};
use crate::model::checkpoint::{Checkpoint, TensorEntry};
use crate::model::config::LargeConfig;
use crate::model::weights::{upload_f32, upload_matrix, GpuMatrix, WeightDtype};
use crate::ops::{self, Ops};

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
            dtype.head_format(),
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
            dtype.head_format(),
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
            let format = if label == "embedding" || label == "lm_head" {
                dtype.head_format()
            } else {
                dtype
            };
            let m = GpuMatrix::allocate(gpu, pool, rows, cols, format, label)?;
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
