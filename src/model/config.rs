//! xLSTM Large configuration (the architecture of xLSTM-7B), read from a Hugging Face style
//! config.json. Accepts both the transformers names (`hidden_size`, `num_hidden_layers`) and the
//! xlstm package names (`embedding_dim`, `num_blocks`).

use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// Upper bounds on the sizes a config.json may give. They are far above any real xLSTM
/// (xLSTM-7B: width 4096, 32 blocks, a vocabulary of 50304) and keep every derived size and every
/// product of sizes far from overflow, so a hostile config is refused when it is parsed, before
/// anything is sized from it.
pub mod limits {
    /// Any width: embedding, head, projection, feed-forward.
    pub const MAX_WIDTH: usize = 1 << 20;
    pub const MAX_VOCAB: usize = 1 << 24;
    pub const MAX_BLOCKS: usize = 1 << 12;
    pub const MAX_HEADS: usize = 1 << 12;
    /// Causal convolution width (the conv window is part of the recurrent state).
    pub const MAX_CONV_KERNEL: usize = 1 << 10;
    /// Rounding multiples and block sizes.
    pub const MAX_MULTIPLE: usize = 1 << 16;
    /// Lengths that only describe training (`chunk_size`, `context_length`).
    pub const MAX_LENGTH: usize = u32::MAX as usize;
}

/// `x` if it is in `1..=max`; otherwise a config error naming the field and the range.
pub(crate) fn in_range(what: &str, x: usize, max: usize) -> Result<usize> {
    if x == 0 || x > max {
        return Err(Error::Config(format!("`{what}` must be between 1 and {max}, got {x}")));
    }
    Ok(x)
}

/// A float from the config that must be finite and positive (a size factor or an epsilon).
pub(crate) fn positive_finite(what: &str, x: f64) -> Result<f64> {
    if !(x.is_finite() && x > 0.0) {
        return Err(Error::Config(format!(
            "`{what}` must be a positive finite number, got {x}"
        )));
    }
    Ok(x)
}

