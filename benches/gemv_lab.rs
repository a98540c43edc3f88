//! Decode GEMV lab: gemv.wgsl compiled with chosen constants, run back to back on the 7B decode
//! shapes the way a decode step runs them (one dependent dispatch after another, cycling over
//! four matrices so that each read comes from memory, not the 60 MB L2 of an H200), and its
//! effective read bandwidth printed as one JSON object a line. Each variant's output is compared
//! with the first variant of its format (`max_rel`: max |dy| / max |y|).
//!
//!     cargo bench --bench gemv_lab                      # every variant
//!     cargo bench --bench gemv_lab -- q4 int_dot        # variants whose name holds all words
//!
//! What a variant is: the constants of gemv.wgsl / gemv_rows.wgsl (WG, LANES, RPL, PREFETCH,
//! INT_DOT), with subgroup sums where the adapter's subgroup size is fixed.

use std::sync::Arc;
use std::time::Instant;
use xlstm_wgpu::gpu::readback::read_f32;
use xlstm_wgpu::gpu::{
    BufferPool, Category, ConstValue, Gpu, GpuBuffer, GpuOptions, Kernels, PlanBuilder, Slice, SubmitBudget,
};
use xlstm_wgpu::model::weights::{GpuMatrix, WeightDtype};
use xlstm_wgpu::ops::{self, Ops};

/// gemv.wgsl's parameter block (`ops::matmul`'s GemvParams).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k: u32,
    kp: u32,
    x_offset: u32,
    y_offset: u32,
    accumulate: u32,
    soft_cap: f32,
    eps: f32,
}

/// A decode GEMV of the 7B shape: `rows` x `cols` weights, input transform `mode` (gemv.wgsl's
/// X_MODE: 1 RMSNorm, 2 SwiGLU of a 2 * cols input).
struct Shape {
    name: &'static str,
    rows: usize,
    cols: usize,
    mode: u32,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "ffn_up",
        rows: 21888,
        cols: 4096,
        mode: 1,
    },
    Shape {
        name: "qkv",
        rows: 12304,
        cols: 4096,
        mode: 1,
    },
    Shape {
        name: "ffn_down",
        rows: 4096,
        cols: 10944,
        mode: 2,
    },
];

/// gemv.wgsl constants: workgroup size (0: the host's choice for the format), lanes per row,
/// PREFETCH (2: the host's choice), INT_DOT, GROUPS.
#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    wg: u32,
    lanes: u32,
    prefetch: u32,
    int_dot: u32,
    groups: u32,
}

const fn v(name: &'static str, lanes: u32, int_dot: u32, groups: u32) -> Variant {
    Variant {
        name,
        wg: 0,
        lanes,
        prefetch: 2,
        int_dot,
        groups,
    }
}

const VARIANTS: &[Variant] = &[
    v("base", 128, 0, 1),
    v("g2", 128, 0, 2),
    v("g4", 128, 0, 4),
    v("int_dot", 128, 1, 1),
    v("int_dot_g2", 128, 1, 2),
    v("int_dot_g4", 128, 1, 4),
    v("int_dot_g8", 128, 1, 8),
    v("int_dot_l64", 64, 1, 1),
    v("int_dot_l64_g4", 64, 1, 4),
    v("int_dot_l32_g4", 32, 1, 4),
];

