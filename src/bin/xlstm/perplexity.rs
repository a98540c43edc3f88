//! `xlstm perplexity`: how well a model predicts a text. The text is tokenized and cut into
//! windows of `--ctx` tokens (default: one window over the whole text); each window starts from a
//! fresh state with BOS prepended, as `generate` does, and every token of the window is predicted
//! from the ones before it (the first from BOS alone). The result is the mean negative
//! log-likelihood over all predicted tokens, in nats, and its exponential, the perplexity (the
//! llama.cpp convention, with a recurrent model's natural choice of scoring every position: the
//! state, not a context window, carries the history).

use crate::cli::{GpuArgs, RunArgs};
use crate::tune::store::ModelShape;
use std::path::PathBuf;
use xlstm_wgpu::telemetry::{Estimate, MemArgs, Progress, Watchdog};
use xlstm_wgpu::{files, Error, Logits, Result, Session};

/// The largest text read (the tokenizer holds it in memory several times over).
const MAX_TEXT_BYTES: u64 = 256 << 20;
/// Tokens prefilled per pass: bounds the logits held on the host ([piece, V] f32).
const PIECE_TOKENS: usize = 256;

#[derive(clap::Args)]
pub struct PerplexityArgs {
    /// Model directory, or Hugging Face Hub id ORG/NAME[@REVISION] (see `xlstm generate --help`).
    #[arg(long)]
    model: PathBuf,
    /// UTF-8 text to score.
    #[arg(long)]
    text: PathBuf,
    /// Tokens per window, BOS not counted (0 = the whole text in one window).
    #[arg(long, default_value_t = 0)]
    ctx: usize,
    /// Print one JSON object instead of the summary line.
    #[arg(long)]
    json: bool,
    /// Score every token through the one-token decode step, the kernels `generate` runs
    /// (fused decode GEMVs; integer dot products for q8/q4 where the GPU has them), instead of
    /// prefilling the window in pieces. Slower; measures the accuracy of decoding.
    #[arg(long)]
    decode: bool,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(flatten)]
    mem: MemArgs,
}

/// The sum of -log p(next) over a window's predictions, and how many there were.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NllSum {
    pub nll: f64,
    pub tokens: usize,
}

impl NllSum {
    fn add(&mut self, other: NllSum) {
        self.nll += other.nll;
        self.tokens += other.tokens;
    }
    pub fn mean(&self) -> f64 {
        self.nll / self.tokens.max(1) as f64
    }
}

/// -log softmax(row)[target], in f64 with the max subtracted (logits of a 50k vocabulary in f32
/// would lose the small probabilities otherwise).
pub fn token_nll(row: &[f32], target: u32) -> Result<f64> {
    let t = target as usize;
    if t >= row.len() {
        return Err(Error::Input(format!(
            "token id {target} is out of range for a vocabulary of {}",
            row.len()
        )));
    }
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    Ok(max + sum.ln() - row[t] as f64)
}

