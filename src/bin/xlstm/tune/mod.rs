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
//!   within 1e-3 with f32 weights, 0.25 with f16 weights, 0.5 with q8 or q4 weights; greedy ids of the batched decode equal
//!   the reference's wherever its top-1 margin is clear) and is timed only if it passes.
//! - Results go to `trials.csv` (one row per trial, written as it finishes), `summary.csv` (best
//!   per target) and `best.json` in the run directory.
//!
//! This file holds the options, the trial record and the run loop ([`run`]); `command.rs` turns
//! the flags into options, `params.rs` declares the knobs and the space, `search.rs` proposes
//! configurations, `eval.rs` checks and times one, `report.rs` writes the files and the table,
//! and `store.rs` keeps the tuned defaults per adapter.

mod command;
pub mod eval;
pub mod params;
mod report;
pub mod search;
pub mod store;

#[cfg(test)]
mod tests;

pub use crate::source::ModelSource;
pub use command::{tune, TuneArgs};
pub use eval::Measure;
pub use params::{Knob, KnobArgs, Params, Settings, Space, Target};
pub use report::TuneReport;
pub use search::{GaConfig, Mode, Search};

use report::{params_header, trial_row, RESULT_COLUMNS, TRIAL_COLUMNS};

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
        let shapes = eval.loaded_shapes();
        let Some((p, generation)) = search.ask(&|c: &Params| Some(c.kernel_shapes()) == shapes) else {
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
