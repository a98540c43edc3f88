//! `xlstm`: generate text, score token ids (the machine interface for numerics), and describe
//! the GPU.

mod bench;
mod cli;
mod tune;

use clap::{Parser, Subcommand};
use cli::{
    check_count, check_new_tokens, run_generate, GenerateArgs, GpuArgs, RunArgs, MAX_PROMPT_TOKENS, MAX_REPEATS,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use xlstm_wgpu::files;
use xlstm_wgpu::gpu::device::list_adapters;
use xlstm_wgpu::sample::argmax;
use xlstm_wgpu::telemetry::{exit_code, signals, Estimate, MemArgs, Watchdog};
use xlstm_wgpu::{Error, Logits, Result, Session};

#[derive(Parser)]
#[command(name = "xlstm", version, about = "xLSTM language models on any GPU through wgpu")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt.
    Generate(GenerateArgs),
    /// Logits for every position of a token-id prompt, and optionally greedy continuation.
    Score(ScoreArgs),
    /// List adapters and print the chosen adapter's capabilities.
    Info(InfoArgs),
    /// Prefill and decode throughput, time to first token, memory, and per-kernel GPU time.
    Bench(BenchArgs),
    /// Search the scheduler and kernel-shape settings for the fastest on this adapter and store
    /// the best as its defaults (used by generate, score and bench unless flags override).
    Tune(TuneArgs),
}

#[derive(clap::Args)]
struct ScoreArgs {
    #[arg(long)]
    model: PathBuf,
    /// JSON array of token ids, used as given (no BOS added).
    #[arg(long)]
    input_ids: PathBuf,
    /// Output safetensors: `logits` F32 [T, V]; with --generate N also `generated` I64 [N] and
    /// `generated_logits` F32 [N, V].
    #[arg(long)]
    out: PathBuf,
    /// Greedy tokens to generate through the decode step path (at most 1048576).
    #[arg(long, default_value_t = 0)]
    generate: usize,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(flatten)]
    mem: MemArgs,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Model shape with random weights generated on the GPU: 7b, 1b, small, tiny.
    #[arg(long, conflicts_with = "model")]
    preset: Option<String>,
    /// Benchmark a checkpoint instead of a preset.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prompt lengths for prefill (comma separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![512usize, 2048, 8192])]
    prefill_lens: Vec<usize>,
    /// Greedy tokens to decode.
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    /// Timed repeats per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also measure GPU time per kernel with timestamp queries.
    #[arg(long)]
    profile: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(flatten)]
    mem: MemArgs,
}

#[derive(clap::Args)]
struct TuneArgs {
    /// Model shape with random weights generated on the GPU: 7b, 1b, small, tiny.
    #[arg(long, conflicts_with = "model")]
    preset: Option<String>,
    /// Tune for a checkpoint instead of a preset.
    #[arg(long)]
    model: Option<PathBuf>,
    /// What to make fast: prefill, decode, or both (the geometric mean of both speed-ups).
    #[arg(long, value_enum, default_value_t = tune::Target::Both)]
    target: tune::Target,
    /// Search: ga (genetic algorithm) or random (uniform over the space).
    #[arg(long, value_enum, default_value_t = tune::Mode::Ga)]
    mode: tune::Mode,
    /// Trials at most; trial 0 is the default configuration.
    #[arg(long, default_value_t = 24)]
    trials: usize,
    /// Prompt length of the timed prefill.
    #[arg(long, default_value_t = 1024)]
    seq: usize,
    /// Start no trial after this many seconds.
    #[arg(long)]
    budget_seconds: Option<f64>,
    /// Seed of the search's random choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Timed repeats per measurement (the median counts).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Tokens per timed decode repeat.
    #[arg(long, default_value_t = 64)]
    decode_tokens: usize,
    /// Prompt length of each trial's correctness check against the recurrent path.
    #[arg(long, default_value_t = 80)]
    check_tokens: usize,
    /// Largest |logit difference| from the recurrent path a trial may show (default: 1e-3 with
    /// f32 weights, 0.25 with f16 weights).
    #[arg(long)]
    check_tolerance: Option<f32>,
    /// GA members per generation (default: about twice the square root of --trials).
    #[arg(long)]
    population: Option<usize>,
    /// Name of the run directory (default: the UTC time).
    #[arg(long)]
    run_name: Option<String>,
    /// Where run directories go.
    #[arg(long, default_value = "runs/tune")]
    runs_dir: PathBuf,
    /// List the tuned settings stored in the cache and exit.
    #[arg(long)]
    show: bool,
    /// Print one compact JSON object at the end instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(flatten)]
    mem: MemArgs,
}

