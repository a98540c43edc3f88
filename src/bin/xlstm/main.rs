//! `xlstm`: generate text, score token ids (the machine interface for numerics), and describe
//! the GPU, benchmark, tune. Each command's flags and runner live in its module (`cli` holds
//! the shared flags and `generate`; `score`, `bench`, `tune::command`).

mod bench;
mod cli;
mod score;
mod tune;

use bench::BenchArgs;
use clap::{Parser, Subcommand};
use cli::{run_generate, GenerateArgs, GpuArgs};
use score::ScoreArgs;
use std::process::ExitCode;
use tune::command::TuneArgs;
use xlstm_wgpu::gpu::device::list_adapters;
use xlstm_wgpu::telemetry::exit_code;
use xlstm_wgpu::{Error, Result};

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
    /// Prefill and decode throughput, time to first token, memory, and per-kernel GPU time.
    Bench(BenchArgs),
    /// Search the scheduler and kernel-shape settings for the fastest on this adapter and store
    /// the best as its defaults (used by generate, score and bench unless flags override).
    Tune(TuneArgs),
}

#[derive(clap::Args)]
struct InfoArgs {
    #[command(flatten)]
    gpu: GpuArgs,
}

/// A value outside a flag's fixed choices (`--dtype`, `--prefill`, `--target`, `--mode`) is bad
/// input like any other: one `xlstm: error:` line and exit code 1, as when these flags were
/// parsed by hand. Every other command-line error stays clap's (usage, exit code 2).
fn unknown_choice(e: &clap::Error) -> Option<Error> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) else {
        return None;
    };
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue) else {
        return None;
    };
    // `--dtype <DTYPE>`: the flag without its value name.
    let flag = arg.split_whitespace().next().unwrap_or(arg);
    Some(Error::Input(format!("unknown {flag} `{value}` ({})", valid.join(", "))))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match unknown_choice(&e) {
            Some(err) => {
                eprintln!("xlstm: error: {err}");
                return ExitCode::from(exit_code(&err));
            }
            None => e.exit(),
        },
    };
    let result = match cli.cmd {
        Cmd::Generate(a) => run_generate(&a),
        Cmd::Score(a) => score::command(a),
        Cmd::Info(a) => info(a),
        Cmd::Bench(a) => bench::command(a),
        Cmd::Tune(a) => tune::command::command(a),
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
    Ok(())
}