const COPIES: usize = 4;

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let gpu = Arc::new(Gpu::new(&GpuOptions::default()).expect("a GPU adapter"));
    let pool = BufferPool::new(gpu.device.clone());
    let kernels = Kernels::new(gpu.clone());
    // A software adapter runs each variant a few times only (it checks the variants agree).
    let dispatches = if gpu.caps.device_type == "Cpu" { 4 } else { 64 };
    let sg = (gpu.caps.subgroup && gpu.caps.subgroup_min_size == gpu.caps.subgroup_max_size)
        .then_some(gpu.caps.subgroup_min_size);
    for dtype in [WeightDtype::F16, WeightDtype::Q8, WeightDtype::Q4] {
        let fill_ops = Ops::new(&kernels, dtype).expect("pipelines");
        for shape in SHAPES {
            let picked: Vec<&Variant> = VARIANTS
                .iter()
                .filter(|v| v.int_dot == 0 || dtype.is_quantized())
                .filter(|v| {
                    let label = format!("{} {} {}", dtype.name(), shape.name, v.name);
                    filters.iter().all(|f| label.split(' ').any(|w| w == f))
                })
                .collect();
            if picked.is_empty() {
                continue;
            }
            let mats: Vec<GpuMatrix> = (0..COPIES)
                .map(|i| {
                    let m = GpuMatrix::allocate(&gpu, &pool, shape.rows, shape.cols, dtype, "lab").expect("matrix");
                    let mut pb = PlanBuilder::new(gpu.clone());
                    ops::fill_random(&mut pb, &fill_ops, &m, 11 + i as u32, 0.02).expect("fill");
                    pb.finish(&pool)
                        .expect("plan")
                        .run(&gpu, SubmitBudget::default())
                        .expect("run");
                    m
                })
                .collect();
            let x_len = if shape.mode == 2 { 2 * shape.cols } else { shape.cols };
            let x = host_buffer(&gpu, &pool, &pseudo_random(x_len, 3, 1.0));
            let aux = host_buffer(
                &gpu,
                &pool,
                &pseudo_random(shape.cols, 5, 0.5)
                    .iter()
                    .map(|v| 1.0 + v)
                    .collect::<Vec<_>>(),
            );
            let y = host_buffer(&gpu, &pool, &vec![0.0; shape.rows]);
            let mut reference: Option<Vec<f32>> = None;
            for v in picked {
                let prefetch = match v.prefetch {
                    2 => !dtype.is_quantized() as u32,
                    p => p,
                };
                let wg = if v.wg == 0 {
                    (if dtype.is_quantized() { 128 } else { 256 }).max(v.lanes)
                } else {
                    v.wg
                };
                let mut consts = vec![
                    ("WEIGHT_FORMAT", ConstValue::U32(dtype.wgsl_format())),
                    ("X_MODE", ConstValue::U32(shape.mode)),
                    ("WG", ConstValue::U32(wg)),
                    ("LANES", ConstValue::U32(v.lanes)),
                    ("RPL", ConstValue::U32(8)),
                    ("PREFETCH", ConstValue::U32(prefetch)),
                    ("INT_DOT", ConstValue::U32(v.int_dot)),
                    ("GROUPS", ConstValue::U32(v.groups)),
                ];
                let kernel = match sg.filter(|s| v.lanes % s == 0) {
                    Some(s) => {
                        consts.push(("SG", ConstValue::U32(s)));
                        "gemv_subgroup"
                    }
                    None => "gemv",
                };
                let pipeline = kernels.lazy(kernel, "main", &consts);
                let rows_per_group = (wg / v.lanes * 8 * v.groups) as usize;
                let mut pb = PlanBuilder::new(gpu.clone());
                for d in 0..dispatches {
                    let m = &mats[d % COPIES];
                    for (i, part) in m.parts.iter().enumerate() {
                        let p = Params {
                            n: part.rows as u32,
                            k: m.cols as u32,
                            kp: m.kp as u32,
                            x_offset: 0,
                            y_offset: part.row0 as u32,
                            accumulate: 0,
                            soft_cap: 0.0,
                            eps: 1e-6,
                        };
                        let bufs = [Slice::all(&x), m.part_slice(i), Slice::all(&y), Slice::all(&aux)];
                        let groups = part.rows.div_ceil(rows_per_group) as u32;
                        pb.dispatch("gemv", &pipeline, &p, &bufs, [groups, 1, 1])
                            .expect("dispatch");
                    }
                }
                let plan = pb.finish(&pool).expect("plan");
                let mut best = f64::MAX;
                for rep in 0..7 {
                    let t = Instant::now();
                    plan.run(&gpu, SubmitBudget::default()).expect("run");
                    gpu.wait().expect("wait");
                    if rep >= 2 {
                        best = best.min(t.elapsed().as_secs_f64());
                    }
                }
                let out = read_f32(&gpu, &pool, &y, 0, shape.rows as u64).expect("readback");
                let max_rel = match &reference {
                    None => {
                        reference = Some(out);
                        0.0
                    }
                    Some(r) => {
                        let scale = r.iter().fold(0f32, |a, v| a.max(v.abs())).max(f32::MIN_POSITIVE);
                        r.iter().zip(&out).fold(0f32, |a, (p, q)| a.max((p - q).abs())) / scale
                    }
                };
                let bytes = mats[0].bytes() as f64 * dispatches as f64;
                println!(
                    "{{\"dtype\":\"{}\",\"shape\":\"{}\",\"variant\":\"{}\",\"us_per_gemv\":{:.2},\"gb_per_s\":{:.0},\"max_rel\":{:.2e}}}",
                    dtype.name(),
                    shape.name,
                    v.name,
                    best / dispatches as f64 * 1e6,
                    bytes / best / 1e9,
                    max_rel
                );
            }
        }
    }
}

fn host_buffer(gpu: &Gpu, pool: &BufferPool, data: &[f32]) -> GpuBuffer {
    let b = pool
        .storage((data.len() * 4) as u64, Category::Scratch, "lab")
        .expect("buffer");
    gpu.queue.write_buffer(b.raw(), 0, bytemuck::cast_slice(data));
    b
}

/// Deterministic values in [-scale, scale).
fn pseudo_random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}
