//! The tunable settings: their documented defaults, the partial form stored in the cache and
//! given as flags ([`Settings`]), the complete form a trial runs with ([`Params`]), and the search
//! space over them.

use xlstm_wgpu::error::{Error, Result};
use xlstm_wgpu::gpu::SubmitBudget;
use xlstm_wgpu::model::schedule::{PrefillSchedule, PrefillStrategy};
use xlstm_wgpu::session::SessionOptions;
use serde::{Deserialize, Serialize};

/// Kernel shapes with `gemv_lanes` and every other shape at its default.
#[allow(clippy::needless_update)]
pub fn kernel_shapes(gemv_lanes: u32) -> xlstm_wgpu::ops::KernelShapes {
    xlstm_wgpu::ops::KernelShapes {
        gemv_lanes,
        ..Default::default()
    }
}

/// One tunable setting (a flag of `xlstm generate`, `score` and `bench`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Knob {
    Prefill,
    ChunkSize,
    HeadsPerBand,
    TileChunks,
    SubmitDispatches,
    Segment,
    RecordThreads,
    DecodeBatch,
    GemvLanes,
}

impl Knob {
    pub const ALL: [Knob; 9] = [
        Knob::Prefill,
        Knob::ChunkSize,
        Knob::HeadsPerBand,
        Knob::TileChunks,
        Knob::SubmitDispatches,
        Knob::Segment,
        Knob::RecordThreads,
        Knob::DecodeBatch,
        Knob::GemvLanes,
    ];

    /// The name in CSV columns, JSON keys and summaries (the flag without `--`, with `_`).
    pub fn name(self) -> &'static str {
        match self {
            Knob::Prefill => "prefill",
            Knob::ChunkSize => "chunk_size",
            Knob::HeadsPerBand => "heads_per_band",
            Knob::TileChunks => "tile_chunks",
            Knob::SubmitDispatches => "submit_dispatches",
            Knob::Segment => "segment",
            Knob::RecordThreads => "record_threads",
            Knob::DecodeBatch => "decode_batch",
            Knob::GemvLanes => "gemv_lanes",
        }
    }

    /// Whether the knob changes prefill throughput.
    pub fn affects_prefill(self) -> bool {
        !matches!(self, Knob::DecodeBatch | Knob::GemvLanes)
    }

    /// Whether the knob changes decode throughput (decode runs one token per forward pass, so
    /// the prefill strategy and its shapes do not matter).
    pub fn affects_decode(self) -> bool {
        matches!(self, Knob::DecodeBatch | Knob::GemvLanes | Knob::SubmitDispatches)
    }

    /// Whether the knob is part of the model load (changing it needs a new model).
    pub fn needs_reload(self) -> bool {
        self == Knob::GemvLanes
    }
}

/// Prefill strategies in the order of their codes in [`Params::get`].
const STRATEGIES: [PrefillStrategy; 4] = [
    PrefillStrategy::Scheduled,
    PrefillStrategy::Fused,
    PrefillStrategy::Queued,
    PrefillStrategy::Recurrent,
];

fn strategy_code(s: PrefillStrategy) -> usize {
    STRATEGIES.iter().position(|&x| x == s).unwrap_or(0)
}

/// Every tunable setting, complete: what one trial (or one command) runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    pub prefill: PrefillStrategy,
    pub chunk_size: usize,
    pub heads_per_band: usize,
    pub tile_chunks: usize,
    pub submit_dispatches: usize,
    pub segment: usize,
    pub record_threads: usize,
    pub decode_batch: usize,
    pub gemv_lanes: u32,
}

/// The documented defaults (the values `--help` shows).
impl Default for Params {
    fn default() -> Self {
        let s = SessionOptions::default();
        Params {
            prefill: s.schedule.strategy,
            chunk_size: s.schedule.chunk_size,
            heads_per_band: s.schedule.heads_per_band,
            tile_chunks: s.schedule.tile_chunks,
            submit_dispatches: s.submit.max_dispatches,
            segment: s.max_segment_tokens,
            record_threads: s.record_threads,
            decode_batch: s.decode_batch,
            gemv_lanes: xlstm_wgpu::ops::KernelShapes::default().gemv_lanes,
        }
    }
}

