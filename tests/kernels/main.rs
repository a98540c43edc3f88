//! One conformance harness for every WGSL kernel, in the spirit of ggml's test-backend-ops and
//! llm.c's dev/cuda: each kernel family (one module here per module of `src/ops/` and folder of
//! `wgsl/`) runs on a real adapter (lavapipe in CI: `WGPU_BACKEND=vulkan`) against its plain-Rust
//! reference (`xlstm_reference`) on awkward shapes: widths that are not multiples of the kernels'
//! tiles, strided and offset rows, weights split into several parts, both matmul epilogues, large
//! gate pre-activations, non-zero initial states, split chunkwise schedules, shape errors.
//!
//! # Modes
//! The harness owns the modes; every case runs in each mode that applies to it:
//! - kernel runtime checks on ([`KernelChecks::All`]) and off ([`KernelChecks::None`]): together
//!   they cover the default policy, which compiles each kernel one way or the other;
//! - matrix units on and off, where the adapter has them (a second device with `coop-matrix`
//!   masked; lavapipe has none, so there it is one mode);
//! - weight formats f32, f16, q8 and q4 ([`DTYPES`]) for the kernels that read weights (each such case
//!   loops over it; f16 is compared against the reference on the f16-rounded weights, so it gets
//!   the same tight tolerance as f32).
//!
//! [`modes`] yields one [`Ctx`] per (checks, matrix units) mode; a failing case names its mode.
//!
//! # Adding a kernel's cases
//! 1. Write its reference in `crates/xlstm-reference` (f64 inside, f32 out).
//! 2. In the family's module here (or a new `mod` below), add the shape table to `cases.rs` if a
//!    benchmark should share it, and a `#[test]` that loops `for c in modes() { .. }` over the
//!    table: upload with [`Ctx::buf`] / [`Ctx::buf_tail`] (sentinels after the output), record with
//!    [`Ctx::run`], read back with [`Ctx::read`] and compare with `common::compare::check`
//!    (`atol + rtol * |ref|`, atol a fraction of the output's magnitude); loop over [`DTYPES`]
//!    when the kernel reads weights.
//! 3. Shape errors: [`Ctx::try_run`] must return `Error::Input`, never panic.
//!
//! Tolerances: `atol + rtol * |ref|` with `atol` a fraction (1e-5) of the output's magnitude
//! (max |ref|, or for matmuls max Σ|x·w|). The mLSTM kernels are checked against a first-order
//! rounding bound instead (`mlstm_cell::CellCond`): with random q and k, q·n can cancel by 1e4 and
//! more, which no fixed relative tolerance survives. Outputs are surrounded by sentinels so stray
//! writes fail too. Run with `--nocapture` to see the largest error each test observed
//! (`KERNELS_VERBOSE=1`: per case and mode).

#[path = "../common/mod.rs"]
mod common;

mod cases;
mod elementwise;
mod matmul;
mod mlstm_cell;
mod mlstm_chunk;
mod mlstm_step;
mod mlstm_v1;
mod norms;
mod sampling;
mod slstm;
mod v1;

use common::compare::{check, close, max_abs, Worst};
use common::strided::{assert_untouched, gather_rows, strided, SENTINEL};

use std::cell::RefCell;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use xlstm_reference::mlstm::{self, CellShape, CellState};
use xlstm_reference::ops as cpu;
use xlstm_reference::v1 as cpu_v1;
use xlstm_wgpu::gpu::quant::EncodedMatrix;
use xlstm_wgpu::gpu::readback::{read_f32, read_u32};
use xlstm_wgpu::gpu::{BufferPool, Category, Gpu, GpuBuffer, KernelChecks, Kernels, PlanBuilder, Slice, SubmitBudget};
use xlstm_wgpu::model::v1_config::Activation;
use xlstm_wgpu::model::weights::{GpuMatrix, WeightDtype};
use xlstm_wgpu::ops::{self, Boundaries, CellLayout, CellStateBuffers, Epilogue, Ops, Rows};
use xlstm_wgpu::rng::SplitMix64;
use xlstm_wgpu::{Error, GpuOptions, Result};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// The weight formats the weight-reading kernels' cases run in.
const DTYPES: [WeightDtype; 4] = [WeightDtype::F32, WeightDtype::F16, WeightDtype::Q8, WeightDtype::Q4];

/// What a [`Ctx`]'s pipelines were built with.
#[derive(Clone, Copy)]
struct Mode {
    checks: KernelChecks,
    /// The device offers cooperative matrices (the matrix-unit pipelines exist for f16).
    coop: bool,
}

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let checks = match self.checks {
            KernelChecks::All => "checks on",
            KernelChecks::None => "checks off",
            KernelChecks::ExceptTrusted => "default checks",
        };
        let coop = if self.coop {
            "matrix units on"
        } else {
            "matrix units off"
        };
        write!(f, "[{checks}, {coop}]")
    }
}