#[derive(clap::Args)]
struct InfoArgs {
    #[command(flatten)]
    gpu: GpuArgs,
}

/// A value outside a flag's fixed choices (`--dtype`, `--prefill`, `--target`, `--mode`) is bad
/// input like any other: one `xlstm: error:` line and exit code 1, as when these flags were
/// parsed by hand. Every other command-line error stays clap's (usage, exit code 2).
fn unknown_choice(e: &clap::Error) -> Option<Error> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) else {
        return None;
    };
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue) else {
        return None;
    };
    // `--dtype <DTYPE>`: the flag without its value name.
    let flag = arg.split_whitespace().next().unwrap_or(arg);
    Some(Error::Input(format!("unknown {flag} `{value}` ({})", valid.join(", "))))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match unknown_choice(&e) {
            Some(err) => {
                eprintln!("xlstm: error: {err}");
                return ExitCode::from(exit_code(&err));
            }
            None => e.exit(),
        },
    };
    let result = match cli.cmd {
        Cmd::Generate(a) => run_generate(&a),
        Cmd::Score(a) => score(a),
        Cmd::Info(a) => info(a),
        Cmd::Bench(a) => bench(a),
        Cmd::Tune(a) => tune(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xlstm: error: {e}");
            // 1, or 3 for the memory limit and 4 for a stop request (see telemetry).
            ExitCode::from(exit_code(&e))
        }
    }
}

