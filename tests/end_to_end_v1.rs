//! The original xLSTM (`xLSTMLMModel`: v1 mLSTM and sLSTM blocks) on the GPU against fixtures made
//! by the official implementation (tools/make_fixtures_v1.py: xlstm 2.0.6 on CPU in float32):
//! logits for every prompt position and a greedy continuation through the decode step path, for
//! every prefill strategy, with f32 weights (1e-3 on logits, identical ids) and f16 weights
//! (documented looser tolerance). Fixtures cover mixed mLSTM/sLSTM stacks, mLSTM-only with tied
//! embeddings, sLSTM-only without conv, both sLSTM checkpoint layouts, linear biases, another
//! activation, no post-blocks norm, a wide sLSTM head (the per-token sLSTM kernel) and a prompt
//! longer than the config's context_length.

mod common;

use common::score::{load_case, load_model, max_abs_diff, run};

use xlstm_wgpu::sample::argmax;
use xlstm_wgpu::{Logits, Session, SessionOptions, WeightDtype};
use xlstm_wgpu::{PrefillSchedule, PrefillStrategy};

/// f32 weights: logits within this of the official float32 ones.
const TOL: f32 = 1e-3;
/// f16 weights (and f16 matrix products): a rounding of every weight to 11 significant bits.
const TOL_F16: f32 = 0.25;

fn options(strategy: PrefillStrategy, chunk_size: usize) -> SessionOptions {
    SessionOptions {
        schedule: PrefillSchedule {
            strategy,
            chunk_size,
            heads_per_band: 1,
            tile_chunks: 2,
        },
        ..Default::default()
    }
}

/// Every prefill strategy (and several chunk sizes, up to the largest) against the official
/// logits and greedy ids.
fn check(model_dir: &str, case_dir: &str, label: &str) {
    let case = load_case(case_dir, label);
    let model = load_model(model_dir, WeightDtype::F32);
    for (strategy, chunk) in [
        (PrefillStrategy::Scheduled, 16),
        (PrefillStrategy::Fused, 64),
        (PrefillStrategy::Queued, 7),
        (PrefillStrategy::Scheduled, 128),
        (PrefillStrategy::Fused, 256),
        (PrefillStrategy::Queued, 37),
        (PrefillStrategy::Recurrent, 64),
    ] {
        let (logits, ids, gl) = run(&model, options(strategy, chunk), &case);
        let d = max_abs_diff(&logits, &case.logits);
        let g = max_abs_diff(&gl, &case.generated_logits);
        eprintln!(
            "{model_dir} with {} ({} chunk {chunk}): T={} max|diff| prompt {d:.2e}, continuation {g:.2e}",
            case.name,
            strategy.name(),
            case.ids.len()
        );
        assert!(d <= TOL, "{}: prompt logits differ by {d}", case.name);
        assert!(g <= TOL, "{}: continuation logits differ by {g}", case.name);
        assert_eq!(ids, case.generated, "{}: greedy ids ({})", case.name, strategy.name());
    }
}

#[test]
fn v1_a_mixed_blocks() {
    check("v1_a", "v1_a", "t1");
    check("v1_a", "v1_a", "t60");
}

#[test]
fn v1_a_longer_than_context_length() {
    // 100 tokens with context_length 64: the official forward() cannot run this; its step() can.
    check("v1_a", "v1_a", "t100_step");
}

#[test]
fn v1_b_mlstm_only_tied_embeddings() {
    check("v1_b", "v1_b", "t40");
}

#[test]
fn v1_c_slstm_only_without_conv() {
    check("v1_c", "v1_c", "t33");
}

#[test]
fn v1_d_cuda_layout() {
    // v1_a's weights with the sLSTM tensors stored in the cuda backend's layout.
    check("v1_d", "v1_a", "t60");
}

#[test]
fn v1_e_biases_swish_no_post_norm() {
    check("v1_e", "v1_e", "t20");
}

#[test]
fn v1_f_wide_slstm_head_per_token_kernel() {
    // One sLSTM head of width 128 (bf16, cuda layout): the per-token sLSTM kernel.
    check("v1_f", "v1_f", "t50");
}

#[test]
fn f16_weights_stay_close() {
    for (dir, label) in [("v1_a", "t60"), ("v1_b", "t40"), ("v1_e", "t20")] {
        let case = load_case(dir, label);
        let model = load_model(dir, WeightDtype::F16);
        let (logits, _, _) = run(&model, SessionOptions::default(), &case);
        let d = max_abs_diff(&logits, &case.logits);
        eprintln!("{dir}/{label} with f16 weights: max|diff| {d:.3}");
        assert!(d <= TOL_F16, "{dir}/{label}: f16 logits differ by {d}");
    }
}

#[test]
fn split_prefill_continues_the_sequence() {
    // Two prefill calls, one decode step between them, and short segments: the conv windows and
    // the sLSTM/mLSTM states carry over exactly.
    let case = load_case("v1_a", "t60");
    let model = load_model("v1_a", WeightDtype::F32);
    let v = model.vocab_size();
    let mut opts = options(PrefillStrategy::Scheduled, 16);
    opts.max_segment_tokens = 13;
    let mut s = Session::new(&model, opts).unwrap();
    let mut logits = s.prefill(&case.ids[..21], Logits::All).unwrap();
    logits.extend(s.step(case.ids[21]).unwrap());
    logits.extend(s.prefill(&case.ids[22..], Logits::All).unwrap());
    assert_eq!(logits.len(), case.ids.len() * v);
    let d = max_abs_diff(&logits, &case.logits);
    assert!(d <= TOL, "split prefill differs by {d}");
}

#[test]
fn saved_state_restores_and_batches_match_steps() {
    let case = load_case("v1_a", "t60");
    let model = load_model("v1_a", WeightDtype::F32);
    let mut s = Session::new(&model, SessionOptions::default()).unwrap();
    let last = s.prefill(&case.ids, Logits::Last).unwrap();
    let saved = s.save_state().unwrap();
    let first = argmax(&last) as u32;
    // Greedy on the GPU, several steps per submission.
    let batched = s.step_greedy(first, 7).unwrap();
    // Restore and redo it one step at a time.
    s.restore_state(&saved).unwrap();
    let mut next = first;
    let mut stepped = Vec::new();
    for _ in 0..7 {
        next = argmax(&s.step(next).unwrap()) as u32;
        stepped.push(next);
    }
    assert_eq!(batched, stepped);
    let k = (case.generated.len() - 1).min(7);
    assert_eq!(&stepped[..k], &case.generated[1..=k]);
    // A fresh session restored from the saved state continues identically.
    let mut t = Session::new(&model, SessionOptions::default()).unwrap();
    t.restore_state(&saved).unwrap();
    assert_eq!(t.position(), case.ids.len());
    assert_eq!(t.step_greedy(first, 7).unwrap(), stepped);
}
