//! `xlstm tune`: searches the scheduler and kernel-shape settings for the fastest prefill and/or
//! decode on this adapter and model shape, and stores the best as this adapter's defaults.
//!
//! - The space ([`Space`]) covers the prefill strategy (`scheduled`, `fused`, `queued`), chunk
//!   size, heads per band, tile length, submit budget, segment length, the `queued` strategy's
//!   recording threads, the greedy decode batch and the GEMV lanes per row. Knobs given as flags
//!   are pinned; knobs that cannot affect the target are left out.
//! - Trial 0 is the default configuration (with the pinned flags), so the best found is never
//!   slower than it; the stored settings (if any) come next.
//! - Every trial first checks its output against the recurrent path on a short prompt (logits
//!   within 1e-3 with f32 weights, 0.25 with f16 weights; greedy ids of the batched decode equal
//!   the reference's wherever its top-1 margin is clear) and is timed only if it passes.
//! - Results go to `trials.csv` (one row per trial, written as it finishes), `summary.csv` (best
//!   per target) and `best.json` in the run directory.

pub mod eval;
pub mod params;
pub mod search;
pub mod store;

#[cfg(test)]
mod tests;

pub use eval::{Measure, ModelSource};
pub use params::{Knob, KnobArgs, Params, Settings, Space, Target};
pub use search::{GaConfig, Mode, Search};

use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xlstm_wgpu::error::{Error, Result};
use xlstm_wgpu::gpu::Gpu;

/// Everything a tune run needs besides the GPU.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    pub source: ModelSource,
    pub mode: Mode,
    /// Trials to run at most (the default configuration counts as one).
    pub trials: usize,
    /// Stop starting trials after this long.
    pub budget: Option<Duration>,
    pub seed: u64,
    /// GA members per generation (`None`: about twice the square root of `trials`).
    pub population: Option<usize>,
    pub measure: Measure,
    /// The default configuration: documented defaults with the pinned flags applied.
    pub base: Params,
    /// Knobs fixed by flags (not searched).
    pub pinned: Vec<Knob>,
    /// Configurations measured right after the default one (e.g. the stored settings).
    pub first: Vec<Params>,
    /// The run directory (created; must not hold an earlier run's trials.csv).
    pub run_dir: PathBuf,
}

/// One measured configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub index: usize,
    pub generation: usize,
    #[serde(skip)]
    pub params: Params,
    pub settings: Settings,
    pub prefill_tok_s: Option<f64>,
    pub decode_tok_s: Option<f64>,
    /// What the search maximises: tok/s of the target, or for `both` the geometric mean of
    /// the prefill and decode speed-ups over the default configuration.
    pub score: Option<f64>,
    pub check_max_diff: f32,
    /// `ok`, `wrong` (failed the check, not timed) or `error`.
    pub status: String,
    pub error: String,
    pub seconds: f64,
}

impl Trial {
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Called by [`run`] as it goes.
pub trait Observer {
    /// Checked before each trial: `true` ends the run there (e.g. after Ctrl-C).
    fn should_stop(&mut self) -> bool {
        false
    }
    /// A trial is about to start (`index` counts from 0).
    fn trial_started(&mut self, _index: usize, _params: &Params) {}
    /// A model was loaded (for the memory watchdog).
    fn model_loaded(&mut self, _model: &xlstm_wgpu::Model) {}
    /// A trial finished; `best` is the best trial so far.
    fn trial_done(&mut self, _trial: &Trial, _best: Option<&Trial>) {}
}

/// An observer that does nothing.
#[cfg(test)]
pub struct Quiet;
#[cfg(test)]
impl Observer for Quiet {}

/// The outcome of a run.
#[derive(Debug, Serialize)]
pub struct TuneReport {
    pub run_dir: PathBuf,
    pub adapter: store::AdapterId,
    pub model: String,
    pub model_shape: String,
    pub dtype: String,
    pub target: Target,
    pub mode: String,
    pub seed: u64,
    pub seq: usize,
    pub space: Vec<(String, Vec<String>)>,
    pub pinned: Vec<String>,
    pub trials: Vec<Trial>,
    /// Index of the default configuration's trial (0 unless it failed to run).
    pub baseline: Option<usize>,
    /// Best trial for the target's score.
    pub best: Option<usize>,
    pub best_prefill: Option<usize>,
    pub best_decode: Option<usize>,
    /// The settings to store: the best trial's values of every knob that affects the target.
    pub settings: Settings,
    /// Why the run ended: `trials`, `budget`, `exhausted`, `interrupted` or `stopped`.
    pub ended_by: String,
    pub seconds: f64,
    /// The error that ended the run early (a stop request or the memory limit).
    #[serde(skip)]
    pub abort: Option<Error>,
}

/// The default run directory name: the UTC time, `YYYYMMDD-HHMMSS`.
pub fn timestamp_name() -> String {
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

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| format!("{x:.3}"))
}

