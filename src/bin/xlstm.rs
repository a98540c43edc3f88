//! `xlstm`: generate text, score token ids (the machine interface for numerics), and describe
//! the GPU.

use clap::{Parser, Subcommand};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use xlstm_wgpu::cli::{default_model_dir, write_atomic, GpuArgs, RunArgs};
use xlstm_wgpu::gpu::device::list_adapters;
use xlstm_wgpu::sample::argmax;
use xlstm_wgpu::tokenizer::TextStream;
use xlstm_wgpu::{Error, Logits, Result, Sampler, SamplerConfig, Session};

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
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json). Default: the shipped model.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "The")]
    prompt: String,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Do not stop at the end-of-text token.
    #[arg(long)]
    ignore_eos: bool,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    gpu: GpuArgs,
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
    /// Greedy tokens to generate through the decode step path.
    #[arg(long, default_value_t = 0)]
    generate: usize,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    gpu: GpuArgs,
}

#[derive(clap::Args)]
struct InfoArgs {
    #[command(flatten)]
    gpu: GpuArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Generate(a) => generate(a),
        Cmd::Score(a) => score(a),
        Cmd::Info(a) => info(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xlstm: error: {e}");
            ExitCode::FAILURE
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

/// Prints the generated text as it comes and a one-line summary at the end.
pub fn generate(a: GenerateArgs) -> Result<()> {
    let dir = a.model.clone().unwrap_or_else(default_model_dir);
    let gpu = a.gpu.open()?;
    let model = a.run.load(gpu, &dir, true)?;
    let tok = model
        .tokenizer()
        .ok_or_else(|| Error::Tokenizer(format!("{} has no tokenizer.json", dir.display())))?;
    let mut prompt = Vec::new();
    if let Some(bos) = model.config().bos_token_id {
        prompt.push(bos);
    }
    prompt.extend(tok.encode(&a.prompt)?);
    if prompt.is_empty() {
        return Err(Error::Input("the prompt is empty".into()));
    }
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    })?;
    let mut stop = Vec::new();
    if !a.ignore_eos {
        stop.extend(model.config().eos_token_id);
        stop.extend(tok.token_id("<|endoftext|>"));
    }
    let mut session = Session::new(&model, a.run.session_options()?)?;
    let mut stream = TextStream::default();
    let mut out = std::io::stdout();
    print!("{}", a.prompt);
    let stats = session.generate(&prompt, a.max_new_tokens, &mut sampler, &stop, &mut |id| {
        let text = stream.push(tok, id)?;
        print!("{text}");
        let _ = out.flush();
        Ok(true)
    })?;
    println!();
    println!(
        "prompt tokens {} | prefill {:.1} tok/s | decode {:.1} tok/s ({} tokens) | peak GPU pool {:.1} MiB | {} weights, {}",
        stats.prompt_tokens,
        stats.prefill_tok_per_s(),
        stats.decode_tok_per_s(),
        stats.generated.len(),
        stats.peak_pool_bytes as f64 / (1 << 20) as f64,
        model.dtype().name(),
        model.gpu().caps.adapter_name,
    );
    Ok(())
}

fn read_ids(path: &Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let ids: Vec<i64> = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: expected a JSON array of token ids ({e})", path.display())))?;
    ids.into_iter()
        .map(|i| u32::try_from(i).map_err(|_| Error::Input(format!("token id {i} is out of range"))))
        .collect()
}

fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>> {
    TensorView::new(dtype, shape, data).map_err(|e| Error::Input(format!("building the output: {e}")))
}

fn score(a: ScoreArgs) -> Result<()> {
    let ids = read_ids(&a.input_ids)?;
    if ids.is_empty() {
        return Err(Error::Input(format!("{}: the prompt is empty", a.input_ids.display())));
    }
    let gpu = a.gpu.open()?;
    let model = a.run.load(gpu, &a.model, false)?;
    let v = model.vocab_size();
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
        return Err(Error::Input(format!("token id {bad} is out of range for a vocabulary of {v}")));
    }
    let mut session = Session::new(&model, a.run.session_options()?)?;
    let logits = session.prefill(&ids, Logits::All)?;
    let mut generated: Vec<i64> = Vec::new();
    let mut gen_logits: Vec<f32> = Vec::new();
    if a.generate > 0 {
        let mut row = logits[(ids.len() - 1) * v..].to_vec();
        for i in 0..a.generate {
            let next = argmax(&row) as u32;
            generated.push(next as i64);
            gen_logits.extend_from_slice(&row);
            if i + 1 < a.generate {
                row = session.step(next)?;
            }
        }
    }
    let to_bytes = |x: &[f32]| -> Vec<u8> { bytemuck::cast_slice(x).to_vec() };
    let logits_b = to_bytes(&logits);
    let mut tensors: Vec<(String, TensorView)> = Vec::new();
    tensors.push(("logits".into(), view(Dtype::F32, vec![ids.len(), v], &logits_b)?));
    let gen_b: Vec<u8> = generated.iter().flat_map(|x| x.to_le_bytes()).collect();
    let gen_logits_b = to_bytes(&gen_logits);
    if a.generate > 0 {
        tensors.push(("generated".into(), view(Dtype::I64, vec![a.generate], &gen_b)?));
        tensors.push(("generated_logits".into(), view(Dtype::F32, vec![a.generate, v], &gen_logits_b)?));
    }
    let mut meta = HashMap::new();
    meta.insert("dtype".to_string(), model.dtype().name().to_string());
    meta.insert("prefill".to_string(), a.run.prefill.clone());
    meta.insert("chunk_size".to_string(), a.run.chunk_size.to_string());
    let bytes = safetensors::serialize(tensors, Some(meta)).map_err(|e| Error::Input(format!("serialising the output: {e}")))?;
    write_atomic(&a.out, &bytes)
}