fn info(a: InfoArgs) -> Result<()> {
    for ad in list_adapters(&a.gpu.options()) {
        println!("[{}] {} ({}, {})", ad.index, ad.name, ad.backend, ad.device_type);
    }
    let gpu = a.gpu.open()?;
    println!("{}", gpu.caps);
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    if a.prefill_lens.contains(&0) {
        return Err(Error::Input("prefill lengths must be positive".into()));
    }
    check_new_tokens("--decode-tokens", a.decode_tokens)?;
    for &len in &a.prefill_lens {
        check_count("--prefill-lens", len, MAX_PROMPT_TOKENS, "tokens a prompt may have")?;
    }
    check_count("--repeats", a.repeats, MAX_REPEATS, "repeats accepted")?;
    // telemetry: watchdog and pre-load estimate.
    let label = match (&a.model, &a.preset) {
        (Some(dir), _) => dir.display().to_string(),
        (None, p) => format!("preset {}", p.as_deref().unwrap_or("7b")),
    };
    // SIGINT/SIGTERM stop the benchmark at its next safe point (exit code 130/143).
    let wd = Watchdog::start_interruptible(a.mem.resolve()?, "bench", &label)?;
    let progress = wd.progress();
    let gpu = a.gpu.open()?;
    wd.set_gpu(&gpu);
    // Tuned defaults for this adapter and model shape (flags win).
    let mut a = a;
    let shape = match (&a.model, &a.preset) {
        (Some(dir), _) => crate::tune::store::ModelShape::of_dir(dir).ok(),
        (None, p) => crate::bench::preset(p.as_deref().unwrap_or("7b"))
            .ok()
            .map(|c| crate::tune::store::ModelShape::large(&c)),
    };
    let tuned = a.run.apply_tune_cache(&gpu, shape.as_ref());
    let longest = a.prefill_lens.iter().copied().max().unwrap_or(1);
    let est = match (&a.model, &a.preset) {
        (Some(dir), _) => Estimate::for_dir(dir, a.run.dtype, &a.run.session_options()?, longest, false).ok(),
        (None, p) => crate::bench::preset(p.as_deref().unwrap_or("7b")).ok().map(|cfg| {
            Estimate::for_config(
                &cfg,
                a.run.dtype,
                &a.run.session_options().unwrap_or_default(),
                longest,
                false,
            )
        }),
    };
    if let Some(est) = est {
        wd.check_fits(&est)?;
    }
    progress.set_phase("loading");
    // end telemetry
    let t0 = std::time::Instant::now();
    let (model, name) = match (&a.model, &a.preset) {
        (Some(dir), _) => (a.run.load(gpu, dir, false)?, dir.display().to_string()),
        (None, preset) => {
            let name = preset.clone().unwrap_or_else(|| "7b".into());
            let cfg = crate::bench::preset(&name)?;
            (
                xlstm_wgpu::Model::random(gpu, cfg, &a.run.load_options(false)?, 1)?,
                format!("preset {name}"),
            )
        }
    };
    let load_secs = t0.elapsed().as_secs_f64();
    wd.attach(&model);
    wd.check_now()?;
    let opts = crate::bench::BenchOptions {
        prefill_lens: a.prefill_lens.clone(),
        decode_tokens: a.decode_tokens,
        repeats: a.repeats,
        profile: a.profile,
        session: a.run.session_options()?,
    };
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = crate::bench::run(&model, &name, &opts, &mut |i, n, what| {
        bar.set_length(n as u64);
        bar.set_position(i as u64);
        bar.set_message(what.to_string());
        progress.set_phase(what);
        progress.set_fraction(Some(i as f64 / n.max(1) as f64));
    })?;
    bar.finish_and_clear();
    if a.json {
        let mut v = serde_json::to_value(&report).map_err(|e| Error::Input(e.to_string()))?;
        v["load_seconds"] = serde_json::json!(load_secs);
        v["tuned_from_cache"] = serde_json::json!(tuned);
        println!("{v}");
    } else {
        match &tuned {
            Some(t) => println!("model ready in {load_secs:.2} s | tuned (cache): {t}"),
            None => println!("model ready in {load_secs:.2} s"),
        }
        print!("{}", report.table());
    }
    Ok(())
}

fn read_ids(path: &Path) -> Result<Vec<u32>> {
    let text = xlstm_wgpu::files::read_input(path, 1 << 30).map_err(|e| Error::io(path, e))?;
    let ids: Vec<i64> = serde_json::from_slice(&text)
        .map_err(|e| Error::Input(format!("{}: expected a JSON array of token ids ({e})", path.display())))?;
    ids.into_iter()
        .map(|i| u32::try_from(i).map_err(|_| Error::Input(format!("token id {i} is out of range"))))
        .collect()
}

/// One tensor of the score output: its name, safetensors dtype name, shape and bytes.
struct OutTensor {
    name: &'static str,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: u64,
}

