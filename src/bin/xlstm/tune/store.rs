//! Tuned defaults per adapter: `tuned.json` in the cache directory (`XLSTM_CACHE_DIR`, else the
//! platform cache directory, as for compiled pipelines). One entry per adapter (name, driver,
//! backend), model shape and weight format; `generate`, `score` and `bench` apply the matching
//! entry's settings unless a flag gives the value or `--no-tune-cache` is set.

use super::params::Settings;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use xlstm_wgpu::error::{Error, Result};
use xlstm_wgpu::gpu::Caps;
use xlstm_wgpu::model::config::LargeConfig;
use xlstm_wgpu::model::v1_config::{detect_family, BlockKind, Family, V1Config};
use xlstm_wgpu::model::WeightDtype;

/// The file name inside the cache directory.
pub const FILE: &str = "tuned.json";

/// Identifies an adapter: tuned settings apply only to the adapter and driver they were measured on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterId {
    pub name: String,
    pub driver: String,
    pub backend: String,
}

impl AdapterId {
    pub fn of(caps: &Caps) -> AdapterId {
        AdapterId {
            name: caps.adapter_name.clone(),
            driver: caps.driver.clone(),
            backend: caps.backend.clone(),
        }
    }
}

impl std::fmt::Display for AdapterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.driver)
    }
}

/// The model shape a tuning applies to (what changes the kernels' work; not the weights).
pub fn shape_key(cfg: &LargeConfig) -> String {
    format!(
        "large e{} nh{} blocks{} vocab{} qk{} v{}",
        cfg.embedding_dim, cfg.num_heads, cfg.num_blocks, cfg.vocab_size, cfg.qk_dim_factor, cfg.v_dim_factor
    )
}

/// A model's shape for tuning: the key settings are stored under, and the mLSTM heads the
/// scheduler splits into bands.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelShape {
    pub key: String,
    pub num_heads: usize,
}

impl ModelShape {
    pub fn large(cfg: &LargeConfig) -> Self {
        ModelShape {
            key: shape_key(cfg),
            num_heads: cfg.num_heads,
        }
    }

    /// An original-xLSTM model: embedding, vocabulary, block map, mLSTM and sLSTM head shapes,
    /// feed-forward factor.
    pub fn v1(cfg: &V1Config) -> Self {
        let map: String = cfg
            .blocks
            .iter()
            .map(|b| match b {
                BlockKind::Mlstm => 'm',
                BlockKind::Slstm => 's',
            })
            .collect();
        let m = cfg
            .mlstm
            .as_ref()
            .map_or(String::new(), |m| format!(" mlstm{}x{}", m.num_heads, m.head_dim()));
        let s = cfg
            .slstm
            .as_ref()
            .map_or(String::new(), |s| format!(" slstm{}x{}", s.num_heads, s.head_dim));
        let f = cfg
            .feedforward
            .as_ref()
            .map_or(String::new(), |f| format!(" ffn{}", f.proj_factor));
        ModelShape {
            key: format!("v1 e{} blocks{map} vocab{}{m}{s}{f}", cfg.embedding_dim, cfg.vocab_size),
            num_heads: cfg.mlstm.as_ref().map_or(1, |m| m.num_heads),
        }
    }

    /// The shape of the model in `dir`, read from its config.json (either family).
    pub fn of_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "model directory {} does not exist",
                dir.display()
            )));
        }
        let json = xlstm_wgpu::model::read_config_json(dir)?;
        Ok(match detect_family(&json) {
            Family::Large => ModelShape::large(&LargeConfig::from_json(&json)?),
            Family::V1 => ModelShape::v1(&V1Config::from_json(&json)?),
        })
    }
}

/// One stored tuning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub adapter: AdapterId,
    pub model_shape: String,
    pub dtype: String,
    pub settings: Settings,
    /// Seconds since the Unix epoch of the last update.
    #[serde(default)]
    pub updated_unix: u64,
    /// The run directory of the last tuning that updated the entry.
    #[serde(default)]
    pub run: String,
    /// Measured speed-ups over the defaults, per target (`prefill`, `decode`).
    #[serde(default)]
    pub speedup: std::collections::BTreeMap<String, f64>,
}

