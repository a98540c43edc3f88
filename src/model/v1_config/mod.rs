//! Configuration of the ORIGINAL xLSTM language model (the `xlstm` package's `xLSTMLMModel`, NeurIPS
//! 2024: a stack of v1 mLSTM and sLSTM blocks), read from the `config.json` that
//! `dataclasses.asdict(xLSTMLMModelConfig)` writes (reference `shared/reference/xlstm.md` §3.1).
//!
//! The JSON nests the block configs: `mlstm_block.mlstm` (an `mLSTMLayerConfig`),
//! `slstm_block.slstm` (an `sLSTMLayerConfig`) and `slstm_block.feedforward` (a `FeedForwardConfig`);
//! an absent block kind is `null`. `slstm_at` is a list of 0-based block indices or `"all"`; with
//! `mlstm_block: null` every block is an sLSTM block (as in the package's `__post_init__`).
//!
//! Known quirks of the package's dump, handled here:
//! - `slstm_block.feedforward` records `embedding_dim: -1` and `_proj_up_dim: 0` (the package sets the
//!   real values only on per-block deep copies). Both are ignored; [`FeedForwardConfig::nominal_dim`]
//!   recomputes the width the package uses, but a loader should take the width from the weight
//!   shapes (`ffn.proj_down.weight` is `[E, F]`).
//! - The sLSTM `dtype*`, `batch_size`, `*_shape`, init and gradient fields are CUDA-kernel or training
//!   settings with no effect on inference; they are ignored. `internal_input_shape` is stale too.
//! - `dropout` fields are ignored (inference).

use super::config::{in_range, limits};
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

mod parse;
#[cfg(test)]
mod tests;

use parse::{parse_feedforward, parse_mlstm, parse_slstm, slstm_conv_kernel, Obj};

/// LayerNorm / GroupNorm epsilon of every v1 norm (XL `components/ln.py`, fixed, not in the config).
pub const V1_NORM_EPS: f64 = 1e-5;

/// Which model family a config.json describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// xLSTM Large / xLSTM-7B (`xLSTMLargeConfig`, transformers `xLSTMConfig`).
    Large,
    /// The original xLSTM (`xLSTMLMModelConfig`: mLSTM and sLSTM blocks).
    V1,
}

/// Tells the two config.json formats apart: v1 configs have `mlstm_block` / `slstm_block` /
/// `slstm_at` keys; anything else (top-level `num_heads`, or `model_type: "xlstm"` with
/// `hidden_size`) is treated as xLSTM Large, whose parser reports what is missing.
pub fn detect_family(json: &Value) -> Family {
    let has = |k: &str| json.get(k).is_some();
    if has("mlstm_block") || has("slstm_block") || has("slstm_at") {
        Family::V1
    } else {
        Family::Large
    }
}

/// The kind of one block of the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// v1 mLSTM block: `x += mLSTMLayer(LN(x))` (no feed-forward).
    Mlstm,
    /// sLSTM block: `x += sLSTMLayer(LN(x)); x += FFN(LN(x))` (FFN unless `feedforward` is null).
    Slstm,
}

/// The storage layout of the sLSTM `_recurrent_kernel_` and `_bias_` tensors (the backend the
/// checkpoint was saved with; the math is the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlstmBackend {
    /// R `[NH, 4·DH, DH]` (`R[h, g·DH+j, d]`), bias `[4·E]` ordered `[gate][head][DH]`.
    Vanilla,
    /// R `[NH, DH, 4·DH]` (`R[h, d, g·DH+j]`), bias `[4·E]` ordered `[head][gate][DH]`.
    Cuda,
}

pub use crate::ops::v1::Activation;

impl Activation {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "relu" => Activation::Relu,
            "relu^2" => Activation::Relu2,
            "sigmoid" => Activation::Sigmoid,
            "swish" => Activation::Swish,
            "selu" => Activation::Selu,
            other => {
                return Err(Error::Config(format!(
                    "unknown feed-forward act_fn `{other}` (expected gelu, relu, relu^2, sigmoid, swish or selu)"
                )))
            }
        })
    }
}