/// The safetensors header (length prefix and JSON, padded to 8 bytes) of tensors stored in the
/// given order, back to back: computable from the shapes alone, so the data can follow as it is
/// produced instead of being assembled in memory first.
fn safetensors_header(tensors: &[OutTensor], meta: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(meta));
    let mut offset = 0u64;
    for t in tensors {
        let end = offset
            .checked_add(t.bytes)
            .ok_or_else(|| Error::Input("the output is too large".into()))?;
        header.insert(
            t.name.into(),
            serde_json::json!({ "dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| Error::Input(format!("building the output: {e}")))?;
    // The data starts 8-byte aligned, as safetensors writers do.
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    Ok(out)
}

/// Bytes of `n` values of `size` bytes each, refusing sizes that overflow.
fn tensor_bytes(n: &[usize], size: usize) -> Result<u64> {
    n.iter()
        .try_fold(size as u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| Error::Input("the output is too large".into()))
}

/// Writes `data` in pieces, checking the watchdog between them: the hard memory limit and a
/// stop (xltop, a signal) apply while a large output is written too.
fn write_checked(out: &mut files::AtomicFile, data: &[u8], wd: &Watchdog, path: &Path) -> Result<()> {
    const PIECE: usize = 16 << 20;
    for piece in data.chunks(PIECE) {
        out.write_all(piece).map_err(|e| Error::io(path, e))?;
        wd.check_now()?;
    }
    Ok(())
}

fn score(a: ScoreArgs) -> Result<()> {
    files::check_output_path(&a.out)?;
    check_new_tokens("--generate", a.generate)?;
    let ids = read_ids(&a.input_ids)?;
    if ids.is_empty() {
        return Err(Error::Input(format!("{}: the prompt is empty", a.input_ids.display())));
    }
    // telemetry: watchdog and pre-load estimate; SIGINT/SIGTERM stop the run at a safe point and
    // remove the partial output.
    let wd = Watchdog::start_interruptible(a.mem.resolve()?, "score", &a.model.display().to_string())?;
    let progress = wd.progress();
    let gpu = a.gpu.open()?;
    wd.set_gpu(&gpu);
    // Tuned defaults for this adapter and model shape (flags win).
    let mut a = a;
    let tuned = a
        .run
        .apply_tune_cache(&gpu, crate::tune::store::ModelShape::of_dir(&a.model).ok().as_ref());
    // The output streams to disk as it is produced, so the host holds the prompt's logits once
    // (counted by the estimate) and one decode row at a time.
    if let Ok(est) = Estimate::for_dir(&a.model, a.run.dtype, &a.run.session_options()?, ids.len(), true) {
        wd.check_fits(&est)?;
    }
    progress.set_phase("loading");
    let model = a.run.load(gpu, &a.model, false)?;
    wd.attach(&model);
    wd.check_now()?;
    progress.set_total(Some(a.generate as u64));
    progress.set_phase("prefill");
    // end telemetry
    let v = model.vocab_size();
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
        return Err(Error::Input(format!(
            "token id {bad} is out of range for a vocabulary of {v}"
        )));
    }
    let (t, n) = (ids.len(), a.generate);
    // Data order: logits, generated_logits (rows as they come), generated (known at the end).
    let mut tensors = vec![OutTensor {
        name: "logits",
        dtype: "F32",
        shape: vec![t, v],
        bytes: tensor_bytes(&[t, v], 4)?,
    }];
    if n > 0 {
        tensors.push(OutTensor {
            name: "generated_logits",
            dtype: "F32",
            shape: vec![n, v],
            bytes: tensor_bytes(&[n, v], 4)?,
        });
        tensors.push(OutTensor {
            name: "generated",
            dtype: "I64",
            shape: vec![n],
            bytes: tensor_bytes(&[n], 8)?,
        });
    }
    let mut meta = BTreeMap::new();
    meta.insert("dtype".to_string(), model.dtype().name().to_string());
    let params = a.run.params()?;
    meta.insert("prefill".to_string(), params.prefill.name().to_string());
    meta.insert("chunk_size".to_string(), params.chunk_size.to_string());
    if let Some(t) = &tuned {
        meta.insert("tuned_from_cache".to_string(), t.clone());
    }
    let header = safetensors_header(&tensors, &meta)?;

    let mut session = Session::new(&model, a.run.session_options()?)?;
    let logits = session.prefill(&ids, Logits::All)?;
    progress.set_phase("writing");
    let mut out = files::AtomicFile::create(&a.out, files::Visibility::Shared)?;
    // An immediate exit (a second signal) skips destructors: the partial file is removed then.
    let _remove_partial = signals::remove_on_exit(out.temp_path());
    out.write_all(&header).map_err(|e| Error::io(&a.out, e))?;
    write_checked(&mut out, bytemuck::cast_slice(&logits), &wd, &a.out)?;
    let mut row = logits[(t - 1) * v..].to_vec();
    drop(logits);
    let mut generated: Vec<i64> = Vec::with_capacity(n);
    if n > 0 {
        progress.set_phase("decode");
        for i in 0..n {
            progress.add_tokens(1);
            let next = argmax(&row) as u32;
            generated.push(next as i64);
            out.write_all(bytemuck::cast_slice(&row))
                .map_err(|e| Error::io(&a.out, e))?;
            if i + 1 < n {
                row = session.step(next)?;
            }
        }
        progress.set_phase("writing");
        let ids_bytes: Vec<u8> = generated.iter().flat_map(|x| x.to_le_bytes()).collect();
        write_checked(&mut out, &ids_bytes, &wd, &a.out)?;
    }
    wd.check_now()?;
    out.commit()?;
    // The summary: score prints nothing else, and only says where tuned defaults applied.
    if let Some(t) = tuned {
        eprintln!("xlstm: tuned (cache): {t}");
    }
    Ok(())
}

/// Sets the returned flag on the first Ctrl-C (SIGINT); a second one ends the process at once.
fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sig = signal_hook::consts::SIGINT;
    // Order matters: the conditional exit sees the flag as the previous Ctrl-C left it.
    let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone());
    let _ = signal_hook::flag::register(sig, flag.clone());
    flag
}

