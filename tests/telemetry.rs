//! The memory watchdog: hard-limit stops (before loading and at a safe point while running) with
//! exit code 3 and no output file, the CSV log at the poll rate, flags over environment, the
//! watchdog switch, and telemetry going quietly off when the runtime directory is unusable.
//!
//!     WGPU_BACKEND=vulkan XDG_RUNTIME_DIR=/tmp cargo test --test telemetry
//!
//! The runs use the small model shipped in models/xlstm-large-mini (lavapipe is enough).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use xlstm_wgpu::gpu::Category;
use xlstm_wgpu::telemetry::sys::MemReader;
use xlstm_wgpu::telemetry::{exit_code, Estimate, Limit, MemConfig, Watchdog, EXIT_MEMORY_LIMIT};
use xlstm_wgpu::{
    Error, Gpu, GpuOptions, LoadOptions, Model, Sampler, SamplerConfig, Session, SessionOptions, WeightDtype,
};

const XLSTM: &str = env!("CARGO_BIN_EXE_xlstm");

fn mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-large-mini")
}

/// A scratch directory with an empty `out/` and a private runtime directory.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("ids.json"), "[0, 5, 17, 42, 3, 9, 11, 100, 7]").unwrap();
        Scratch { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn out_is_empty(&self) -> bool {
        std::fs::read_dir(self.path("out")).unwrap().next().is_none()
    }
    /// The xlstm binary with a clean watchdog environment and this scratch's runtime directory.
    fn xlstm(&self, args: &[&str]) -> Command {
        let mut c = Command::new(XLSTM);
        c.args(args).env("XLSTM_RUNTIME_DIR", self.path("run"));
        for k in [
            "XLSTM_MEM_WATCHDOG",
            "XLSTM_MEM_POLL_MS",
            "XLSTM_MEM_SOFT_PCT",
            "XLSTM_MEM_HARD_PCT",
            "XLSTM_MEM_SOFT_MB",
            "XLSTM_MEM_HARD_MB",
            "XLSTM_MEM_ACTION",
            "XLSTM_TELEMETRY",
        ] {
            c.env_remove(k);
        }
        c
    }
    fn score(&self, extra: &[&str]) -> Command {
        let model = mini().display().to_string();
        let ids = self.path("ids.json").display().to_string();
        let out = self.path("out/scores.safetensors").display().to_string();
        let mut args = vec![
            "score",
            "--model",
            &model,
            "--input-ids",
            &ids,
            "--out",
            &out,
            "--generate",
            "4",
        ];
        args.extend_from_slice(extra);
        self.xlstm(&args)
    }
}

