//! Progress on stderr: without a terminal, `xlstm score`, `bench`, `perplexity` and `generate`
//! print plain progress lines (`xlstm CMD: PHASE, ... [elapsed T]`, at most one every ~2 s) on
//! stderr, and stdout keeps exactly its format (score: nothing; bench --json: one JSON object;
//! bench: its table; generate: the text). `XLSTM_PROGRESS=plain` shows the lines from the start
//! (by default they start after a few seconds, so quick runs print none); `off` shows none.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_xlstm");

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

fn xlstm(args: &[&str], progress: &str, cache: &Path) -> Output {
    let o = Command::new(BIN)
        .args(args)
        .env("XLSTM_PROGRESS", progress)
        .env("XLSTM_CACHE_DIR", cache)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: exit {:?}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The progress lines of `command` on stderr.
fn progress_lines(o: &Output, command: &str) -> Vec<String> {
    let prefix = format!("xlstm {command}: ");
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

fn assert_progress(o: &Output, command: &str, needles: &[&str]) {
    let lines = progress_lines(o, command);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!lines.is_empty(), "{command}: no progress lines on stderr:\n{stderr}");
    for l in &lines {
        assert!(l.contains("[elapsed ") && l.ends_with(']'), "{command}: {l}");
    }
    for n in needles {
        assert!(
            lines.iter().any(|l| l.contains(n)),
            "{command}: no line mentions `{n}`:\n{stderr}"
        );
    }
}

#[test]
fn score_shows_progress_and_writes_nothing_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let ids: Vec<u32> = (0..300u32).map(|i| 3 + (i * 7919) % 4000).collect();
    let ids_path = dir.path().join("ids.json");
    std::fs::write(&ids_path, serde_json::to_vec(&ids).unwrap()).unwrap();
    let out = dir.path().join("out.safetensors");
    let model = model_dir("xlstm-large-mini");
    let args = [
        "score",
        "--no-tune-cache",
        "--model",
        model.to_str().unwrap(),
        "--input-ids",
        ids_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--generate",
        "8",
        "--segment",
        "64",
    ];
    let o = xlstm(&args, "plain", &cache);
    assert!(o.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&o.stdout));
    // The first line comes at once (loading); token counts name the total of prompt + generated.
    assert_progress(&o, "score", &["loading", "/308 tokens"]);
    assert!(out.is_file());

    // Off: the same run prints nothing on stderr.
    let o = xlstm(&args, "off", &cache);
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn bench_shows_progress_and_keeps_stdout_to_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = model_dir("xlstm-large-mini");
    let base = [
        "bench",
        "--no-tune-cache",
        "--model",
        model.to_str().unwrap(),
        "--prefill-lens",
        "32,64",
        "--decode-tokens",
        "4",
        "--repeats",
        "1",
    ];
    let mut json = base.to_vec();
    json.push("--json");
    let o = xlstm(&json, "plain", &cache);
    assert_progress(&o, "bench", &["loading"]);
    // stdout is the one JSON object, nothing else.
    let stdout = String::from_utf8(o.stdout.clone()).unwrap();
    assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
    let r: serde_json::Value = serde_json::from_str(&stdout).expect("bench --json prints one JSON object");
    assert_eq!(r["prefill"].as_array().unwrap().len(), 2);

    let o = xlstm(&base, "plain", &cache);
    assert_progress(&o, "bench", &["loading"]);
    let stdout = String::from_utf8(o.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("model ready in "), "{stdout}");
    assert!(
        lines[2]
            .split_whitespace()
            .eq(["prompt", "prefill", "ms", "tok/s", "TTFT", "ms"]),
        "{stdout}"
    );
    assert!(lines.last().unwrap().starts_with("decode B=1: "), "{stdout}");
    assert!(!stdout.contains("xlstm bench:"), "{stdout}");
}

#[test]
fn perplexity_and_generate_show_progress_on_stderr_only() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = model_dir("xlstm-v1-mini");
    let text = dir.path().join("text.txt");
    std::fs::write(
        &text,
        "It is a truth universally acknowledged, that a single man. ".repeat(20),
    )
    .unwrap();
    let o = xlstm(
        &[
            "perplexity",
            "--no-tune-cache",
            "--model",
            model.to_str().unwrap(),
            "--text",
            text.to_str().unwrap(),
        ],
        "plain",
        &cache,
    );
    assert_progress(&o, "perplexity", &["loading"]);
    let stdout = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(
        stdout.starts_with("perplexity ") && stdout.lines().count() == 1,
        "{stdout}"
    );

    let o = xlstm(
        &[
            "generate",
            "--no-tune-cache",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "Elizabeth",
            "--max-new-tokens",
            "6",
        ],
        "plain",
        &cache,
    );
    assert_progress(&o, "generate", &["loading"]);
    let stdout = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(
        stdout.starts_with("Elizabeth") && !stdout.contains("xlstm generate:"),
        "{stdout}"
    );
    // The summary is still the last line on stderr.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.trim_end().lines().last().unwrap().starts_with("prompt tokens "),
        "{stderr}"
    );
}