impl Params {
    /// The value of one knob as a number (the prefill strategy as its code).
    pub fn get(&self, k: Knob) -> usize {
        match k {
            Knob::Prefill => strategy_code(self.prefill),
            Knob::ChunkSize => self.chunk_size,
            Knob::HeadsPerBand => self.heads_per_band,
            Knob::TileChunks => self.tile_chunks,
            Knob::SubmitDispatches => self.submit_dispatches,
            Knob::Segment => self.segment,
            Knob::RecordThreads => self.record_threads,
            Knob::DecodeBatch => self.decode_batch,
            Knob::GemvLanes => self.gemv_lanes as usize,
        }
    }

    pub fn set(&mut self, k: Knob, v: usize) {
        match k {
            Knob::Prefill => self.prefill = STRATEGIES[v.min(STRATEGIES.len() - 1)],
            Knob::ChunkSize => self.chunk_size = v,
            Knob::HeadsPerBand => self.heads_per_band = v,
            Knob::TileChunks => self.tile_chunks = v,
            Knob::SubmitDispatches => self.submit_dispatches = v,
            Knob::Segment => self.segment = v,
            Knob::RecordThreads => self.record_threads = v,
            Knob::DecodeBatch => self.decode_batch = v,
            Knob::GemvLanes => self.gemv_lanes = v as u32,
        }
    }

    /// The value of one knob as text (as a flag takes it).
    pub fn text(&self, k: Knob) -> String {
        match k {
            Knob::Prefill => self.prefill.name().to_string(),
            _ => self.get(k).to_string(),
        }
    }

    /// These settings with every value `s` holds put over them.
    pub fn overlay(mut self, s: &Settings) -> Result<Params> {
        if let Some(p) = &s.prefill {
            self.prefill = p.parse()?;
        }
        for k in Knob::ALL {
            if k != Knob::Prefill {
                if let Some(v) = s.get(k) {
                    self.set(k, v);
                }
            }
        }
        Ok(self)
    }

