//! The `xlstm` binary's command-line plumbing: the GPU, model and scheduler flags, turning them
//! into library options, and `xlstm generate`.

use crate::tune::store::ModelShape;
use crate::tune::{KnobArgs, Params, Settings};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use xlstm_wgpu::error::{Error, Result};
use xlstm_wgpu::gpu::{Gpu, GpuOptions, KernelChecks};
use xlstm_wgpu::model::{LoadOptions, Model, WeightDtype};
use xlstm_wgpu::sample::{Sampler, SamplerConfig};
use xlstm_wgpu::session::{GenerateStats, Session, SessionOptions};
use xlstm_wgpu::tokenizer::TextStream;

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
    /// Weight format on the GPU: f16 (default) or f32 (the mode that matches the reference to 1e-3).
    #[arg(long, value_enum, default_value_t = WeightDtype::F16)]
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
    pub mem: xlstm_wgpu::telemetry::MemArgs,
}

/// Prints the generated text as it comes and a one-line summary at the end.
pub fn run_generate(a: &GenerateArgs) -> Result<()> {
    let dir = a.model.clone().unwrap_or_else(default_model_dir);
    if a.prompt.is_empty() {
        return Err(Error::Input("the prompt is empty".into()));
    }
    check_new_tokens("--max-new-tokens", a.max_new_tokens)?;
    // telemetry: watchdog, status record, pre-load estimate (src/telemetry); SIGINT/SIGTERM stop
    // the run at the next token with the summary so far.
    let wd =
        xlstm_wgpu::telemetry::Watchdog::start_interruptible(a.mem.resolve()?, "generate", &dir.display().to_string())?;
    let progress = wd.progress();
    let gpu = a.gpu.open()?;
    wd.set_gpu(&gpu);
    // Tuned defaults for this adapter and model shape (flags win).
    let mut run = a.run.clone();
    let tuned = run.apply_tune_cache(&gpu, ModelShape::of_dir(&dir).ok().as_ref());
    // A prompt has at most one token per byte, plus BOS.
    let est_tokens = a.prompt.len().saturating_add(1);
    if let Ok(est) =
        xlstm_wgpu::telemetry::Estimate::for_dir(&dir, run.dtype, &run.session_options()?, est_tokens, false)
    {
        wd.check_fits(&est)?;
    }
    progress.set_phase("loading");
    let mut compiling = CompileProgress::start();
    let model = run.load(gpu, &dir, true)?;
    wd.attach(&model);
    wd.check_now()?;
    // end telemetry
    let tok = model
        .tokenizer()
        .ok_or_else(|| Error::Tokenizer(format!("{} has no tokenizer.json", dir.display())))?;
    let mut prompt = Vec::new();
    if let Some(bos) = model.bos_token_id() {
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
        stop.extend(model.eos_token_id());
        stop.extend(tok.token_id("<|endoftext|>"));
    }
    let mut session = Session::new(&model, run.session_options()?)?;
    // Compile the decode kernels now, while the progress line may still be drawn.
    session.prepare_decode(sampler.config())?;
    let mut stream = TextStream::default();
    let mut out = std::io::stdout();
    progress.set_total(Some(a.max_new_tokens as u64));
    progress.set_phase("prefill");
    // What has come so far, for the summary of a run a signal stops inside `generate`.
    let started = std::time::Instant::now();
    let mut so_far = GenerateStats {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    let mut decode_started = None;
    let mut prompt_shown = false;
    compiling.first_pass();
    let result = session.generate(&prompt, a.max_new_tokens, &mut sampler, &stop, &mut |id| {
        if !prompt_shown {
            // Every kernel is compiled by the first token: clear the line, then stream.
            compiling.finish();
            print!("{}", a.prompt);
            prompt_shown = true;
        }
        let now = std::time::Instant::now();
        let t1 = *decode_started.get_or_insert(now);
        so_far.prefill_time = t1 - started;
        so_far.decode_time = now - t1;
        so_far.generated.push(id);
        progress.set_phase("decode");
        progress.add_tokens(1);
        let text = stream.push(tok, id)?;
        print!("{text}");
        let _ = out.flush();
        // A signal ends the generation here, with the summary below.
        Ok(wd.interrupted().is_none())
    });
    compiling.finish();
    if !prompt_shown {
        print!("{}", a.prompt);
    }
    println!();
    let stats = match result {
        Ok(stats) => stats,
        Err(e) if wd.interrupted().is_none() || so_far.generated.is_empty() => return Err(e),
        Err(_) => GenerateStats {
            peak_pool_bytes: model.pool_stats().peak,
            ..so_far
        },
    };
    let tuned = tuned.map_or(String::new(), |t| format!(" | tuned (cache): {t}"));
    println!(
        "prompt tokens {} | prefill {:.1} tok/s | decode {:.1} tok/s ({} tokens) | peak GPU pool {:.1} MiB | {} weights, {}{tuned}",
        stats.prompt_tokens,
        stats.prefill_tok_per_s(),
        stats.decode_tok_per_s(),
        stats.generated.len(),
        stats.peak_pool_bytes as f64 / (1 << 20) as f64,
        model.dtype().name(),
        model.gpu().caps.adapter_name,
    );
    if let Some(sig) = wd.interrupted() {
        let p = progress.snapshot();
        let at = format!("in phase {} after {} tokens", p.phase, p.tokens);
        return Err(xlstm_wgpu::telemetry::signals::interrupted_error(sig, &at));
    }
    progress.set_phase("done");
    Ok(())
}

/// A progress line on stderr while kernels compile and until the first token, shown only once
/// that has taken a noticeable time (software GL needs minutes; a GPU driver or its cache
/// milliseconds) and only on a terminal. Some drivers (Mesa's GL) compile a kernel only when it
/// first runs, so the first pass is covered too. `finish` clears it before text is streamed.
struct CompileProgress {
    bar: indicatif::ProgressBar,
    state: Arc<std::sync::Mutex<CompileTime>>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

/// How long compiling has taken so far, and whether it goes on.
#[derive(Default)]
struct CompileTime {
    /// Compile time of the pipelines already finished.
    done: std::time::Duration,
    /// When the pipeline compiling now started.
    busy_since: Option<std::time::Instant>,
    /// When the first forward pass started (see [`CompileProgress::first_pass`]).
    first_pass_since: Option<std::time::Instant>,
    finished: bool,
}

impl CompileTime {
    /// Whether the wait has become long enough to show the line.
    fn noticeable(&self, after: std::time::Duration) -> bool {
        let compiling = self.busy_since.map(|t| self.done + t.elapsed());
        let first_pass = self.first_pass_since.map(|t| t.elapsed());
        compiling.or(first_pass).is_some_and(|d| d >= after)
    }
}

impl CompileProgress {
    /// Compile time after which the line appears.
    const SHOW_AFTER: std::time::Duration = std::time::Duration::from_millis(1500);
    const POLL: std::time::Duration = std::time::Duration::from_millis(100);

    fn start() -> Self {
        let bar = indicatif::ProgressBar::hidden();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        let state = Arc::new(std::sync::Mutex::new(CompileTime::default()));
        let (observed, shown) = (state.clone(), bar.clone());
        xlstm_wgpu::gpu::kernels::set_compile_observer(Some(Arc::new(
            move |e: &xlstm_wgpu::gpu::kernels::CompileEvent<'_>| {
                let mut t = observed.lock().unwrap_or_else(|p| p.into_inner());
                if e.finished {
                    let took = t.busy_since.take().map_or(std::time::Duration::ZERO, |s| s.elapsed());
                    t.done += took;
                } else {
                    t.busy_since = Some(std::time::Instant::now());
                }
                shown.set_message(format!(
                    "compiling kernels: {} built, now {}:{}",
                    e.compiled, e.kernel, e.entry
                ));
            },
        )));
        // A compile can block for minutes without an event: a watcher decides when to show the line.
        let (watched, shown) = (state.clone(), bar.clone());
        let watcher = std::thread::spawn(move || loop {
            // `finish` unparks the watcher, so it never delays the first token.
            std::thread::park_timeout(Self::POLL);
            let t = watched.lock().unwrap_or_else(|p| p.into_inner());
            if t.finished {
                return;
            }
            if t.noticeable(Self::SHOW_AFTER) {
                shown.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Self::POLL * 2);
                return;
            }
        });
        CompileProgress {
            bar,
            state,
            watcher: Some(watcher),
        }
    }

    /// Marks the start of the first forward pass.
    fn first_pass(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).first_pass_since = Some(std::time::Instant::now());
        self.bar
            .set_message("first pass (some drivers compile kernels on first use)");
    }

    /// Removes the observer, stops the watcher and clears the line.
    fn finish(&mut self) {
        xlstm_wgpu::gpu::kernels::set_compile_observer(None);
        self.state.lock().unwrap_or_else(|p| p.into_inner()).finished = true;
        if let Some(w) = self.watcher.take() {
            w.thread().unpark();
            let _ = w.join();
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for CompileProgress {
    fn drop(&mut self) {
        self.finish();
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
