//! Measuring one trial: load the model its kernel shapes need (reusing the loaded one when they
//! match), check its output against the recurrent path, then time the target with warm-up and
//! repeats. A trial whose output is wrong is never timed, so a wrong-but-fast setting cannot win.

use super::params::{Params, Target};
use crate::bench::{median, prompt, timed_prefill};
use crate::source::ModelSource;
use std::sync::Arc;
use std::time::Instant;
use xlstm_wgpu::error::{Error, Result};
use xlstm_wgpu::gpu::Gpu;
use xlstm_wgpu::model::schedule::PrefillStrategy;
use xlstm_wgpu::model::{LoadOptions, Model, WeightDtype};
use xlstm_wgpu::ops::KernelShapes;
use xlstm_wgpu::sample::argmax;
use xlstm_wgpu::session::{Logits, Session};

/// How trials are measured.
#[derive(Clone, Debug)]
pub struct Measure {
    pub target: Target,
    pub dtype: WeightDtype,
    pub kernel_checks: xlstm_wgpu::gpu::KernelChecks,
    /// Prompt length of the timed prefill.
    pub seq: usize,
    /// Timed repeats per measurement (the median counts).
    pub repeats: usize,
    /// Tokens per timed decode repeat (rounded up to whole greedy batches).
    pub decode_tokens: usize,
    /// Prompt length of the correctness check.
    pub check_tokens: usize,
    /// Largest greedy batch any trial uses (length of the reference greedy chain; `run` sets it
    /// from the space).
    pub max_decode_batch: usize,
    /// Overrides the dtype's logit tolerance.
    pub tolerance: Option<f32>,
}

impl Measure {
    /// Largest |difference| of logits a correct setting may show: 1e-3 with f32 weights; 0.25
    /// with f16 weights (on matrix units prefill activations go through f16); 0.5 with q8 or q4
    /// weights, whose decode steps round their inputs to int8: where the trial's prefill runs on
    /// matrix units and the recurrent reference's does not, the two states differ by f16
    /// products, that moves many int8 roundings, and correct steps then differ by up to the
    /// rounding's own size (H200, shipped xLSTM Large mini: q8 0.15, q4 0.18; without matrix
    /// units 1.5e-5). A wrong setting (a chunk or head band skipped) moves logits by whole units.
    pub fn tolerance(&self) -> f32 {
        if let Some(t) = self.tolerance {
            t
        } else {
            match self.dtype {
                WeightDtype::F32 => 1e-3,
                WeightDtype::F16 => 0.25,
                WeightDtype::Q8 | WeightDtype::Q4 => 0.5,
            }
        }
    }
}

/// What one trial measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub prefill_tok_s: Option<f64>,
    pub decode_tok_s: Option<f64>,
    /// Largest |logit difference| from the reference.
    pub check_diff: f32,
    /// `Some` when the check failed: what differed.
    pub wrong: Option<String>,
}

/// Reference outputs, made once per run by the recurrent path with the default settings.
struct Reference {
    /// The check prompt.
    ids: Vec<u32>,
    /// Logits of every check-prompt position ([L, V]).
    prefill: Vec<f32>,
    /// Tokens prefilled before the decode check's single steps.
    head: usize,
    /// Logits after each single step over ids[head..] ([L - head, V]).
    steps: Vec<f32>,
    /// The token fed first to the greedy chain (the argmax after the last single step).
    first: u32,
    /// The greedy chain that follows (ids and each id's top-1 minus top-2 logit margin).
    chain: Vec<u32>,
    margins: Vec<f32>,
}

/// Loads models as trials need them and measures trials.
pub struct Evaluator {
    gpu: Arc<Gpu>,
    source: ModelSource,
    measure: Measure,
    model: Option<(KernelShapes, Model)>,
    reference: Option<Reference>,
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if x.is_nan() || y.is_nan() {
                f32::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f32::max)
}

fn margin(row: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &x in row {
        if x > a {
            b = a;
            a = x;
        } else if x > b {
            b = x;
        }
    }
    a - b
}

impl Evaluator {
    pub fn new(gpu: Arc<Gpu>, source: ModelSource, measure: Measure) -> Self {
        Evaluator {
            gpu,
            source,
            measure,
            model: None,
            reference: None,
        }
    }

    /// The kernel shapes of the loaded model, if any.
    pub fn loaded_shapes(&self) -> Option<KernelShapes> {
        self.model.as_ref().map(|(l, _)| *l)
    }

    /// Makes sure the model for `p`'s kernel shapes is loaded; returns it and whether it was
    /// (re)loaded now.
    pub fn model_for(&mut self, p: &Params) -> Result<(Model, bool)> {
        if let Some((shapes, m)) = &self.model {
            if *shapes == p.kernel_shapes() {
                return Ok((m.clone(), false));
            }
        }
        // Free the old model before loading the next (7B weights twice may not fit): dropped
        // buffers go back to the model's pool, which is then released to the driver.
        if let Some((_, old)) = self.model.take() {
            let pool = old.pool().clone();
            drop(old);
            pool.trim();
        }
        self.gpu.wait()?;
        let opts = LoadOptions {
            dtype: Some(self.measure.dtype),
            tokenizer: false,
            kernel_checks: self.measure.kernel_checks,
            kernel_shapes: p.kernel_shapes(),
        };
        let m = self.source.load(self.gpu.clone(), &opts)?;
        self.model = Some((p.kernel_shapes(), m.clone()));
        Ok((m, true))
    }

