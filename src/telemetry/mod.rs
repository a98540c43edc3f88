//! Memory watchdog, run telemetry, and the control channel of the `xltop` monitor.
//!
//! Every command that runs a model (`xlstm generate`, `score`, `bench`, the generate example)
//! starts a [`Watchdog`]: a thread that every `--mem-every` ms (default 200) samples the process's
//! resident memory, the system's available and total memory and the GPU buffer pool's live, pooled
//! and peak bytes, and then
//!
//! - above the **soft** limit (default 85% of RAM) applies the soft actions: `warn` (one line on
//!   stderr per crossing) and `empty_cache` (release the pool's cached buffers);
//! - at the **hard** limit (default 92% of RAM) releases the cache and makes the run stop at its
//!   next safe point (before a prefill segment or a decode step/batch) with
//!   [`Error::MemoryLimit`]; the binaries exit with [`EXIT_MEMORY_LIMIT`] (3);
//! - appends a row to the `--mem-log` CSV;
//! - rewrites the process's status record and takes control commands (see [`status`]).
//!
//! Memory use, as the limits see it, is the larger of the resident set size and the pool's bytes
//! ([`usage`]). Before loading, [`Watchdog::check_fits`] refuses a model whose [`Estimate`]
//! (weights + state + activations) exceeds the hard limit, also with exit code 3.

mod config;
mod estimate;
pub mod signals;
pub mod status;
pub mod sys;
mod watchdog;

pub use config::{Limit, MemArgs, MemConfig, DEFAULT_HARD_PCT, DEFAULT_POLL_MS, DEFAULT_SOFT_PCT};
pub use estimate::Estimate;
pub use status::{read_records, runtime_dir, send_command, StatusRecord};
pub use watchdog::{usage, Progress, ProgressState, Watchdog};

use crate::error::Error;

/// Exit code of a failed run (any error but the two below).
pub const EXIT_ERROR: u8 = 1;
/// Exit code when the memory watchdog stopped the run, or refused the model before loading.
pub const EXIT_MEMORY_LIMIT: u8 = 3;
/// Exit code when the run was stopped by a `stop` command (`xltop` K / `kill <pid>`).
pub const EXIT_STOPPED: u8 = 4;

/// The process exit code for an error: a stop caused by SIGINT or SIGTERM (see [`signals`])
/// exits with 128 + the signal number (130, 143), as a shell reports a process the signal ended.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::MemoryLimit(_) => EXIT_MEMORY_LIMIT,
        Error::Stopped(_) => signals::received().map_or(EXIT_STOPPED, signals::exit_code_for),
        _ => EXIT_ERROR,
    }
}
