//! The autotuner end to end (`xlstm tune`, the tuner lives in the binary: src/bin/xlstm/tune) and
//! the `queued` prefill strategy's parallel recorder.
//!
//! - `Plan::run_queued`: command buffers cut at split marks, recorded on several threads and
//!   submitted in plan order, give what `run` gives;
//! - the binary: a tune run stores its best in the cache (`XLSTM_CACHE_DIR`), `--show` lists it,
//!   `generate` picks it up (and `--no-tune-cache` or a flag overrides it), Ctrl-C ends a run
//!   keeping every finished trial, bad flags are one-line errors.
//!
//! The search engine, library runs of the tuner on a fixture and the `--help` defaults are unit
//! tests of the binary (`cargo test --bin xlstm`).
//!
//! Run with `WGPU_BACKEND=vulkan cargo test --test tune` (lavapipe is enough: the models are tiny).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use xlstm_wgpu::gpu::{Kernels, PlanBuilder, Slice, SubmitBudget};
use xlstm_wgpu::WeightDtype;

const BIN: &str = env!("CARGO_BIN_EXE_xlstm");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The queued recorder.

#[test]
fn queued_plans_record_in_parallel_and_submit_in_order() {
    let gpu = common::gpu();
    let pool = xlstm_wgpu::gpu::BufferPool::new(gpu.device.clone());
    let kernels = Kernels::new(gpu.clone());
    let ops = xlstm_wgpu::ops::Ops::new(&kernels, WeightDtype::F32).unwrap();
    let alloc = |label: &str| {
        xlstm_wgpu::model::weights::GpuMatrix::allocate(&gpu, &pool, 16, 64, WeightDtype::F32, label).unwrap()
    };
    let m = alloc("m");
    let snaps: Vec<_> = (0..12).map(|i| alloc(&format!("snap {i}"))).collect();
    let bytes = m.parts[0].buf.len();
    // Rewrite `m` twelve times with different seeds, snapshotting it after each: the snapshots
    // are right only if every command buffer ran in plan order.
    let mut pb = PlanBuilder::new(gpu.clone());
    for (i, snap) in snaps.iter().enumerate() {
        xlstm_wgpu::ops::fill_random(&mut pb, &ops, &m, 1000 + i as u32, 1.0).unwrap();
        pb.copy(
            Slice::range(&m.parts[0].buf, 0, bytes),
            Slice::range(&snap.parts[0].buf, 0, bytes),
        );
        pb.split();
    }
    let plan = pb.finish(&pool).unwrap();
    let budget = SubmitBudget::default();
    assert_eq!(plan.command_buffer_count(budget, false), 1);
    assert_eq!(plan.command_buffer_count(budget, true), 12);
    let tight = SubmitBudget {
        max_dispatches: 5,
        ..budget
    };
    assert_eq!(plan.command_buffer_count(tight, false), 3);
    let read = |snap: &xlstm_wgpu::model::weights::GpuMatrix| {
        xlstm_wgpu::gpu::readback::read_f32(&gpu, &pool, &snap.parts[0].buf, 0, 16 * 64).unwrap()
    };
    let clear = || {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for s in &snaps {
            enc.clear_buffer(s.parts[0].buf.raw(), 0, None);
        }
        gpu.queue.submit([enc.finish()]);
    };
    plan.run(&gpu, budget).unwrap();
    let expected: Vec<Vec<f32>> = snaps.iter().map(read).collect();
    for i in 1..expected.len() {
        assert_ne!(expected[i], expected[i - 1], "snapshots {i} and {} are equal", i - 1);
    }
    for threads in [0, 1, 3, 8] {
        clear();
        plan.run_queued(&gpu, budget, threads).unwrap();
        let got: Vec<Vec<f32>> = snaps.iter().map(read).collect();
        assert_eq!(got, expected, "run_queued with {threads} threads");
    }
}

// ---------------------------------------------------------------------------------------------
// The binary.