impl Entry {
    pub fn matches(&self, adapter: &AdapterId, shape: &str, dtype: &str) -> bool {
        &self.adapter == adapter && self.model_shape == shape && self.dtype == dtype
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    entries: Vec<Entry>,
}

/// The store's path (`None` when no cache directory can be found).
pub fn path() -> Option<PathBuf> {
    xlstm_wgpu::gpu::kernels::cache_dir().map(|d| d.join(FILE))
}

/// The largest tuned-settings file read (a real one is a few KiB).
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Every stored entry (none when the file does not exist). The file must be a regular file of
/// this user of at most [`MAX_FILE_BYTES`]: a FIFO, a device or another user's file is refused
/// without blocking.
pub fn load(path: &Path) -> Result<Vec<Entry>> {
    let rules = xlstm_wgpu::files::ReadRules {
        max_bytes: MAX_FILE_BYTES,
        same_owner: true,
    };
    let bytes = match xlstm_wgpu::files::read_regular(path, rules) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let f: StoreFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Input(format!("{}: not a tuned-settings file ({e})", path.display())))?;
    Ok(f.entries)
}

/// The stored settings for this adapter, model shape and weight format, if any. Tuned defaults
/// are an optimisation, never a reason to fail: an unreadable store, or a matching entry holding
/// a value a run would refuse, gives `None` with one warning naming the file.
pub fn lookup(caps: &Caps, shape: &ModelShape, dtype: WeightDtype) -> Option<Entry> {
    let path = path()?;
    let entries = match load(&path) {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("xlstm: warning: tuned settings ignored: {e}");
            return None;
        }
    };
    let adapter = AdapterId::of(caps);
    let entry = entries
        .into_iter()
        .find(|e| e.matches(&adapter, &shape.key, dtype.name()))?;
    if let Err(e) = entry.settings.validate() {
        eprintln!(
            "xlstm: warning: tuned settings ignored: {}: the entry for this adapter and model is invalid ({e})",
            path.display()
        );
        return None;
    }
    Some(entry)
}

/// Stores `entry`: its settings are merged over those of an existing entry with the same key
/// (knobs it does not hold keep their stored values). Returns the file written.
pub fn save(mut entry: Entry) -> Result<PathBuf> {
    let path = path().ok_or_else(|| Error::Input("no cache directory (set XLSTM_CACHE_DIR)".into()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // A corrupt store is replaced rather than blocking every later tuning.
    let mut entries = load(&path).unwrap_or_default();
    match entries
        .iter_mut()
        .find(|e| e.matches(&entry.adapter, &entry.model_shape, &entry.dtype))
    {
        Some(old) => {
            entry.settings = old.settings.merged(&entry.settings);
            let mut speedup = std::mem::take(&mut old.speedup);
            speedup.append(&mut entry.speedup);
            entry.speedup = speedup;
            *old = entry;
        }
        None => entries.push(entry),
    }
    let file = StoreFile { version: 1, entries };
    let text = serde_json::to_string_pretty(&file).map_err(|e| Error::Input(e.to_string()))?;
    xlstm_wgpu::files::write_atomic(&path, text.as_bytes(), xlstm_wgpu::files::Visibility::Private)?;
    Ok(path)
}

/// What `xlstm tune --show` prints.
pub fn show() -> Result<String> {
    let Some(path) = path() else {
        return Ok("no cache directory (set XLSTM_CACHE_DIR)\n".into());
    };
    let entries = load(&path)?;
    let mut out = format!("tuned settings in {}\n", path.display());
    if entries.is_empty() {
        out += "  none stored yet (run `xlstm tune`)\n";
    }
    for e in entries {
        out += &format!("- {}\n", e.adapter);
        out += &format!("  model {} | {} weights\n", e.model_shape, e.dtype);
        out += &format!("  {}\n", e.settings.describe());
        let sp: Vec<String> = e.speedup.iter().map(|(k, v)| format!("{k} x{v:.2}")).collect();
        if !sp.is_empty() {
            out += &format!("  speed-up over the defaults: {}\n", sp.join(", "));
        }
        if !e.run.is_empty() {
            out += &format!("  from {}\n", e.run);
        }
    }
    Ok(out)
}
