//! `xlstm bench`: prefill throughput at several prompt lengths, time to first token, greedy
//! decode throughput, peak pool memory, and GPU time per kernel with achieved GB/s and TFLOP/s.
//! Models come from a checkpoint or from a preset shape with random weights made on the GPU.
//!
//! The command (its flags, the memory checks, loading, the report) comes first, then the
//! measurement it runs ([`run`]), which `xlstm tune` reuses.

use crate::cli::{count_in, GpuArgs, RunArgs, MAX_NEW_TOKENS, MAX_PROMPT_TOKENS, MAX_REPEATS};
use crate::source::ModelSource;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use xlstm_wgpu::error::{Error, Result};
use xlstm_wgpu::gpu::kernels::{compile_times, compile_totals};
use xlstm_wgpu::gpu::{Gpu, KernelTime, ProfileClock};
use xlstm_wgpu::model::config::LargeConfig;
use xlstm_wgpu::model::Model;
use xlstm_wgpu::sample::argmax;
use xlstm_wgpu::session::{Logits, Session, SessionOptions};
use xlstm_wgpu::telemetry::{MemArgs, Watchdog};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Model shape with random weights generated on the GPU: 7b, 1b, small, tiny.
    #[arg(long, conflicts_with = "model", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    preset: Option<String>,
    /// Benchmark a checkpoint instead of a preset: a directory, or a Hugging Face Hub id
    /// ORG/NAME[@REVISION] (see `xlstm generate --help`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prompt lengths for prefill (comma separated; each 1..=16777216).
    #[arg(long, value_delimiter = ',', default_values_t = vec![512usize, 2048, 8192],
          value_parser = count_in(1, MAX_PROMPT_TOKENS))]
    prefill_lens: Vec<usize>,
    /// Greedy tokens to decode (0..=1048576).
    #[arg(long, default_value_t = 128, value_parser = count_in(0, MAX_NEW_TOKENS))]
    decode_tokens: usize,
    /// Timed repeats per measurement (the median is reported; 0..=1000, 0 counts as 1).
    #[arg(long, default_value_t = 3, value_parser = count_in(0, MAX_REPEATS))]
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

