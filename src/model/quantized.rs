//! Quantized checkpoints on disk (`xlstm quantize`; the format is in ARCHITECTURE.md, "Quantized
//! checkpoints on disk"): the `quantization` field of config.json and the matching safetensors
//! metadata, which matrices a checkpoint stores quantized, and the weight format a load of such a
//! checkpoint uses.
//!
//! A quantized matrix `NAME` is stored as the bytes of its [`EncodedMatrix`](crate::gpu::quant::EncodedMatrix):
//! `NAME` (U8, `[rows, value bytes per row]`) and `NAME.scales` (F16, `[rows, kp / 32]` for q8,
//! `[rows, kp / 32, 2]` for q4). `model::checkpoint` pairs and checks them when it opens the files;
//! `model::weights::upload_matrix` uploads them without re-quantizing.

use super::checkpoint::Checkpoint;
use super::config::LargeConfig;
use super::v1_config::{detect_family, BlockKind, Family, V1Config};
use crate::error::{Error, Result};
use crate::gpu::quant::GROUP;
use crate::gpu::WeightDtype;
use std::collections::HashMap;

/// The version of the on-disk format this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// The config.json field that marks a quantized checkpoint.
pub const CONFIG_FIELD: &str = "quantization";

/// Safetensors metadata keys of a quantized checkpoint file.
pub const META_FORMAT: &str = "xlstm.quantization";
pub const META_GROUP_SIZE: &str = "xlstm.group_size";
pub const META_VERSION: &str = "xlstm.format_version";

/// How a checkpoint's matrices are quantized: the `--dtype` it was made for (q8 or q4; under
/// q4 the embedding and lm_head are q8, `WeightDtype::head_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantization {
    pub format: WeightDtype,
}

impl Quantization {
    pub fn new(format: WeightDtype) -> Result<Self> {
        if !format.is_quantized() {
            return Err(Error::Input(format!(
                "`{}` is not a quantized format (q8, q4)",
                format.name()
            )));
        }
        Ok(Quantization { format })
    }

    /// The `quantization` field of a parsed config.json: `None` when there is none.
    pub fn from_config(json: &serde_json::Value) -> Result<Option<Self>> {
        let Some(q) = json.get(CONFIG_FIELD) else {
            return Ok(None);
        };
        let bad = |what: String| Error::Checkpoint(format!("config.json `{CONFIG_FIELD}`: {what}"));
        let obj = q.as_object().ok_or_else(|| {
            bad(format!(
                "expected an object {{\"format\", \"group_size\", \"version\"}}, found {q}"
            ))
        })?;
        let field = |name: &str| obj.get(name).ok_or_else(|| bad(format!("no `{name}`")));
        let format = field("format")?;
        let format = format
            .as_str()
            .ok_or_else(|| bad(format!("`format` must be a string, found {format}")))?;
        let group = field("group_size")?;
        let group = group
            .as_u64()
            .ok_or_else(|| bad(format!("`group_size` must be a positive integer, found {group}")))?;
        let version = field("version")?;
        let version = version
            .as_u64()
            .ok_or_else(|| bad(format!("`version` must be a positive integer, found {version}")))?;
        Self::parse(format, group, version).map(Some).map_err(bad)
    }

    /// The quantization a safetensors file's metadata declares: `None` when it names none.
    pub fn from_metadata(meta: Option<&HashMap<String, String>>) -> std::result::Result<Option<Self>, String> {
        let Some(meta) = meta else { return Ok(None) };
        let Some(format) = meta.get(META_FORMAT) else {
            return Ok(None);
        };
        let number = |key: &str| -> std::result::Result<u64, String> {
            let v = meta
                .get(key)
                .ok_or_else(|| format!("metadata has `{META_FORMAT}` but no `{key}`"))?;
            v.parse()
                .map_err(|_| format!("metadata `{key}` must be a positive integer, found `{v}`"))
        };
        Self::parse(format, number(META_GROUP_SIZE)?, number(META_VERSION)?).map(Some)
    }

