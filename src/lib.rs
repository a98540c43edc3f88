//! xlstm-wgpu: xLSTM language-model inference on any GPU through wgpu, every kernel in WGSL.
//!
//! The command-line tools' plumbing (flag structs, the benchmark runner, the autotuner) lives with
//! the `xlstm` binary, not in this API.
//!
//! ```no_run
//! use std::sync::Arc;
//! use xlstm_wgpu::{Gpu, GpuOptions, LoadOptions, Model, Sampler, SamplerConfig, Session, SessionOptions};
//!
//! # fn main() -> xlstm_wgpu::Result<()> {
//! let gpu = Arc::new(Gpu::new(&GpuOptions::default())?);
//! let model = Model::load(gpu, std::path::Path::new("models/xlstm-large-mini"), &LoadOptions::default())?;
//! let tok = model.tokenizer().expect("tokenizer.json");
//! let mut prompt = vec![model.bos_token_id().unwrap_or(0)];
//! prompt.extend(tok.encode("The king said")?);
//! let mut session = Session::new(&model, SessionOptions::default())?;
//! let mut sampler = Sampler::new(SamplerConfig::default())?;
//! let stats = session.generate(&prompt, 32, &mut sampler, &[], &mut |id| {
//!     print!("{}", tok.decode(&[id])?);
//!     Ok(true)
//! })?;
//! println!("\n{:.1} tok/s", stats.decode_tok_per_s());
//! # Ok(())
//! # }
//! ```

pub mod error;
pub mod files;
pub mod gpu;
pub mod hub;
pub mod model;
pub mod ops;
pub mod rng;
pub mod sample;
pub mod session;
pub mod state_file;
pub mod telemetry;
pub mod tokenizer;

pub use error::{Error, Result};
pub use gpu::{Caps, Gpu, GpuOptions, PoolStats, SubmitBudget};
pub use model::schedule::{PrefillSchedule, PrefillStrategy};
pub use model::{LoadOptions, Model, WeightDtype};
pub use sample::{Sampler, SamplerConfig};
pub use session::{GenerateStats, Logits, SavedState, Session, SessionOptions};
pub use tokenizer::Tokenizer;
