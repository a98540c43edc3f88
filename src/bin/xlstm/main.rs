//! `xlstm`: generate text, score token ids (the machine interface for numerics), and describe
//! the GPU.
//!
//! One module per subcommand, each holding its flags and its entry point: [`generate`],
//! [`score`], [`perplexity`], [`bench`] (with the benchmark itself) and [`tune`] (the autotuner;
//! its command in `tune/command.rs`). [`cli`] holds the flags they share (adapter, weight format,
//! scheduler and kernel-shape knobs), the limits on counts and the value parsers; [`source`] the
//! checkpoint-or-preset model of bench and tune; [`progress`] the progress shown on stderr.
//! `info` is short enough to live here.

mod bench;
mod cli;
mod generate;
mod perplexity;
mod progress;
mod quantize;
mod score;
mod source;
mod tune;

use clap::{Parser, Subcommand};
use cli::GpuArgs;
use std::process::ExitCode;
use xlstm_wgpu::gpu::device::list_adapters;
use xlstm_wgpu::telemetry::exit_code;
use xlstm_wgpu::Result;

#[derive(Parser)]
#[command(name = "xlstm", version, about = "xLSTM language models on any GPU through wgpu")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt.
    Generate(generate::GenerateArgs),
    /// Logits for every position of a token-id prompt, and optionally greedy continuation.
    Score(score::ScoreArgs),
    /// Perplexity of a text: mean negative log-likelihood of every token given the ones before.
    Perplexity(perplexity::PerplexityArgs),
    /// List adapters and print the chosen adapter's capabilities.
    Info(InfoArgs),
    /// Prefill and decode throughput, time to first token, memory, and per-kernel GPU time.
    Bench(bench::BenchArgs),
    /// Write a copy of a checkpoint with its weight matrices stored in q8 or q4.
    Quantize(quantize::QuantizeArgs),
    /// Search the scheduler and kernel-shape settings for the fastest on this adapter and store
    /// the best as its defaults (used by generate, score and bench unless flags override).
    Tune(tune::TuneArgs),
}

#[derive(clap::Args)]
struct InfoArgs {
    #[command(flatten)]
    gpu: GpuArgs,
}

fn main() -> ExitCode {
    // A bad command line (an unknown flag, a value outside a flag's range or choices) is clap's
    // usage error: its message and exit code 2.
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Generate(a) => generate::generate(&a),
        Cmd::Score(a) => score::score(a),
        Cmd::Perplexity(a) => perplexity::perplexity(a),
        Cmd::Info(a) => info(a),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::Tune(a) => tune::tune(a),
        Cmd::Quantize(a) => quantize::quantize(a),
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
    // Runs the matrix-unit self-check where the adapter needs one and none is remembered.
    let kernels = xlstm_wgpu::gpu::Kernels::new(gpu.clone());
    println!("matrix units   {}", kernels.matrix_units()?);
    Ok(())
}