fn xlstm(cwd: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("XLSTM_CACHE_DIR", cache)
        .output()
        .expect("running the xlstm binary")
}

fn ok(o: &std::process::Output) -> (String, String) {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{out}\nstderr:\n{err}",
        o.status.code()
    );
    (out, err)
}

#[test]
fn tune_stores_the_best_and_generate_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = root().join("models/xlstm-large-mini");
    let model = model.to_str().unwrap();
    // Nothing stored yet.
    let (out, _) = ok(&xlstm(dir.path(), &cache, &["tune", "--show"]));
    assert!(out.contains("none stored"), "{out}");
    let (out, _) = ok(&xlstm(
        dir.path(),
        &cache,
        &[
            "tune",
            "--model",
            model,
            "--target",
            "prefill",
            "--mode",
            "random",
            "--trials",
            "3",
            "--seq",
            "64",
            "--repeats",
            "1",
            "--check-tokens",
            "40",
            "--run-name",
            "first",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["trials"], 3);
    assert_eq!(v["default"]["trial"], 0);
    assert!(v["best"]["prefill_tok_s"].as_f64().unwrap() >= v["default"]["prefill_tok_s"].as_f64().unwrap());
    let run = dir.path().join("runs/tune/first");
    for f in ["trials.csv", "summary.csv", "best.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert!(cache.join("tuned.json").is_file());
    let (out, _) = ok(&xlstm(dir.path(), &cache, &["tune", "--show"]));
    assert!(out.contains("large e128 nh4 blocks4 vocab4096"), "{out}");
    assert!(out.contains("prefill="), "{out}");

    // generate picks the stored settings up and says so; flags and --no-tune-cache win.
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            model,
            "--max-new-tokens",
            "2",
            "--prompt",
            "Once",
        ];
        args.extend_from_slice(extra);
        // The summary line is generate's last line on stderr (stdout holds the text alone).
        let (_, err) = ok(&xlstm(dir.path(), &cache, &args));
        err.lines().last().unwrap_or_default().to_string()
    };
    let line = generate(&[]);
    assert!(
        line.contains("tuned (cache):") && line.contains("chunk_size="),
        "{line}"
    );
    let line = generate(&["--chunk-size", "7"]);
    assert!(
        line.contains("tuned (cache):") && !line.contains("chunk_size="),
        "{line}"
    );
    let line = generate(&["--no-tune-cache"]);
    assert!(!line.contains("tuned"), "{line}");
    // Another cache directory: nothing applies.
    let (out, _) = ok(&xlstm(
        dir.path(),
        &dir.path().join("other"),
        &["generate", "--model", model, "--max-new-tokens", "1"],
    ));
    assert!(!out.contains("tuned"), "{out}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_keeps_every_finished_trial() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut child = Command::new(BIN)
        .args([
            "tune",
            "--preset",
            "tiny",
            "--target",
            "prefill",
            "--trials",
            "100000",
            "--seq",
            "64",
            "--repeats",
            "2",
            "--run-name",
            "int",
        ])
        .current_dir(dir.path())
        .env("XLSTM_CACHE_DIR", &cache)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let csv = dir.path().join("runs/tune/int/trials.csv");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&csv).map_or(0, |s| s.lines().count()) < 4 {
        assert!(t0.elapsed().as_secs() < 60, "no trials after a minute");
        assert!(child.try_wait().unwrap().is_none(), "tune ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let o = child.wait_with_output().unwrap();
    let (out, err) = ok(&o);
    assert!(err.contains("interrupted"), "{err}");
    let rows = csv_rows(&csv).len() - 1;
    assert!(rows >= 3, "{rows} rows");
    assert!(out.contains(&format!("{rows} trials")), "{out}");
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("runs/tune/int/best.json")).unwrap()).unwrap();
    assert_eq!(best["ended_by"], "interrupted");
    assert_eq!(best["trials"], rows);
    assert!(
        cache.join("tuned.json").is_file(),
        "the finished trials' best is stored"
    );
}

