//! Pipelines compile at their first use: a loaded model has compiled only the kernels its own
//! family's decode and prefill plans dispatch (at load, several at once), and a kernel that fails
//! to compile fails as the crate's error where it is first used, not when `Ops` is built.

mod common;

use std::path::PathBuf;
use xlstm_wgpu::gpu::{BufferPool, ConstValue, Kernels, PlanBuilder};
use xlstm_wgpu::{Error, LoadOptions, Logits, Model, Session, SessionOptions, WeightDtype};

/// Kernels only the original xLSTM (v1) runs: its norms, convolution, headwise projections,
/// gated FFN, mLSTM gate projection and the sLSTM recurrence.
const V1_ONLY: [&str; 8] = [
    "layer_norm",
    "conv_silu",
    "headwise",
    "gated_act",
    "bias_add",
    "mlstm_v1_gates",
    "slstm_seq",
    "slstm_step",
];

/// Kernels only xLSTM Large runs: RMSNorm, the head norm with its output gate (alone and fused
/// into the out-projection GEMV), SwiGLU. (The mLSTM cell's kernels are both families'.)
const LARGE_ONLY: [&str; 4] = ["rms_norm", "head_norm_gate", "gemv_head_norm", "swiglu"];

fn load(name: &str) -> Model {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(name);
    Model::load(
        common::gpu(),
        &dir,
        &LoadOptions {
            dtype: Some(WeightDtype::F16),
            tokenizer: false,
            ..Default::default()
        },
    )
    .unwrap()
}

fn kernel(pipeline: &str) -> &str {
    pipeline.split(':').next().unwrap_or(pipeline)
}

/// Loads `name`, checks it compiled none of `foreign` and some of `own`, then runs a short prompt
/// and greedy decode under the default session: the load's warm set held everything they use.
fn check_family(name: &str, foreign: &[&str], own: &[&str]) {
    let model = load(name);
    let compiled = model.compiled_pipelines();
    eprintln!("{name}: {compiled:?}");
    for p in &compiled {
        assert!(!foreign.contains(&kernel(p)), "{name} compiled {p}: {compiled:?}");
    }
    assert!(
        compiled.iter().any(|p| own.contains(&kernel(p))),
        "{name} compiled none of its own kernels {own:?}: {compiled:?}"
    );
    // Greedy decoding chooses by argmax on the GPU; the sampler's kernel is not compiled.
    assert!(compiled.iter().any(|p| kernel(p) == "argmax"), "{compiled:?}");
    assert!(!compiled.iter().any(|p| kernel(p) == "sample"), "{compiled:?}");

    let mut s = Session::new(&model, SessionOptions::default()).unwrap();
    let prompt: Vec<u32> = (1..=12).collect();
    let logits = s.prefill(&prompt, Logits::Last).unwrap();
    let first = xlstm_wgpu::sample::argmax(&logits) as u32;
    s.step_greedy(first, 4).unwrap();
    assert_eq!(model.compiled_pipelines(), compiled, "{name}: the run compiled more");
}

#[test]
fn a_large_model_compiles_no_v1_or_slstm_pipeline() {
    check_family("xlstm-large-mini", &V1_ONLY, &LARGE_ONLY);
}

#[test]
fn a_v1_model_compiles_no_xlstm_large_pipeline() {
    check_family("xlstm-v1-mini", &LARGE_ONLY, &V1_ONLY);
}

#[test]
fn a_kernel_compile_error_surfaces_as_the_crates_error_at_first_use() {
    let gpu = common::gpu();
    let kernels = Kernels::new(gpu.clone());
    let pool = BufferPool::new(gpu.device.clone());
    // More invocations per workgroup than any adapter allows: the driver-side pipeline creation
    // fails. Making the handle compiles nothing and reports nothing.
    let too_wide = kernels.lazy("gemv", "main", &[("WG", ConstValue::U32(1 << 16))]);
    // A misspelt constant fails in the host's own specialisation.
    let misspelt = kernels.lazy("swiglu", "main", &[("NO_SUCH_CONST", ConstValue::U32(1))]);
    for (p, what) in [(&too_wide, "gemv:main"), (&misspelt, "swiglu")] {
        assert!(!p.is_compiled());
        let mut pb = PlanBuilder::new(gpu.clone());
        pb.dispatch("bad", p, &[0u32; 4], &[], [1, 1, 1]).unwrap();
        match pb.finish(&pool) {
            Err(Error::Kernel { kernel, message }) => {
                assert_eq!(kernel, what, "{message}");
                assert!(!message.is_empty());
            }
            Err(e) => panic!("{what}: not a kernel error: {e}"),
            Ok(_) => panic!("{what}: the plan was built"),
        }
        // Not cached as compiled: the next use fails the same way.
        assert!(!p.is_compiled());
        assert!(matches!(p.get(), Err(Error::Kernel { .. })));
    }
    assert!(kernels.compiled().is_empty(), "{:?}", kernels.compiled());
}
