//! How a prompt is scheduled through the mLSTM cell: the strategy and the scheduler's knobs.

use crate::error::{Error, Result};

/// How the mLSTM cell runs over a prompt (`--prefill`; named in lower case on the command line
/// and in stored files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefillStrategy {
    /// Chunkwise, split into head-band x chunk-tile dispatches.
    Scheduled,
    /// As `Scheduled`, with a command buffer per head band of the chunkwise phases; a CPU thread
    /// pool records the command buffers in parallel and they are submitted in order.
    Queued,
    /// Chunkwise, each phase one dispatch over all heads and chunks.
    Fused,
    /// The step kernel over every token (the reference).
    Recurrent,
}

impl std::str::FromStr for PrefillStrategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "scheduled" => Ok(PrefillStrategy::Scheduled),
            "queued" => Ok(PrefillStrategy::Queued),
            "fused" => Ok(PrefillStrategy::Fused),
            "recurrent" => Ok(PrefillStrategy::Recurrent),
            _ => Err(Error::Input(format!(
                "unknown prefill strategy `{s}` (scheduled, queued, fused, recurrent)"
            ))),
        }
    }
}

impl PrefillStrategy {
    pub fn name(self) -> &'static str {
        match self {
            PrefillStrategy::Scheduled => "scheduled",
            PrefillStrategy::Queued => "queued",
            PrefillStrategy::Fused => "fused",
            PrefillStrategy::Recurrent => "recurrent",
        }
    }
}

/// The scheduler's knobs for prefill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefillSchedule {
    pub strategy: PrefillStrategy,
    pub chunk_size: usize,
    /// Heads per dispatch of the chunkwise phases (`scheduled` and `queued`; 0 = all heads).
    pub heads_per_band: usize,
    /// Chunks per dispatch of the chunkwise phases (`scheduled` and `queued`; 0 = all chunks).
    pub tile_chunks: usize,
}

impl Default for PrefillSchedule {
    fn default() -> Self {
        PrefillSchedule {
            strategy: PrefillStrategy::Scheduled,
            chunk_size: 64,
            heads_per_band: 4,
            tile_chunks: 16,
        }
    }
}