const TRIAL_COLUMNS: &str = "trial,generation";
const RESULT_COLUMNS: &str = "prefill_tok_s,decode_tok_s,score,check_max_diff,status,error,seconds";

fn params_header() -> String {
    Knob::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
}

fn params_row(p: &Params) -> String {
    Knob::ALL.iter().map(|&k| p.text(k)).collect::<Vec<_>>().join(",")
}

fn trial_row(t: &Trial) -> String {
    format!(
        "{},{},{},{},{},{},{:.3e},{},{},{:.2}",
        t.index,
        t.generation,
        params_row(&t.params),
        opt(t.prefill_tok_s),
        opt(t.decode_tok_s),
        t.score.map_or(String::new(), |x| format!("{x:.4}")),
        t.check_max_diff,
        t.status,
        csv_field(&t.error),
        t.seconds
    )
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| Error::io(path, e))
}

fn best_by(trials: &[Trial], f: impl Fn(&Trial) -> Option<f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, t) in trials.iter().enumerate() {
        if !t.ok() {
            continue;
        }
        if let Some(v) = f(t) {
            // Strictly greater: the earlier trial (the default first) wins ties.
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Creates the run directory (its parents as needed), or accepts an existing one that is a real
/// directory owned by this user: a symbolic link or someone else's directory planted at the name
/// would receive (or redirect) the run's files.
fn create_run_dir(dir: &std::path::Path) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.file_type().is_dir() {
        return Err(Error::Input(format!(
            "run directory {} is {}, not a directory",
            dir.display(),
            xlstm_wgpu::files::describe(&meta.file_type())
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != xlstm_wgpu::files::current_uid() {
            return Err(Error::Input(format!(
                "run directory {} is owned by uid {}, not by this user",
                dir.display(),
                meta.uid()
            )));
        }
    }
    Ok(())
}

/// Runs the search on `gpu`, writing the run directory's files as it goes.
pub fn run(gpu: Arc<Gpu>, opts: &TuneOptions, obs: &mut dyn Observer) -> Result<TuneReport> {
    let t_start = Instant::now();
    let shape = opts.source.shape()?;
    let ms = &opts.measure;
    if opts.trials == 0 {
        return Err(Error::Input("--trials must be positive".into()));
    }
    if ms.seq == 0 || ms.check_tokens < 2 || ms.decode_tokens == 0 {
        return Err(Error::Input(
            "--seq and --decode-tokens must be positive and --check-tokens at least 2".into(),
        ));
    }
    let nh = shape.num_heads;
    let base = opts.base.canonical(&opts.base, nh);
    // A bad flag fails here, before any model is loaded.
    base.session_options()?;
    base.kernel_shapes().validate()?;
    let space = Space::new(ms.target, nh, ms.seq, &base, &opts.pinned);
    let max_batch = space
        .dims
        .iter()
        .find(|(k, _)| *k == Knob::DecodeBatch)
        .and_then(|(_, v)| v.iter().max().copied())
        .unwrap_or(base.decode_batch)
        .max(base.decode_batch);
    let mut measure = ms.clone();
    measure.max_decode_batch = max_batch;
    let ga = GaConfig::for_trials(opts.trials, space.dims.len(), opts.population);
    let mut first = vec![base];
    first.extend(opts.first.iter().copied());
    let mut search = Search::new(opts.mode, space.clone(), base, nh, opts.seed, ga, &first);

    create_run_dir(&opts.run_dir)?;
    let csv_path = opts.run_dir.join("trials.csv");
    // trials.csv grows a row per trial (readable while the search runs). Created exclusively:
    // a file, link or FIFO already at its name is an error, never written through.
    let mut csv = match std::fs::OpenOptions::new().write(true).create_new(true).open(&csv_path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Input(format!(
                "{} already exists (choose another --run-name)",
                csv_path.display()
            )))
        }
        r => io(&csv_path, r)?,
    };
    io(
        &csv_path,
        writeln!(csv, "{TRIAL_COLUMNS},{},{RESULT_COLUMNS}", params_header()),
    )?;

    let mut eval = eval::Evaluator::new(gpu.clone(), opts.source.clone(), measure);
    let relevant = ms.target.knobs();
    let mut trials: Vec<Trial> = Vec::new();
    let mut ended_by = "trials".to_string();
    let mut abort = None;
    let (mut base_p, mut base_d) = (None::<f64>, None::<f64>);
    while trials.len() < opts.trials {
        if obs.should_stop() {
            ended_by = "interrupted".into();
            break;
        }
        if opts.budget.is_some_and(|b| t_start.elapsed() >= b) {
            ended_by = "budget".into();
            break;
        }
        let lanes = eval.loaded_lanes();
        let Some((p, generation)) = search.ask(&|c: &Params| Some(c.gemv_lanes) == lanes) else {
            ended_by = "exhausted".into();
            break;
        };
        let index = trials.len();
        obs.trial_started(index, &p);
        let t0 = Instant::now();
        // Report a fresh model to the observer (memory watchdog) before the trial uses it.
        let loaded = eval.model_for(&p).map(|(m, fresh)| {
            if fresh {
                obs.model_loaded(&m);
            }
        });
        let result = match loaded {
            Err(e @ (Error::Stopped(_) | Error::MemoryLimit(_))) => Err(e),
            Err(e) => Ok(Err(e)),
            Ok(()) => eval.trial(&p, &base),
        };
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                ended_by = "stopped".into();
                abort = Some(e);
                break;
            }
        };
        let mut t = Trial {
            index,
            generation,
            params: p,
            settings: p.settings(&relevant),
            prefill_tok_s: None,
            decode_tok_s: None,
            score: None,
            check_max_diff: 0.0,
            status: "ok".into(),
            error: String::new(),
            seconds: 0.0,
        };
        match outcome {
            Ok(o) => {
                t.check_max_diff = o.check_diff;
                t.prefill_tok_s = o.prefill_tok_s;
                t.decode_tok_s = o.decode_tok_s;
                if let Some(w) = o.wrong {
                    t.status = "wrong".into();
                    t.error = w;
                }
            }
            Err(e) => {
                t.status = "error".into();
                t.error = e.to_string();
            }
        }
        if t.ok() {
            base_p = base_p.or(t.prefill_tok_s);
            base_d = base_d.or(t.decode_tok_s);
            t.score = match ms.target {
                Target::Prefill => t.prefill_tok_s,
                Target::Decode => t.decode_tok_s,
                Target::Both => match (t.prefill_tok_s, t.decode_tok_s, base_p, base_d) {
                    (Some(p), Some(d), Some(p0), Some(d0)) => Some((p / p0 * d / d0).sqrt()),
                    _ => None,
                },
            };
        }
        t.seconds = t0.elapsed().as_secs_f64();
        search.tell(p, t.score);
        io(&csv_path, writeln!(csv, "{}", trial_row(&t)).and_then(|_| csv.flush()))?;
        trials.push(t);
        let best = best_by(&trials, |t| t.score).map(|i| &trials[i]);
        obs.trial_done(&trials[index], best);
    }
    let best = best_by(&trials, |t| t.score);
    let best_prefill = if ms.target.prefill() {
        best_by(&trials, |t| t.prefill_tok_s)
    } else {
        None
    };
    let best_decode = if ms.target.decode() {
        best_by(&trials, |t| t.decode_tok_s)
    } else {
        None
    };
    let settings = best.map_or_else(Settings::default, |i| trials[i].params.settings(&relevant));
    let report = TuneReport {
        run_dir: opts.run_dir.clone(),
        adapter: store::AdapterId::of(&gpu.caps),
        model: opts.source.label(),
        model_shape: shape.key.clone(),
        dtype: ms.dtype.name().to_string(),
        target: ms.target,
        mode: opts.mode.name().to_string(),
        seed: opts.seed,
        seq: ms.seq,
        space: space
            .dims
            .iter()
            .map(|(k, v)| {
                let mut p = base;
                let vals = v
                    .iter()
                    .map(|&x| {
                        p.set(*k, x);
                        p.text(*k)
                    })
                    .collect();
                (k.name().to_string(), vals)
            })
            .collect(),
        pinned: opts.pinned.iter().map(|k| k.name().to_string()).collect(),
        baseline: trials.iter().position(|t| t.index == 0 && t.ok()),
        trials,
        best,
        best_prefill,
        best_decode,
        settings,
        ended_by,
        seconds: t_start.elapsed().as_secs_f64(),
        abort,
    };
    report.write_summary()?;
    Ok(report)
}

