//! The `xlstm tune` command: its flags, turning them into [`TuneOptions`] (checked counts, the
//! run directory, the stored settings to try first), the progress line and Ctrl-C, and the
//! report at the end.

use super::{store, Knob, Measure, Mode, ModelSource, Observer, Params, Target, Trial, TuneOptions, TuneReport};
use crate::bench::PRESETS;
use crate::cli::{count_in, non_negative_f32, GpuArgs, RunArgs, MAX_NEW_TOKENS, MAX_PROMPT_TOKENS, MAX_REPEATS};
use std::path::{Path, PathBuf};
use std::time::Duration;
use xlstm_wgpu::telemetry::{MemArgs, Watchdog};
use xlstm_wgpu::{Error, Result};

#[derive(clap::Args)]
pub struct TuneArgs {
    /// Model shape with random weights generated on the GPU: 7b, 1b, small, tiny.
    #[arg(long, conflicts_with = "model", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    preset: Option<String>,
    /// Tune for a checkpoint instead of a preset: a directory, or a Hugging Face Hub id
    /// ORG/NAME[@REVISION] (see `xlstm generate --help`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// What to make fast: prefill, decode, or both (the geometric mean of both speed-ups).
    #[arg(long, value_enum, default_value_t = Target::Both)]
    target: Target,
    /// Search: ga (genetic algorithm) or random (uniform over the space).
    #[arg(long, value_enum, default_value_t = Mode::Ga)]
    mode: Mode,
    /// Trials at most; trial 0 is the default configuration.
    #[arg(long, default_value_t = 24, value_parser = count_in(1, MAX_TRIALS))]
    trials: usize,
    /// Prompt length of the timed prefill.
    #[arg(long, default_value_t = 1024, value_parser = count_in(1, MAX_PROMPT_TOKENS))]
    seq: usize,
    /// Start no trial after this many seconds (a positive number).
    #[arg(long, value_parser = budget_seconds)]
    budget_seconds: Option<Duration>,
    /// Seed of the search's random choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Timed repeats per measurement (the median counts).
    #[arg(long, default_value_t = 3, value_parser = count_in(0, MAX_REPEATS))]
    repeats: usize,
    /// Tokens per timed decode repeat.
    #[arg(long, default_value_t = 64, value_parser = count_in(1, MAX_NEW_TOKENS))]
    decode_tokens: usize,
    /// Prompt length of each trial's correctness check against the recurrent path (at least 2).
    #[arg(long, default_value_t = 80, value_parser = count_in(2, MAX_PROMPT_TOKENS))]
    check_tokens: usize,
    /// Largest |logit difference| from the recurrent path a trial may show (default: 1e-3 with
    /// f32 weights, 0.25 with f16 weights, 0.5 with q8 or q4 weights).
    #[arg(long, value_parser = non_negative_f32)]
    check_tolerance: Option<f32>,
    /// GA members per generation (default: about twice the square root of --trials).
    #[arg(long, value_parser = count_in(0, MAX_POPULATION))]
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

/// Runs `xlstm tune` (or, with --show, lists the stored settings).
pub fn tune(a: TuneArgs) -> Result<()> {
    if a.show {
        print!("{}", store::show()?);
        return Ok(());
    }
    let source = match (&a.model, &a.preset) {
        (Some(dir), _) => ModelSource::Dir(xlstm_wgpu::hub::resolve_model(dir)?),
        (None, Some(p)) => ModelSource::Preset(p.clone()),
        (None, None) => return Err(Error::Input("xlstm tune needs --model DIR or --preset NAME".into())),
    };
    let (target, mode) = (a.target, a.mode);
    let mut a = a;
    a.run.resolve_dtype(source.dir())?;
    let dtype = a.run.dtype;
    let shape = source.shape()?;
    let budget = a.budget_seconds;
    let explicit = a.run.explicit();
    let base = Params::default().overlay(&explicit)?;
    let pinned: Vec<Knob> = explicit.knobs();
    let run_dir = run_dir(&a.runs_dir, a.run_name.as_deref())?;
    // telemetry: watchdog and pre-load estimate, as for bench.
    let wd = std::sync::Arc::new(Watchdog::start(a.mem.resolve()?, "tune", &source.label())?);
    let progress = wd.progress();
    let gpu = a.gpu.open()?;
    wd.set_gpu(&gpu);
    let longest = a.seq.max(a.check_tokens);
    // `source.shape()` above has refused an unknown preset already.
    if let Some(est) = source.estimate(dtype, &base.session_options()?, longest) {
        wd.check_fits(&est)?;
    }
    progress.set_phase("loading");
    // end telemetry
    // The stored settings for this adapter are measured right after the defaults.
    let mut first = Vec::new();
    if !a.run.no_tune_cache {
        if let Some(e) = store::lookup(&gpu.caps, &shape, dtype) {
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
    // Progress on stderr from the first trial on: a live line on a terminal (its elapsed time
    // keeps moving), plain lines otherwise.
    let mut obs = TuneProgress {
        reporter: crate::progress::Reporter::start("tune", progress.clone()),
        progress: progress.clone(),
        interrupted: interrupt_flag(),
        watchdog: wd.clone(),
        trials: a.trials,
        json: a.json,
    };
    let report = super::run(gpu, &opts, &mut obs)?;
    obs.reporter.finish();
    progress.set_phase("done");
    let stored = if a.run.no_tune_cache || report.abort.is_some() {
        None
    } else {
        report.save_to_store()?
    };
    print_report(&report, stored.as_deref(), a.json, a.run.no_tune_cache);
    if report.ended_by == "interrupted" {
        eprintln!("xlstm: interrupted: kept the {} finished trial(s)", report.trials.len());
    }
    match report.abort {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The most trials `--trials` accepts.
const MAX_TRIALS: usize = 1_000_000;
/// The most members per generation `--population` accepts.
const MAX_POPULATION: usize = 10_000;

/// `--budget-seconds` as a Duration: a positive number of seconds that a Duration can hold
/// (1e308 cannot: it would panic).
fn budget_seconds(text: &str) -> std::result::Result<Duration, String> {
    let b: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    match Duration::try_from_secs_f64(b) {
        Ok(d) if b > 0.0 => Ok(d),
        _ => Err(format!(
            "must be a positive number of seconds below {}, got {b}",
            u64::MAX
        )),
    }
}

/// The run directory: `--run-name` (a plain name) under `runs_dir`, else the UTC time, with
/// `-2`, `-3`... added while a directory of that name exists.
fn run_dir(runs_dir: &Path, run_name: Option<&str>) -> Result<PathBuf> {
    let name = run_name.map_or_else(timestamp_name, str::to_string);
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(Error::Input(format!(
            "--run-name `{name}` is not a plain directory name"
        )));
    }
    let runs_dir = std::path::absolute(runs_dir).map_err(|e| Error::io(runs_dir, e))?;
    let mut dir = runs_dir.join(&name);
    if run_name.is_none() {
        let mut n = 2;
        while dir.exists() {
            dir = runs_dir.join(format!("{name}-{n}"));
            n += 1;
        }
    }
    Ok(dir)
}

/// The end of a run on stdout: the compact JSON object, or the table, the files and where the
/// settings were stored.
fn print_report(report: &TuneReport, stored: Option<&Path>, json: bool, no_tune_cache: bool) {
    if json {
        let mut v = report.json_summary();
        v["stored_in"] = serde_json::json!(stored);
        println!("{v}");
    } else {
        print!("{}", report.table());
        println!("files: {}", report.run_dir.display());
        match stored {
            Some(p) => println!("stored as this adapter's defaults in {}", p.display()),
            None if no_tune_cache => println!("not stored (--no-tune-cache)"),
            None => println!("nothing stored"),
        }
    }
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
    reporter: crate::progress::Reporter,
    progress: std::sync::Arc<xlstm_wgpu::telemetry::Progress>,
    interrupted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watchdog: std::sync::Arc<Watchdog>,
    trials: usize,
    json: bool,
}

impl Observer for TuneProgress {
    fn should_stop(&mut self) -> bool {
        self.interrupted.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn trial_started(&mut self, index: usize, _params: &Params) {
        self.progress.set_phase(&format!("trial {}/{}", index + 1, self.trials));
        self.progress
            .set_fraction(Some(index as f64 / self.trials.max(1) as f64));
    }
    fn model_loaded(&mut self, model: &xlstm_wgpu::Model) {
        self.watchdog.attach(model);
    }
    fn trial_done(&mut self, t: &Trial, best: Option<&Trial>) {
        self.progress
            .set_fraction(Some((t.index + 1) as f64 / self.trials.max(1) as f64));
        if let Some(b) = best {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
            self.reporter.set_detail(format!(
                "best #{}: prefill {} tok/s, decode {} tok/s",
                b.index,
                f(b.prefill_tok_s),
                f(b.decode_tok_s)
            ));
        }
        if !t.ok() && !self.json {
            self.reporter
                .println(&format!("trial {} {}: {}", t.index, t.status, t.error));
        }
    }
}

/// The default run directory name: the UTC time, `YYYYMMDD-HHMMSS`.
fn timestamp_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
