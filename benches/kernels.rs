//! Criterion benchmarks of the main kernels on the default adapter (set WGPU_BACKEND to choose):
//! the decode GEMV at the 7B shapes, the prefill GEMM, and the sLSTM recurrence run as one
//! dispatch per sequence versus one dispatch per token. Each iteration records, submits and waits,
//! so the figures include submission overhead, as a real decode step does.
//!
//!     cargo bench --bench kernels
//!
//! Shapes come from the conformance tests' tables (`tests/kernels/cases.rs`), so what is measured
//! is what is checked; a software adapter (lavapipe) runs the reduced `*_SOFTWARE` tables.

/// The shape tables the conformance tests check (tests/kernels/cases.rs).
#[path = "../tests/kernels/cases.rs"]
mod cases;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;
use xlstm_wgpu::gpu::{BufferPool, Category, Gpu, GpuBuffer, GpuOptions, Kernels, PlanBuilder, Slice, SubmitBudget};
use xlstm_wgpu::model::weights::{GpuMatrix, WeightDtype};
use xlstm_wgpu::ops::{self, Epilogue, Ops, Rows};

struct Bench {
    gpu: Arc<Gpu>,
    pool: BufferPool,
    ops: Ops,
    software: bool,
}

impl Bench {
    fn new() -> Self {
        let gpu = Arc::new(Gpu::new(&GpuOptions::default()).expect("a GPU adapter"));
        let pool = BufferPool::new(gpu.device.clone());
        let ops = Ops::new(&Kernels::new(gpu.clone()), WeightDtype::F16).expect("pipelines");
        let software = gpu.caps.device_type == "Cpu";
        Bench {
            gpu,
            pool,
            ops,
            software,
        }
    }

    fn buf(&self, floats: usize) -> GpuBuffer {
        let b = self
            .pool
            .storage((floats * 4) as u64, Category::Scratch, "bench")
            .expect("buffer");
        self.gpu.queue.write_buffer(b.raw(), 0, &vec![0u8; floats * 4]);
        b
    }

    fn matrix(&self, rows: usize, cols: usize) -> GpuMatrix {
        let m = GpuMatrix::allocate(&self.gpu, &self.pool, rows, cols, WeightDtype::F16, "bench").expect("matrix");
        let mut pb = PlanBuilder::new(self.gpu.clone());
        ops::fill_random(&mut pb, &self.ops, &m, 7, 0.02).expect("fill");
        pb.finish(&self.pool)
            .expect("plan")
            .run(&self.gpu, SubmitBudget::default())
            .expect("run");
        m
    }

    fn run(&self, plan: &xlstm_wgpu::gpu::Plan) {
        plan.run(&self.gpu, SubmitBudget::default()).expect("run");
        self.gpu.wait().expect("wait");
    }
}

fn gemv(c: &mut Criterion) {
    let b = Bench::new();
    let shapes = if b.software {
        cases::GEMV_SOFTWARE
    } else {
        cases::GEMV_BENCH
    };
    let mut g = c.benchmark_group("gemv_f16");
    for &(n, k) in shapes {
        let w = b.matrix(n, k);
        let (x, y) = (b.buf(k), b.buf(n));
        let mut pb = PlanBuilder::new(b.gpu.clone());
        ops::matmul(
            &mut pb,
            &b.ops,
            &Rows::new(&Slice::all(&x), k),
            1,
            &w,
            &Rows::new(&Slice::all(&y), n),
            Epilogue::default(),
        )
        .expect("gemv");
        let plan = pb.finish(&b.pool).expect("plan");
        g.throughput(Throughput::Bytes(w.bytes()));
        g.bench_with_input(BenchmarkId::from_parameter(format!("{n}x{k}")), &plan, |bch, plan| {
            bch.iter(|| b.run(plan))
        });
    }
    g.finish();
}

fn gemm(c: &mut Criterion) {
    let b = Bench::new();
    let (t, n, k) = if b.software {
        cases::GEMM_SOFTWARE
    } else {
        cases::GEMM_BENCH
    };
    let w = b.matrix(n, k);
    let (x, y) = (b.buf(t * k), b.buf(t * n));
    let mut pb = PlanBuilder::new(b.gpu.clone());
    ops::matmul(
        &mut pb,
        &b.ops,
        &Rows::new(&Slice::all(&x), k),
        t,
        &w,
        &Rows::new(&Slice::all(&y), n),
        Epilogue::default(),
    )
    .expect("gemm");
    let plan = pb.finish(&b.pool).expect("plan");
    let mut g = c.benchmark_group("gemm_f16");
    g.throughput(Throughput::Elements((2 * t * n * k) as u64));
    g.bench_function(format!("{t}x{n}x{k}"), |bch| bch.iter(|| b.run(&plan)));
    g.finish();
}

/// The sLSTM recurrence over T tokens: the persistent sequence kernel (one dispatch, a workgroup
/// per head) versus the per-token kernel (one dispatch per token, many workgroups per step), for
/// wide heads (4 x 256, T 1024) and narrow ones (4 x 32, T 256), from a random non-fresh state
/// with random inputs and recurrent weights. On a software adapter the wide case runs T 64.
fn slstm(c: &mut Criterion) {
    use ops::slstm::{slstm, SlstmMode};
    let b = Bench::new();
    let shapes = if b.software {
        cases::SLSTM_SOFTWARE
    } else {
        cases::SLSTM_BENCH
    };
    for &(nh, dh, t) in shapes {
        let e = nh * dh;
        let mut rng = xlstm_wgpu::rng::SplitMix64::new(11);
        let upload = |v: Vec<f32>| {
            let buf = b.buf(v.len());
            b.gpu.queue.write_buffer(buf.raw(), 0, bytemuck::cast_slice(&v));
            buf
        };
        let scale = 1.0 / (dh as f32).sqrt();
        let (wx, bias, r, h, scratch) = (
            upload(rng.uniform_vec(t * 4 * e, -2.0, 2.0)),
            upload(rng.uniform_vec(4 * e, -1.0, 1.0)),
            upload(rng.uniform_vec(nh * 4 * dh * dh, -scale, scale)),
            b.buf(t * e),
            b.buf(4 * e),
        );
        let mut st = rng.uniform_vec(4 * e, -1.0, 1.0);
        st[2 * e..3 * e].iter_mut().for_each(|n| *n = n.abs() + 0.5);
        let state = upload(st);
        let s = Slice::all;
        let mut g = c.benchmark_group(format!("slstm_{nh}x{dh}_T{t}"));
        g.throughput(Throughput::Elements(t as u64));
        for (name, mode) in [("sequence", SlstmMode::Sequence), ("per_token", SlstmMode::PerToken)] {
            let mut pb = PlanBuilder::new(b.gpu.clone());
            slstm(
                &mut pb,
                &b.ops,
                &ops::slstm::Slstm {
                    wx: &s(&wx),
                    bias: &s(&bias),
                    r: &s(&r),
                    state: &s(&state),
                    scratch: &s(&scratch),
                    h: &s(&h),
                    tokens: t,
                    num_heads: nh,
                    head_dim: dh,
                    mode,
                },
            )
            .expect("slstm");
            let plan = pb.finish(&b.pool).expect("plan");
            g.bench_function(name, |bch| bch.iter(|| b.run(&plan)));
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = gemv, gemm, slstm
}
criterion_main!(benches);