/// `mlstm_block.mlstm` (`mLSTMLayerConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct MlstmLayerConfig {
    pub num_heads: usize,
    /// Depthwise causal conv width on the q/k path (the package cannot build 0 for mLSTM).
    pub conv1d_kernel_size: usize,
    /// Block size `bs` of the block-diagonal q/k/v projections (`[I/bs, bs, bs]` weights).
    pub qkv_proj_blocksize: usize,
    pub proj_factor: f64,
    pub round_proj_up_dim_up: bool,
    pub round_proj_up_to_multiple_of: usize,
    /// Inner (up-projected) width `I`; the cell runs `num_heads` heads of `I / num_heads`.
    pub inner_dim: usize,
}

impl MlstmLayerConfig {
    /// Per-head width `DH = I / NH` (q, k and v alike).
    pub fn head_dim(&self) -> usize {
        self.inner_dim / self.num_heads
    }

    /// Number of `bs × bs` blocks of each q/k/v projection, `I / bs`.
    pub fn qkv_blocks(&self) -> usize {
        self.inner_dim / self.qkv_proj_blocksize
    }
}

/// `slstm_block.slstm` (`sLSTMLayerConfig` ⊃ `sLSTMCellConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct SlstmLayerConfig {
    pub num_heads: usize,
    /// Per-head width `DH = E / NH`.
    pub head_dim: usize,
    /// Depthwise causal conv width on the i/f path; 0 means no convolution.
    pub conv1d_kernel_size: usize,
    pub backend: SlstmBackend,
    /// Whether the output GroupNorm has a (1 + w) weight; without it the scale is 1.
    pub group_norm_weight: bool,
}

/// `slstm_block.feedforward` (`FeedForwardConfig`, `ff_type` "ffn_gated").
#[derive(Clone, Debug, PartialEq)]
pub struct FeedForwardConfig {
    pub proj_factor: f64,
    pub round_proj_up_dim_up: bool,
    pub round_proj_up_to_multiple_of: usize,
    pub act_fn: Activation,
    /// Linear biases on proj_up / proj_down.
    pub bias: bool,
    /// The width the package computes for this stack's `embedding_dim` (`ceil(pf·E/m)·m`). The
    /// dumped `_proj_up_dim` is stale (0); prefer the weight shape when loading.
    pub nominal_dim: usize,
}

/// A whole `xLSTMLMModelConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct V1Config {
    pub embedding_dim: usize,
    pub num_blocks: usize,
    pub vocab_size: usize,
    /// Only sizes the mLSTM parallel-forward causal mask in the package (`None` for -1); the
    /// recurrent path has no length limit.
    pub context_length: Option<usize>,
    pub add_post_blocks_norm: bool,
    /// Linear biases in the mLSTM layers (proj_up, q/k/v, proj_down).
    pub bias: bool,
    /// lm_head shares the token embedding.
    pub tie_weights: bool,
    pub mlstm: Option<MlstmLayerConfig>,
    pub slstm: Option<SlstmLayerConfig>,
    /// The sLSTM blocks' feed-forward (`None`: sLSTM blocks without FFN).
    pub feedforward: Option<FeedForwardConfig>,
    /// Kind of every block, `num_blocks` long.
    pub blocks: Vec<BlockKind>,
    /// Optional top-level `bos_token_id` / `eos_token_id` (not part of the package's dataclass;
    /// model directories may add them so prompts start the way the model was trained).
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

/// An optional non-negative token id at the top level of the config.
fn token_id(json: &Value, key: &str) -> Result<Option<u32>> {
    match json.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(x) if x <= u64::from(u32::MAX) => Ok(Some(x as u32)),
            _ => Err(Error::Config(format!("`{key}` must be a token id, got {v}"))),
        },
    }
}

/// The package's `UpProjConfigMixin._set_proj_up_dim`, in f64 like Python floats.
fn proj_up_dim(proj_factor: f64, embedding_dim: usize, round_up: bool, multiple: usize) -> usize {
    let multiplier = proj_factor * embedding_dim as f64 / multiple as f64;
    let multiplier = if round_up {
        multiplier.ceil()
    } else {
        multiplier.floor()
    };
    (multiplier * multiple as f64) as usize
}

