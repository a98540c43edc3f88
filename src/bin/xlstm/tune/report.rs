//! What a tune run leaves: the [`TuneReport`] (every trial, the best per target, the settings to
//! store), the rows of `trials.csv` and `summary.csv`, `best.json`, the `--json` summary, the
//! table printed at the end, and the entry stored as the adapter's defaults.

use super::{store, Knob, Params, Settings, Target, Trial};
use serde::Serialize;
use std::path::PathBuf;
use xlstm_wgpu::error::{Error, Result};

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

pub const TRIAL_COLUMNS: &str = "trial,generation";
pub const RESULT_COLUMNS: &str = "prefill_tok_s,decode_tok_s,score,check_max_diff,status,error,seconds";

pub fn params_header() -> String {
    Knob::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
}

fn params_row(p: &Params) -> String {
    Knob::ALL.iter().map(|&k| p.text(k)).collect::<Vec<_>>().join(",")
}

pub fn trial_row(t: &Trial) -> String {
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
