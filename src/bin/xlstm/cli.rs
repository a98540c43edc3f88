//! The `xlstm` binary's shared command-line plumbing: the GPU, model and scheduler flags that
//! every subcommand takes, turning them into library options, and the limits on counts.

use crate::tune::store::ModelShape;
use crate::tune::{KnobArgs, Params, Settings};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xlstm_wgpu::error::{Error, Result};
use xlstm_wgpu::gpu::{Gpu, GpuOptions, KernelChecks};
use xlstm_wgpu::model::quantized::{stored_quantization, Quantization};
use xlstm_wgpu::model::{LoadOptions, Model, WeightDtype};
use xlstm_wgpu::session::SessionOptions;

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
            binding_limit: None,
        }
    }
    pub fn open(&self) -> Result<Arc<Gpu>> {
        Ok(Arc::new(Gpu::new(&self.options())?))
    }
}

/// Weight format, prefill scheduling and kernel-shape flags.
///
/// The tunable ones ([`KnobArgs`], declared with the knobs in `tune::params`) are `Option`s: a
/// value given as a flag wins, else the tuned default stored by `xlstm tune` for this adapter and
/// model shape (see [`RunArgs::apply_tune_cache`]), else the documented default shown by `--help`.
#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Weight format on the GPU: f16 (default), f32 (the mode that matches the reference to
    /// 1e-3), or q8 / q4 (quantized at load). A checkpoint written by `xlstm quantize` loads in
    /// its own format, the default for it.
    #[arg(long = "dtype", value_enum, value_name = "DTYPE")]
    pub dtype_flag: Option<WeightDtype>,
    /// The weight format in force: `--dtype`, else the checkpoint's ([`RunArgs::resolve_dtype`]).
    #[arg(skip = WeightDtype::F16)]
    pub dtype: WeightDtype,
    #[command(flatten)]
    pub knobs: KnobArgs,
    /// Compile every kernel without runtime bounds checks (faster; every kernel guards its own
    /// accesses). By default only the hot kernels that guard every access by construction do.
    #[arg(long, conflicts_with = "checked_kernels")]
    pub unchecked_kernels: bool,
    /// Compile every kernel with runtime bounds checks (slower; for debugging kernels).
    #[arg(long)]
    pub checked_kernels: bool,
    /// Ignore the tuned defaults `xlstm tune` stored for this adapter and model shape.
    #[arg(long)]
    pub no_tune_cache: bool,
    /// Tuned defaults found by `apply_tune_cache` (used where no flag gives a value).
    #[arg(skip)]
    pub tuned: Settings,
}

impl RunArgs {
    /// Settles the weight format: `--dtype`, else the format of the quantized checkpoint in
    /// `dir`, else f16. A `--dtype` other than a quantized checkpoint's own is refused here; a
    /// directory whose config cannot be read is left for the load to report.
    pub fn resolve_dtype(&mut self, dir: Option<&Path>) -> Result<()> {
        let stored = dir.and_then(|d| stored_quantization(d).ok().flatten());
        self.dtype = Quantization::resolve(self.dtype_flag, stored)?;
        Ok(())
    }

    /// The tunable values given as flags.
    pub fn explicit(&self) -> Settings {
        self.knobs.settings()
    }

    /// The tunable settings in force: flag, else tuned default, else documented default.
    pub fn params(&self) -> Result<Params> {
        Params::default().overlay(&self.tuned)?.overlay(&self.explicit())
    }

    /// The tuned defaults in force (those no flag overrides), e.g. `chunk_size=32, gemv_lanes=128`;
    /// `None` when none is.
    pub fn tuned_in_force(&self) -> Option<String> {
        let explicit = self.explicit();
        let mut used = Settings::default();
        let p = self.params().ok()?;
        for k in self.tuned.knobs() {
            if !explicit.has(k) {
                used.set_from(k, &p);
            }
        }
        let text = used.describe();
        (!text.is_empty()).then_some(text)
    }

    /// Looks up the tuned defaults stored for this adapter, model shape and weight format
    /// (unless `--no-tune-cache`); they then fill every tunable value no flag gives. `shape` is
    /// the model's shape (`None`: nothing to look up). Returns the tuned defaults in force.
    pub fn apply_tune_cache(&mut self, gpu: &Gpu, shape: Option<&ModelShape>) -> Option<String> {
        self.tuned = Default::default();
        if self.no_tune_cache {
            return None;
        }
        let entry = crate::tune::store::lookup(&gpu.caps, shape?, self.dtype)?;
        // Ignore an entry this build cannot parse (e.g. a strategy it does not know).
        Params::default().overlay(&entry.settings).ok()?;
        self.tuned = entry.settings;
        self.tuned_in_force()
    }

    /// Which kernels keep naga's runtime checks.
    pub fn kernel_checks(&self) -> KernelChecks {
        if self.unchecked_kernels {
            KernelChecks::None
        } else if self.checked_kernels {
            KernelChecks::All
        } else {
            KernelChecks::ExceptTrusted
        }
    }

    pub fn session_options(&self) -> Result<SessionOptions> {
        self.params()?.session_options()
    }

    /// The load options these flags describe.
    pub fn load_options(&self, tokenizer: bool) -> Result<LoadOptions> {
        Ok(LoadOptions {
            dtype: Some(self.dtype),
            tokenizer,
            kernel_checks: self.kernel_checks(),
            kernel_shapes: self.params()?.kernel_shapes(),
        })
    }

    /// Loads the model in `dir` on `gpu` with these flags.
    pub fn load(&self, gpu: Arc<Gpu>, dir: &std::path::Path, tokenizer: bool) -> Result<Model> {
        Model::load(gpu, dir, &self.load_options(tokenizer)?)
    }
}

/// The model shipped with the project, used when no --model is given.
pub fn default_model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-large-mini")
}

/// The most tokens `--max-new-tokens` (generate) and `--generate` (score) accept: far beyond any
/// useful run, small enough that every size computed from it stays finite.
pub const MAX_NEW_TOKENS: usize = 1 << 20;

/// The longest prompt a benchmark or tuning flag (`--prefill-lens`, `--seq`, `--check-tokens`)
/// may ask for.
pub const MAX_PROMPT_TOKENS: usize = 1 << 24;

/// The most timed repeats `--repeats` accepts.
pub const MAX_REPEATS: usize = 1000;

/// Refuses a token count above [`MAX_NEW_TOKENS`], naming the flag.
pub fn check_new_tokens(flag: &str, n: usize) -> Result<()> {
    check_count(flag, n, MAX_NEW_TOKENS, "tokens a run may generate")
}

/// Refuses a count from the command line above `max` (`what` says what is counted), so sizes
/// computed from it cannot overflow and a run cannot be asked to go on for ever.
pub fn check_count(flag: &str, n: usize, max: usize, what: &str) -> Result<()> {
    if n > max {
        return Err(Error::Input(format!("{flag} {n} is more than the {max} {what}")));
    }
    Ok(())
}
