//! The main job: generate text with an xLSTM model on the GPU.
//!
//!     cargo run --release --example generate -- [--model DIR] [--prompt TEXT] [--max-new-tokens N]
//!         [--temperature T --top-k K --top-p P --seed S] [--prefill scheduled|fused|recurrent]
//!         [--chunk-size N] [--heads-per-band N] [--dtype f16|f32]
//!
//! Without --model it runs the small xLSTM Large model shipped in models/xlstm-large-mini.
//! Text streams as it is produced; one summary line ends the run.

use clap::Parser;
use std::process::ExitCode;
use xlstm_wgpu::cli::{run_generate, GenerateArgs};

#[derive(Parser)]
#[command(name = "generate", about = "Generate text with an xLSTM model on the GPU")]
struct Args {
    #[command(flatten)]
    generate: GenerateArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run_generate(&args.generate) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("generate: error: {e}");
            // 3: memory limit, 4: stopped on request (see xlstm_wgpu::telemetry).
            ExitCode::from(xlstm_wgpu::telemetry::exit_code(&e))
        }
    }
}
