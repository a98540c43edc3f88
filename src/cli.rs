//! Command-line plumbing shared by the `xlstm` binary and the examples: the GPU, model and
//! scheduler flags, and turning them into library options.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuOptions, SubmitBudget};
use crate::model::large::{PrefillSchedule, PrefillStrategy};
use crate::model::{LoadOptions, Model, WeightDtype};
use crate::sample::{Sampler, SamplerConfig};
use crate::session::{Session, SessionOptions};
use crate::tokenizer::TextStream;
use std::io::Write;
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
            binding_limit: None,
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
    /// Compile kernels without runtime bounds checks (faster; every kernel guards its own accesses).
    #[arg(long)]
    pub unchecked_kernels: bool,
    /// Invocations per weight row in the decode GEMV (8, 16, 32, 64, 128, 256).
    #[arg(long, default_value_t = 64)]
    pub gemv_lanes: u32,
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

    /// The load options these flags describe.
    pub fn load_options(&self, tokenizer: bool) -> Result<LoadOptions> {
        Ok(LoadOptions {
            dtype: Some(self.dtype()?),
            tokenizer,
            unchecked_kernels: self.unchecked_kernels,
            kernel_shapes: crate::ops::KernelShapes {
                gemv_lanes: self.gemv_lanes,
            },
        })
    }

    /// Loads the model in `dir` on `gpu` with these flags.
    pub fn load(&self, gpu: Arc<Gpu>, dir: &std::path::Path, tokenizer: bool) -> Result<Model> {
        Model::load(gpu, dir, &self.load_options(tokenizer)?)
    }
}

/// Flags of `xlstm generate` and the generate example.
#[derive(clap::Args, Clone, Debug)]
pub struct GenerateArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json). Default: the shipped model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, default_value = "It is a truth universally acknowledged")]
    pub prompt: String,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not stop at the end-of-text token.
    #[arg(long)]
    pub ignore_eos: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub gpu: GpuArgs,
    #[command(flatten)]
    pub mem: crate::telemetry::MemArgs,
}

/// Prints the generated text as it comes and a one-line summary at the end.
pub fn run_generate(a: &GenerateArgs) -> Result<()> {
    let dir = a.model.clone().unwrap_or_else(default_model_dir);
    if a.prompt.is_empty() {
        return Err(Error::Input("the prompt is empty".into()));
    }
    // telemetry: watchdog, status record, pre-load estimate (src/telemetry).
    let wd = crate::telemetry::Watchdog::start(a.mem.resolve()?, "generate", &dir.display().to_string())?;
    let progress = wd.progress();
    let gpu = a.gpu.open()?;
    wd.set_gpu(&gpu);
    // A prompt has at most one token per byte, plus BOS.
    let est_tokens = a.prompt.len() + 1;
    if let Ok(est) =
        crate::telemetry::Estimate::for_dir(&dir, a.run.dtype()?, &a.run.session_options()?, est_tokens, false)
    {
        wd.check_fits(&est)?;
    }
    progress.set_phase("loading");
    let model = a.run.load(gpu, &dir, true)?;
    wd.attach(&model);
    wd.check_now()?;
    // end telemetry
    let tok = model
        .tokenizer()
        .ok_or_else(|| Error::Tokenizer(format!("{} has no tokenizer.json", dir.display())))?;
    let mut prompt = Vec::new();
    if let Some(bos) = model.config().bos_token_id {
        prompt.push(bos);
    }
    prompt.extend(tok.encode(&a.prompt)?);
    if prompt.is_empty() {
        return Err(Error::Input("the prompt is empty".into()));
    }
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    })?;
    let mut stop = Vec::new();
    if !a.ignore_eos {
        stop.extend(model.config().eos_token_id);
        stop.extend(tok.token_id("<|endoftext|>"));
    }
    let mut session = Session::new(&model, a.run.session_options()?)?;
    let mut stream = TextStream::default();
    let mut out = std::io::stdout();
    print!("{}", a.prompt);
    progress.set_total(Some(a.max_new_tokens as u64));
    progress.set_phase("prefill");
    let stats = session.generate(&prompt, a.max_new_tokens, &mut sampler, &stop, &mut |id| {
        progress.set_phase("decode");
        progress.add_tokens(1);
        let text = stream.push(tok, id)?;
        print!("{text}");
        let _ = out.flush();
        Ok(true)
    })?;
    println!();
    println!(
        "prompt tokens {} | prefill {:.1} tok/s | decode {:.1} tok/s ({} tokens) | peak GPU pool {:.1} MiB | {} weights, {}",
        stats.prompt_tokens,
        stats.prefill_tok_per_s(),
        stats.decode_tok_per_s(),
        stats.generated.len(),
        stats.peak_pool_bytes as f64 / (1 << 20) as f64,
        model.dtype().name(),
        model.gpu().caps.adapter_name,
    );
    progress.set_phase("done");
    Ok(())
}

/// The model shipped with the project, used when no --model is given.
pub fn default_model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-large-mini")
}

/// Checks that `path` can name an output file: its directory exists and it is not itself a
/// directory. Commands call this before any work, so a typo fails at once, not after a model run.
pub fn check_output_path(path: &std::path::Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        return Err(Error::Input(format!(
            "output directory {} does not exist",
            dir.display()
        )));
    }
    if path.is_dir() || path.file_name().is_none() {
        return Err(Error::Input(format!(
            "output {} is a directory, not a file path",
            path.display()
        )));
    }
    Ok(())
}

/// Writes a file atomically: to a temporary name in the same directory, then renamed, so an
/// error never leaves a partial file behind.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    check_output_path(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
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
