//! Loading the original xLSTM's weights a block at a time (`v1_weights` reads and converts the
//! checkpoint's block tensors) and uploading them in the kernels' layout.

use super::*;
use crate::model::v1_weights::{load_block_with, BlockWeights, BLOCK_PREFIX};
use crate::model::weights::{upload_f32, upload_matrix};

fn upload_opt(gpu: &Gpu, pool: &BufferPool, data: &Option<Vec<f32>>, label: &str) -> Result<Option<GpuBuffer>> {
    data.as_ref()
        .map(|d| upload_f32(gpu, pool, d, Category::Weights, label))
        .transpose()
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
        // The projections go from the checkpoint straight to the GPU (as stored, when quantized).
        let w = |rows: usize, cols: usize, name: &str| {
            upload_matrix(gpu, pool, ckpt, &[ckpt.entry(name, &[rows, cols])?], cols, dtype, name)
        };
        let f32buf = |data: &[f32], label: &str| upload_f32(gpu, pool, data, Category::Weights, label);
        let embedding = upload_matrix(
            gpu,
            pool,
            ckpt,
            &[ckpt.entry("token_embedding.weight", &[v, e])?],
            e,
            dtype.head_format(),
            "embedding",
        )?;
        let mut blocks = Vec::with_capacity(cfg.num_blocks);
        for index in 0..cfg.num_blocks {
            let label = |s: &str| format!("block {index} {s}");
            // The matrices converted to the device format are labelled with their tensor names,
            // which errors about out-of-range values give.
            let tensor = |s: &str| format!("{BLOCK_PREFIX}{index}.{s}");
            blocks.push(match load_block_with(cfg, ckpt, index, false)? {
                BlockWeights::Mlstm(b) => {
                    let i = cfg.mlstm_layer()?.inner_dim;
                    let qkv_bias = match (&b.q_bias, &b.k_bias, &b.v_bias) {
                        (Some(q), Some(k), Some(v)) => Some(concat(&[q, k, v])),
                        _ => None,
                    };
                    Block::Mlstm(MlstmBlock {
                        norm: f32buf(&b.norm, &label("norm"))?,
                        proj_up: w(2 * i, e, &tensor("xlstm.proj_up.weight"))?,
                        proj_up_bias: upload_opt(gpu, pool, &b.proj_up_bias, &label("proj_up bias"))?,
                        conv_weight: f32buf(&b.conv_weight, &label("conv"))?,
                        conv_bias: f32buf(&b.conv_bias, &label("conv bias"))?,
                        qkv: f32buf(&concat(&[&b.q_proj, &b.k_proj, &b.v_proj]), &label("qkv"))?,
                        qkv_bias: upload_opt(gpu, pool, &qkv_bias, &label("qkv bias"))?,
                        gates: f32buf(&concat(&[&b.igate_weight, &b.fgate_weight]), &label("gates"))?,
                        gate_bias: f32buf(&concat(&[&b.igate_bias, &b.fgate_bias]), &label("gate bias"))?,
                        outnorm: f32buf(&b.outnorm, &label("outnorm"))?,
                        skip: f32buf(&b.learnable_skip, &label("skip"))?,
                        proj_down: w(e, i, &tensor("xlstm.proj_down.weight"))?,
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
                            proj_up: w(2 * f.dim, e, &tensor("ffn.proj_up.weight"))?,
                            proj_up_bias: upload_opt(gpu, pool, &f.proj_up_bias, &label("ffn up bias"))?,
                            proj_down: w(e, f.dim, &tensor("ffn.proj_down.weight"))?,
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
                dtype.head_format(),
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

    /// The blocks' projection and feed-forward matrices (not the embedding or lm_head).
    pub(crate) fn block_matrices(&self) -> Vec<&GpuMatrix> {
        self.blocks
            .iter()
            .flat_map(|b| match b {
                Block::Mlstm(m) => vec![&m.proj_up, &m.proj_down],
                Block::Slstm(s) => s.ffn.iter().flat_map(|f| [&f.proj_up, &f.proj_down]).collect(),
            })
            .collect()
    }

    /// The widest feed-forward (0 without any).
    pub(super) fn ffn_dim(&self) -> usize {
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
