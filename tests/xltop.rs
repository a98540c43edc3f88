//! The `xltop` monitor against real `xlstm generate` runs: `--json` lists a running generate with
//! its figures; `empty_cache` and `kill` sent through `--stdin-commands` reach it (its pooled
//! bytes drop; it stops with exit code 4 and removes its record); the plain and NDJSON outputs;
//! stale records; and the full-screen monitor rendered in a real terminal (tmux).
//!
//!     WGPU_BACKEND=vulkan XDG_RUNTIME_DIR=/tmp cargo test --test xltop
//!
//! The TUI test needs tmux (ci/setup installs it); without it the test is skipped outside CI.

mod common;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use xlstm_wgpu::telemetry::status::{write_record, StatusRecord};

const XLTOP: &str = env!("CARGO_BIN_EXE_xltop");
const TIMEOUT: Duration = Duration::from_secs(120);

type Run = common::generate_run::GenerateRun;

fn xltop(rt: &Path, args: &[&str]) -> Output {
    Command::new(XLTOP)
        .args(args)
        .env("XLSTM_RUNTIME_DIR", rt)
        .output()
        .expect("running xltop")
}

fn json_snapshot(rt: &Path) -> Value {
    let o = xltop(rt, &["--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("xltop --json prints one JSON object")
}

fn record_of(snap: &Value, pid: u32) -> Option<Value> {
    snap["processes"]
        .as_array()?
        .iter()
        .find(|p| p["pid"].as_u64() == Some(pid as u64))
        .cloned()
}

/// Polls `xltop --json` until `pred` holds for the record of `pid`.
fn wait_for(rt: &Path, pid: u32, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        if let Some(r) = record_of(&json_snapshot(rt), pid) {
            if pred(&r) {
                return r;
            }
        }
        assert!(t0.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn decoding_with_cache(r: &Value) -> bool {
    r["phase"] == "decode" && r["tokens"].as_u64() > Some(2) && r["gpu_pooled_bytes"].as_u64() > Some(0)
}

#[test]
fn json_lists_a_running_generate_and_stdin_commands_reach_it() {
    let run = Run::start();
    let (rt, pid) = (run.rt().to_path_buf(), run.pid());
    let r = wait_for(&rt, pid, "the generate to decode", decoding_with_cache);
    assert_eq!(r["command"], "generate");
    assert_eq!(r["stale"], false);
    assert!(r["model"].as_str().unwrap().ends_with("xlstm-large-mini"), "{r}");
    assert!(!r["adapter"].as_str().unwrap().is_empty(), "{r}");
    assert_eq!(r["total_tokens"], 1000000);
    assert_eq!(r["poll_ms"], 100);
    for k in [
        "rss_bytes",
        "sys_avail_bytes",
        "sys_total_bytes",
        "gpu_live_bytes",
        "gpu_peak_bytes",
        "hard_limit_bytes",
    ] {
        assert!(r[k].as_u64().unwrap() > 0, "{k} in {r}");
    }
    assert!(r["progress"].as_f64().unwrap() > 0.0);
    let r = wait_for(&rt, pid, "a token rate", |r| r["tok_per_s"].as_f64() > Some(0.0));
    assert!(r["tokens"].as_u64().unwrap() > 0);

    // Commands through stdin, snapshots as NDJSON.
    let mut top = Command::new(XLTOP)
        .args([
            "--stdin-commands",
            "--json-stream",
            "--poll",
            "0.2",
            "--kill-grace",
            "30",
        ])
        .env("XLSTM_RUNTIME_DIR", &rt)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = top.stdin.take().unwrap();
    let mut lines = BufReader::new(top.stdout.take().unwrap()).lines();
    let mut next_snapshot = || -> Value {
        let line = lines.next().expect("an NDJSON line").unwrap();
        serde_json::from_str(&line).expect("each line is one JSON object")
    };
    let before = record_of(&next_snapshot(), pid).expect("the run is listed");
    let pooled_before = before["gpu_pooled_bytes"].as_u64().unwrap();
    assert!(pooled_before > 0, "{before}");
    writeln!(stdin, "empty_cache {pid}").unwrap();
    let t0 = Instant::now();
    let after = loop {
        let r = record_of(&next_snapshot(), pid).expect("still listed");
        if r["commands_handled"].as_u64() >= Some(1) {
            break r;
        }
        assert!(t0.elapsed() < TIMEOUT, "empty_cache was not handled");
    };
    assert_eq!(after["last_command"], "empty_cache");
    assert!(
        after["gpu_pooled_bytes"].as_u64().unwrap() < pooled_before,
        "pooled bytes {} -> {}",
        pooled_before,
        after["gpu_pooled_bytes"]
    );
    writeln!(stdin, "interval 0.1").unwrap();
    writeln!(stdin, "bogus 1").unwrap();
    writeln!(stdin, "kill {pid}").unwrap();
    stdin.flush().unwrap();
    let (code, err) = run.wait(TIMEOUT);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("xlstm: error: stopped: stop requested (xltop); stopped at a safe point"),
        "{err}"
    );
    assert!(
        !rt.join(format!("{pid}.json")).exists(),
        "the record is removed on exit"
    );
    // Snapshots keep coming without the process, then `quit` ends xltop.
    let t0 = Instant::now();
    while record_of(&next_snapshot(), pid).is_some() {
        assert!(t0.elapsed() < TIMEOUT);
    }
    writeln!(stdin, "quit").unwrap();
    let st = top.wait().unwrap();
    assert!(st.success());
    let mut msgs = String::new();
    std::io::Read::read_to_string(&mut top.stderr.take().unwrap(), &mut msgs).unwrap();
    for m in [
        format!("xltop: empty_cache sent to {pid}"),
        "xltop: refreshing every 0.1 s".into(),
        "xltop: unknown command `bogus`".into(),
        format!("xltop: stop sent to {pid}"),
    ] {
        assert!(msgs.contains(&m), "`{m}` missing from: {msgs}");
    }
}

#[test]
fn plain_and_stream_outputs_and_stale_records() {
    let dir = tempfile::tempdir().unwrap();
    let rt = dir.path();
    // A record left by a process that crashed (a pid that cannot be alive).
    let dead = StatusRecord {
        pid: 4_000_000_000,
        command: "score".into(),
        phase: "prefill".into(),
        model: "/models/some-model".into(),
        poll_ms: 200,
        updated_unix: xlstm_wgpu::telemetry::status::unix_now(),
        ..Default::default()
    };
    write_record(rt, &dead).unwrap();

    let o = xltop(rt, &["--json"]);
    let snap: Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = record_of(&snap, dead.pid).unwrap();
    assert_eq!(r["stale"], true);
    assert_eq!(r["command"], "score");

    let o = xltop(rt, &["--no-curses", "--poll", "0.1", "--count", "2"]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.matches("xltop  1 process").count(), 2, "{text}");
    assert!(
        text.contains("PID") && text.contains("TOK/S") && text.contains("RSS MiB"),
        "{text}"
    );
    let row = text.lines().find(|l| l.contains("4000000000")).unwrap();
    assert!(
        row.contains("score") && row.contains("stale") && row.contains("some-model"),
        "{row}"
    );

    let o = xltop(rt, &["--json-stream", "--poll", "0.1", "--count", "3"]);
    assert!(o.status.success());
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|s| s["processes"].as_array().unwrap().len() == 1));

    // Commands for processes that are not running are refused with a message.
    let mut top = Command::new(XLTOP)
        .args(["--stdin-commands", "--poll", "0.1"])
        .env("XLSTM_RUNTIME_DIR", rt)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = top.stdin.take().unwrap();
    writeln!(stdin, "empty_cache 4000000000\nempty_cache 12\nkill 4000000000\nquit").unwrap();
    let o = top.wait_with_output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("process 4000000000 is not running (stale record)"),
        "{err}"
    );
    assert!(err.contains("no xlstm process 12"), "{err}");
    assert!(
        err.contains("process 4000000000 is gone; removed its stale record"),
        "{err}"
    );
    assert!(!rt.join("4000000000.json").exists());

    // --clean removes stale records.
    write_record(rt, &dead).unwrap();
    let snap: Value = serde_json::from_slice(&xltop(rt, &["--json", "--clean"]).stdout).unwrap();
    assert!(snap["processes"].as_array().unwrap().is_empty());
    assert!(!rt.join("4000000000.json").exists());

    // --clean alone is a one-shot: it cleans and exits without a terminal (stdin, stdout and
    // stderr are not TTYs here) and writes no terminal control sequences.
    write_record(rt, &dead).unwrap();
    let o = xltop(rt, &["--clean"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(o.stdout.is_empty(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(err.trim(), "xltop: removed 1 stale record", "{err}");
    assert!(!rt.join("4000000000.json").exists());
    let o = xltop(rt, &["--clean"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "xltop: removed 0 stale records"
    );
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("running tmux")
    }
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "xltop"]).stdout).into_owned()
    }
    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(t0.elapsed() < TIMEOUT, "timed out waiting for {what}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "xltop"];
        a.extend_from_slice(keys);
        assert!(self.cmd(&a).status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn the_tui_renders_in_a_real_terminal_and_its_keys_work() {
    if !tmux_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is required in CI (ci/setup installs it)"
        );
        eprintln!("skipping: tmux is not installed");
        return;
    }
    let run = Run::start();
    let (rt, pid) = (run.rt().to_path_buf(), run.pid());
    wait_for(&rt, pid, "the generate to decode", decoding_with_cache);
    let tmux = Tmux {
        socket: format!("xltop-test-{}", std::process::id()),
    };
    let command = format!(
        "env XLSTM_RUNTIME_DIR='{}' TERM=xterm-256color '{}' --poll 0.3 --kill-grace 30",
        rt.display(),
        PathBuf::from(XLTOP).display()
    );
    let o = tmux.cmd(&["new-session", "-d", "-s", "xltop", "-x", "150", "-y", "40", &command]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let pid_s = pid.to_string();
    // Wait for the whole frame (the table, the gauges, the sparkline and the key help): tmux can
    // capture a frame the terminal has only partly drawn.
    let screen = tmux.wait_screen("the whole first frame", |s| {
        s.contains(&pid_s) && s.contains("decode") && s.contains(&format!("tok/s of {pid}")) && s.contains("q quit")
    });
    for needle in [
        "xltop",
        "1 running",
        "PID",
        "TOK/S",
        "generate",
        "xlstm-large-mini",
        &format!("memory of {pid}"),
        "process ",
        "system ",
        "GPU pool",
        &format!("tok/s of {pid}"),
        "K kill",
        "E empty cache",
        "q quit",
    ] {
        assert!(screen.contains(needle), "`{needle}` missing from the screen:\n{screen}");
    }

    // E: empty cache of the selected process; the process handles it.
    tmux.keys(&["E"]);
    tmux.wait_screen("the empty-cache message", |s| {
        s.contains(&format!("empty_cache sent to {pid}"))
    });
    wait_for(&rt, pid, "empty_cache to be handled", |r| {
        r["last_command"] == "empty_cache"
    });

    // K opens the prompt with the selected pid; Esc cancels, K + Enter stops the process.
    tmux.keys(&["K"]);
    tmux.wait_screen("the kill prompt", |s| s.contains(&format!("Kill pid: {pid}_")));
    tmux.keys(&["Escape"]);
    tmux.wait_screen("the cancel", |s| s.contains("kill cancelled"));
    tmux.keys(&["K"]);
    tmux.wait_screen("the kill prompt", |s| s.contains("Kill pid:"));
    tmux.keys(&["Enter"]);
    let (code, err) = run.wait(TIMEOUT);
    assert_eq!(code, Some(4), "{err}");
    tmux.wait_screen("the process to go", |s| {
        s.contains("no xlstm process running") && s.contains("0 running")
    });

    // q quits and the session ends.
    tmux.keys(&["q"]);
    let t0 = Instant::now();
    while tmux.cmd(&["has-session", "-t", "xltop"]).status.success() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "xltop did not quit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_tui_shows_record_text_without_its_terminal_escapes() {
    if !tmux_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is required in CI (ci/setup installs it)"
        );
        eprintln!("skipping: tmux is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Clear the screen, set the window title, colour in red (C1 CSI), reverse the text direction.
    let evil = "\u{1b}[2J\u{1b}]2;pwned\u{7}\u{9b}31mred\u{202e}txt";
    let rec = StatusRecord {
        pid: 4_000_000_040,
        command: evil.into(),
        phase: evil.into(),
        model: format!("/m/{evil}"),
        adapter: evil.into(),
        poll_ms: 200,
        updated_unix: xlstm_wgpu::telemetry::status::unix_now(),
        ..Default::default()
    };
    write_record(dir.path(), &rec).unwrap();
    let tmux = Tmux {
        socket: format!("xltop-escapes-{}", std::process::id()),
    };
    let command = format!(
        "env XLSTM_RUNTIME_DIR='{}' TERM=xterm-256color '{}' --poll 0.3",
        dir.path().display(),
        PathBuf::from(XLTOP).display()
    );
    let o = tmux.cmd(&["new-session", "-d", "-s", "xltop", "-x", "200", "-y", "40", &command]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let screen = tmux.wait_screen("the record's row", |s| s.contains("4000000040") && s.contains("q quit"));
    assert!(screen.contains("?[2J?]2;pwned??31mred?txt"), "{screen}");
    let title = tmux.cmd(&["display-message", "-p", "-t", "xltop", "#{pane_title}"]);
    let title = String::from_utf8_lossy(&title.stdout);
    assert!(!title.contains("pwned"), "the record set the terminal title: {title}");
    tmux.keys(&["q"]);
}
