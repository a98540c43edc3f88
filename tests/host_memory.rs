//! Host memory stays flat while decoding on the adapter the tests run on (lavapipe in CI).
//!
//! Mesa's lavapipe compiles a copy of a shader with its uniform-buffer values inlined at each
//! dispatch when its heuristics decide that pays, and releases before 23.1 never free those
//! copies: the fused head-norm GEMV of xLSTM Large grew the process by ~3.7 MiB per decoded
//! token. Kernels now read their parameters from a storage buffer on CPU adapters
//! (`Caps::params_in_storage`); this test decodes 144 tokens and bounds the growth over the last 128.
//!
//! The process's resident size is read from /proc, so the test is Linux-only; it is the only
//! test in this binary so nothing else allocates while it measures.
#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;
use xlstm_wgpu::{LoadOptions, Logits, Model, SamplerConfig, Session, SessionOptions, WeightDtype};

/// Resident set size of this process in bytes (VmRSS of /proc/self/status).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in /proc/self/status");
    kib * 1024
}

/// Decodes `batches` batches of `steps` tokens each, greedy and sampled in turn (both kinds of
/// decode plan), feeding the last id of each batch into the next; returns the last id.
fn decode(session: &mut Session, first: u32, batches: usize, steps: usize) -> u32 {
    let sampled = SamplerConfig {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        seed: 7,
    };
    let mut next = first;
    for b in 0..batches {
        let ids = if b % 2 == 0 {
            session.step_greedy(next, steps).unwrap()
        } else {
            session.step_sampled(next, steps, &sampled).unwrap()
        };
        next = *ids.last().unwrap();
    }
    next
}

#[test]
fn decoding_keeps_host_memory_flat_over_128_tokens() {
    const STEPS: usize = 8;
    const WARM_UP_BATCHES: usize = 2;
    const MEASURED_BATCHES: usize = 16;
    // The defect grew ~3.7 MiB per token; allocator and driver noise is far below this bound.
    const MAX_GROWTH_PER_TOKEN: u64 = 300 << 10;

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/xlstm-large-mini");
    let model = Model::load(
        common::gpu(),
        &dir,
        &LoadOptions {
            dtype: Some(WeightDtype::F16),
            ..Default::default()
        },
    )
    .unwrap();
    let mut session = Session::new(&model, SessionOptions::default()).unwrap();
    let logits = session.prefill(&[3, 17, 42, 99], Logits::Last).unwrap();
    let first = xlstm_wgpu::sample::argmax(&logits) as u32;

    // Warm-up: every decode plan and pipeline is built, and the allocator has its working set.
    let next = decode(&mut session, first, WARM_UP_BATCHES, STEPS);
    let before = resident_bytes();
    decode(&mut session, next, MEASURED_BATCHES, STEPS);
    let after = resident_bytes();

    let tokens = (MEASURED_BATCHES * STEPS) as u64;
    let growth = after.saturating_sub(before);
    assert!(
        growth <= MAX_GROWTH_PER_TOKEN * tokens,
        "resident memory grew {:.1} MiB over {tokens} decoded tokens ({:.1} KiB per token; at most {} KiB allowed)",
        growth as f64 / (1 << 20) as f64,
        growth as f64 / 1024.0 / tokens as f64,
        MAX_GROWTH_PER_TOKEN >> 10
    );
}
