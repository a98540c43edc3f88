//! The autotuner (`xlstm tune`, src/tune) and the `queued` prefill strategy's parallel recorder.
//!
//! - the search engine: trial 0 is the default, no configuration twice, reproducible for a seed,
//!   random mode uniform over the space, pinned knobs and the target shape the space;
//! - `Plan::run_queued`: command buffers cut at split marks, recorded on several threads and
//!   submitted in plan order, give what `run` gives;
//! - a library run on a fixture: every file written, the best never slower than the default,
//!   and a setting that fails the correctness check is never timed or chosen;
//! - the binary: a tune run stores its best in the cache (`XLSTM_CACHE_DIR`), `--show` lists it,
//!   `generate` picks it up (and `--no-tune-cache` or a flag overrides it), the budget and
//!   Ctrl-C end a run keeping every finished trial.
//!
//! Run with `WGPU_BACKEND=vulkan cargo test --test tune` (lavapipe is enough: the models are tiny).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use xlstm_wgpu::gpu::{Kernels, PlanBuilder, Slice, SubmitBudget};
use xlstm_wgpu::tune::{self, GaConfig, Knob, Measure, Mode, ModelSource, Params, Search, Space, Target, TuneOptions};
use xlstm_wgpu::PrefillStrategy;
use xlstm_wgpu::WeightDtype;

const BIN: &str = env!("CARGO_BIN_EXE_xlstm");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// The search engine (no GPU).

/// A made-up fitness with a single best point, to drive the GA without a GPU.
fn fake_fitness(p: &Params) -> f64 {
    let mut f = 100.0;
    f -= (p.chunk_size as f64).log2().sub_abs(5.0) * 10.0;
    f -= (p.gemv_lanes as f64).log2().sub_abs(7.0) * 7.0;
    f -= (p.decode_batch as f64).log2().sub_abs(4.0) * 5.0;
    if p.prefill == PrefillStrategy::Queued {
        f += 8.0;
    }
    f
}

trait SubAbs {
    fn sub_abs(self, o: f64) -> f64;
}
impl SubAbs for f64 {
    fn sub_abs(self, o: f64) -> f64 {
        (self - o).abs()
    }
}

fn drive(mode: Mode, seed: u64, n: usize) -> Vec<(Params, usize)> {
    let base = Params::default();
    let space = Space::new(Target::Both, 8, 1024, &base, &[]);
    let ga = GaConfig::for_trials(n, space.dims.len(), None);
    let mut s = Search::new(mode, space, base, 8, seed, ga, &[base]);
    let mut out = Vec::new();
    while out.len() < n {
        let Some((p, g)) = s.ask(&|_| false) else { break };
        s.tell(p, Some(fake_fitness(&p)));
        out.push((p, g));
    }
    out
}

#[test]
fn search_starts_with_the_default_never_repeats_and_is_reproducible() {
    for mode in [Mode::Ga, Mode::Random] {
        let a = drive(mode, 7, 60);
        assert_eq!(a.len(), 60);
        assert_eq!(
            a[0].0,
            Params::default().canonical(&Params::default(), 8),
            "{mode:?}: trial 0"
        );
        let unique: HashSet<Params> = a.iter().map(|(p, _)| *p).collect();
        assert_eq!(unique.len(), a.len(), "{mode:?}: a configuration was proposed twice");
        assert_eq!(a, drive(mode, 7, 60), "{mode:?}: same seed, different proposals");
        assert_ne!(a, drive(mode, 8, 60), "{mode:?}: the seed changes nothing");
    }
    // The GA goes through generations and, on this smooth fitness, beats random search's best
    // of the same number of trials for most seeds.
    let ga = drive(Mode::Ga, 1, 60);
    assert!(ga.last().unwrap().1 >= 3, "generations: {}", ga.last().unwrap().1);
    let best = |v: &[(Params, usize)]| v.iter().map(|(p, _)| fake_fitness(p)).fold(f64::MIN, f64::max);
    let wins = (0..8)
        .filter(|&s| best(&drive(Mode::Ga, s, 60)) >= best(&drive(Mode::Random, s, 60)))
        .count();
    assert!(wins >= 5, "GA at least as good as random for only {wins}/8 seeds");
}

#[test]
fn random_search_covers_the_space_uniformly() {
    let base = Params::default();
    let space = Space::new(Target::Both, 8, 1024, &base, &[]);
    let mut s = Search::new(
        Mode::Random,
        space.clone(),
        base,
        8,
        3,
        GaConfig::for_trials(1, 1, None),
        &[],
    );
    let n = 3000;
    let samples: Vec<Params> = (0..n).map(|_| s.sample()).collect();
    for (k, values) in &space.dims {
        if matches!(k, Knob::HeadsPerBand | Knob::TileChunks | Knob::RecordThreads) {
            continue; // canonicalised away for some strategies
        }
        for v in values {
            let c = samples.iter().filter(|p| p.get(*k) == *v).count();
            let expect = n / values.len();
            assert!(
                c > expect * 7 / 10 && c < expect * 13 / 10,
                "{}={v}: {c} of {n} samples, expected about {expect}",
                k.name()
            );
        }
    }
}

