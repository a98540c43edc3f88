//! The main job: generate text with an xLSTM model on the GPU, through the library API only
//! (`Gpu`, `Model::load`, `Tokenizer`, `Session`, `Sampler`, and the memory watchdog).
//!
//!     cargo run --release --example generate -- [--model DIR] [--prompt TEXT] [--max-new-tokens N]
//!         [--temperature T --top-k K --top-p P --seed S] [--prefill scheduled|queued|fused|recurrent]
//!         [--chunk-size N] [--heads-per-band N] [--dtype f16|f32|q8|q4]
//!
//! Without --model it runs the small xLSTM Large model shipped in models/xlstm-large-mini.
//! Text streams to stdout as it is produced; one summary line on stderr ends the run. `xlstm generate` does the same
//! with every scheduler flag, tuned defaults from `xlstm tune` and a compile-progress line.

use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use xlstm_wgpu::model::quantized::{stored_quantization, Quantization};
use xlstm_wgpu::telemetry::{signals, Estimate, MemArgs, Watchdog};
use xlstm_wgpu::tokenizer::TextStream;
use xlstm_wgpu::{
    Error, GenerateStats, Gpu, GpuOptions, LoadOptions, Model, PrefillStrategy, Result, Sampler, SamplerConfig,
    Session, SessionOptions, WeightDtype,
};

/// The most tokens `--max-new-tokens` accepts (as `xlstm generate`): far beyond any useful run,
/// small enough that every size computed from it stays finite.
const MAX_NEW_TOKENS: usize = 1 << 20;

#[derive(Parser)]
#[command(name = "generate", about = "Generate text with an xLSTM model on the GPU")]
struct Args {
    /// Model directory (config.json, model.safetensors, tokenizer.json), or Hugging Face Hub id
    /// ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded into it when absent).
    /// Default: the shipped model.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "It is a truth universally acknowledged")]
    prompt: String,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0, value_parser = temperature)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0, value_parser = top_p)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Do not stop at the end-of-text token.
    #[arg(long)]
    ignore_eos: bool,
    /// Weight format on the GPU (f32 is the mode that matches the reference to 1e-3). [default:
    /// f16, or a quantized checkpoint's own format]
    #[arg(long, value_enum)]
    dtype: Option<WeightDtype>,
    /// Prefill strategy. [default: the library's]
    #[arg(long, value_enum)]
    prefill: Option<PrefillStrategy>,
    /// Chunk length of the chunkwise mLSTM prefill. [default: the library's]
    #[arg(long)]
    chunk_size: Option<usize>,
    /// Heads per dispatch of the chunkwise phases (0 = all). [default: the library's]
    #[arg(long)]
    heads_per_band: Option<usize>,
    /// Backends to use (vulkan, metal, dx12, gl; comma separated). Default: WGPU_BACKEND or all.
    #[arg(long)]
    backend: Option<String>,
    /// Adapter index as listed by `xlstm info`.
    #[arg(long)]
    adapter: Option<usize>,
    #[command(flatten)]
    mem: MemArgs,
}

