//! Unit tests of the tuner (moved from tests/tune.rs: integration tests cannot reach a
//! binary's modules):
//!
//! - the search engine: trial 0 is the default, no configuration twice, reproducible for a seed,
//!   random mode uniform over the space, pinned knobs and the target shape the space;
//! - a library run on a fixture: every file written, the best never slower than the default,
//!   and a setting that fails the correctness check is never timed or chosen;
//! - `--help` shows the documented defaults of the tunable flags.
//!
//! Run with `WGPU_BACKEND=vulkan cargo test --bin xlstm` (lavapipe is enough: the models are tiny).

use super::*;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use xlstm_wgpu::{Gpu, GpuOptions, PrefillStrategy, WeightDtype};

/// The adapter the tests run on (lavapipe in CI; set WGPU_BACKEND=vulkan), one per test binary.
fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| Arc::new(Gpu::new(&GpuOptions::default()).expect("a GPU adapter (install mesa-vulkan-drivers)")))
        .clone()
}

/// Path of a fixture under tests/fixtures.
fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(rel)
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
        vec![
            Knob::SubmitDispatches,
            Knob::DecodeBatch,
            Knob::GemvLanes,
            Knob::HeadNormRows,
            Knob::FusedHeadNorm
        ]
    );
    let prefill = Space::new(Target::Prefill, 8, 1024, &base, &[Knob::ChunkSize]);
    let knobs = prefill.knobs();
    assert!(!knobs.contains(&Knob::ChunkSize) && !knobs.contains(&Knob::GemvLanes));
    assert!(!knobs.contains(&Knob::FusedHeadNorm));
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
// Library runs on a fixture.

fn options(run_dir: &Path, target: Target, trials: usize) -> TuneOptions {
    let base = Params {
        decode_batch: 4,
        ..Default::default()
    };
    TuneOptions {
        source: ModelSource::Dir(fixture("large_a")),
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
    let report = run(gpu(), &opts, &mut Quiet).unwrap();
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
    assert!(run(gpu(), &opts, &mut Quiet).is_err());
}

/// With a tolerance no chunkwise prefill can meet, every trial fails the check: none is timed,
/// none is best, nothing would be stored.
#[test]
fn settings_that_fail_the_check_are_never_timed_or_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&dir.path().join("run"), Target::Prefill, 3);
    opts.measure.tolerance = Some(1e-12);
    opts.mode = Mode::Random;
    let report = run(gpu(), &opts, &mut Quiet).unwrap();
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
    let report = run(gpu(), &opts, &mut Quiet).unwrap();
    assert_eq!(report.ended_by, "budget");
    assert!(!report.trials.is_empty());
    assert!(t0.elapsed().as_secs_f64() < 30.0);
    let rows = csv_rows(&dir.path().join("run/trials.csv"));
    assert_eq!(rows.len(), report.trials.len() + 1);
}

/// `--help` shows the documented defaults of the tunable flags (they are `Option`s, so clap
/// cannot), and they agree with the library's.
#[test]
fn help_shows_the_documented_defaults() {
    use clap::CommandFactory;
    let mut cli = crate::Cli::command();
    let generate = cli.find_subcommand_mut("generate").expect("a generate subcommand");
    let help = generate.render_long_help().to_string().replace('\n', " ");
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
