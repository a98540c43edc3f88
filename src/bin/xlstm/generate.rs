//! `xlstm generate`: text from a prompt, streamed to stdout as it comes, with a one-line summary on
//! stderr. On a terminal a progress line covers kernel compiles and the first pass when they take
//! noticeable time; without one, plain progress lines go to stderr (see `crate::progress`).

use crate::cli::{
    check_state_output, count_in, default_model_dir, load_state, non_negative_f32, save_state, unit_fraction_f32,
    GpuArgs, RunArgs, MAX_NEW_TOKENS,
};
use crate::tune::store::ModelShape;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use xlstm_wgpu::error::{Error, Result};
use xlstm_wgpu::sample::{Sampler, SamplerConfig};
use xlstm_wgpu::session::{GenerateStats, Session};
use xlstm_wgpu::tokenizer::TextStream;

/// Flags of `xlstm generate` and the generate example.
#[derive(clap::Args, Clone, Debug)]
pub struct GenerateArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json), or Hugging Face Hub id
    /// ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded into it when absent).
    /// Default: the shipped model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, default_value = "It is a truth universally acknowledged")]
    pub prompt: String,
    /// Tokens to generate at most (0..=1048576).
    #[arg(long, default_value_t = 64, value_parser = count_in(0, MAX_NEW_TOKENS))]
    pub max_new_tokens: usize,
    /// Sampling temperature, a finite number >= 0 (0 = greedy).
    #[arg(long, default_value_t = 0.0, value_parser = non_negative_f32)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: keep the most likely tokens up to this probability, in (0, 1].
    #[arg(long, default_value_t = 1.0, value_parser = unit_fraction_f32)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not stop at the end-of-text token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Continue from the recurrent state in this file (written by --save-state with the same
    /// model and --dtype): the prompt is appended to the saved history, without a BOS token.
    #[arg(long)]
    pub load_state: Option<PathBuf>,
    /// Write the recurrent state at the end of the run (after the prompt and every generated
    /// token) to this file (safetensors), to continue from it later with --load-state.
    #[arg(long)]
    pub save_state: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub gpu: GpuArgs,
    #[command(flatten)]
    pub mem: xlstm_wgpu::telemetry::MemArgs,
}