    fn parse(format: &str, group: u64, version: u64) -> std::result::Result<Self, String> {
        let format = match format {
            "q8" => WeightDtype::Q8,
            "q4" => WeightDtype::Q4,
            other => return Err(format!("unknown format `{other}` (this build reads q8 and q4)")),
        };
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version} is not supported (this build reads version {FORMAT_VERSION})"
            ));
        }
        if group != GROUP as u64 {
            return Err(format!("group size {group} is not supported (only {GROUP})"));
        }
        Ok(Quantization { format })
    }

    /// The config.json field.
    pub fn config_value(&self) -> serde_json::Value {
        serde_json::json!({ "format": self.format.name(), "group_size": GROUP, "version": FORMAT_VERSION })
    }

    /// The safetensors metadata.
    pub fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            (META_FORMAT.to_string(), self.format.name().to_string()),
            (META_GROUP_SIZE.to_string(), GROUP.to_string()),
            (META_VERSION.to_string(), FORMAT_VERSION.to_string()),
        ])
    }

    /// The weight format of a load: the one asked for, which must be the checkpoint's own for a
    /// quantized checkpoint (`stored`); without a request the checkpoint's, else f16.
    pub fn resolve(requested: Option<WeightDtype>, stored: Option<Quantization>) -> Result<WeightDtype> {
        match (requested, stored) {
            (Some(d), Some(q)) if d != q.format => Err(Error::Input(format!(
                "this checkpoint is quantized to {0}; load it with --dtype {0} (or without --dtype)",
                q.format.name()
            ))),
            (Some(d), _) => Ok(d),
            (None, Some(q)) => Ok(q.format),
            (None, None) => Ok(WeightDtype::F16),
        }
    }

    /// The quantization of the checkpoint that config.json `json` and the opened files `ckpt`
    /// describe; they must agree.
    pub fn of_checkpoint(json: &serde_json::Value, ckpt: &Checkpoint) -> Result<Option<Self>> {
        let config = Self::from_config(json)?;
        match (config, ckpt.quantization()) {
            (a, b) if a == b => Ok(a),
            (None, Some(b)) => Err(Error::Checkpoint(format!(
                "the safetensors hold {} tensors, but config.json has no `{CONFIG_FIELD}` field",
                b.format.name()
            ))),
            (Some(a), None) => Err(Error::Checkpoint(format!(
                "config.json says the checkpoint is quantized to {}, but the safetensors metadata names no quantization",
                a.format.name()
            ))),
            (None, None) => Ok(None),
            (Some(a), Some(b)) => Err(Error::Checkpoint(format!(
                "config.json says the checkpoint is quantized to {}, but the safetensors metadata says {}",
                a.format.name(),
                b.format.name()
            ))),
        }
    }
}

/// The quantization of the checkpoint in `dir`, from its config.json (`None`: not quantized).
pub fn stored_quantization(dir: &std::path::Path) -> Result<Option<Quantization>> {
    Quantization::from_config(&super::read_config_json(dir)?)
}

/// The matrices a load with weight format `dtype` uploads in a quantized format, each with that
/// format: exactly the tensors that `LargeWeights::load` and `v1::Weights::load` pass to
/// `upload_matrix` (the embedding and lm_head in `dtype.head_format()`). A loader that finds one
/// of them unquantized in a quantized checkpoint refuses it, so this list and the loaders cannot
/// drift apart unnoticed.
pub fn quantized_matrices(
    json: &serde_json::Value,
    ckpt: &Checkpoint,
    dtype: WeightDtype,
) -> Result<Vec<(String, WeightDtype)>> {
    let head = dtype.head_format();
    let mut out = Vec::new();
    let mut push = |name: String, f: WeightDtype| out.push((name, f));
    match detect_family(json) {
        Family::Large => {
            let cfg = LargeConfig::from_json(json)?;
            let emb = ["backbone.embeddings.weight", "embedding.weight"]
                .into_iter()
                .find(|n| ckpt.contains(n))
                .unwrap_or("backbone.embeddings.weight");
            push(emb.to_string(), head);
            for i in 0..cfg.num_blocks {
                let n = |rest: &str| format!("backbone.blocks.{i}.{rest}");
                let proj: &[&str] = if ckpt.contains(&n("mlstm_layer.qkv_opreact.weight")) {
                    &["mlstm_layer.qkv_opreact.weight", "mlstm_layer.ifgate_preact.weight"]
                } else {
                    &[
                        "mlstm_layer.q.weight",
                        "mlstm_layer.k.weight",
                        "mlstm_layer.v.weight",
                        "mlstm_layer.ogate_preact.weight",
                        "mlstm_layer.igate_preact.weight",
                        "mlstm_layer.fgate_preact.weight",
                    ]
                };
                let ffn: &[&str] = if ckpt.contains(&n("ffn.proj_up_gate_z.weight")) {
                    &["ffn.proj_up_gate_z.weight"]
                } else {
                    &["ffn.proj_up_gate.weight", "ffn.proj_up.weight"]
                };
                for t in proj
                    .iter()
                    .chain(&["mlstm_layer.out_proj.weight"])
                    .chain(ffn)
                    .chain(&["ffn.proj_down.weight"])
                {
                    push(n(t), dtype);
                }
            }
            push("lm_head.weight".to_string(), head);
        }
        Family::V1 => {
            let cfg = V1Config::from_json(json)?;
            push("token_embedding.weight".to_string(), head);
            for (i, kind) in cfg.blocks.iter().enumerate() {
                let n = |rest: &str| format!("{}{i}.{rest}", super::v1_weights::BLOCK_PREFIX);
                match kind {
                    BlockKind::Mlstm => {
                        push(n("xlstm.proj_up.weight"), dtype);
                        push(n("xlstm.proj_down.weight"), dtype);
                    }
                    BlockKind::Slstm if cfg.feedforward.is_some() => {
                        push(n("ffn.proj_up.weight"), dtype);
                        push(n("ffn.proj_down.weight"), dtype);
                    }
                    BlockKind::Slstm => {}
                }
            }
            if !cfg.tie_weights {
                push("lm_head.weight".to_string(), head);
            }
        }
    }
    Ok(out)
}