/// One device with its pool and the pipelines of every weight format, in one [`Mode`].
struct Ctx {
    gpu: Arc<Gpu>,
    pool: BufferPool,
    ops_f32: Ops,
    ops_f16: Ops,
    ops_q8: Ops,
    ops_q4: Ops,
    mode: Mode,
}

impl Ctx {
    /// The pipelines of both weight formats under the default check policy (tests that build
    /// their own device, e.g. with features masked).
    fn new(gpu: Arc<Gpu>) -> Ctx {
        Ctx::with_checks(gpu, KernelChecks::default())
    }

    fn with_checks(gpu: Arc<Gpu>, checks: KernelChecks) -> Ctx {
        let kernels = Kernels::with_checks(gpu.clone(), checks);
        let mode = Mode {
            checks,
            coop: gpu.caps.cooperative_matrix,
        };
        Ctx {
            pool: BufferPool::new(gpu.device.clone()),
            ops_f32: Ops::new(&kernels, WeightDtype::F32).expect("f32 pipelines"),
            ops_f16: Ops::new(&kernels, WeightDtype::F16).expect("f16 pipelines"),
            ops_q8: Ops::new(&kernels, WeightDtype::Q8).expect("q8 pipelines"),
            ops_q4: Ops::new(&kernels, WeightDtype::Q4).expect("q4 pipelines"),
            gpu,
            mode,
        }
    }

    /// The pipelines of every weight format with `shapes`, compiled through `kernels` (whose
    /// cache keeps what the shapes do not change), under the default check policy.
    fn with_shapes(gpu: Arc<Gpu>, kernels: &Kernels, shapes: ops::KernelShapes) -> Ctx {
        let ops = |dtype| Ops::with_shapes(kernels, dtype, shapes).expect("pipelines");
        Ctx {
            pool: BufferPool::new(gpu.device.clone()),
            ops_f32: ops(WeightDtype::F32),
            ops_f16: ops(WeightDtype::F16),
            ops_q8: ops(WeightDtype::Q8),
            ops_q4: ops(WeightDtype::Q4),
            mode: Mode {
                checks: KernelChecks::default(),
                coop: gpu.caps.cooperative_matrix,
            },
            gpu,
        }
    }

    fn ops(&self, dtype: WeightDtype) -> &Ops {
        match dtype {
            WeightDtype::F32 => &self.ops_f32,
            WeightDtype::F16 => &self.ops_f16,
            WeightDtype::Q8 => &self.ops_q8,
            WeightDtype::Q4 => &self.ops_q4,
        }
    }

    /// A storage buffer holding `data`.
    fn buf(&self, data: &[f32]) -> GpuBuffer {
        self.buf_bytes(bytemuck::cast_slice(data))
    }

    fn buf_u32(&self, data: &[u32]) -> GpuBuffer {
        self.buf_bytes(bytemuck::cast_slice(data))
    }

    fn buf_bytes(&self, bytes: &[u8]) -> GpuBuffer {
        let b = self
            .pool
            .storage(bytes.len().max(4) as u64, Category::Activations, "test")
            .unwrap();
        if !bytes.is_empty() {
            self.gpu.queue.write_buffer(b.raw(), 0, bytes);
        }
        b
    }

    fn matrix(&self, w: &[f32], rows: usize, cols: usize, dtype: WeightDtype, part_rows: Option<usize>) -> GpuMatrix {
        GpuMatrix::from_f32_split(&self.gpu, &self.pool, w, rows, cols, dtype, "test weight", part_rows).unwrap()
    }

    /// Records a plan, runs it and waits for it.
    fn run(&self, record: impl FnOnce(&mut PlanBuilder) -> Result<()>) {
        let mut pb = PlanBuilder::new(self.gpu.clone());
        record(&mut pb).expect("recording the plan");
        let plan = pb.finish(&self.pool).expect("finishing the plan");
        plan.run(&self.gpu, SubmitBudget::default()).expect("running the plan");
        self.gpu.wait().unwrap();
    }

    /// [`Ctx::run`] returning the error of any step (shape-error tests).
    fn try_run(&self, record: impl FnOnce(&mut PlanBuilder) -> Result<()>) -> Result<()> {
        let mut pb = PlanBuilder::new(self.gpu.clone());
        record(&mut pb)?;
        let plan = pb.finish(&self.pool)?;
        plan.run(&self.gpu, SubmitBudget::default())?;
        self.gpu.wait()
    }