fn run(mut c: Command) -> Output {
    c.output().expect("running xlstm")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exit_codes_are_documented_values() {
    assert_eq!(exit_code(&Error::MemoryLimit("x".into())), 3);
    assert_eq!(exit_code(&Error::Stopped("x".into())), 4);
    assert_eq!(exit_code(&Error::Input("x".into())), 1);
}

#[test]
fn a_model_that_cannot_fit_is_refused_before_loading_with_the_numbers() {
    let s = Scratch::new();
    let o = run(s.score(&["--mem-hard-mb", "1"]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(EXIT_MEMORY_LIMIT as i32), "{err}");
    // The last line: the soft limit, which follows this hard limit, may warn first.
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .starts_with("xlstm: error: memory limit: the model does not fit"),
        "{err}"
    );
    for needle in ["weights", "state", "activations", "MiB", "--mem-hard-mb 1"] {
        assert!(err.contains(needle), "`{needle}` missing from: {err}");
    }
    assert!(s.out_is_empty(), "no output file may be left");
}

#[test]
fn a_tiny_hard_cap_stops_the_run_with_exit_code_3_and_no_output_file() {
    // 48 MiB is above the model's estimate (about 5 MiB, so loading is allowed) but below what
    // any process with a GPU device resident needs, so the watchdog stops the run at the first
    // safe point.
    let s = Scratch::new();
    let o = run(s.score(&["--mem-hard-mb", "48"]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("xlstm: error: memory limit: memory use"), "{err}");
    assert!(
        err.contains("reached the hard limit 48.0 MiB (--mem-hard-mb 48)"),
        "{err}"
    );
    assert!(err.contains("stopped at a safe point"), "{err}");
    assert!(s.out_is_empty(), "no partial output file may be left: {err}");
    assert!(
        std::fs::read_dir(s.path("run")).map_or(true, |mut d| d.next().is_none()),
        "the status record is removed on exit"
    );

    // The same cap from the environment, on generate; the soft action warns first.
    let mut c = s.xlstm(&["generate", "--max-new-tokens", "8"]);
    c.env("XLSTM_MEM_HARD_MB", "48")
        .env("XLSTM_MEM_SOFT_MB", "40")
        .env("XLSTM_MEM_ACTION", "warn");
    let o = run(c);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("(XLSTM_MEM_HARD_MB=48)"), "{err}");
    assert!(
        err.contains("xlstm: warning: memory use") && err.contains("above the soft limit 40.0 MiB"),
        "{err}"
    );
}

#[test]
fn flags_win_over_the_environment_and_the_watchdog_can_be_switched_off() {
    let s = Scratch::new();
    // A flag overrides a hard limit from the environment that could never be met.
    let mut c = s.score(&["--mem-hard-mb", "1000000"]);
    c.env("XLSTM_MEM_HARD_MB", "1");
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(s.path("out/scores.safetensors").is_file());
    std::fs::remove_file(s.path("out/scores.safetensors")).unwrap();

    // XLSTM_MEM_WATCHDOG=0 turns the limits off; an unusable runtime directory turns telemetry
    // off with exactly one warning line, and the run goes on normally.
    std::fs::write(s.path("not-a-dir"), "").unwrap();
    let mut c = s.score(&[]);
    c.env("XLSTM_MEM_WATCHDOG", "0")
        .env("XLSTM_MEM_HARD_MB", "1")
        .env("XLSTM_RUNTIME_DIR", s.path("not-a-dir/xlstm"));
    let o = run(c);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(s.path("out/scores.safetensors").is_file());
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("telemetry off")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].starts_with("xlstm: warning: telemetry off"), "{err}");

    // Bad values are refused before any work: a flag's as a usage error (exit code 2), an
    // environment variable's as an input error (exit code 1).
    let o = run(s.score(&["--mem-hard-pct", "150"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--mem-hard-pct"), "{}", stderr(&o));
    let mut c = s.score(&[]);
    c.env("XLSTM_MEM_ACTION", "explode");
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown action `explode`"), "{}", stderr(&o));
}

#[test]
fn the_csv_log_gets_one_row_per_sample_at_the_poll_rate() {
    let s = Scratch::new();
    let log = s.path("mem.csv");
    let o = run(s.xlstm(&[
        "generate",
        "--max-new-tokens",
        "24",
        "--ignore-eos",
        "--mem-every",
        "50",
        "--mem-log",
        &log.display().to_string(),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("time,rss_mb,sys_avail_mb,gpu_live_mb,gpu_pooled_mb,gpu_peak_mb,phase,tokens")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 8), "{text}");
    let times: Vec<f64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    let span = times.last().unwrap() - times[0];
    assert!(rows.len() >= 5, "{text}");
    // One row per 50 ms sample: the count matches the duration, the median gap the period.
    let expected = span / 0.050;
    assert!(
        (rows.len() as f64) > expected * 0.6 && (rows.len() as f64) < expected * 1.2 + 3.0,
        "{} rows over {span:.2} s at 50 ms",
        rows.len()
    );
    let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    assert!((0.045..0.100).contains(&median), "median gap {median}");
    // Figures are filled in, phases follow the run and tokens only grow, to 24.
    assert!(rows
        .iter()
        .all(|r| r[1].parse::<f64>().unwrap() > 0.0 && r[2].parse::<f64>().unwrap() > 0.0));
    assert!(
        rows.iter().any(|r| r[3].parse::<f64>().unwrap() > 1.0),
        "the weights are live in the pool"
    );
    assert!(rows.iter().any(|r| r[6] == "decode"), "{text}");
    assert_eq!(rows.last().unwrap()[6], "done");
    let tokens: Vec<u64> = rows.iter().map(|r| r[7].parse().unwrap()).collect();
    assert!(tokens.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(*tokens.last().unwrap(), 24);
    let peak: f64 = rows.last().unwrap()[5].parse().unwrap();
    assert!(peak >= 3.0, "peak {peak}");
}

/// In-process: the estimate matches what loading allocates, and a hard limit crossed during
/// decoding stops `generate` between decode batches with `Error::MemoryLimit`.
#[test]
fn hard_limit_crossed_while_decoding_stops_between_steps() {
    let gpu = Arc::new(Gpu::new(&GpuOptions::default()).expect("a GPU adapter"));
    let model = Model::load(gpu, &mini(), &LoadOptions::default()).unwrap();
    let opts = SessionOptions::default();
    let est = Estimate::for_dir(&mini(), WeightDtype::F16, &opts, 16, false).unwrap();
    let weights = model.pool_stats().live_of(Category::Weights);
    let rel = (est.weights as f64 - weights as f64).abs() / weights as f64;
    assert!(rel < 0.02, "estimated weights {} vs loaded {weights}", est.weights);

    let rss_mb = MemReader::new().sample().rss >> 20;
    let cfg = MemConfig {
        soft: Limit::Mb(rss_mb + 150),
        hard: Limit::Mb(rss_mb + 250),
        poll: Duration::from_millis(20),
        telemetry: false,
        warn: false,
        ..MemConfig::default()
    };
    let wd = Watchdog::start(cfg, "test", "mini").unwrap();
    wd.attach(&model);
    let mut session = Session::new(&model, opts).unwrap();
    let mut sampler = Sampler::new(SamplerConfig::default()).unwrap();
    let mut produced = 0usize;
    let mut ballast: Vec<u8> = Vec::new();
    let result = session.generate(&[0, 5, 17, 42], 200, &mut sampler, &[], &mut |_| {
        produced += 1;
        if produced == 3 {
            // 400 MiB of touched memory pushes RSS over the hard limit; give the watchdog a
            // few polls to see it.
            ballast = vec![1u8; 400 << 20];
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(true)
    });
    assert!(ballast.iter().step_by(4096).all(|&b| b == 1));
    match result {
        Err(Error::MemoryLimit(m)) => {
            assert!(m.contains("reached the hard limit") && m.contains("phase"), "{m}")
        }
        other => panic!(
            "expected a memory-limit stop, got {:?}",
            other.map(|s| s.generated.len())
        ),
    }
    // Stopped at the first safe point after the crossing: the rest of the current greedy batch.
    assert!(
        (3..=3 + SessionOptions::default().decode_batch).contains(&produced),
        "{produced}"
    );
    assert!(wd.check().is_err());
    drop(wd);
    // Without the watchdog, the same session goes on.
    session.step(5).unwrap();
}

/// The pre-load estimate of an original-xLSTM model matches what loading allocates.
#[test]
fn estimate_of_an_original_xlstm_model_matches_the_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-v1-mini");
    let gpu = Arc::new(Gpu::new(&GpuOptions::default()).expect("a GPU adapter"));
    for dtype in [WeightDtype::F16, WeightDtype::F32] {
        let opts = LoadOptions {
            dtype: Some(dtype),
            ..Default::default()
        };
        let model = Model::load(gpu.clone(), &dir, &opts).unwrap();
        let est = Estimate::for_dir(&dir, dtype, &SessionOptions::default(), 64, false).unwrap();
        let weights = model.pool_stats().live_of(Category::Weights);
        let rel = (est.weights as f64 - weights as f64).abs() / weights as f64;
        assert!(
            rel < 0.02,
            "{dtype:?}: estimated weights {} vs loaded {weights}",
            est.weights
        );
        let session = Session::new(&model, SessionOptions::default()).unwrap();
        let state = session.state_bytes();
        // The session also holds the sLSTM ping-pong copies, which the estimate counts.
        let rel = (est.state as f64 - state as f64).abs() / state as f64;
        assert!(
            rel < 0.05,
            "{dtype:?}: estimated state {} vs allocated {state}",
            est.state
        );
    }
}

/// Starts `cmd`, waits (bounded) until its status record shows it decoding, sends `signals` one
/// right after the other, and waits (bounded) for it to end.
#[cfg(unix)]
fn interrupt_while_decoding(s: &Scratch, mut cmd: Command, signals: &[i32]) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running xlstm");
    let pid = child.id();
    let t0 = std::time::Instant::now();
    loop {
        let decoding = xlstm_wgpu::telemetry::read_records(&s.path("run"))
            .iter()
            .any(|r| r.pid == pid && r.phase == "decode" && r.tokens >= 2);
        if decoding {
            break;
        }
        if child.try_wait().unwrap().is_some() || t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("never seen decoding; stderr:\n{}", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (i, &sig) in signals.iter().enumerate() {
        if i > 0 {
            // Apart, or the kernel merges them into one pending signal.
            std::thread::sleep(Duration::from_millis(30));
            if child.try_wait().unwrap().is_some() {
                break;
            }
        }
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    }
    let t1 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t1.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("still running 60 s after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
fn runtime_dir_is_empty(s: &Scratch) -> bool {
    std::fs::read_dir(s.path("run")).map_or(true, |mut d| d.next().is_none())
}

/// SIGINT and SIGTERM stop `generate` at the next token: exit code 130 / 143, the text so far on
/// stdout, the summary line and one line saying why on stderr, and no status record left.
#[cfg(unix)]
#[test]
fn generate_stops_on_sigint_and_sigterm_with_the_summary_and_no_status_record() {
    for (sig, code, name) in [(libc::SIGINT, 130, "SIGINT"), (libc::SIGTERM, 143, "SIGTERM")] {
        let s = Scratch::new();
        let cmd = s.xlstm(&[
            "generate",
            "--max-new-tokens",
            "100000",
            "--ignore-eos",
            "--mem-every",
            "20",
        ]);
        let o = interrupt_while_decoding(&s, cmd, &[sig]);
        let err = stderr(&o);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(code), "{name}: {err}");
        assert!(
            err.contains(&format!("xlstm: {name} received: stopping at the next safe point")),
            "{err}"
        );
        let last = err.lines().last().unwrap();
        assert!(
            last.starts_with(&format!("xlstm: error: stopped: interrupted by {name}")),
            "{err}"
        );
        // The summary goes to stderr, before the error line; stdout holds the text alone.
        assert!(
            err.lines()
                .any(|l| l.starts_with("prompt tokens ") && l.contains("tok/s")),
            "{name}: no summary line in:\n{err}"
        );
        assert!(!out.contains("prompt tokens "), "{name}: summary on stdout:\n{out}");
        assert!(runtime_dir_is_empty(&s), "{name}: the status record is left");
    }
}

/// SIGTERM while `score` decodes (its output file half written) and two SIGINTs 30 ms apart (the
/// second ends the process at once unless the first already stopped it at a safe point): exit
/// code 143 / 130, no output and no temporary file left, no status record.
#[cfg(unix)]
#[test]
fn score_interrupted_while_writing_leaves_no_partial_output_or_status_record() {
    for (sigs, code) in [(&[libc::SIGTERM][..], 143), (&[libc::SIGINT, libc::SIGINT][..], 130)] {
        let s = Scratch::new();
        let (model, ids) = (mini(), s.path("ids.json"));
        let out = s.path("out/scores.safetensors");
        let mut cmd = s.xlstm(&["score", "--generate", "100000", "--mem-every", "20"]);
        cmd.arg("--model")
            .arg(model)
            .arg("--input-ids")
            .arg(ids)
            .arg("--out")
            .arg(out);
        let o = interrupt_while_decoding(&s, cmd, sigs);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{sigs:?}: {err}");
        let how = if err.contains("stopped at a safe point") {
            "at a safe point"
        } else {
            "at once"
        };
        eprintln!("{sigs:?}: the run ended {how}");
        assert!(s.out_is_empty(), "{sigs:?}: a partial output was left: {err}");
        assert!(runtime_dir_is_empty(&s), "{sigs:?}: the status record is left");
    }
}

/// A long `score` stays under a hard limit its old in-memory output (logits, their bytes and the
/// serialised file: three copies) broke without being stopped: the output streams to disk, so the
/// host holds the logits once. The limit (three copies of the logits plus 120 MiB) is one the old
/// pre-load estimate let through; the CSV log shows every sample under it.
#[test]
fn long_score_streams_its_output_and_stays_under_the_hard_limit() {
    let s = Scratch::new();
    let tokens = 10_000usize;
    let ids: Vec<usize> = (0..tokens).map(|i| (i * 7919) % 4096).collect();
    std::fs::write(s.path("long.json"), serde_json::to_string(&ids).unwrap()).unwrap();
    let logits_mb = (tokens * 4096 * 4) as f64 / (1 << 20) as f64;
    let hard_mb = (3.0 * logits_mb + 120.0) as u64;
    let (log, out) = (s.path("mem.csv"), s.path("out/scores.safetensors"));
    let hard = hard_mb.to_string();
    let mut c = s.xlstm(&["score", "--mem-every", "20", "--mem-hard-mb", &hard]);
    c.arg("--model").arg(mini()).arg("--input-ids").arg(s.path("long.json"));
    c.arg("--out").arg(&out).arg("--mem-log").arg(&log);
    let o = run(c);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected_len = 8 + 4 * tokens as u64 * 4096;
    assert!(std::fs::metadata(&out).unwrap().len() > expected_len);
    let text = std::fs::read_to_string(&log).unwrap();
    let peak = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    assert!(
        peak < hard_mb as f64,
        "peak RSS {peak:.1} MiB above the hard limit {hard_mb} MiB"
    );
}

/// The pre-load estimate of `score` counts every position's logits and the segment being read
/// back (the output itself streams to disk).
#[test]
fn score_estimate_counts_the_host_logits_and_one_segment() {
    let opts = SessionOptions::default();
    let est = Estimate::for_dir(&mini(), WeightDtype::F16, &opts, 10_000, true).unwrap();
    let seg = opts.max_segment_tokens.min(10_000) as u64;
    assert_eq!(est.host, (10_000 + seg) * 4096 * 4);
    let short = Estimate::for_dir(&mini(), WeightDtype::F16, &opts, 16, false).unwrap();
    assert_eq!(short.host, 0);
}