/// Prints the generated text to stdout as it comes and a one-line summary to stderr at the end.
pub fn generate(a: &GenerateArgs) -> Result<()> {
    let dir = a.model.clone().unwrap_or_else(default_model_dir);
    // An empty prompt is checked once the model is loaded: BOS alone starts an unconditional
    // generation, and only a model without a BOS id has nothing to start from.
    check_state_output(a.save_state.as_deref(), &[])?;
    let dir = xlstm_wgpu::hub::resolve_model(&dir)?;
    // telemetry: watchdog, status record, pre-load estimate (src/telemetry); SIGINT/SIGTERM stop
    // the run at the next token with the summary so far.
    let wd =
        xlstm_wgpu::telemetry::Watchdog::start_interruptible(a.mem.resolve()?, "generate", &dir.display().to_string())?;
    let progress = wd.progress();
    let gpu = a.gpu.open()?;
    wd.set_gpu(&gpu);
    // Tuned defaults for this adapter and model shape (flags win).
    let mut run = a.run.clone();
    run.resolve_dtype(Some(&dir))?;
    let tuned = run.apply_tune_cache(&gpu, ModelShape::of_dir(&dir).ok().as_ref());
    // A prompt has at most one token per byte, plus BOS.
    let est_tokens = a.prompt.len().saturating_add(1);
    if let Ok(est) =
        xlstm_wgpu::telemetry::Estimate::for_dir(&dir, run.dtype, &run.session_options()?, est_tokens, false)
    {
        wd.check_fits(&est)?;
    }
    progress.set_phase("loading");
    // On a terminal, a line covers kernel compiles and the first pass, and is cleared before the
    // text streams; when stderr is not a terminal, plain progress lines (loading, prefill, decode
    // tokens) go to stderr throughout, ending before the summary.
    let mode = crate::progress::Mode::from_env();
    let mut compiling = CompileProgress::start(mode == crate::progress::Mode::Bar);
    let mut reporter = matches!(mode, crate::progress::Mode::Plain { .. })
        .then(|| crate::progress::Reporter::with_mode("generate", progress.clone(), mode));
    let model = run.load(gpu, &dir, true)?;
    wd.attach(&model);
    wd.check_now()?;
    // end telemetry
    let tok = model
        .tokenizer()
        .ok_or_else(|| Error::Tokenizer(format!("{} has no tokenizer.json", dir.display())))?;
    let mut prompt = Vec::new();
    // A continued sequence (--load-state) has had its BOS already.
    if a.load_state.is_none() {
        prompt.extend(model.bos_token_id());
    }
    prompt.extend(tok.encode(&a.prompt)?);
    if prompt.is_empty() && a.load_state.is_some() {
        return Err(Error::Input(
            "the prompt is empty: --load-state continues the saved sequence with the --prompt text".into(),
        ));
    }
    if prompt.is_empty() {
        return Err(Error::Input(
            "the prompt is empty and the model has no BOS token to start from".into(),
        ));
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
    if let Some(p) = &a.load_state {
        load_state(&mut session, p)?;
    }
    let start_position = session.position();
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
    if let Some(r) = reporter.as_mut() {
        r.finish();
    }
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
    // The summary goes to stderr so that redirecting stdout captures the generated text alone.
    eprintln!(
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
    if let Some(p) = &a.save_state {
        progress.set_phase("saving state");
        catch_up(
            &mut session,
            a.load_state.as_deref(),
            start_position,
            &prompt,
            &stats.generated,
        )?;
        save_state(&session, p)?;
    }
    progress.set_phase("done");
    Ok(())
}

/// Brings the state to the end of the run: the saved history (`loaded`, at `start` tokens), the
/// prompt and every generated token. `Session::generate` leaves the last generated token unfed
/// (it is chosen, not yet consumed), so it is fed here; a stop token inside a decode batch
/// leaves the state past the shown tokens (the batch ran on), so the state is then rebuilt from
/// the start.
fn catch_up(
    session: &mut Session,
    loaded: Option<&std::path::Path>,
    start: usize,
    prompt: &[u32],
    generated: &[u32],
) -> Result<()> {
    let end = start + prompt.len() + generated.len();
    let pos = session.position();
    if pos == end {
        return Ok(());
    }
    if let (Some(&last), true) = (generated.last(), pos + 1 == end) {
        session.prefill(&[last], xlstm_wgpu::Logits::None)?;
        return Ok(());
    }
    match loaded {
        Some(p) => load_state(session, p)?,
        None => session.reset()?,
    }
    let all: Vec<u32> = prompt.iter().chain(generated).copied().collect();
    session.prefill(&all, xlstm_wgpu::Logits::None)?;
    if session.position() != end {
        return Err(Error::Input(format!(
            "the state is at token {} after the run, expected {end}",
            session.position()
        )));
    }
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
    /// Whether the compile observer is this line's (and so is removed by `finish`).
    observing: bool,
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

    /// `enabled`: false gives a line that never shows and observes nothing (another display,
    /// or none, covers the compiles).
    fn start(enabled: bool) -> Self {
        let bar = indicatif::ProgressBar::hidden();
        if !enabled {
            return CompileProgress {
                bar,
                state: Arc::new(std::sync::Mutex::new(CompileTime {
                    finished: true,
                    ..Default::default()
                })),
                watcher: None,
                observing: false,
            };
        }
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
            observing: true,
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
        if std::mem::take(&mut self.observing) {
            xlstm_wgpu::gpu::kernels::set_compile_observer(None);
        }
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