impl TuneReport {
    fn trial(&self, i: Option<usize>) -> Option<&Trial> {
        i.and_then(|i| self.trials.get(i))
    }

    /// The default configuration's trial, when it ran.
    pub fn baseline_trial(&self) -> Option<&Trial> {
        self.trial(self.baseline)
    }

    /// The best over the default of one measurement (`None` without both).
    fn speedup(&self, i: Option<usize>, f: impl Fn(&Trial) -> Option<f64>) -> Option<f64> {
        let b = f(self.baseline_trial()?)?;
        Some(f(self.trial(i)?)? / b)
    }

    /// Speed-ups of the best prefill and best decode over the defaults.
    pub fn speedups(&self) -> std::collections::BTreeMap<String, f64> {
        let mut m = std::collections::BTreeMap::new();
        if let Some(s) = self.speedup(self.best, |t| t.prefill_tok_s) {
            m.insert("prefill".to_string(), s);
        }
        if let Some(s) = self.speedup(self.best, |t| t.decode_tok_s) {
            m.insert("decode".to_string(), s);
        }
        m
    }

    /// Writes summary.csv (best per target, with the default for comparison) and best.json.
    pub fn write_summary(&self) -> Result<()> {
        let path = self.run_dir.join("summary.csv");
        let mut text = format!(
            "target,trial,{},prefill_tok_s,decode_tok_s,default_prefill_tok_s,default_decode_tok_s,speedup\n",
            params_header()
        );
        let base = self.baseline_trial();
        let mut rows: Vec<(&str, Option<usize>, Option<f64>)> = Vec::new();
        if self.target.prefill() {
            rows.push((
                "prefill",
                self.best_prefill,
                self.speedup(self.best_prefill, |t| t.prefill_tok_s),
            ));
        }
        if self.target.decode() {
            rows.push((
                "decode",
                self.best_decode,
                self.speedup(self.best_decode, |t| t.decode_tok_s),
            ));
        }
        if self.target == Target::Both {
            rows.push(("both", self.best, self.trial(self.best).and_then(|t| t.score)));
        }
        for (name, i, speedup) in rows {
            let Some(t) = self.trial(i) else { continue };
            text += &format!(
                "{name},{},{},{},{},{},{},{}\n",
                t.index,
                params_row(&t.params),
                opt(t.prefill_tok_s),
                opt(t.decode_tok_s),
                opt(base.and_then(|b| b.prefill_tok_s)),
                opt(base.and_then(|b| b.decode_tok_s)),
                speedup.map_or(String::new(), |s| format!("{s:.4}")),
            );
        }
        xlstm_wgpu::files::write_atomic(&path, text.as_bytes(), xlstm_wgpu::files::Visibility::Shared)?;
        let best = serde_json::json!({
            "run_dir": self.run_dir,
            "adapter": self.adapter,
            "model": self.model,
            "model_shape": self.model_shape,
            "dtype": self.dtype,
            "target": self.target,
            "mode": self.mode,
            "seed": self.seed,
            "seq": self.seq,
            "trials": self.trials.len(),
            "ended_by": self.ended_by,
            "seconds": self.seconds,
            "space": self.space.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "pinned": self.pinned,
            "default": base,
            "best": self.trial(self.best),
            "best_prefill": self.trial(self.best_prefill),
            "best_decode": self.trial(self.best_decode),
            "speedup": self.speedups(),
            "settings": self.settings,
        });
        let text = serde_json::to_string_pretty(&best).map_err(|e| Error::Input(e.to_string()))?;
        xlstm_wgpu::files::write_atomic(
            &self.run_dir.join("best.json"),
            text.as_bytes(),
            xlstm_wgpu::files::Visibility::Shared,
        )
    }