/// Reads `dir/config.json` as JSON: a regular file (or a link to one, as in a download cache) of
/// at most 16 MiB, so a FIFO, a device or a huge file is refused instead of hanging or
/// exhausting memory.
pub(crate) fn read_json(dir: &Path) -> Result<Value> {
    let path = dir.join("config.json");
    let bytes = crate::files::read_input(&path, 16 << 20).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Shape and numerics of an xLSTM Large model. All derived sizes are methods so they cannot drift.
#[derive(Clone, Debug, PartialEq)]
pub struct LargeConfig {
    pub embedding_dim: usize,
    pub num_heads: usize,
    pub num_blocks: usize,
    pub vocab_size: usize,
    pub qk_dim_factor: f64,
    pub v_dim_factor: f64,
    /// FFN hidden width. Taken from the weights when loading (the config value can be rounded differently).
    pub ffn_dim: usize,
    pub norm_eps: f32,
    pub gate_soft_cap: f32,
    pub output_logit_soft_cap: f32,
    pub add_out_norm: bool,
    /// Added to the mLSTM output denominator (mlstm_kernels' `eps`).
    pub cell_eps: f32,
    pub chunk_size: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

impl LargeConfig {
    pub fn qk_dim(&self) -> usize {
        (self.embedding_dim as f64 * self.qk_dim_factor) as usize
    }
    pub fn v_dim(&self) -> usize {
        (self.embedding_dim as f64 * self.v_dim_factor) as usize
    }
    /// Per-head query/key width (DHQK).
    pub fn head_dim_qk(&self) -> usize {
        self.qk_dim() / self.num_heads
    }
    /// Per-head value width (DHV).
    pub fn head_dim_v(&self) -> usize {
        self.v_dim() / self.num_heads
    }
    /// Rows of the fused q|k|v|o|i|f projection: qk + qk + v + v + NH + NH.
    pub fn fused_proj_rows(&self) -> usize {
        2 * self.qk_dim() + 2 * self.v_dim() + 2 * self.num_heads
    }

    /// Reads and checks `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_json(&read_json(dir)?)
    }

    /// Builds the config from parsed JSON and validates it.
    pub fn from_json(json: &Value) -> Result<Self> {
        let int = |names: &[&str]| -> Result<Option<usize>> {
            for n in names {
                if let Some(v) = json.get(*n) {
                    if v.is_null() {
                        continue;
                    }
                    return v
                        .as_u64()
                        .map(|x| Some(x as usize))
                        .ok_or_else(|| Error::Config(format!("`{n}` must be a non-negative integer")));
                }
            }
            Ok(None)
        };
        let float = |names: &[&str], default: f64| -> Result<f64> {
            for n in names {
                if let Some(v) = json.get(*n) {
                    if v.is_null() {
                        continue;
                    }
                    return v
                        .as_f64()
                        .ok_or_else(|| Error::Config(format!("`{n}` must be a number")));
                }
            }
            Ok(default)
        };
        let required = |names: &[&str]| -> Result<usize> {
            int(names)?.ok_or_else(|| Error::Config(format!("missing `{}`", names[0])))
        };
        let boolean = |name: &str, default: bool| -> Result<bool> {
            match json.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_bool()
                    .ok_or_else(|| Error::Config(format!("`{name}` must be true or false"))),
            }
        };
        let token = |name: &str| -> Result<Option<u32>> {
            match json.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(x) if x <= u64::from(u32::MAX) => Ok(Some(x as u32)),
                    _ => Err(Error::Config(format!("`{name}` must be a token id, got {v}"))),
                },
            }
        };

        if boolean("use_bias", false)? {
            return Err(Error::Config(
                "use_bias=true is not supported (xLSTM Large checkpoints have no linear biases)".into(),
            ));
        }
        if let Some(mode) = json.get("weight_mode").and_then(|v| v.as_str()) {
            if mode != "single" && mode != "fused" {
                return Err(Error::Config(format!("unknown weight_mode `{mode}`")));
            }
        }
        let embedding_dim = in_range(
            "embedding_dim",
            required(&["embedding_dim", "hidden_size"])?,
            limits::MAX_WIDTH,
        )?;
        let ffn_proj_factor = positive_finite("ffn_proj_factor", float(&["ffn_proj_factor"], 2.6667)?)?;
        let ffn_multiple = in_range(
            "ffn_round_up_to_multiple_of",
            int(&["ffn_round_up_to_multiple_of"])?.unwrap_or(64).max(1),
            limits::MAX_MULTIPLE,
        )?;
        // In f64 and bounded before the cast, so no integer arithmetic can overflow.
        let ffn_width = ((embedding_dim as f64 * ffn_proj_factor) / ffn_multiple as f64).ceil() * ffn_multiple as f64;
        if ffn_width > limits::MAX_WIDTH as f64 {
            return Err(Error::Config(format!(
                "the ffn width (embedding_dim x ffn_proj_factor) must be at most {}, got {ffn_width}",
                limits::MAX_WIDTH
            )));
        }
        let ffn_dim = ffn_width as usize;
        let cfg = LargeConfig {
            embedding_dim,
            num_heads: required(&["num_heads"])?,
            num_blocks: required(&["num_blocks", "num_hidden_layers"])?,
            vocab_size: required(&["vocab_size"])?,
            qk_dim_factor: float(&["qk_dim_factor"], 0.5)?,
            v_dim_factor: float(&["v_dim_factor"], 1.0)?,
            ffn_dim,
            norm_eps: float(&["norm_eps"], 1e-6)? as f32,
            gate_soft_cap: float(&["gate_soft_cap"], 15.0)? as f32,
            output_logit_soft_cap: float(&["output_logit_soft_cap"], 30.0)? as f32,
            add_out_norm: boolean("add_out_norm", true)?,
            cell_eps: float(&["eps"], 1e-6)? as f32,
            chunk_size: int(&["chunk_size"])?.unwrap_or(64),
            bos_token_id: token("bos_token_id")?,
            eos_token_id: token("eos_token_id")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects shapes the model cannot have, and sizes beyond [`limits`].
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        in_range("embedding_dim", self.embedding_dim, limits::MAX_WIDTH)?;
        in_range("num_heads", self.num_heads, limits::MAX_HEADS)?;
        in_range("num_blocks", self.num_blocks, limits::MAX_BLOCKS)?;
        in_range("vocab_size", self.vocab_size, limits::MAX_VOCAB)?;
        positive_finite("qk_dim_factor", self.qk_dim_factor)?;
        positive_finite("v_dim_factor", self.v_dim_factor)?;
        // Checked before the divisibility tests below use the widths.
        in_range(
            "qk_dim (embedding_dim x qk_dim_factor)",
            self.qk_dim(),
            limits::MAX_WIDTH,
        )?;
        in_range("v_dim (embedding_dim x v_dim_factor)", self.v_dim(), limits::MAX_WIDTH)?;
        in_range("ffn width", self.ffn_dim, limits::MAX_WIDTH)?;
        in_range("chunk_size", self.chunk_size, limits::MAX_LENGTH)?;
        if !(self.cell_eps.is_finite() && self.cell_eps >= 0.0) {
            return bad(format!("`eps` must be a finite number >= 0, got {}", self.cell_eps));
        }
        for (name, id) in [("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id)] {
            if let Some(id) = id.filter(|&id| id as usize >= self.vocab_size) {
                return bad(format!("`{name}` {id} is not below vocab_size {}", self.vocab_size));
            }
        }
        if !self.qk_dim().is_multiple_of(self.num_heads) || !self.v_dim().is_multiple_of(self.num_heads) {
            return bad(format!(
                "qk_dim {} and v_dim {} must be divisible by num_heads {}",
                self.qk_dim(),
                self.v_dim(),
                self.num_heads
            ));
        }
        if !self.norm_eps.is_finite()
            || self.norm_eps <= 0.0
            || !self.gate_soft_cap.is_finite()
            || self.gate_soft_cap <= 0.0
        {
            return bad("norm_eps and gate_soft_cap must be positive".into());
        }
        if !self.output_logit_soft_cap.is_finite() || self.output_logit_soft_cap < 0.0 {
            return bad("output_logit_soft_cap must be >= 0".into());
        }
        Ok(())
    }
}