    /// Builds the reference outputs with `base`'s decode settings and the recurrent prefill.
    fn reference(&mut self, model: &Model, base: &Params) -> Result<()> {
        if self.reference.is_some() {
            return Ok(());
        }
        let v = model.vocab_size();
        let ms = &self.measure;
        let len = ms.check_tokens.max(2);
        let ids = prompt(len, v, 1);
        let mut opts = base.session_options()?;
        opts.schedule.strategy = PrefillStrategy::Recurrent;
        let mut s = Session::new(model, opts)?;
        let prefill = s.prefill(&ids, Logits::All)?;
        let head = len - (len - 1).min(8);
        let (mut steps, mut chain, mut margins, mut first) = (Vec::new(), Vec::new(), Vec::new(), 0);
        if ms.target.decode() {
            s.reset()?;
            s.prefill(&ids[..head], Logits::None)?;
            let mut row = Vec::new();
            for &id in &ids[head..] {
                row = s.step(id)?;
                steps.extend_from_slice(&row);
            }
            first = argmax(&row) as u32;
            let mut id = first;
            for _ in 0..ms.max_decode_batch {
                let row = s.step(id)?;
                id = argmax(&row) as u32;
                chain.push(id);
                margins.push(margin(&row));
            }
        }
        self.reference = Some(Reference {
            ids,
            prefill,
            head,
            steps,
            first,
            chain,
            margins,
        });
        Ok(())
    }

    /// Checks and times one configuration. `Err` only for errors that must end the run (a stop
    /// request, the memory limit); any other failure is reported in the outcome's `Err`.
    pub fn trial(&mut self, p: &Params, base: &Params) -> Result<std::result::Result<Outcome, Error>> {
        match self.try_trial(p, base) {
            Ok(o) => Ok(Ok(o)),
            Err(e @ (Error::Stopped(_) | Error::MemoryLimit(_))) => Err(e),
            Err(e) => Ok(Err(e)),
        }
    }

    fn try_trial(&mut self, p: &Params, base: &Params) -> Result<Outcome> {
        let opts = p.session_options()?;
        let (model, _) = self.model_for(p)?;
        self.reference(&model, base)?;
        let mut out = Outcome::default();
        self.check(&model, p, &mut out)?;
        if out.wrong.is_some() {
            return Ok(out);
        }
        let gpu = model.gpu().clone();
        let ms = self.measure.clone();
        let v = model.vocab_size();
        let mut s = Session::new(&model, opts)?;
        if ms.target.prefill() {
            let ids = prompt(ms.seq, v, 2);
            s.reset()?;
            s.prefill(&ids, Logits::None)?;
            gpu.wait()?;
            let mut times = Vec::new();
            for _ in 0..ms.repeats.max(1) {
                times.push(timed_prefill(&mut s, &gpu, &ids)?);
            }
            out.prefill_tok_s = Some(ms.seq as f64 / median(times).max(1e-9));
        }
        if ms.target.decode() {
            let batch = p.decode_batch;
            s.reset()?;
            s.prefill(&prompt(16, v, 3), Logits::None)?;
            let mut id = 5u32;
            // Warm-up: both state parities of the batched plan.
            for _ in 0..2 {
                id = *s.step_greedy(id, batch)?.last().unwrap_or(&id);
            }
            gpu.wait()?;
            let steps = ms.decode_tokens.div_ceil(batch).max(1);
            let mut times = Vec::new();
            for _ in 0..ms.repeats.max(1) {
                let t0 = Instant::now();
                for _ in 0..steps {
                    id = *s.step_greedy(id, batch)?.last().unwrap_or(&id);
                }
                times.push(t0.elapsed().as_secs_f64() / (steps * batch) as f64);
            }
            out.decode_tok_s = Some(1.0 / median(times).max(1e-12));
        }
        Ok(out)
    }

    /// The correctness check: prefill logits of the check prompt against the recurrent path;
    /// single decode steps after a prefill with the trial's strategy against the reference's;
    /// the batched greedy ids against the reference chain while its top-1 margin is clear.
    fn check(&self, model: &Model, p: &Params, out: &mut Outcome) -> Result<()> {
        let Some(r) = &self.reference else {
            return Err(Error::Input("tune: no reference".into()));
        };
        let tol = self.measure.tolerance();
        let mut s = Session::new(model, p.session_options()?)?;
        if self.measure.target.prefill() {
            let logits = s.prefill(&r.ids, Logits::All)?;
            let d = max_abs_diff(&logits, &r.prefill);
            out.check_diff = out.check_diff.max(d);
            if d.is_nan() || d > tol {
                out.wrong = Some(format!(
                    "prefill logits differ from the recurrent path by {d:.3e} (> {tol:.0e})"
                ));
                return Ok(());
            }
        }
        if self.measure.target.decode() {
            s.reset()?;
            s.prefill(&r.ids[..r.head], Logits::None)?;
            let mut rows = Vec::new();
            for &id in &r.ids[r.head..] {
                rows.extend(s.step(id)?);
            }
            let d = max_abs_diff(&rows, &r.steps);
            out.check_diff = out.check_diff.max(d);
            if d.is_nan() || d > tol {
                out.wrong = Some(format!(
                    "decode-step logits differ from the reference by {d:.3e} (> {tol:.0e})"
                ));
                return Ok(());
            }
            let n = p.decode_batch.min(r.chain.len());
            if n > 0 {
                let ids = s.step_greedy(r.first, p.decode_batch)?;
                // Compare while the reference's choice is clear: past a near tie the two
                // chains may part legitimately.
                let clear = r.margins.iter().take_while(|&&m| m > 2.0 * tol).count();
                for (j, (got, want)) in ids.iter().zip(&r.chain).take(n.min(clear)).enumerate() {
                    if got != want {
                        out.wrong = Some(format!(
                            "greedy batch of {}: id {j} is {got} where the reference chose {want}",
                            p.decode_batch
                        ));
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}