    /// Checks that a run accepts every value: what a session or the kernels would refuse later
    /// (and blame on the flags), refused here by setting name. Bounds with no such check are
    /// generous sanity limits.
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, v: usize, lo: usize, hi: usize| -> Result<()> {
            if v < lo || v > hi {
                return Err(Error::Input(format!("{name} {v} is outside {lo}..={hi}")));
            }
            Ok(())
        };
        check("chunk_size", self.chunk_size, 1, xlstm_wgpu::ops::MAX_CHUNK)?;
        check("heads_per_band", self.heads_per_band, 0, 1 << 16)?;
        check("tile_chunks", self.tile_chunks, 0, 1 << 16)?;
        check("submit_dispatches", self.submit_dispatches, 1, 1 << 24)?;
        check("segment", self.segment, 1, 1 << 24)?;
        check("record_threads", self.record_threads, 0, 256)?;
        check("decode_batch", self.decode_batch, 1, xlstm_wgpu::session::MAX_DECODE_BATCH)?;
        kernel_shapes(self.gemv_lanes).validate()
    }

    /// The given knobs of these settings as a partial set.
    pub fn settings(&self, knobs: &[Knob]) -> Settings {
        let mut s = Settings::default();
        for &k in knobs {
            s.set_from(k, self);
        }
        s
    }

    /// Session options with these settings.
    pub fn session_options(&self) -> Result<SessionOptions> {
        if self.submit_dispatches == 0 {
            return Err(Error::Input("--submit-dispatches must be positive".into()));
        }
        Ok(SessionOptions {
            schedule: PrefillSchedule {
                strategy: self.prefill,
                chunk_size: self.chunk_size,
                heads_per_band: self.heads_per_band,
                tile_chunks: self.tile_chunks,
            },
            submit: SubmitBudget {
                max_dispatches: self.submit_dispatches,
                ..SubmitBudget::default()
            },
            max_segment_tokens: self.segment,
            decode_batch: self.decode_batch,
            record_threads: self.record_threads,
        })
    }

    /// The same behaviour with settings that cannot matter replaced by those of `base`, so two
    /// trials that would run identically compare equal: the band and tile of `fused` and
    /// `recurrent`, the thread count of everything but `queued`, a band of all heads.
    pub fn canonical(mut self, base: &Params, num_heads: usize) -> Params {
        if !matches!(self.prefill, PrefillStrategy::Scheduled | PrefillStrategy::Queued) {
            self.heads_per_band = base.heads_per_band;
            self.tile_chunks = base.tile_chunks;
        }
        if self.prefill == PrefillStrategy::Recurrent {
            self.chunk_size = base.chunk_size;
        }
        if self.prefill != PrefillStrategy::Queued {
            self.record_threads = base.record_threads;
        }
        if self.heads_per_band >= num_heads {
            self.heads_per_band = 0;
        }
        self
    }

    /// `name=value` for each knob, space separated.
    pub fn describe(&self, knobs: &[Knob]) -> String {
        knobs
            .iter()
            .map(|&k| format!("{}={}", k.name(), self.text(k)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Some of the tunable settings: what flags give, what the cache stores. `None` = not given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads_per_band: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile_chunks: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_dispatches: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_threads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_batch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemv_lanes: Option<u32>,
}

impl Settings {
    /// The value of a numeric knob (`None` for `Prefill`: see the field).
    pub fn get(&self, k: Knob) -> Option<usize> {
        match k {
            Knob::Prefill => None,
            Knob::ChunkSize => self.chunk_size,
            Knob::HeadsPerBand => self.heads_per_band,
            Knob::TileChunks => self.tile_chunks,
            Knob::SubmitDispatches => self.submit_dispatches,
            Knob::Segment => self.segment,
            Knob::RecordThreads => self.record_threads,
            Knob::DecodeBatch => self.decode_batch,
            Knob::GemvLanes => self.gemv_lanes.map(|v| v as usize),
        }
    }

    /// Whether the knob has a value.
    pub fn has(&self, k: Knob) -> bool {
        match k {
            Knob::Prefill => self.prefill.is_some(),
            _ => self.get(k).is_some(),
        }
    }

    /// Takes the knob's value from `p`.
    pub fn set_from(&mut self, k: Knob, p: &Params) {
        let v = p.get(k);
        match k {
            Knob::Prefill => self.prefill = Some(p.prefill.name().to_string()),
            Knob::ChunkSize => self.chunk_size = Some(v),
            Knob::HeadsPerBand => self.heads_per_band = Some(v),
            Knob::TileChunks => self.tile_chunks = Some(v),
            Knob::SubmitDispatches => self.submit_dispatches = Some(v),
            Knob::Segment => self.segment = Some(v),
            Knob::RecordThreads => self.record_threads = Some(v),
            Knob::DecodeBatch => self.decode_batch = Some(v),
            Knob::GemvLanes => self.gemv_lanes = Some(v as u32),
        }
    }

    /// Checks the values held, over the defaults (see [`Params::validate`]).
    pub fn validate(&self) -> Result<()> {
        Params::default().overlay(self)?.validate()
    }

    /// The knobs that have a value.
    pub fn knobs(&self) -> Vec<Knob> {
        Knob::ALL.into_iter().filter(|&k| self.has(k)).collect()
    }

    /// `other`'s values put over these.
    pub fn merged(&self, other: &Settings) -> Settings {
        let mut out = self.clone();
        if other.prefill.is_some() {
            out.prefill.clone_from(&other.prefill);
        }
        let base = Params::default();
        let Ok(o) = base.overlay(other) else {
            return out;
        };
        for k in other.knobs() {
            if k != Knob::Prefill {
                out.set_from(k, &o);
            }
        }
        out
    }

    /// `name=value` for each value held, comma separated ("" when empty).
    pub fn describe(&self) -> String {
        let p = Params::default().overlay(self).unwrap_or_default();
        self.knobs()
            .iter()
            .map(|&k| match k {
                Knob::Prefill => format!("prefill={}", self.prefill.as_deref().unwrap_or("?")),
                _ => format!("{}={}", k.name(), p.text(k)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a tune run optimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Prefill,
    Decode,
    Both,
}

impl std::str::FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "prefill" => Ok(Target::Prefill),
            "decode" => Ok(Target::Decode),
            "both" => Ok(Target::Both),
            _ => Err(Error::Input(format!("unknown --target `{s}` (prefill, decode, both)"))),
        }
    }
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Prefill => "prefill",
            Target::Decode => "decode",
            Target::Both => "both",
        }
    }
    pub fn prefill(self) -> bool {
        self != Target::Decode
    }
    pub fn decode(self) -> bool {
        self != Target::Prefill
    }
    /// The knobs that matter for this target, in [`Knob::ALL`] order.
    pub fn knobs(self) -> Vec<Knob> {
        Knob::ALL
            .into_iter()
            .filter(|k| (self.prefill() && k.affects_prefill()) || (self.decode() && k.affects_decode()))
            .collect()
    }
}

/// The values each searched knob may take.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    pub dims: Vec<(Knob, Vec<usize>)>,
}