    /// Stores the best settings as this adapter's defaults for the model shape and dtype.
    /// `Ok(None)` when nothing is worth storing (no trial succeeded).
    pub fn save_to_store(&self) -> Result<Option<PathBuf>> {
        if self.best.is_none() {
            return Ok(None);
        }
        let entry = store::Entry {
            adapter: self.adapter.clone(),
            model_shape: self.model_shape.clone(),
            dtype: self.dtype.clone(),
            settings: self.settings.clone(),
            updated_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            run: self.run_dir.display().to_string(),
            speedup: self.speedups(),
        };
        store::save(entry).map(Some)
    }

    /// A compact one-object summary (for `--json`).
    pub fn json_summary(&self) -> serde_json::Value {
        let brief = |t: Option<&Trial>| {
            t.map(|t| {
                serde_json::json!({
                    "trial": t.index,
                    "prefill_tok_s": t.prefill_tok_s,
                    "decode_tok_s": t.decode_tok_s,
                    "settings": t.settings,
                })
            })
        };
        serde_json::json!({
            "run_dir": self.run_dir,
            "adapter": self.adapter.name,
            "backend": self.adapter.backend,
            "model": self.model,
            "dtype": self.dtype,
            "target": self.target,
            "mode": self.mode,
            "seq": self.seq,
            "trials": self.trials.len(),
            "ok": self.trials.iter().filter(|t| t.ok()).count(),
            "ended_by": self.ended_by,
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "default": brief(self.baseline_trial()),
            "best": brief(self.trial(self.best)),
            "best_prefill": brief(self.trial(self.best_prefill)),
            "best_decode": brief(self.trial(self.best_decode)),
            "speedup": self.speedups(),
            "settings": self.settings,
        })
    }