pub fn bench(a: BenchArgs) -> Result<()> {
    let source = match (&a.model, &a.preset) {
        (Some(dir), _) => ModelSource::Dir(xlstm_wgpu::hub::resolve_model(dir)?),
        (None, p) => ModelSource::Preset(p.clone().unwrap_or_else(|| "7b".into())),
    };
    let name = source.label();
    // telemetry: watchdog and pre-load estimate.
    // SIGINT/SIGTERM stop the benchmark at its next safe point (exit code 130/143).
    let wd = Watchdog::start_interruptible(a.mem.resolve()?, "bench", &name)?;
    let progress = wd.progress();
    let gpu = a.gpu.open()?;
    wd.set_gpu(&gpu);
    // Tuned defaults for this adapter and model shape (flags win).
    let mut a = a;
    a.run.resolve_dtype(source.dir())?;
    let tuned = a.run.apply_tune_cache(&gpu, source.shape().ok().as_ref());
    let longest = a.prefill_lens.iter().copied().max().unwrap_or(1);
    if let Some(est) = source.estimate(a.run.dtype, &a.run.session_options()?, longest) {
        wd.check_fits(&est)?;
    }
    // Progress on stderr from here on (a live line on a terminal, plain lines otherwise).
    progress.set_phase("loading");
    let mut reporter = crate::progress::Reporter::start("bench", progress.clone());
    // end telemetry
    let t0 = Instant::now();
    let compiled_before = compile_totals();
    let model = source.load(gpu, &a.run.load_options(false)?)?;
    let load_secs = t0.elapsed().as_secs_f64();
    let compiled = compile_totals();
    wd.attach(&model);
    wd.check_now()?;
    let opts = BenchOptions {
        prefill_lens: a.prefill_lens.clone(),
        decode_tokens: a.decode_tokens,
        repeats: a.repeats,
        profile: a.profile,
        session: a.run.session_options()?,
    };
    let report = run(&model, &name, &opts, &mut |i, n, what| {
        progress.set_phase(what);
        progress.set_fraction(Some(i as f64 / n.max(1) as f64));
    })?;
    let compiled_after = compile_totals();
    reporter.finish();
    if a.json {
        let mut v = serde_json::to_value(&report).map_err(|e| Error::Input(e.to_string()))?;
        v["load_seconds"] = serde_json::json!(load_secs);
        // The pipelines the load compiled (those its decode and prefill plans use, several at
        // once) and the wall-clock seconds during which any was compiling: a cold start's cost
        // where no pipeline cache holds them (XLSTM_DISABLE_FEATURES=pipeline-cache measures it
        // on Vulkan). `after_load_*`: pipelines the measured runs still compiled at their first
        // use (paths outside the load's warm set).
        // The five slowest compiles of the run, each with its translation and pipeline-creation
        // seconds (they overlap: several compile at once).
        let mut times = compile_times();
        times.sort_by(|a, b| {
            (b.translate_seconds + b.create_seconds).total_cmp(&(a.translate_seconds + a.create_seconds))
        });
        let slowest: Vec<_> = times
            .iter()
            .take(5)
            .map(|t| serde_json::json!({"pipeline": t.pipeline, "translate_seconds": t.translate_seconds, "create_seconds": t.create_seconds}))
            .collect();
        v["kernel_compile"] = serde_json::json!({
            "slowest": slowest,
            "pipelines": compiled.0 - compiled_before.0,
            "seconds": (compiled.1 - compiled_before.1).as_secs_f64(),
            "after_load_pipelines": compiled_after.0 - compiled.0,
            "after_load_seconds": (compiled_after.1 - compiled.1).as_secs_f64(),
        });
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

/// The names of the preset shapes ([`preset`]).
pub const PRESETS: [&str; 4] = ["7b", "1b", "small", "tiny"];

/// Model shapes for benchmarks without a checkpoint.
pub fn preset(name: &str) -> Result<LargeConfig> {
    let (e, nh, blocks, vocab) = match name {
        // NX-AI/xLSTM-7b.
        "7b" => (4096, 8, 32, 50304),
        // Smaller shapes of the same family, for smaller GPUs and quick checks.
        "1b" => (2048, 4, 24, 50304),
        "small" => (512, 4, 4, 4096),
        "tiny" => (128, 2, 2, 512),
        _ => return Err(Error::Input(format!("unknown preset `{name}` (7b, 1b, small, tiny)"))),
    };
    let ffn = (e as f64 * 2.6667 / 64.0).ceil() as usize * 64;
    Ok(LargeConfig {
        embedding_dim: e,
        num_heads: nh,
        num_blocks: blocks,
        vocab_size: vocab,
        qk_dim_factor: 0.5,
        v_dim_factor: 1.0,
        ffn_dim: ffn,
        norm_eps: 1e-6,
        gate_soft_cap: 15.0,
        output_logit_soft_cap: 30.0,
        add_out_norm: true,
        cell_eps: 1e-6,
        chunk_size: 64,
        bos_token_id: Some(0),
        eos_token_id: Some(2),
    })
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub prefill_lens: Vec<usize>,
    pub decode_tokens: usize,
    pub repeats: usize,
    pub profile: bool,
    pub session: SessionOptions,
}

#[derive(Clone, Debug, Serialize)]
pub struct PrefillResult {
    pub tokens: usize,
    pub seconds: f64,
    pub tok_per_s: f64,
    /// Prefill plus choosing the first token (logits of the last position read back).
    pub ttft_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    pub phase: String,
    pub kernel: String,
    pub dispatches: usize,
    pub ms: f64,
    /// Achieved bandwidth from the launchers' cost estimates (`PlanBuilder::cost`); `None`
    /// (JSON null, `-` in the table) where the kernel's launcher records no bytes.
    pub gb_per_s: Option<f64>,
    /// Achieved arithmetic rate; `None` where the launcher records no flops.
    pub tflop_per_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub backend: String,
    pub model: String,
    pub dtype: String,
    pub prefill_strategy: String,
    pub chunk_size: usize,
    /// The matrix-unit kernels prefill ran on: `16x16`, `8x8`, or `none` (the tiled kernels).
    pub matrix_units: String,
    pub weight_bytes: u64,
    pub prefill: Vec<PrefillResult>,
    pub decode_tokens: usize,
    pub decode_tok_per_s: f64,
    pub decode_ms_per_token: f64,
    pub peak_pool_bytes_decode: u64,
    pub peak_pool_bytes: u64,
    pub kernels: Vec<KernelRow>,
    /// How the kernel times were measured: `timestamps` (the GPU's), or `submissions` (one
    /// dispatch per submission timed on the host: the adapter has no usable timestamps); null
    /// without `--profile`.
    pub profile_clock: Option<&'static str>,
    /// Why the times are not the GPU's own, where they are not.
    pub profile_note: Option<String>,
}

/// The median of timed repeats (`v` is not empty: every measurement repeats at least once).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds of one prefill of `ids` (no logits read back) from the reset state, the GPU idle
/// before and after so that only this prefill is timed.
pub fn timed_prefill(s: &mut Session, gpu: &Gpu, ids: &[u32]) -> Result<f64> {
    s.reset()?;
    gpu.wait()?;
    let t0 = Instant::now();
    s.prefill(ids, Logits::None)?;
    gpu.wait()?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Deterministic prompt ids that avoid the special tokens at the bottom of the vocabulary;
/// `salt` gives the tuner's different prompts (0: the benchmark's).
pub fn prompt(len: usize, vocab: usize, salt: usize) -> Vec<u32> {
    (0..len)
        .map(|i| (3 + ((i + salt) * 7919 + salt * 104_729) % (vocab.max(4) - 3)) as u32)
        .collect()
}

fn rows(phase: &str, times: Vec<KernelTime>) -> Vec<KernelRow> {
    times
        .into_iter()
        .map(|t| KernelRow {
            phase: phase.into(),
            kernel: t.label.into(),
            dispatches: t.dispatches,
            ms: t.seconds * 1e3,
            gb_per_s: (t.bytes > 0.0).then(|| t.gb_per_s()),
            tflop_per_s: (t.flops > 0.0).then(|| t.tflop_per_s()),
        })
        .collect()
}

/// Runs the benchmark; `progress(step, total, what)` is called before each measurement.
pub fn run(
    model: &Model,
    name: &str,
    opts: &BenchOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<BenchReport> {
    let gpu = model.gpu().clone();
    let v = model.vocab_size();
    let total = opts.prefill_lens.len() + 1 + opts.profile as usize;
    let mut prefill = Vec::new();
    let mut s = Session::new(model, opts.session.clone())?;
    for (i, &len) in opts.prefill_lens.iter().enumerate() {
        progress(i, total, &format!("prefill {len}"));
        let ids = prompt(len, v, 0);
        // Warm-up compiles pipelines and fills the pool.
        s.reset()?;
        s.prefill(&ids, Logits::Last)?;
        let (mut t_prefill, mut t_first) = (Vec::new(), Vec::new());
        for _ in 0..opts.repeats.max(1) {
            t_prefill.push(timed_prefill(&mut s, &gpu, &ids)?);
            s.reset()?;
            gpu.wait()?;
            let t0 = Instant::now();
            let logits = s.prefill(&ids, Logits::Last)?;
            let _first = argmax(&logits);
            t_first.push(t0.elapsed().as_secs_f64());
        }
        let secs = median(t_prefill);
        prefill.push(PrefillResult {
            tokens: len,
            seconds: secs,
            tok_per_s: len as f64 / secs,
            ttft_ms: median(t_first) * 1e3,
        });
    }

    progress(opts.prefill_lens.len(), total, "decode");
    let peak_pool_bytes = model.pool_stats().peak;
    model.pool().trim();
    model.pool().reset_peak();
    s.reset()?;
    s.prefill(&prompt(16, v, 0), Logits::None)?;
    let batch = opts.session.decode_batch;
    let mut id = 5u32;
    for _ in 0..2 {
        id = *s.step_greedy(id, batch)?.last().unwrap_or(&id);
    }
    gpu.wait()?;
    let steps = opts.decode_tokens.div_ceil(batch).max(1);
    let t0 = Instant::now();
    for _ in 0..steps {
        id = *s.step_greedy(id, batch)?.last().unwrap_or(&id);
    }
    let decode_secs = t0.elapsed().as_secs_f64();
    let decoded = steps * batch;
    let peak_pool_bytes_decode = model.pool_stats().peak;

    let mut kernels = Vec::new();
    let mut clock = None;
    if opts.profile {
        progress(total - 1, total, "profile");
        if let Some(&len) = opts.prefill_lens.first() {
            s.reset()?;
            // Profiles one segment: a longer prompt's label says how much of it was covered.
            let (n, profile) = s.profile_prefill(&prompt(len, v, 0))?;
            let phase = if n < len {
                format!("prefill {n}/{len}")
            } else {
                format!("prefill {len}")
            };
            kernels.extend(rows(&phase, profile.kernels));
            clock = Some(profile.clock);
        }
        let profile = s.profile_decode(id, batch)?;
        kernels.extend(rows(&format!("decode x{batch}"), profile.kernels));
        // A zero-timestamp fallback in either phase is the one to report.
        if clock.is_none_or(|c| c == ProfileClock::Timestamps) {
            clock = Some(profile.clock);
        }
    }
    progress(total, total, "done");
    Ok(BenchReport {
        adapter: gpu.caps.adapter_name.clone(),
        backend: gpu.caps.backend.clone(),
        model: name.to_string(),
        dtype: model.dtype().name().into(),
        prefill_strategy: opts.session.schedule.strategy.name().into(),
        chunk_size: opts.session.schedule.chunk_size,
        matrix_units: model.matrix_units().map_or("none".into(), |e| format!("{e}x{e}")),
        weight_bytes: model.pool_stats().live_of(xlstm_wgpu::gpu::Category::Weights),
        prefill,
        decode_tokens: decoded,
        decode_tok_per_s: decoded as f64 / decode_secs,
        decode_ms_per_token: decode_secs * 1e3 / decoded as f64,
        peak_pool_bytes_decode,
        peak_pool_bytes: peak_pool_bytes.max(peak_pool_bytes_decode),
        kernels,
        profile_clock: clock.map(|c| match c {
            ProfileClock::Timestamps => "timestamps",
            ProfileClock::Submissions(_) => "submissions",
        }),
        profile_note: clock.and_then(|c| c.note()),
    })
}

/// A rate for the kernel table: `-` where no cost is recorded, else three significant digits
/// (a slow adapter's or a small model's rates are well below 1 and would print as 0).
fn rate(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v <= 0.0 || !v.is_finite() => format!("{v:.0}"),
        Some(v) => {
            let decimals = (2 - v.log10().floor() as i32).clamp(0, 6) as usize;
            format!("{v:.decimals$}")
        }
    }
}

impl BenchReport {
    /// A table for people.
    pub fn table(&self) -> String {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let mut out = format!(
            "{} ({}) | model {} | {} weights ({:.0} MiB) | prefill {} chunk {} | matrix units {}\n",
            self.adapter,
            self.backend,
            self.model,
            self.dtype,
            mib(self.weight_bytes),
            self.prefill_strategy,
            self.chunk_size,
            self.matrix_units
        );
        out += &format!(
            "{:>10} {:>12} {:>12} {:>10}\n",
            "prompt", "prefill ms", "tok/s", "TTFT ms"
        );
        for p in &self.prefill {
            out += &format!(
                "{:>10} {:>12.2} {:>12.0} {:>10.2}\n",
                p.tokens,
                p.seconds * 1e3,
                p.tok_per_s,
                p.ttft_ms
            );
        }
        out += &format!(
            "decode B=1: {:.1} tok/s ({:.2} ms/token over {} tokens); peak pool {:.0} MiB decoding, {:.0} MiB overall\n",
            self.decode_tok_per_s,
            self.decode_ms_per_token,
            self.decode_tokens,
            mib(self.peak_pool_bytes_decode),
            mib(self.peak_pool_bytes)
        );
        if let Some(note) = &self.profile_note {
            out += &format!("note: {note}\n");
        }
        if !self.kernels.is_empty() {
            out += &format!(
                "{:<17} {:<22} {:>6} {:>10} {:>9} {:>9}\n",
                "phase", "kernel", "count", "ms", "GB/s", "TFLOP/s"
            );
            for k in &self.kernels {
                out += &format!(
                    "{:<17} {:<22} {:>6} {:>10.3} {:>9} {:>9}\n",
                    k.phase,
                    k.kernel,
                    k.dispatches,
                    k.ms,
                    rate(k.gb_per_s),
                    rate(k.tflop_per_s)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn rates_keep_three_significant_digits_and_unknown_is_a_dash() {
        assert_eq!(rate(None), "-");
        assert_eq!(rate(Some(1234.4)), "1234");
        assert_eq!(rate(Some(12.345)), "12.3");
        assert_eq!(rate(Some(0.5)), "0.500");
        assert_eq!(rate(Some(0.000_123_4)), "0.000123");
        assert_eq!(rate(Some(0.0)), "0");
    }
}