    fn read(&self, b: &GpuBuffer, first: usize, n: usize) -> Vec<f32> {
        read_f32(&self.gpu, &self.pool, b, first as u64, n as u64).unwrap()
    }

    fn read_u32(&self, b: &GpuBuffer, first: usize, n: usize) -> Vec<u32> {
        read_u32(&self.gpu, &self.pool, b, first as u64, n as u64).unwrap()
    }

    /// `data` followed by [`TAIL`] sentinels (see [`Ctx::assert_tail`]).
    fn buf_tail(&self, data: &[f32]) -> GpuBuffer {
        let mut v = data.to_vec();
        v.extend([SENTINEL; TAIL]);
        self.buf(&v)
    }

    /// Asserts the [`TAIL`] values after the first `n` of a [`Ctx::buf_tail`] buffer are intact:
    /// a kernel that writes past its output (a ragged last chunk, the last head) shows here.
    #[track_caller]
    fn assert_tail(&self, what: &str, b: &GpuBuffer, n: usize) {
        let tail = self.read(b, n, TAIL);
        assert!(
            tail.iter().all(|&v| v.to_bits() == SENTINEL.to_bits()),
            "{what}: written past its end: {tail:?}"
        );
    }
}

/// Every mode of this adapter: checks on and off, and where the adapter has matrix units, a
/// second device with them masked (so the portable paths run next to the matrix-unit ones).
fn contexts() -> &'static [Ctx] {
    static CTXS: OnceLock<Vec<Ctx>> = OnceLock::new();
    CTXS.get_or_init(|| {
        install_mode_hook();
        let gpu = common::gpu();
        let mut devices = vec![gpu.clone()];
        if gpu.caps.cooperative_matrix {
            let masked = Gpu::new(&GpuOptions {
                disable: vec!["coop-matrix".into()],
                ..Default::default()
            })
            .expect("a GPU adapter with coop-matrix masked");
            devices.push(Arc::new(masked));
        }
        let mut v = Vec::new();
        for d in devices {
            for checks in [KernelChecks::All, KernelChecks::None] {
                v.push(Ctx::with_checks(d.clone(), checks));
            }
        }
        v
    })
}

thread_local! {
    /// The mode the current test thread runs in, named in a failure's panic message.
    static MODE: RefCell<Option<Mode>> = const { RefCell::new(None) };
}

/// A failing case prints its mode before the panic message (the cases' own messages name the
/// shape, not the mode).
fn install_mode_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(m) = MODE.with(|c| *c.borrow()) {
            eprintln!("[kernels] failed in mode {m:?}");
        }
        prev(info)
    }));
}

/// The contexts of every mode, in order; marks each as the thread's current mode.
fn modes() -> impl Iterator<Item = &'static Ctx> {
    contexts().iter().inspect(|c| {
        MODE.with(|m| *m.borrow_mut() = Some(c.mode));
        if std::env::var_os("KERNELS_VERBOSE").is_some() {
            eprintln!("[kernels] mode {:?}", c.mode);
        }
    })
}

/// The first mode's context, for questions about the adapter (which paths exist).
fn ctx() -> &'static Ctx {
    &contexts()[0]
}

/// Guard values after kernel outputs.
const TAIL: usize = 64;

fn s(b: &GpuBuffer) -> Slice {
    Slice::all(b)
}

/// Largest |x| (1 if the slice is all zeros, so an all-zero reference still gets a tolerance).
fn rng(parts: &[usize]) -> SplitMix64 {
    let mut seed = 0x5eed_u64;
    for &p in parts {
        seed = seed.wrapping_mul(1_000_003).wrapping_add(p as u64 + 1);
    }
    SplitMix64::new(seed)
}

fn f16_round(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}

/// The `[rows, cols]` weights `w` as the GPU holds them in `dtype`: f16-rounded, or quantized by
/// the library and read back by the reference's own decoder (`xlstm_reference::quant`).
fn weights_as_stored(w: &[f32], rows: usize, cols: usize, dtype: WeightDtype) -> Vec<f32> {
    match dtype {
        WeightDtype::F32 => w.to_vec(),
        WeightDtype::F16 => f16_round(w),
        WeightDtype::Q8 | WeightDtype::Q4 => {
            let m = EncodedMatrix::encode(dtype, w, rows, cols, "test weight").expect("quantizing");
            xlstm_reference::quant::dequantize(dtype, &m.values, &m.scales, rows, cols, m.kp)
        }
    }
}

#[test]
fn adapter_report() {
    eprintln!(
        "[kernels] adapter: {}",
        common::gpu().caps.to_string().replace('\n', "\n[kernels]   ")
    );
}
