//! Command-line plumbing shared by the `xlstm` binary and the examples: the GPU, model and
//! scheduler flags, and turning them into library options.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuOptions, SubmitBudget};
use crate::model::large::{PrefillSchedule, PrefillStrategy};
use crate::model::{LoadOptions, Model, WeightDtype};
use crate::session::SessionOptions;
use std::path::PathBuf;
use std::sync::Arc;

/// Adapter selection flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GpuArgs {
    /// Backends to use (vulkan, metal, dx12, gl; comma separated). Default: WGPU_BACKEND or all.
    #[arg(long)]
    pub backend: Option<String>,
    /// Adapter index as listed by `xlstm info`.
    #[arg(long)]
    pub adapter: Option<usize>,
}

impl GpuArgs {
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            backend: self.backend.clone(),
            adapter_index: self.adapter,
            disable: Vec::new(),
        }
    }
    pub fn open(&self) -> Result<Arc<Gpu>> {
        Ok(Arc::new(Gpu::new(&self.options())?))
    }
}

/// Weight format and prefill scheduling flags.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Weight format on the GPU: f16 (default) or f32 (the mode that matches the reference to 1e-3).
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Prefill strategy: scheduled (head-band x chunk-tile dispatches), fused, or recurrent.
    #[arg(long, default_value = "scheduled")]
    pub prefill: String,
    /// Chunk length of the chunkwise mLSTM prefill (1..=64).
    #[arg(long, default_value_t = 64)]
    pub chunk_size: usize,
    /// Heads per dispatch of the chunkwise phases (0 = all).
    #[arg(long, default_value_t = 4)]
    pub heads_per_band: usize,
    /// Chunks per dispatch of the chunkwise phases (0 = all).
    #[arg(long, default_value_t = 16)]
    pub tile_chunks: usize,
    /// Dispatches per submission.
    #[arg(long, default_value_t = 512)]
    pub submit_dispatches: usize,
    /// Longest prompt piece run as one forward pass.
    #[arg(long, default_value_t = 1024)]
    pub segment: usize,
    /// Greedy decode steps per submission.
    #[arg(long, default_value_t = 8)]
    pub decode_batch: usize,
}

impl RunArgs {
    pub fn dtype(&self) -> Result<WeightDtype> {
        match self.dtype.as_str() {
            "f16" => Ok(WeightDtype::F16),
            "f32" => Ok(WeightDtype::F32),
            d => Err(Error::Input(format!("unknown --dtype `{d}` (f16 or f32)"))),
        }
    }

    pub fn session_options(&self) -> Result<SessionOptions> {
        let strategy: PrefillStrategy = self.prefill.parse()?;
        if self.submit_dispatches == 0 {
            return Err(Error::Input("--submit-dispatches must be positive".into()));
        }
        Ok(SessionOptions {
            schedule: PrefillSchedule {
                strategy,
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
        })
    }

    /// Loads the model in `dir` on `gpu` with these flags.
    pub fn load(&self, gpu: Arc<Gpu>, dir: &std::path::Path, tokenizer: bool) -> Result<Model> {
        Model::load(
            gpu,
            dir,
            &LoadOptions {
                dtype: Some(self.dtype()?),
                tokenizer,
            },
        )
    }
}

/// The model shipped with the project, used when no --model is given.
pub fn default_model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join("xlstm-large-mini")
}

/// Writes a file atomically: to a temporary name in the same directory, then renamed, so an
/// error never leaves a partial file behind.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        return Err(Error::Input(format!("output directory {} does not exist", dir.display())));
    }
    let name = path
        .file_name()
        .ok_or_else(|| Error::Input(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