struct TuneProgress {
    bar: indicatif::ProgressBar,
    progress: std::sync::Arc<xlstm_wgpu::telemetry::Progress>,
    interrupted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watchdog: std::sync::Arc<Watchdog>,
    trials: usize,
    json: bool,
}

impl crate::tune::Observer for TuneProgress {
    fn should_stop(&mut self) -> bool {
        self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn trial_started(&mut self, index: usize, _params: &crate::tune::Params) {
        self.progress.set_phase(&format!("trial {}/{}", index + 1, self.trials));
        self.progress
            .set_fraction(Some(index as f64 / self.trials.max(1) as f64));
    }
    fn model_loaded(&mut self, model: &xlstm_wgpu::Model) {
        self.watchdog.attach(model);
    }
    fn trial_done(&mut self, t: &crate::tune::Trial, best: Option<&crate::tune::Trial>) {
        self.bar.inc(1);
        if let Some(b) = best {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
            self.bar.set_message(format!(
                "best #{}: prefill {} tok/s, decode {} tok/s",
                b.index,
                f(b.prefill_tok_s),
                f(b.decode_tok_s)
            ));
        }
        if !t.ok() && !self.json {
            self.bar.println(format!("trial {} {}: {}", t.index, t.status, t.error));
        }
    }
}

fn tune(a: TuneArgs) -> Result<()> {
    use crate::tune::{self, Knob, Measure, ModelSource, Params, TuneOptions};
    if a.show {
        print!("{}", tune::store::show()?);
        return Ok(());
    }
    let source = match (&a.model, &a.preset) {
        (Some(dir), _) => ModelSource::Dir(dir.clone()),
        (None, Some(p)) => ModelSource::Preset(p.clone()),
        (None, None) => return Err(Error::Input("xlstm tune needs --model DIR or --preset NAME".into())),
    };
    check_count("--seq", a.seq, MAX_PROMPT_TOKENS, "tokens a prompt may have")?;
    check_count(
        "--check-tokens",
        a.check_tokens,
        MAX_PROMPT_TOKENS,
        "tokens a prompt may have",
    )?;
    check_new_tokens("--decode-tokens", a.decode_tokens)?;
    check_count("--repeats", a.repeats, MAX_REPEATS, "repeats accepted")?;
    check_count("--trials", a.trials, 1_000_000, "trials accepted")?;
    if let Some(p) = a.population {
        check_count("--population", p, 10_000, "members a generation may have")?;
    }
    let (target, mode) = (a.target, a.mode);
    let dtype = a.run.dtype;
    let shape = source.shape()?;
    // A positive number of seconds that a Duration can hold (1e308 cannot: it would panic).
    let budget = match a.budget_seconds {
        None => None,
        Some(b) => match std::time::Duration::try_from_secs_f64(b) {
            Ok(d) if b > 0.0 => Some(d),
            _ => {
                return Err(Error::Input(format!(
                    "--budget-seconds must be a positive number of seconds below {}, got {b}",
                    u64::MAX
                )))
            }
        },
    };
    let explicit = a.run.explicit();
    let base = Params::default().overlay(&explicit)?;
    let pinned: Vec<Knob> = explicit.knobs();
    let run_name = a.run_name.clone().unwrap_or_else(tune::timestamp_name);
    if run_name.is_empty() || run_name.contains(['/', '\\']) || run_name == "." || run_name == ".." {
        return Err(Error::Input(format!(
            "--run-name `{run_name}` is not a plain directory name"
        )));
    }
    let runs_dir = std::path::absolute(&a.runs_dir).map_err(|e| Error::io(&a.runs_dir, e))?;
    let mut run_dir = runs_dir.join(&run_name);
    if a.run_name.is_none() {
        let mut n = 2;
        while run_dir.exists() {
            run_dir = runs_dir.join(format!("{run_name}-{n}"));
            n += 1;
        }
    }
    // telemetry: watchdog and pre-load estimate, as for bench.
    let wd = std::sync::Arc::new(Watchdog::start(a.mem.resolve()?, "tune", &source.label())?);
    let progress = wd.progress();
    let gpu = a.gpu.open()?;
    wd.set_gpu(&gpu);
    let longest = a.seq.max(a.check_tokens);
    let est = match &source {
        ModelSource::Dir(d) => Estimate::for_dir(d, dtype, &base.session_options()?, longest, false).ok(),
        ModelSource::Preset(p) => Some(Estimate::for_config(
            &crate::bench::preset(p)?,
            dtype,
            &base.session_options()?,
            longest,
            false,
        )),
    };
    if let Some(est) = est {
        wd.check_fits(&est)?;
    }
    progress.set_phase("loading");
    // end telemetry
    // The stored settings for this adapter are measured right after the defaults.
    let mut first = Vec::new();
    if !a.run.no_tune_cache {
        if let Some(e) = tune::store::lookup(&gpu.caps, &shape, dtype) {
            if let Ok(p) = base.overlay(&e.settings).and_then(|p| p.overlay(&explicit)) {
                first.push(p);
            }
        }
    }
    let opts = TuneOptions {
        source,
        mode,
        trials: a.trials,
        budget,
        seed: a.seed,
        population: a.population,
        measure: Measure {
            target,
            dtype,
            kernel_checks: a.run.kernel_checks(),
            seq: a.seq,
            repeats: a.repeats,
            decode_tokens: a.decode_tokens,
            check_tokens: a.check_tokens,
            max_decode_batch: 0,
            tolerance: a.check_tolerance,
        },
        base,
        pinned,
        first,
        run_dir,
    };
    let bar = indicatif::ProgressBar::new(a.trials as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} trials {msg} [{elapsed} < {eta}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut obs = TuneProgress {
        bar: bar.clone(),
        progress: progress.clone(),
        interrupted: interrupt_flag(),
        watchdog: wd.clone(),
        trials: a.trials,
        json: a.json,
    };
    let report = tune::run(gpu, &opts, &mut obs)?;
    bar.finish_and_clear();
    progress.set_phase("done");
    let stored = if a.run.no_tune_cache || report.abort.is_some() {
        None
    } else {
        report.save_to_store()?
    };
    if a.json {
        let mut v = report.json_summary();
        v["stored_in"] = serde_json::json!(stored);
        println!("{v}");
    } else {
        print!("{}", report.table());
        println!("files: {}", report.run_dir.display());
        match &stored {
            Some(p) => println!("stored as this adapter's defaults in {}", p.display()),
            None if a.run.no_tune_cache => println!("not stored (--no-tune-cache)"),
            None => println!("nothing stored"),
        }
    }
    if report.ended_by == "interrupted" {
        eprintln!("xlstm: interrupted: kept the {} finished trial(s)", report.trials.len());
    }
    match report.abort {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
