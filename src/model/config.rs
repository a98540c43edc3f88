//! xLSTM Large configuration (the architecture of xLSTM-7B), read from a Hugging Face style
//! config.json. Accepts both the transformers names (`hidden_size`, `num_hidden_layers`) and the
//! xlstm package names (`embedding_dim`, `num_blocks`).

use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

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
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Self::from_json(&json)
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
        let token = |name: &str| -> Option<u32> { json.get(name).and_then(|v| v.as_u64()).map(|x| x as u32) };

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
        let embedding_dim = required(&["embedding_dim", "hidden_size"])?;
        let ffn_proj_factor = float(&["ffn_proj_factor"], 2.6667)?;
        let ffn_multiple = int(&["ffn_round_up_to_multiple_of"])?.unwrap_or(64).max(1);
        let ffn_dim = (((embedding_dim as f64 * ffn_proj_factor) / ffn_multiple as f64).ceil() as usize)
            .checked_mul(ffn_multiple)
            .ok_or_else(|| Error::Config("embedding_dim * ffn_proj_factor is too large".into()))?;
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
            bos_token_id: token("bos_token_id"),
            eos_token_id: token("eos_token_id"),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects shapes the model cannot have.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.embedding_dim == 0 || self.num_heads == 0 || self.num_blocks == 0 || self.vocab_size == 0 {
            return bad("embedding_dim, num_heads, num_blocks and vocab_size must be positive".into());
        }
        if self.qk_dim() == 0 || self.v_dim() == 0 {
            return bad("qk_dim_factor and v_dim_factor must give positive widths".into());
        }
        if !self.qk_dim().is_multiple_of(self.num_heads) || !self.v_dim().is_multiple_of(self.num_heads) {
            return bad(format!(
                "qk_dim {} and v_dim {} must be divisible by num_heads {}",
                self.qk_dim(),
                self.v_dim(),
                self.num_heads
            ));
        }
        if self.norm_eps.is_nan()
            || self.norm_eps <= 0.0
            || !self.gate_soft_cap.is_finite()
            || self.gate_soft_cap <= 0.0
        {
            return bad("norm_eps and gate_soft_cap must be positive".into());
        }
        if !self.output_logit_soft_cap.is_finite() || self.output_logit_soft_cap < 0.0 {
            return bad("output_logit_soft_cap must be >= 0".into());
        }
        if self.chunk_size == 0 {
            return bad("chunk_size must be positive".into());
        }
        Ok(())
    }
}
