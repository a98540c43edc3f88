//! The matrix-unit self-check (`ops::coop_check`): it passes for kernels that agree with the
//! portable ones on this GPU, fails for a wrong result and then falls back with one warning,
//! and `xlstm info` shows the verdict. On an adapter with 16x16 matrix units (the H200) the
//! check runs the real 16x16 instance, the same code as the 8x8 one Apple GPUs get; on lavapipe
//! (no matrix units) it compares the portable kernels with themselves, which still exercises the
//! problems, the comparison, the injected error and the fallback.

mod common;

use std::process::{Command, Output};
use xlstm_wgpu::gpu::Kernels;
use xlstm_wgpu::ops::coop_check;

const BIN: &str = env!("CARGO_BIN_EXE_xlstm");

#[test]
fn the_check_passes_for_agreeing_kernels_and_fails_for_a_wrong_result() {
    let kernels = Kernels::new(common::gpu());
    let fragment = coop_check::offered_fragment(kernels.caps());
    eprintln!(
        "[self-check] adapter {} fragment {fragment:?}",
        kernels.caps().adapter_name
    );

    let ok = coop_check::run(&kernels, fragment, false).expect("the self-check runs");
    assert!(ok.passed, "the self-check failed: {}", ok.detail);
    assert_eq!(ok.fragment, fragment);
    assert!(ok.max_error.is_finite(), "{ok:?}");
    for (what, e, tol) in &ok.comparisons {
        eprintln!("[self-check] {what}: {e:.2e} (tolerance {tol:.0e})");
    }

    let bad = coop_check::run(&kernels, fragment, true).expect("the self-check runs");
    assert!(!bad.passed, "an injected error passed: {bad:?}");
    assert!(
        bad.detail.contains("gemm"),
        "the failure names the kernel: {}",
        bad.detail
    );
    assert!(bad.max_error >= 0.5, "{bad:?}");
}

#[test]
fn the_default_decision_uses_the_tested_instance_or_none() {
    // Without XLSTM_SELF_CHECK no check runs on an adapter with 16x16 units or without any.
    let kernels = Kernels::new(common::gpu());
    let units = kernels.matrix_units().expect("matrix units");
    let offered = coop_check::offered_fragment(kernels.caps());
    if offered != Some(8) {
        assert_eq!(units.fragment, offered);
        assert!(units.check.is_none(), "{units:?}");
    }
}

fn info(cache: &std::path::Path, mode: &str) -> Output {
    Command::new(BIN)
        .arg("info")
        .env("XLSTM_CACHE_DIR", cache)
        .env("XLSTM_SELF_CHECK", mode)
        .output()
        .expect("running xlstm info")
}

fn units_line(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .find(|l| l.starts_with("matrix units"))
        .unwrap_or_else(|| panic!("no matrix units line in:\n{out}"))
        .to_string()
}

#[test]
fn info_shows_the_verdict_and_a_failure_falls_back_with_one_warning() {
    let cache = tempfile::tempdir().unwrap();

    let o = info(cache.path(), "inject");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "info failed: {stderr}");
    let line = units_line(&o);
    assert!(
        line.contains("failed the self-check") && line.contains("tiled kernels"),
        "{line}"
    );
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("xlstm: warning:")).collect();
    assert_eq!(warnings.len(), 1, "one warning line: {stderr}");
    assert!(warnings[0].contains("using the tiled kernels"), "{}", warnings[0]);
    // Remembered for this adapter and driver.
    let record = std::fs::read_to_string(cache.path().join("matrix-units.json")).expect("the verdict is written");
    assert!(record.contains("\"passed\": false"), "{record}");

    let o = info(cache.path(), "force");
    assert!(o.status.success());
    let line = units_line(&o);
    assert!(
        line.contains("passed the self-check") && line.contains("run now"),
        "{line}"
    );
    assert!(!String::from_utf8_lossy(&o.stderr).contains("warning"));
    let record = std::fs::read_to_string(cache.path().join("matrix-units.json")).unwrap();
    assert!(
        record.contains("\"passed\": true") && !record.contains("\"passed\": false"),
        "{record}"
    );

    let o = info(cache.path(), "sometimes");
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("XLSTM_SELF_CHECK must be `force` or `inject`"),
        "{stderr}"
    );
}

#[test]
fn a_model_runs_on_the_fallback_after_a_failed_check() {
    let cache = tempfile::tempdir().unwrap();
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/xlstm-large-mini");
    let o = Command::new(BIN)
        .args(["generate", "--model", &model.display().to_string()])
        .args([
            "--prompt",
            "It is a truth",
            "--max-new-tokens",
            "8",
            "--temperature",
            "0",
        ])
        .env("XLSTM_CACHE_DIR", cache.path())
        .env("XLSTM_SELF_CHECK", "inject")
        .output()
        .expect("running xlstm generate");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "generate failed: {stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("disagree with the tiled kernels"))
            .count(),
        1,
        "one warning for the run: {stderr}"
    );
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty());
}