#[test]
fn tune_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // A value outside a flag's range or choices is clap's usage error (exit code 2).
    for (args, needle) in [
        (vec!["tune", "--preset", "tiny", "--target", "speed"], "--target"),
        (vec!["tune", "--preset", "tiny", "--mode", "annealing"], "--mode"),
        (vec!["tune", "--preset", "huge"], "--preset"),
        (vec!["tune", "--preset", "tiny", "--gemv-lanes", "3"], "gemv lanes"),
    ] {
        let o = xlstm(dir.path(), &dir.path().join("cache"), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: invalid value ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    for (args, needle) in [
        (vec!["tune"], "--model DIR or --preset NAME"),
        (vec!["tune", "--preset", "tiny", "--run-name", "a/b"], "--run-name"),
    ] {
        let o = xlstm(dir.path(), &dir.path().join("cache"), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("xlstm: error: ") && lines[0].contains(needle),
            "{args:?}: {err}"
        );
    }
    assert!(!dir.path().join("runs").exists(), "a failed tune left a run directory");
}

/// A two-trial random tune of `model` (both targets, short prompts) with `extra` flags; its
/// `--json` summary.
fn quick_tune(cwd: &Path, cache: &Path, model: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "tune",
        "--model",
        model,
        "--target",
        "both",
        "--mode",
        "random",
        "--trials",
        "2",
        "--seq",
        "48",
        "--repeats",
        "1",
        "--decode-tokens",
        "4",
        "--check-tokens",
        "24",
        "--json",
    ];
    args.extend_from_slice(extra);
    let (out, _) = ok(&xlstm(cwd, cache, &args));
    serde_json::from_str(out.trim()).expect("one JSON object")
}

#[test]
fn original_xlstm_models_tune_and_pick_the_settings_up() {
    // The shipped original-xLSTM model (mLSTM + sLSTM blocks): every trial is checked against the
    // recurrent path like for xLSTM Large, and the stored entry is keyed by the v1 shape.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = root().join("models/xlstm-v1-mini");
    let model = model.to_str().unwrap();
    let v = quick_tune(dir.path(), &cache, model, &[]);
    assert_eq!(v["trials"], 2);
    let (out, _) = ok(&xlstm(dir.path(), &cache, &["tune", "--show"]));
    assert!(
        out.contains("v1 e128 blocksmsmm vocab4096 mlstm4x64 slstm4x32"),
        "{out}"
    );
    let (_, err) = ok(&xlstm(
        dir.path(),
        &cache,
        &[
            "generate",
            "--model",
            model,
            "--max-new-tokens",
            "2",
            "--prompt",
            "Emma",
        ],
    ));
    let line = err.lines().last().unwrap_or_default();
    assert!(line.contains("tuned (cache):"), "{line}");
}

#[test]
fn quantized_formats_tune_per_format() {
    // A tuning is stored per weight format: q4 and q8 runs of the same model keep two entries,
    // and a q4 run picks up the q4 one.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = root().join("models/xlstm-large-mini");
    let model = model.to_str().unwrap();
    for dtype in ["q4", "q8"] {
        let v = quick_tune(dir.path(), &cache, model, &["--dtype", dtype]);
        assert_eq!(v["trials"], 2, "{dtype}: {v}");
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cache.join("tuned.json")).unwrap()).unwrap();
    let dtypes: Vec<&str> = stored["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["dtype"].as_str())
        .collect();
    assert!(dtypes.contains(&"q4") && dtypes.contains(&"q8"), "{stored}");
    let (_, err) = ok(&xlstm(
        dir.path(),
        &cache,
        &[
            "generate",
            "--model",
            model,
            "--dtype",
            "q4",
            "--max-new-tokens",
            "2",
            "--prompt",
            "Emma",
        ],
    ));
    let line = err.lines().last().unwrap_or_default();
    assert!(line.contains("tuned (cache):") && line.contains("q4"), "{line}");
}
