//! `xltop`: watch the running `xlstm` processes (generate, score, bench): phase, progress, tok/s,
//! process and GPU-pool memory; empty a process's GPU buffer cache or stop it.
//!
//! It reads the status records that every run publishes in the runtime directory (see
//! `xlstm_wgpu::telemetry::status`) and sends control commands through the same directory.
//!
//!     xltop                                  full-screen monitor (K kill, E empty cache, q quit)
//!     xltop --no-curses --poll 2             plain text, one table per refresh
//!     xltop --json                           one JSON snapshot
//!     xltop --json-stream --poll 1 --count 10    NDJSON, one snapshot per refresh
//!     xltop --clean                          remove stale records and exit
//!     xltop --serve [ADDR]                   the dashboard in a browser (default 127.0.0.1:8265)
//!     xltop --stdin-commands                 also read `kill <pid>`, `empty_cache <pid>`,
//!                                            `interval <sec>`, `quit` from standard input
//!
//! The source reads top to bottom: this file (flags, the choice of mode), [`stream`] (the records,
//! the JSON snapshot, the plain-text and NDJSON loop with its stdin commands), [`tui`] (the
//! full-screen monitor), [`serve`] (the web dashboard and its JSON and event-stream endpoints;
//! the page itself is in `web/`), [`control`] (stopping a process and emptying its cache, with the checks
//! that the pid is still the run of its record) and [`text`] (terminal-safe text and the table).

mod control;
mod serve;
mod stream;
mod text;
mod tui;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use stream::{remove_stale, snapshot, stream};
use text::sanitize;
use xlstm_wgpu::telemetry::status::{check_runtime_dir, read_records};

/// Refresh intervals accepted (--poll, `interval`), in seconds: short enough to follow a run,
/// long enough not to spin.
const POLL_RANGE: std::ops::RangeInclusive<f64> = 0.05..=3600.0;
/// Grace periods accepted (--kill-grace), in seconds.
const GRACE_RANGE: std::ops::RangeInclusive<f64> = 0.0..=3600.0;

/// Parses a number of seconds within `range` (also rejects NaN and infinities).
fn seconds_in(text: &str, range: &std::ops::RangeInclusive<f64>) -> Result<f64, String> {
    let s: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !range.contains(&s) {
        return Err(format!(
            "{text} s is out of range ({} ..= {} s)",
            range.start(),
            range.end()
        ));
    }
    Ok(s)
}

fn poll_seconds(text: &str) -> Result<f64, String> {
    seconds_in(text, &POLL_RANGE)
}

fn grace_seconds(text: &str) -> Result<f64, String> {
    seconds_in(text, &GRACE_RANGE)
}

#[derive(Parser, Clone, Debug)]
#[command(
    name = "xltop",
    version,
    about = "Monitor running xlstm processes: memory, progress, tok/s; empty their GPU cache or stop them"
)]
struct Args {
    /// Runtime directory to watch; it must be private to the user [default: $XLSTM_RUNTIME_DIR,
    /// else $XDG_RUNTIME_DIR/xlstm, else <temp dir>/xlstm-<uid>].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Seconds between refreshes (0.05 ..= 3600).
    #[arg(long, value_name = "SEC", default_value_t = 1.0, value_parser = poll_seconds)]
    poll: f64,
    /// Plain text output (one table per refresh) instead of the full-screen monitor.
    #[arg(long)]
    no_curses: bool,
    /// Print one JSON snapshot and exit.
    #[arg(long, conflicts_with_all = ["json_stream", "no_curses", "stdin_commands"])]
    json: bool,
    /// Print one JSON snapshot per refresh, one per line (NDJSON).
    #[arg(long)]
    json_stream: bool,
    /// Stop after N refreshes (plain and JSON-stream output; 0: run until `quit` or Ctrl-C).
    #[arg(long, value_name = "N", default_value_t = 0)]
    count: u64,
    /// Read commands from standard input, one a line: `kill <pid>`, `empty_cache <pid>`,
    /// `interval <sec>`, `quit`. Implies --no-curses unless --json-stream is given.
    #[arg(long)]
    stdin_commands: bool,
    /// Seconds a killed process gets to stop at a safe point before it is sent SIGTERM
    /// (0 ..= 3600).
    #[arg(long, value_name = "SEC", default_value_t = 5.0, value_parser = grace_seconds)]
    kill_grace: f64,
    /// Remove the records of processes that ended without cleaning up (stale records). Alone it
    /// cleans and exits; with --json, --json-stream, --no-curses or --stdin-commands it cleans
    /// before every refresh.
    #[arg(long)]
    clean: bool,
    /// Serve the dashboard (a web page with the processes, live charts and the Kill and Empty-cache
    /// actions, plus JSON and event-stream endpoints) on ADDR, IP:PORT [default: 127.0.0.1:8265,
    /// loopback only]. The actions need the token it prints.
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = serve::DEFAULT_ADDR,
        conflicts_with_all = ["json", "json_stream", "no_curses", "stdin_commands", "count"]
    )]
    serve: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args.dir.clone().unwrap_or_else(xlstm_wgpu::telemetry::runtime_dir);
    // Whoever can write the directory could forge records and make us signal their choice of
    // process: refuse to read or act on one that is not private.
    if let Err(e) = check_runtime_dir(&dir) {
        eprintln!("xltop: error: {}", sanitize(&e.to_string()));
        return ExitCode::FAILURE;
    }
    let result = if let Some(addr) = &args.serve {
        serve::run(&args, &dir, addr)
    } else if args.json {
        let snap = snapshot(&dir, args.clean);
        println!("{snap}");
        Ok(())
    } else if args.json_stream || args.no_curses || args.stdin_commands {
        stream(&args, &dir)
    } else if args.clean {
        // A clean-up is a one-shot, also from a script or cron where there is no terminal to
        // start the monitor on.
        let n = remove_stale(&dir, &read_records(&dir));
        eprintln!("xltop: removed {n} stale record{}", if n == 1 { "" } else { "s" });
        Ok(())
    } else {
        tui::run(&args, &dir)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xltop: error: {}", sanitize(&e));
            ExitCode::FAILURE
        }
    }
}
