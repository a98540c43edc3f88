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
use xlstm_wgpu::session::{SavedState, Session, SessionOptions};

/// Adapter selection flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GpuArgs {
    /// Backends to use (vulkan, metal, dx12, gl; comma separated). Default: WGPU_BACKEND or all.
    #[arg(long, value_parser = backend_list)]
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

// --- value parsers: a value outside a flag's range or choices is a usage error (clap's message,
// exit code 2), like an unknown flag.

/// `--backend`: a comma-separated list that names at least one backend.
fn backend_list(text: &str) -> std::result::Result<String, String> {
    if wgpu::Backends::from_comma_list(text).is_empty() {
        return Err("names no backend (one or more of vulkan, metal, dx12, gl, comma separated)".into());
    }
    Ok(text.to_string())
}

/// A count flag accepting `lo..=hi` (clap's range check; `hi` keeps sizes computed from the count
/// finite and runs finite).
pub fn count_in(lo: usize, hi: usize) -> impl clap::builder::TypedValueParser<Value = usize> {
    use clap::builder::TypedValueParser;
    clap::value_parser!(u64)
        .range(lo as u64..=hi as u64)
        .map(|v| v as usize)
}

/// A finite number `>= 0` (f32).
pub fn non_negative_f32(text: &str) -> std::result::Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number >= 0, got {v}")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

/// A number in (0, 1] (f32).
pub fn unit_fraction_f32(text: &str) -> std::result::Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        Ok(v) => Err(format!("must be in (0, 1], got {v}")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

/// The most tokens `--max-new-tokens` (generate) and `--generate` (score) accept: far beyond any
/// useful run, small enough that every size computed from it stays finite.
pub const MAX_NEW_TOKENS: usize = 1 << 20;

/// The longest prompt a benchmark or tuning flag (`--prefill-lens`, `--seq`, `--check-tokens`)
/// may ask for.
pub const MAX_PROMPT_TOKENS: usize = 1 << 24;

/// The most timed repeats `--repeats` accepts.
pub const MAX_REPEATS: usize = 1000;

/// Checks a `--save-state` path before the run (as every output path is checked: no link, FIFO,
/// device or directory), and that it is none of the run's other outputs (`others`: flag and
/// path), which would silently replace it.
pub fn check_state_output(save: Option<&Path>, others: &[(&str, &Path)]) -> Result<()> {
    let Some(p) = save else { return Ok(()) };
    xlstm_wgpu::files::check_output_path(p)?;
    for (flag, other) in others {
        if p == *other {
            return Err(Error::Input(format!(
                "--save-state and {flag} are the same file ({})",
                p.display()
            )));
        }
    }
    Ok(())
}

/// `--load-state FILE`: replaces the session's state with the one saved in `path` (a state file
/// of another model, shape, dtype or format version is a one-line error).
pub fn load_state(session: &mut Session, path: &Path) -> Result<()> {
    let saved = SavedState::read(path, session.model())?;
    session.restore_state(&saved)
}

/// `--save-state FILE`: writes the session's state to `path` (atomically).
pub fn save_state(session: &Session, path: &Path) -> Result<()> {
    session.save_state()?.write(path, session.model())
}