    /// A short table: the default, then the best trials by score, then the chosen settings.
    pub fn table(&self) -> String {
        let knobs: Vec<Knob> = Knob::ALL
            .into_iter()
            .filter(|k| self.space.iter().any(|(n, _)| n == k.name()) || self.pinned.iter().any(|n| n == k.name()))
            .collect();
        let mut out = format!(
            "{} | {} | {} weights | target {} | {} trials ({} ok) in {:.1} s, ended by {}\n",
            self.adapter,
            self.model,
            self.dtype,
            self.target.name(),
            self.trials.len(),
            self.trials.iter().filter(|t| t.ok()).count(),
            self.seconds,
            self.ended_by
        );
        out += &format!("{:>6} ", "trial");
        for &k in &knobs {
            out += &format!("{:>9} ", k.short());
        }
        out += &format!("{:>11} {:>11} {:>7}\n", "prefill/s", "decode/s", "status");
        let mut order: Vec<usize> = (0..self.trials.len()).filter(|&i| self.trials[i].ok()).collect();
        order.sort_by(|&a, &b| {
            let s = |i: usize| self.trials[i].score.unwrap_or(f64::NEG_INFINITY);
            s(b).total_cmp(&s(a))
        });
        let mut shown: Vec<usize> = self.baseline.into_iter().collect();
        shown.extend(order.into_iter().filter(|&i| Some(i) != self.baseline).take(5));
        for i in shown {
            let t = &self.trials[i];
            let mark = if Some(i) == self.best { "*" } else { " " };
            out += &format!("{:>5}{mark} ", t.index);
            for &k in &knobs {
                out += &format!("{:>9} ", t.params.text(k));
            }
            let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
            let status = if i == self.baseline.unwrap_or(usize::MAX) {
                "default"
            } else {
                &t.status
            };
            out += &format!("{:>11} {:>11} {:>7}\n", f(t.prefill_tok_s), f(t.decode_tok_s), status);
        }
        let failed = self.trials.iter().filter(|t| !t.ok()).count();
        if failed > 0 {
            out += &format!("{failed} trial(s) failed the check or errored (see trials.csv)\n");
        }
        let sp: Vec<String> = self.speedups().iter().map(|(k, v)| format!("{k} x{v:.2}")).collect();
        if let Some(t) = self.trial(self.best) {
            out += &format!(
                "best: trial {} ({}){}\n",
                t.index,
                self.settings.describe(),
                if sp.is_empty() {
                    String::new()
                } else {
                    format!(", {} over the defaults", sp.join(", "))
                }
            );
        } else {
            out += "no trial succeeded\n";
        }
        out
    }
}