impl V1Config {
    /// Reads and checks `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_json(&super::config::read_json(dir)?)
    }

    /// Builds the config from parsed JSON (the `dataclasses.asdict` layout) and validates it.
    /// Fields the package gives defaults may be omitted; `embedding_dim`, `num_blocks`,
    /// `vocab_size` and the block config of every block kind in use are required.
    pub fn from_json(json: &Value) -> Result<Self> {
        let top = Obj::new(json, "")?;
        let embedding_dim = in_range("embedding_dim", top.required_uint("embedding_dim")?, limits::MAX_WIDTH)?;
        // Bounded before the block map below is sized from it.
        let num_blocks = in_range("num_blocks", top.required_uint("num_blocks")?, limits::MAX_BLOCKS)?;
        let vocab_size = in_range("vocab_size", top.required_uint("vocab_size")?, limits::MAX_VOCAB)?;

        let mlstm_block = top.child("mlstm_block");
        let slstm_block = top.child("slstm_block");
        let mlstm = match mlstm_block {
            None => None,
            Some(b) => {
                let b = Obj::new(b, "mlstm_block")?;
                let layer = b
                    .child("mlstm")
                    .ok_or_else(|| Error::Config("missing `mlstm_block.mlstm`".into()))?;
                Some(parse_mlstm(layer, embedding_dim)?)
            }
        };
        let (slstm, feedforward) = match slstm_block {
            None => (None, None),
            Some(b) => {
                let b = Obj::new(b, "slstm_block")?;
                let layer = b
                    .child("slstm")
                    .ok_or_else(|| Error::Config("missing `slstm_block.slstm`".into()))?;
                let ff = match b.child("feedforward") {
                    None => None,
                    Some(f) => Some(parse_feedforward(f, embedding_dim)?),
                };
                (Some(parse_slstm(layer, embedding_dim)?), ff)
            }
        };
        if mlstm.is_none() && slstm.is_none() {
            return Err(Error::Config(
                "a v1 config needs `mlstm_block` or `slstm_block` (both are missing or null)".into(),
            ));
        }

        // Block map, exactly like xLSTMBlockStackConfig.__post_init__ / _create_block_map.
        let mut blocks = vec![BlockKind::Mlstm; num_blocks];
        let all_slstm = mlstm.is_none() || top.get("slstm_at").and_then(Value::as_str) == Some("all");
        if all_slstm {
            blocks.fill(BlockKind::Slstm);
        } else {
            match top.get("slstm_at") {
                None => {}
                Some(Value::Array(list)) => {
                    for entry in list {
                        let index = entry.as_u64().ok_or_else(|| {
                            Error::Config(format!("`slstm_at` entries must be block indices, got {entry}"))
                        })? as usize;
                        if index >= num_blocks {
                            return Err(Error::Config(format!(
                                "slstm_at names block {index}, but there are only {num_blocks} blocks"
                            )));
                        }
                        blocks[index] = BlockKind::Slstm;
                    }
                }
                Some(other) => {
                    return Err(Error::Config(format!(
                        "`slstm_at` must be a list of block indices or \"all\", got {other}"
                    )))
                }
            }
        }
        if let Some(map) = top.get("_block_map") {
            let text = map
                .as_str()
                .ok_or_else(|| Error::Config(format!("`_block_map` must be a string, got {map}")))?;
            let mut dumped = Vec::new();
            for part in text.split(',') {
                dumped.push(match part.trim() {
                    "0" => BlockKind::Mlstm,
                    "1" => BlockKind::Slstm,
                    other => {
                        return Err(Error::Config(format!(
                            "unknown block kind `{other}` in `_block_map` \"{text}\" (0 = mLSTM, 1 = sLSTM)"
                        )))
                    }
                });
            }
            if dumped != blocks {
                return Err(Error::Config(format!(
                    "`_block_map` \"{text}\" does not match slstm_at / num_blocks {num_blocks}"
                )));
            }
        }
        if blocks.contains(&BlockKind::Slstm) && slstm.is_none() {
            return Err(Error::Config(
                "slstm_at names sLSTM blocks but `slstm_block` is null".into(),
            ));
        }

        let context_length = match top.get("context_length") {
            None => None,
            Some(v) => match v.as_i64() {
                Some(x) if x <= 0 => None,
                Some(x) => Some(in_range(
                    "context_length",
                    usize::try_from(x).unwrap_or(usize::MAX),
                    limits::MAX_LENGTH,
                )?),
                None => return Err(Error::Config(format!("`context_length` must be an integer, got {v}"))),
            },
        };
        let cfg = V1Config {
            embedding_dim,
            num_blocks,
            vocab_size,
            context_length,
            add_post_blocks_norm: top.boolean("add_post_blocks_norm", true)?,
            bias: top.boolean("bias", false)?,
            tie_weights: top.boolean("tie_weights", false)?,
            mlstm,
            slstm,
            feedforward,
            blocks,
            bos_token_id: token_id(json, "bos_token_id")?,
            eos_token_id: token_id(json, "eos_token_id")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects shapes the model cannot have and sizes beyond [`limits`] (also for configs built
    /// in code).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        in_range("embedding_dim", self.embedding_dim, limits::MAX_WIDTH)?;
        in_range("num_blocks", self.num_blocks, limits::MAX_BLOCKS)?;
        in_range("vocab_size", self.vocab_size, limits::MAX_VOCAB)?;
        for (name, id) in [("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id)] {
            if let Some(id) = id.filter(|&id| id as usize >= self.vocab_size) {
                return bad(format!("`{name}` {id} is not below vocab_size {}", self.vocab_size));
            }
        }
        if self.blocks.len() != self.num_blocks {
            return bad(format!(
                "{} block kinds for num_blocks {}",
                self.blocks.len(),
                self.num_blocks
            ));
        }
        if self.blocks.contains(&BlockKind::Mlstm) {
            let Some(m) = &self.mlstm else {
                return bad("mLSTM blocks without an mLSTM layer config".into());
            };
            in_range("mLSTM num_heads", m.num_heads, limits::MAX_HEADS)?;
            in_range("mLSTM qkv_proj_blocksize", m.qkv_proj_blocksize, limits::MAX_MULTIPLE)?;
            in_range(
                "mLSTM conv1d_kernel_size",
                m.conv1d_kernel_size,
                limits::MAX_CONV_KERNEL,
            )?;
            in_range("mLSTM inner dimension", m.inner_dim, limits::MAX_WIDTH)?;
            if !m.inner_dim.is_multiple_of(m.num_heads) || !m.inner_dim.is_multiple_of(m.qkv_proj_blocksize) {
                return bad(format!(
                    "mLSTM inner dim {} must be divisible by num_heads {} and qkv_proj_blocksize {}",
                    m.inner_dim, m.num_heads, m.qkv_proj_blocksize
                ));
            }
        }
        if self.blocks.contains(&BlockKind::Slstm) {
            let Some(s) = &self.slstm else {
                return bad("sLSTM blocks without an sLSTM layer config".into());
            };
            slstm_conv_kernel(s.conv1d_kernel_size)?;
            if s.num_heads == 0 || s.num_heads.checked_mul(s.head_dim) != Some(self.embedding_dim) {
                return bad(format!(
                    "sLSTM num_heads {} x head_dim {} must equal embedding_dim {}",
                    s.num_heads, s.head_dim, self.embedding_dim
                ));
            }
            if let Some(f) = &self.feedforward {
                in_range("feed-forward width", f.nominal_dim, limits::MAX_WIDTH)?;
            }
        }
        Ok(())
    }

    /// Kind of block `index`.
    pub fn block_kind(&self, index: usize) -> BlockKind {
        self.blocks[index]
    }

    /// The mLSTM layer config (`validate` guarantees it where there are mLSTM blocks; a config
    /// built in code without it is an error here rather than a panic).
    pub fn mlstm_layer(&self) -> Result<&MlstmLayerConfig> {
        self.mlstm
            .as_ref()
            .ok_or_else(|| Error::Config("mLSTM blocks without an mLSTM layer config".into()))
    }

    /// The sLSTM layer config (as [`mlstm_layer`](Self::mlstm_layer)).
    pub fn slstm_layer(&self) -> Result<&SlstmLayerConfig> {
        self.slstm
            .as_ref()
            .ok_or_else(|| Error::Config("sLSTM blocks without an sLSTM layer config".into()))
    }
}