#[test]
fn the_space_follows_target_pins_and_model() {
    let base = Params::default();
    let decode = Space::new(Target::Decode, 8, 1024, &base, &[]);
    assert_eq!(
        decode.knobs(),
        vec![Knob::SubmitDispatches, Knob::DecodeBatch, Knob::GemvLanes]
    );
    let prefill = Space::new(Target::Prefill, 8, 1024, &base, &[Knob::ChunkSize]);
    let knobs = prefill.knobs();
    assert!(!knobs.contains(&Knob::ChunkSize) && !knobs.contains(&Knob::GemvLanes));
    assert!(knobs.contains(&Knob::Prefill) && knobs.contains(&Knob::RecordThreads));
    // Every list holds the default's value; bands stop below the head count (0 = all heads).
    for (k, v) in &prefill.dims {
        assert!(v.contains(&base.canonical(&base, 8).get(*k)), "{}", k.name());
    }
    let (_, bands) = prefill.dims.iter().find(|(k, _)| *k == Knob::HeadsPerBand).unwrap();
    assert_eq!(bands, &vec![0, 1, 2, 4]);
    let strategies = &prefill.dims.iter().find(|(k, _)| *k == Knob::Prefill).unwrap().1;
    let mut p = base;
    let names: Vec<String> = strategies
        .iter()
        .map(|&v| {
            p.set(Knob::Prefill, v);
            p.text(Knob::Prefill)
        })
        .collect();
    assert!(names.contains(&"queued".to_string()), "{names:?}");
    // Segments no shorter than the tuning prompt collapse into one value.
    let (_, seg) = prefill.dims.iter().find(|(k, _)| *k == Knob::Segment).unwrap();
    assert_eq!(seg, &vec![128, 256, 512, 1024]);
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
// Library runs on a fixture.

fn options(run_dir: &Path, target: Target, trials: usize) -> TuneOptions {
    let base = Params {
        decode_batch: 4,
        ..Default::default()
    };
    TuneOptions {
        source: ModelSource::Dir(common::fixture("large_a")),
        mode: Mode::Ga,
        trials,
        budget: None,
        seed: 5,
        population: Some(3),
        measure: Measure {
            target,
            dtype: WeightDtype::F32,
            kernel_checks: Default::default(),
            seq: 96,
            repeats: 1,
            decode_tokens: 8,
            check_tokens: 72,
            max_decode_batch: 0,
            tolerance: None,
        },
        base,
        // A pinned knob: the greedy batch stays at 4 (short decode checks on lavapipe).
        pinned: vec![Knob::DecodeBatch],
        first: Vec::new(),
        run_dir: run_dir.to_path_buf(),
    }
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn library_run_writes_every_file_and_never_loses_to_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let opts = options(&run_dir, Target::Both, 5);
    let report = tune::run(common::gpu(), &opts, &mut tune::Quiet).unwrap();
    assert_eq!(report.trials.len(), 5);
    assert_eq!(report.ended_by, "trials");
    for t in &report.trials {
        assert!(t.ok(), "trial {}: {} {}", t.index, t.status, t.error);
        assert!(t.check_max_diff < 1e-3, "trial {}: diff {}", t.index, t.check_max_diff);
        assert_eq!(t.params.decode_batch, 4, "a pinned knob moved");
    }
    let base = opts.base.canonical(&opts.base, 2);
    assert_eq!(report.trials[0].params, base, "trial 0 is the default configuration");
    assert_eq!(report.baseline, Some(0));
    let best = &report.trials[report.best.unwrap()];
    let t0 = &report.trials[0];
    assert!(best.score.unwrap() >= t0.score.unwrap());
    let bp = &report.trials[report.best_prefill.unwrap()];
    let bd = &report.trials[report.best_decode.unwrap()];
    assert!(bp.prefill_tok_s.unwrap() >= t0.prefill_tok_s.unwrap());
    assert!(bd.decode_tok_s.unwrap() >= t0.decode_tok_s.unwrap());
    // The stored settings are the best trial's, for every knob of the target.
    let applied = Params::default().overlay(&report.settings).unwrap();
    assert_eq!(applied, best.params);

    let trials = csv_rows(&run_dir.join("trials.csv"));
    assert_eq!(trials.len(), 6, "header + 5 rows");
    let header = &trials[0];
    for col in [
        "trial",
        "prefill",
        "chunk_size",
        "gemv_lanes",
        "prefill_tok_s",
        "decode_tok_s",
        "status",
        "error",
    ] {
        assert!(header.iter().any(|h| h == col), "trials.csv lacks {col}: {header:?}");
    }
    let status = header.iter().position(|h| h == "status").unwrap();
    assert!(trials[1..].iter().all(|r| r[status] == "ok"));
    let summary = csv_rows(&run_dir.join("summary.csv"));
    let targets: Vec<&str> = summary[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(targets, ["prefill", "decode", "both"]);
    let best_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("best.json")).unwrap()).unwrap();
    assert_eq!(best_json["trials"], 5);
    assert_eq!(best_json["best"]["index"], best.index);
    assert!(best_json["settings"]["gemv_lanes"].is_u64());
    let table = report.table();
    assert!(table.contains("default") && table.contains("best: trial"), "{table}");
    // A second run into the same directory is refused rather than mixing two runs.
    assert!(tune::run(common::gpu(), &opts, &mut tune::Quiet).is_err());
}