impl Space {
    /// The space for `target` on a model with `num_heads` heads tuned at prompt length `seq`,
    /// without the `pinned` knobs (fixed by flags). Every list holds `base`'s value, so the
    /// default configuration is always a point of the space.
    pub fn new(target: Target, num_heads: usize, seq: usize, base: &Params, pinned: &[Knob]) -> Space {
        let mut dims = Vec::new();
        for k in target.knobs() {
            if pinned.contains(&k) {
                continue;
            }
            let mut values: Vec<usize> = match k {
                // `recurrent` is the reference path, slower than the chunkwise ones at every
                // prompt length worth tuning for; pin it with --prefill recurrent to tune it.
                Knob::Prefill => [
                    PrefillStrategy::Scheduled,
                    PrefillStrategy::Fused,
                    PrefillStrategy::Queued,
                ]
                .map(strategy_code)
                .to_vec(),
                Knob::ChunkSize => vec![8, 16, 32, 64],
                Knob::HeadsPerBand => [0, 1, 2, 4, 8, 16].into_iter().filter(|&h| h < num_heads).collect(),
                Knob::TileChunks => vec![0, 1, 2, 4, 8, 16, 32],
                Knob::SubmitDispatches => vec![64, 128, 256, 512, 1024, 2048, 4096, 16384],
                Knob::Segment => {
                    // Segments at least as long as the tuning prompt all run it in one pass:
                    // keep one of them (the default where it is one) so that no untested
                    // length is stored.
                    let mut v: Vec<usize> = [128, 256, 512, 1024, 2048, 4096, 8192]
                        .into_iter()
                        .filter(|&s| s < seq)
                        .collect();
                    v.push(if base.segment >= seq { base.segment } else { seq });
                    v
                }
                Knob::RecordThreads => vec![0, 1, 2, 4, 8],
                Knob::DecodeBatch => vec![1, 2, 4, 8, 16, 32, 64],
                Knob::GemvLanes => vec![8, 16, 32, 64, 128, 256],
            };
            let b = base.canonical(base, num_heads).get(k);
            if !values.contains(&b) {
                values.push(b);
            }
            values.sort_unstable();
            values.dedup();
            if values.len() > 1 {
                dims.push((k, values));
            }
        }
        Space { dims }
    }

    pub fn knobs(&self) -> Vec<Knob> {
        self.dims.iter().map(|(k, _)| *k).collect()
    }

    /// How many points the space has (saturating).
    pub fn size(&self) -> u64 {
        self.dims
            .iter()
            .fold(1u64, |n, (_, v)| n.saturating_mul(v.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_library() {
        let p = Params::default();
        let s = p.session_options().unwrap();
        let d = SessionOptions::default();
        assert_eq!(s.schedule, d.schedule);
        assert_eq!(s.submit, d.submit);
        assert_eq!(s.max_segment_tokens, d.max_segment_tokens);
        assert_eq!(s.decode_batch, d.decode_batch);
        assert_eq!(p.gemv_lanes, 64);
    }

    #[test]
    fn settings_roundtrip_and_merge() {
        let p = Params {
            prefill: PrefillStrategy::Queued,
            chunk_size: 32,
            gemv_lanes: 128,
            ..Default::default()
        };
        let s = p.settings(&[Knob::Prefill, Knob::ChunkSize]);
        assert_eq!(s.knobs(), vec![Knob::Prefill, Knob::ChunkSize]);
        let q = Params::default().overlay(&s).unwrap();
        assert_eq!(q.prefill, PrefillStrategy::Queued);
        assert_eq!(q.chunk_size, 32);
        assert_eq!(q.gemv_lanes, 64);
        let m = s.merged(&p.settings(&[Knob::GemvLanes, Knob::ChunkSize]));
        assert_eq!(m.describe(), "prefill=queued, chunk_size=32, gemv_lanes=128");
    }
}
