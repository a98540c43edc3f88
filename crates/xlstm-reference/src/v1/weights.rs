//! All weights of an `xLSTMLMModel` on the host. Each block is read by the library's own loader
//! (`xlstm_wgpu::model::v1_weights::load_block`, the one the GPU model uses), so the reference and
//! the GPU path see the same tensors after the same cuda-layout conversion.

use std::path::Path;
use xlstm_wgpu::model::checkpoint::Checkpoint;
use xlstm_wgpu::model::v1_config::V1Config;
use xlstm_wgpu::model::v1_weights::{load_block, BlockWeights};
use xlstm_wgpu::Result;

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

impl V1Weights {
    /// Reads every tensor of `cfg`'s model from an opened checkpoint (any of F32/F16/BF16),
    /// converting cuda-layout sLSTM tensors and resolving tied embeddings. Missing tensors and wrong
    /// shapes are `Error::Checkpoint`.
    pub fn load(cfg: &V1Config, ckpt: &Checkpoint) -> Result<Self> {
        cfg.validate()?;
        let (e, v) = (cfg.embedding_dim, cfg.vocab_size);
        let embedding = ckpt.tensor_f32("token_embedding.weight", &[v, e])?;
        let blocks = (0..cfg.blocks.len())
            .map(|index| load_block(cfg, ckpt, index))
            .collect::<Result<Vec<_>>>()?;
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
