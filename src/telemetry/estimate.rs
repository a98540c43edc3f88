//! What a run will need before the model is loaded: weights, recurrent state, activations (one
//! prefill segment plus the decode workspace) and host-side outputs. Used to refuse a model that
//! cannot fit under the hard limit, with the numbers, instead of failing halfway.

use crate::error::{Error, Result};
use crate::model::checkpoint::Checkpoint;
use crate::model::config::LargeConfig;
use crate::model::large::ffn_dim_from_checkpoint;
use crate::model::quantized::Quantization;
use crate::model::v1_config::{detect_family, BlockKind, Family, V1Config};
use crate::model::WeightDtype;
use crate::session::SessionOptions;
use serde::Serialize;
use std::path::Path;

/// Estimated bytes of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Estimate {
    pub weights: u64,
    pub state: u64,
    pub activations: u64,
    /// Host memory for results (every position's logits of `score`, which streams the rest of its
    /// output to disk).
    pub host: u64,
}

const MIB: f64 = (1u64 << 20) as f64;

/// Bytes of a weight matrix: rows padded to 8 elements, allocations to 256 bytes. Sizes are
/// computed in f64 so absurd shapes saturate instead of overflowing.
fn matrix(rows: f64, cols: f64, dtype: WeightDtype) -> f64 {
    let row = dtype.row_bytes(dtype.padded_cols(cols as usize)) as f64;
    (rows * row / 256.0).ceil() * 256.0
}

fn vector(n: f64) -> f64 {
    ((n * 4.0).max(16.0) / 256.0).ceil() * 256.0
}

impl Estimate {
    pub fn total(&self) -> u64 {
        self.weights
            .saturating_add(self.state)
            .saturating_add(self.activations)
            .saturating_add(self.host)
    }

    /// The estimate for a model of shape `cfg`. `prompt_tokens` bounds the prefill segment;
    /// `all_logits` when every position's logits are kept (score).
    pub fn for_config(
        cfg: &LargeConfig,
        dtype: WeightDtype,
        opts: &SessionOptions,
        prompt_tokens: usize,
        all_logits: bool,
    ) -> Estimate {
        let f64_of = |n: usize| n as f64;
        let (e, v, nh) = (f64_of(cfg.embedding_dim), f64_of(cfg.vocab_size), f64_of(cfg.num_heads));
        let (qk, vd, f) = (f64_of(cfg.qk_dim()), f64_of(cfg.v_dim()), f64_of(cfg.ffn_dim));
        let (dqk, dv) = (qk / nh.max(1.0), vd / nh.max(1.0));
        let proj_rows = 2.0 * qk + 2.0 * vd + 2.0 * nh;
        let blocks = f64_of(cfg.num_blocks);
        let per_block = vector(e)
            + matrix(proj_rows, e, dtype)
            + vector(2.0 * nh)
            + vector(vd)
            + matrix(e, vd, dtype)
            + vector(e)
            + matrix(2.0 * f, e, dtype)
            + matrix(e, f, dtype);
        let weights = 2.0 * matrix(v, e, dtype.head_format())
            + blocks * per_block
            + if cfg.add_out_norm { vector(e) } else { 0.0 };
        let state = blocks * (nh * dqk * dv * 4.0 + 2.0 * nh * dqk * 4.0 + 2.0 * nh * 4.0);

        // One workspace, as large as `Workspace::new` makes it (f32 everywhere).
        let workspace = |tokens: usize, logit_rows: usize, ids: usize| -> f64 {
            let t = tokens as f64;
            let chunks = tokens.div_ceil(opts.schedule.chunk_size.max(1)) as f64;
            let floats = ids.max(tokens) as f64
                + 2.0 * t * e
                + t * proj_rows
                + 2.0 * nh * t
                + (chunks + 1.0) * nh * (dqk * dv + dqk + 1.0)
                + 2.0 * t * vd
                + 3.0 * t * f
                + logit_rows.max(1) as f64 * v;
            floats * 4.0
        };
        let seg = prompt_tokens.clamp(1, opts.max_segment_tokens.max(1));
        // Long segments over quantized weights expand the largest block matrix to f16 rows
        // (`Model::workspace`; counted whether or not the adapter has the matrix units).
        let staging = if dtype.is_quantized() && seg >= crate::ops::STAGED_MIN_TOKENS {
            let largest = [proj_rows * e, e * vd, 2.0 * f * e, e * f]
                .into_iter()
                .fold(0.0, f64::max);
            (2.0 * largest).max(crate::ops::WEIGHT_STAGING_BYTES as f64)
        } else {
            0.0
        };
        let prefill = workspace(seg, if all_logits { seg } else { 1 }, seg) + staging;
        let decode = workspace(1, 1, 65);
        // The pool rounds to size classes (under 25% waste) and keeps released buffers for reuse.
        let activations = (prefill + decode) * 1.25;
        // Every position's logits, plus the segment being read back and appended to them.
        let host = if all_logits {
            (prompt_tokens as f64 + seg as f64) * v * 4.0
        } else {
            0.0
        };
        // `as u64` saturates.
        Estimate {
            weights: weights as u64,
            state: state as u64,
            activations: activations as u64,
            host: host as u64,
        }
    }

