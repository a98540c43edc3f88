//! The crate's one error type. Every fallible public function returns [`Result`].

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// config.json is missing fields, has impossible values or describes an unsupported model.
    #[error("invalid config: {0}")]
    Config(String),
    /// A checkpoint file is corrupt, truncated, or lacks a tensor or has one of the wrong shape or dtype.
    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
    /// Bad input from the caller: empty prompt, token id out of range, malformed JSON, bad flag value.
    #[error("invalid input: {0}")]
    Input(String),
    /// The tokenizer could not be loaded or failed to encode or decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// No usable GPU adapter, or the device could not be created.
    #[error("gpu adapter: {0}")]
    Adapter(String),
    /// The GPU reported a validation error, ran out of memory, or was lost.
    #[error("gpu: {0}")]
    Gpu(String),
    /// A WGSL kernel failed to parse, validate or compile.
    #[error("kernel {kernel}: {message}")]
    Kernel { kernel: String, message: String },
    /// The work does not fit the adapter's limits (buffer sizes, workgroup memory).
    #[error("adapter limit: {0}")]
    Limit(String),
    /// The memory watchdog's hard limit was reached (the run stopped at the next safe point), or
    /// the model's estimated footprint does not fit under it (refused before loading). The `xlstm`
    /// binary exits with code 3 (`telemetry::EXIT_MEMORY_LIMIT`).
    #[error("memory limit: {0}")]
    MemoryLimit(String),
    /// The model produced NaN or infinite values (logits) at run time: the weights or the
    /// computation overflowed. The session's state is not meaningful afterwards (reset it).
    #[error("numeric: {0}")]
    Numeric(String),
    /// A model named by its Hugging Face Hub id could not be resolved: it is not in the cache and
    /// cannot be downloaded (offline, unreachable, refused), or the cache holds something invalid.
    #[error("model hub: {0}")]
    Hub(String),
    /// The run was stopped on request (a `stop` command, e.g. from `xltop`) at a safe point.
    /// The `xlstm` binary exits with code 4 (`telemetry::EXIT_STOPPED`).
    #[error("stopped: {0}")]
    Stopped(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