/// `--temperature`: a finite number >= 0 (checked by clap, so a bad value is a usage error).
fn temperature(text: &str) -> std::result::Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{text}` is not a finite number >= 0")),
    }
}

/// `--top-p`: a probability in (0, 1].
fn top_p(text: &str) -> std::result::Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("`{text}` is not in (0, 1]")),
    }
}

fn main() -> ExitCode {
    // Usage errors (an unknown flag, a value outside its choices or range) are clap's: exit 2.
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("generate: error: {e}");
            // 3: memory limit, 4: stopped on request (see xlstm_wgpu::telemetry).
            ExitCode::from(xlstm_wgpu::telemetry::exit_code(&e))
        }
    }
}

fn session_options(a: &Args) -> SessionOptions {
    let mut s = SessionOptions::default();
    if let Some(p) = a.prefill {
        s.schedule.strategy = p;
    }
    if let Some(c) = a.chunk_size {
        s.schedule.chunk_size = c;
    }
    if let Some(h) = a.heads_per_band {
        s.schedule.heads_per_band = h;
    }
    s
}

fn run(a: &Args) -> Result<()> {
    let dir = a.model.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join("xlstm-large-mini")
    });
    // An empty prompt is checked once the model is loaded: BOS alone starts an unconditional
    // generation, and only a model without a BOS id has nothing to start from.
    if a.max_new_tokens > MAX_NEW_TOKENS {
        return Err(Error::Input(format!(
            "--max-new-tokens {} is more than the {MAX_NEW_TOKENS} tokens a run may generate",
            a.max_new_tokens
        )));
    }
    let opts = session_options(a);
    // A Hub id becomes its snapshot in the Hugging Face cache (downloaded first when absent).
    let dir = xlstm_wgpu::hub::resolve_model(&dir)?;
    // The memory watchdog and status record; SIGINT/SIGTERM stop the run at the next token with
    // the summary so far.
    let wd = Watchdog::start_interruptible(a.mem.resolve()?, "generate", &dir.display().to_string())?;
    let gpu = Arc::new(Gpu::new(&GpuOptions {
        backend: a.backend.clone(),
        adapter_index: a.adapter,
        ..GpuOptions::default()
    })?);
    wd.set_gpu(&gpu);
    // The weight format: the flag, else a quantized checkpoint's own, else f16.
    let dtype = Quantization::resolve(a.dtype, stored_quantization(&dir).ok().flatten())?;
    // A prompt has at most one token per byte, plus BOS.
    if let Ok(est) = Estimate::for_dir(&dir, dtype, &opts, a.prompt.len().saturating_add(1), false) {
        wd.check_fits(&est)?;
    }
    let load = LoadOptions {
        dtype: Some(dtype),
        tokenizer: true,
        ..LoadOptions::default()
    };
    let model = Model::load(gpu, &dir, &load)?;
    wd.attach(&model);
    wd.check_now()?;
    let tok = model
        .tokenizer()
        .ok_or_else(|| Error::Tokenizer(format!("{} has no tokenizer.json", dir.display())))?;
    let mut prompt = Vec::new();
    prompt.extend(model.bos_token_id());
    prompt.extend(tok.encode(&a.prompt)?);
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
    let mut session = Session::new(&model, opts)?;
    // Several tokens can make up one character: the stream prints only whole ones.
    let mut stream = TextStream::default();
    let mut out = std::io::stdout();
    print!("{}", a.prompt);
    let _ = out.flush();
    // What has come so far, for the summary of a run a signal stops inside `generate`.
    let started = std::time::Instant::now();
    let mut so_far = GenerateStats {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    let mut decode_started = None;
    let result = session.generate(&prompt, a.max_new_tokens, &mut sampler, &stop, &mut |id| {
        let now = std::time::Instant::now();
        let t1 = *decode_started.get_or_insert(now);
        so_far.prefill_time = t1 - started;
        so_far.decode_time = now - t1;
        so_far.generated.push(id);
        print!("{}", stream.push(tok, id)?);
        let _ = out.flush();
        Ok(wd.interrupted().is_none())
    });
    println!();
    let stats = match result {
        Ok(stats) => stats,
        Err(e) if wd.interrupted().is_none() || so_far.generated.is_empty() => return Err(e),
        Err(_) => GenerateStats {
            peak_pool_bytes: model.pool_stats().peak,
            ..so_far
        },
    };
    // The summary goes to stderr so that redirecting stdout captures the generated text alone.
    eprintln!(
        "prompt tokens {} | prefill {:.1} tok/s | decode {:.1} tok/s ({} tokens) | peak GPU pool {:.1} MiB | {} weights, {}",
        stats.prompt_tokens,
        stats.prefill_tok_per_s(),
        stats.decode_tok_per_s(),
        stats.generated.len(),
        stats.peak_pool_bytes as f64 / (1 << 20) as f64,
        model.dtype().name(),
        model.gpu().caps.adapter_name,
    );
    if let Some(sig) = wd.interrupted() {
        let at = format!("after {} tokens", stats.generated.len());
        return Err(signals::interrupted_error(sig, &at));
    }
    Ok(())
}