    /// The estimate for the checkpoint in `dir` (reads config.json and the checkpoint headers).
    /// An error when they disagree on the main sizes (loading then reports the real problem),
    /// or when `dir` is a quantized checkpoint of another format than `dtype`.
    pub fn for_dir(
        dir: &Path,
        dtype: WeightDtype,
        opts: &SessionOptions,
        prompt_tokens: usize,
        all_logits: bool,
    ) -> Result<Estimate> {
        let json = crate::model::read_config_json(dir)?;
        let ckpt = Checkpoint::open(dir)?;
        let stored = Quantization::of_checkpoint(&json, &ckpt)?;
        let dtype = Quantization::resolve(Some(dtype), stored)?;
        if detect_family(&json) == Family::V1 {
            let cfg = V1Config::from_json(&json)?;
            return Self::for_v1(&cfg, &ckpt, dtype, opts, prompt_tokens, all_logits);
        }
        let mut cfg = LargeConfig::from_json(&json)?;
        if let Some(f) = ffn_dim_from_checkpoint(&ckpt) {
            cfg.ffn_dim = f;
        }
        // The config must agree with the checkpoint on the sizes that dominate the estimate;
        // otherwise loading reports the real problem, not this estimate.
        let (v, e, last) = (cfg.vocab_size, cfg.embedding_dim, cfg.num_blocks.saturating_sub(1));
        let emb = ["backbone.embeddings.weight", "embedding.weight"]
            .into_iter()
            .find(|n| ckpt.contains(n));
        let consistent = emb.is_some_and(|n| ckpt.has_shape(n, &[v, e]))
            && ckpt.has_shape("lm_head.weight", &[v, e])
            && ckpt.has_shape(&format!("backbone.blocks.{last}.norm_mlstm.weight"), &[e]);
        if !consistent {
            return Err(Error::Checkpoint("the config does not match the checkpoint".into()));
        }
        Ok(Self::for_config(&cfg, dtype, opts, prompt_tokens, all_logits))
    }

