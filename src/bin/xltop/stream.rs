//! The records of the runtime directory, the JSON snapshot (`--json`), and the line-oriented
//! modes (`--no-curses`, `--json-stream`) with the commands read from standard input.

use crate::control::Control;
use crate::text::{say, table};
use crate::{poll_seconds, Args};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use xlstm_wgpu::telemetry::status::{read_records, remove_record, unix_now, StatusRecord};

/// The records, stale ones removed first when `clean`.
pub fn records(dir: &Path, clean: bool) -> Vec<StatusRecord> {
    let mut recs = read_records(dir);
    if clean {
        remove_stale(dir, &recs);
        recs.retain(|r| !r.stale);
    }
    recs
}

/// Removes the stale records among `recs`; returns how many there were.
pub fn remove_stale(dir: &Path, recs: &[StatusRecord]) -> usize {
    let stale: Vec<u32> = recs.iter().filter(|r| r.stale).map(|r| r.pid).collect();
    for &pid in &stale {
        remove_record(dir, pid);
    }
    stale.len()
}

pub fn snapshot_of(dir: &Path, recs: &[StatusRecord]) -> serde_json::Value {
    serde_json::json!({
        "time": unix_now(),
        "dir": dir.display().to_string(),
        "processes": recs,
    })
}

pub fn snapshot(dir: &Path, clean: bool) -> serde_json::Value {
    snapshot_of(dir, &records(dir, clean))
}

enum Input {
    Kill(u32),
    EmptyCache(u32),
    Interval(f64),
    Quit,
}

fn parse_command(line: &str) -> Result<Option<Input>, String> {
    let mut w = line.split_whitespace();
    let Some(cmd) = w.next() else {
        return Ok(None);
    };
    let arg = w.next();
    if w.next().is_some() {
        return Err(format!("`{line}`: too many words"));
    }
    let pid = |a: Option<&str>| -> Result<u32, String> {
        a.ok_or_else(|| format!("`{cmd}` needs a pid"))?
            .parse()
            .map_err(|_| format!("`{line}`: not a pid"))
    };
    match cmd {
        "kill" | "stop" => Ok(Some(Input::Kill(pid(arg)?))),
        "empty_cache" | "empty-cache" => Ok(Some(Input::EmptyCache(pid(arg)?))),
        "interval" => {
            let s = poll_seconds(arg.ok_or("`interval` needs seconds")?)
                .map_err(|e| format!("`{line}`: {e}; interval unchanged"))?;
            Ok(Some(Input::Interval(s)))
        }
        "quit" | "exit" | "q" => Ok(Some(Input::Quit)),
        _ => Err(format!(
            "unknown command `{cmd}` (kill <pid>, empty_cache <pid>, interval <sec>, quit)"
        )),
    }
}

/// Plain text or NDJSON output, optionally driven by commands on stdin.
pub fn stream(args: &Args, dir: &Path) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<String>();
    if args.stdin_commands {
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    } else {
        drop(tx);
    }
    let mut control = Control::new(dir, args.kill_grace);
    let mut poll = Duration::from_secs_f64(args.poll);
    let mut shown = 0u64;
    let mut stdout = std::io::stdout();
    loop {
        let recs = records(dir, args.clean);
        let text = if args.json_stream {
            format!("{}\n", snapshot_of(dir, &recs))
        } else {
            format!("{}\n", table(dir, &recs))
        };
        if stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()).is_err() {
            return Ok(()); // the reader went away
        }
        shown += 1;
        if args.count > 0 && shown >= args.count {
            return Ok(());
        }
        let next = Instant::now() + poll;
        loop {
            for m in control.tick() {
                say(&m);
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            let wait = (next - now).min(Duration::from_millis(250));
            match rx.recv_timeout(wait) {
                Ok(line) => match parse_command(&line) {
                    Ok(None) => {}
                    Ok(Some(Input::Quit)) => return Ok(()),
                    Ok(Some(Input::Interval(s))) => {
                        poll = Duration::from_secs_f64(s);
                        say(&format!("refreshing every {s} s"));
                        break;
                    }
                    Ok(Some(Input::Kill(pid))) => match control.kill(pid) {
                        Ok(m) | Err(m) => say(&m),
                    },
                    Ok(Some(Input::EmptyCache(pid))) => match control.empty_cache(pid) {
                        Ok(m) | Err(m) => say(&m),
                    },
                    Err(e) => say(&e),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
    }
}