pub fn perplexity(mut a: PerplexityArgs) -> Result<()> {
    let bytes = files::read_input(&a.text, MAX_TEXT_BYTES).map_err(|e| Error::io(&a.text, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Input(format!("{}: the text is not valid UTF-8", a.text.display())))?;
    a.model = xlstm_wgpu::hub::resolve_model(&a.model)?;
    let wd = Watchdog::start_interruptible(a.mem.resolve()?, "perplexity", &a.model.display().to_string())?;
    let progress = wd.progress();
    let gpu = a.gpu.open()?;
    wd.set_gpu(&gpu);
    let mut run = a.run;
    run.resolve_dtype(Some(&a.model))?;
    run.apply_tune_cache(&gpu, ModelShape::of_dir(&a.model).ok().as_ref());
    if let Ok(est) = Estimate::for_dir(&a.model, run.dtype, &run.session_options()?, PIECE_TOKENS, false) {
        wd.check_fits(&est)?;
    }
    progress.set_phase("loading");
    let mut reporter = crate::progress::Reporter::start("perplexity", progress.clone());
    let model = run.load(gpu, &a.model, true)?;
    wd.attach(&model);
    wd.check_now()?;
    let tok = model
        .tokenizer()
        .ok_or_else(|| Error::Tokenizer(format!("{} has no tokenizer.json", a.model.display())))?;
    let ids = tok.encode(&text)?;
    if ids.is_empty() {
        return Err(Error::Input(format!("{}: the text has no tokens", a.text.display())));
    }
    let bos = model.bos_token_id().unwrap_or(0);
    let ctx = if a.ctx == 0 { ids.len() } else { a.ctx };
    progress.set_total(Some(ids.len() as u64));
    progress.set_phase("prefill");
    let mut session = Session::new(&model, run.session_options()?)?;
    let mut total = NllSum::default();
    let windows = ids.chunks(ctx);
    let n_windows = windows.len();
    for window in windows {
        session.reset()?;
        total.add(if a.decode {
            window_nll_decoded(&mut session, bos, window, &progress)?
        } else {
            window_nll(&mut session, bos, window, &progress)?
        });
    }
    reporter.finish();
    let (nll, ppl) = (total.mean(), total.mean().exp());
    if !nll.is_finite() {
        return Err(Error::Numeric("the mean negative log-likelihood is not finite".into()));
    }
    if a.json {
        let out = serde_json::json!({
            "perplexity": ppl,
            "nll": nll,
            "tokens": total.tokens,
            "windows": n_windows,
            "ctx": ctx,
            "bos": bos,
            "dtype": model.dtype().name(),
            "path": if a.decode { "decode" } else { "prefill" },
            "model": a.model.display().to_string(),
        });
        println!("{out}");
    } else {
        println!(
            "perplexity {ppl:.4} (mean NLL {nll:.5} nats) over {} tokens, {n_windows} window(s) of up to {ctx} tokens, {} weights{}",
            total.tokens,
            model.dtype().name(),
            if a.decode { ", decode steps" } else { "" }
        );
    }
    Ok(())
}

/// BOS then `window`, prefilled a piece at a time (the state carries across pieces); each
/// position's logits score the token after it. Each piece's tokens count as done in `progress`.
fn window_nll(session: &mut Session, bos: u32, window: &[u32], progress: &Progress) -> Result<NllSum> {
    let mut input = Vec::with_capacity(window.len() + 1);
    input.push(bos);
    input.extend_from_slice(window);
    let vocab = session.model().vocab_size();
    let mut sum = NllSum::default();
    // Predictions: input[i] -> input[i + 1] for i < window.len().
    for (p, piece) in input[..window.len()].chunks(PIECE_TOKENS).enumerate() {
        let logits = session.prefill(piece, Logits::All)?;
        let first = p * PIECE_TOKENS;
        for (r, row) in logits.chunks_exact(vocab).enumerate() {
            sum.nll += token_nll(row, input[first + r + 1])?;
            sum.tokens += 1;
        }
        progress.add_tokens(piece.len() as u64);
    }
    Ok(sum)
}

/// [`window_nll`] through the decode step: BOS then each token of `window` fed one at a time,
/// each step's logits scoring the token after it.
fn window_nll_decoded(session: &mut Session, bos: u32, window: &[u32], progress: &Progress) -> Result<NllSum> {
    let mut sum = NllSum::default();
    let mut fed = bos;
    for &next in window {
        let logits = session.step(fed)?;
        sum.nll += token_nll(&logits, next)?;
        sum.tokens += 1;
        progress.add_tokens(1);
        fed = next;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_nll_is_minus_log_softmax() {
        let row = [1.0f32, 2.0, 3.0];
        let z: f64 = row.iter().map(|&v| (v as f64).exp()).sum();
        for t in 0..3 {
            let want = -((row[t] as f64).exp() / z).ln();
            assert!((token_nll(&row, t as u32).unwrap() - want).abs() < 1e-12);
        }
        // Large logits do not overflow.
        assert!((token_nll(&[1000.0, 1000.0], 0).unwrap() - 2f64.ln()).abs() < 1e-12);
        assert!(token_nll(&row, 3).is_err());
    }
}