    /// The estimate for an original-xLSTM checkpoint: weights from the tensors it holds (the large
    /// projections in `dtype`, the small block-diagonal and norm tensors in f32, as `model::v1`
    /// uploads them), state and activations as `model::v1` allocates them.
    fn for_v1(
        cfg: &V1Config,
        ckpt: &Checkpoint,
        dtype: WeightDtype,
        opts: &SessionOptions,
        prompt_tokens: usize,
        all_logits: bool,
    ) -> Result<Estimate> {
        let (e, v) = (cfg.embedding_dim as f64, cfg.vocab_size as f64);
        if !ckpt.has_shape("token_embedding.weight", &[cfg.vocab_size, cfg.embedding_dim]) {
            return Err(Error::Checkpoint("the config does not match the checkpoint".into()));
        }
        let big = [
            "proj_up.weight",
            "proj_down.weight",
            "token_embedding.weight",
            "lm_head.weight",
        ];
        let mut weights = 0.0;
        for name in ckpt.names() {
            let shape = ckpt.shape(name).unwrap_or(&[]);
            let n: f64 = shape.iter().map(|&d| d as f64).product();
            let head = name.ends_with("token_embedding.weight") || name.ends_with("lm_head.weight");
            let stored = ckpt.tensor(name).and_then(|t| Some((t, ckpt.scale_bytes(t)?)));
            weights += if let Some((t, scales)) = stored {
                // Stored quantized: uploaded as stored.
                ((ckpt.bytes(t).len() + scales.len()) as f64 / 256.0).ceil() * 256.0
            } else if big.iter().any(|b| name.ends_with(b)) && shape.len() == 2 {
                matrix(
                    shape[0] as f64,
                    shape[1] as f64,
                    if head { dtype.head_format() } else { dtype },
                )
            } else {
                vector(n)
            };
        }
        let (i, nh, dh, ks_m) = match &cfg.mlstm {
            Some(m) => (
                m.inner_dim as f64,
                m.num_heads as f64,
                m.head_dim() as f64,
                m.conv1d_kernel_size as f64,
            ),
            None => (0.0, 0.0, 0.0, 0.0),
        };
        let ks_s = cfg.slstm.as_ref().map_or(0.0, |s| s.conv1d_kernel_size as f64);
        let state: f64 = cfg
            .blocks
            .iter()
            .map(|b| match b {
                BlockKind::Mlstm => (ks_m * i + nh * dh * dh + 2.0 * nh * dh + 2.0 * nh) * 4.0,
                BlockKind::Slstm => (ks_s * e + 8.0 * e) * 4.0,
            })
            .sum();
        let ffn = cfg.feedforward.as_ref().map_or(0.0, |_| {
            // proj_up is [2F, E] (proj_down's rows are padded when stored quantized).
            ckpt.names()
                .filter(|n| n.ends_with("ffn.proj_up.weight"))
                .filter_map(|n| ckpt.shape(n).and_then(|s| s.first()).map(|&f| (f / 2) as f64))
                .fold(0.0, f64::max)
        });
        // Per-token widths of `model::v1::Workspace`.
        let row = 2.0 * e + (2.0 * i).max(2.0 * ffn) + 2.0 * i.max(e) + 3.0 * i + 4.0 * nh + i.max(ffn) + 4.0 * e;
        let workspace = |tokens: usize, logit_rows: usize, ids: usize| -> f64 {
            let chunks = tokens.div_ceil(opts.schedule.chunk_size.max(1)) as f64;
            let floats = ids.max(tokens) as f64
                + tokens as f64 * row
                + (chunks + 1.0) * nh * (dh * dh + dh + 1.0)
                + logit_rows.max(1) as f64 * v;
            floats * 4.0
        };
        let seg = prompt_tokens.clamp(1, opts.max_segment_tokens.max(1));
        // Long segments over quantized weights expand the largest block matrix to f16 rows
        // (`Model::workspace`; counted whether or not the adapter has the matrix units).
        let staging = if dtype.is_quantized() && seg >= crate::ops::STAGED_MIN_TOKENS {
            let largest = [2.0 * i * e, 2.0 * ffn * e].into_iter().fold(0.0, f64::max);
            (2.0 * largest).max(crate::ops::WEIGHT_STAGING_BYTES as f64)
        } else {
            0.0
        };
        let prefill = workspace(seg, if all_logits { seg } else { 1 }, seg) + staging;
        let decode = workspace(1, 1, 65);
        // Every position's logits, plus the segment being read back and appended to them.
        let host = if all_logits {
            (prompt_tokens as f64 + seg as f64) * v * 4.0
        } else {
            0.0
        };
        Ok(Estimate {
            weights: weights as u64,
            state: state as u64,
            activations: ((prefill + decode) * 1.25) as u64,
            host: host as u64,
        })
    }

    /// "weights 3.9 MiB + state 0.1 MiB + activations 1.2 MiB = 5.2 MiB".
    pub fn describe(&self) -> String {
        let mut s = format!(
            "weights {:.1} MiB + state {:.1} MiB + activations {:.1} MiB",
            self.weights as f64 / MIB,
            self.state as f64 / MIB,
            self.activations as f64 / MIB
        );
        if self.host > 0 {
            s += &format!(" + host results {:.1} MiB", self.host as f64 / MIB);
        }
        s + &format!(" = {:.1} MiB", self.total() as f64 / MIB)
    }
}