/// With a tolerance no chunkwise prefill can meet, every trial fails the check: none is timed,
/// none is best, nothing would be stored.
#[test]
fn settings_that_fail_the_check_are_never_timed_or_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&dir.path().join("run"), Target::Prefill, 3);
    opts.measure.tolerance = Some(1e-12);
    opts.mode = Mode::Random;
    let report = tune::run(common::gpu(), &opts, &mut tune::Quiet).unwrap();
    assert_eq!(report.trials.len(), 3);
    for t in &report.trials {
        assert_eq!(t.status, "wrong", "trial {}", t.index);
        assert!(t.prefill_tok_s.is_none() && t.score.is_none());
        assert!(t.error.contains("recurrent path"), "{}", t.error);
    }
    assert!(report.best.is_none() && report.best_prefill.is_none());
    assert_eq!(report.save_to_store().unwrap(), None);
    assert!(report.table().contains("no trial succeeded"));
}

#[test]
fn a_budget_ends_the_run_with_the_finished_trials() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&dir.path().join("run"), Target::Prefill, 10_000);
    opts.budget = Some(std::time::Duration::from_millis(1500));
    let t0 = std::time::Instant::now();
    let report = tune::run(common::gpu(), &opts, &mut tune::Quiet).unwrap();
    assert_eq!(report.ended_by, "budget");
    assert!(!report.trials.is_empty());
    assert!(t0.elapsed().as_secs_f64() < 30.0);
    let rows = csv_rows(&dir.path().join("run/trials.csv"));
    assert_eq!(rows.len(), report.trials.len() + 1);
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
        let (out, _) = ok(&xlstm(dir.path(), &cache, &args));
        out.lines().last().unwrap_or_default().to_string()
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

/// `--help` shows the documented defaults of the tunable flags (they are `Option`s, so clap
/// cannot), and they agree with the library's.
#[test]
fn help_shows_the_documented_defaults() {
    let o = Command::new(BIN).args(["generate", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout).replace('\n', " ");
    let defaults = Params::default();
    for k in Knob::ALL {
        let flag = format!("--{}", k.name().replace('_', "-"));
        let at = help
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag} missing from --help"));
        let rest = &help[at..];
        let end = rest[2..].find("  --").map_or(rest.len(), |e| e + 2);
        let expect = format!("[default: {}]", defaults.text(k));
        assert!(
            rest[..end].contains(&expect),
            "{flag}: expected `{expect}` in `{}`",
            &rest[..end]
        );
    }
}

#[test]
fn tune_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["tune"], "--model DIR or --preset NAME"),
        (vec!["tune", "--preset", "tiny", "--target", "speed"], "--target"),
        (vec!["tune", "--preset", "tiny", "--mode", "annealing"], "--mode"),
        (vec!["tune", "--preset", "huge"], "preset"),
        (vec!["tune", "--preset", "tiny", "--gemv-lanes", "3"], "gemv lanes"),
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

#[test]
fn original_xlstm_models_tune_and_pick_the_settings_up() {
    // The shipped original-xLSTM model (mLSTM + sLSTM blocks): every trial is checked against the
    // recurrent path like for xLSTM Large, and the stored entry is keyed by the v1 shape.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = root().join("models/xlstm-v1-mini");
    let model = model.to_str().unwrap();
    let (out, _) = ok(&xlstm(
        dir.path(),
        &cache,
        &[
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
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["trials"], 2);
    let (out, _) = ok(&xlstm(dir.path(), &cache, &["tune", "--show"]));
    assert!(
        out.contains("v1 e128 blocksmsmm vocab4096 mlstm4x64 slstm4x32"),
        "{out}"
    );
    let (out, _) = ok(&xlstm(
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
    let line = out.lines().last().unwrap_or_default();
    assert!(line.contains("tuned (cache):"), "{line}");
}
