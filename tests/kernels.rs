//! Every WGSL kernel, run on a real adapter (lavapipe in CI: `WGPU_BACKEND=vulkan`), against the
//! plain-Rust f32 reference in `cpu/` on awkward shapes: widths that are not multiples of the
//! kernels' tiles, strided and offset rows, weights split into several parts, f16 weights, both
//! matmul epilogues, large gate pre-activations, non-zero initial mLSTM states, and split
//! chunkwise schedules.
//!
//! Tolerances are `atol + rtol * |ref|` with `atol` a fraction (1e-5) of the output's magnitude
//! (max |ref|, or for matmuls max Σ|x·w|). f16 weights are compared against the reference computed
//! on the f16-rounded weights, so they get the same tight tolerance as f32. The mLSTM kernels are
//! checked against a first-order rounding bound instead (see `CellCond`): with random q and k,
//! q·n can cancel by 1e4 and more, which no fixed relative tolerance survives, while elsewhere the
//! bound is far tighter than 1e-5. Outputs are surrounded by sentinels so stray writes fail too.
//! Run with `--nocapture` to see the largest error each test observed (`KERNELS_VERBOSE=1`: per case).

mod common;

use common::compare::{check, close, max_abs, Worst};
use common::strided::{assert_untouched, gather_rows, strided, SENTINEL};

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use xlstm_reference::mlstm::{self, CellShape, CellState};
use xlstm_reference::ops as cpu;
use xlstm_wgpu::gpu::readback::{read_f32, read_u32};
use xlstm_wgpu::gpu::{BufferPool, Category, Gpu, GpuBuffer, Kernels, PlanBuilder, Slice, SubmitBudget};
use xlstm_wgpu::model::weights::{GpuMatrix, WeightDtype};
use xlstm_wgpu::ops::{self, Boundaries, CellLayout, CellStateBuffers, Epilogue, Ops, Rows};
use xlstm_wgpu::rng::SplitMix64;
use xlstm_wgpu::{GpuOptions, Result};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// One device with its pool and the pipelines of both weight formats.
struct Ctx {
    gpu: Arc<Gpu>,
    pool: BufferPool,
    ops_f32: Ops,
    ops_f16: Ops,
}

impl Ctx {
    fn new(gpu: Arc<Gpu>) -> Ctx {
        let kernels = Kernels::new(gpu.clone());
        Ctx {
            pool: BufferPool::new(gpu.device.clone()),
            ops_f32: Ops::new(&kernels, WeightDtype::F32).expect("f32 pipelines"),
            ops_f16: Ops::new(&kernels, WeightDtype::F16).expect("f16 pipelines"),
            gpu,
        }
    }

    fn ops(&self, dtype: WeightDtype) -> &Ops {
        match dtype {
            WeightDtype::F32 => &self.ops_f32,
            WeightDtype::F16 => &self.ops_f16,
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

/// Guard values after kernel outputs.
const TAIL: usize = 64;

fn ctx() -> &'static Ctx {
    static CTX: OnceLock<Ctx> = OnceLock::new();
    CTX.get_or_init(|| Ctx::new(common::gpu()))
}

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

fn weights_as_stored(w: &[f32], dtype: WeightDtype) -> Vec<f32> {
    match dtype {
        WeightDtype::F32 => w.to_vec(),
        WeightDtype::F16 => f16_round(w),
    }
}

// ---------------------------------------------------------------------------------------------
// embed
// ---------------------------------------------------------------------------------------------

#[test]
fn embed_gathers_rows_across_parts() {
    let c = ctx();
    let vocab = 37;
    for dtype in [WeightDtype::F32, WeightDtype::F16] {
        for dim in [1, 13, 40] {
            for part_rows in [None, Some(5), Some(1)] {
                let mut r = rng(&[dim, vocab]);
                let table = r.uniform_vec(vocab * dim, -2.0, 2.0);
                let stored = weights_as_stored(&table, dtype);
                let m = c.matrix(&table, vocab, dim, dtype, part_rows);
                if let Some(p) = part_rows {
                    assert_eq!(m.parts.len(), vocab.div_ceil(p));
                }
                // ids start at an offset inside the id buffer; include 0, V-1, part edges, repeats.
                let ids_offset = 3;
                let ids: Vec<u32> = vec![0, 36, 4, 5, 9, 10, 0, 36, 17, 1, 35, 20, 20];
                let mut id_buf = vec![999u32; ids_offset];
                id_buf.extend(&ids);
                let id_buf = c.buf_u32(&id_buf);
                let tokens = ids.len();
                let out = c.buf(&vec![SENTINEL; tokens * dim + 5]);
                c.run(|pb| ops::embed(pb, c.ops(dtype), &s(&id_buf), ids_offset, tokens, &m, &s(&out)));
                let got = c.read(&out, 0, tokens * dim + 5);
                let want: Vec<f32> = ids
                    .iter()
                    .flat_map(|&id| stored[id as usize * dim..][..dim].iter().copied())
                    .collect();
                assert_eq!(
                    &got[..tokens * dim],
                    &want[..],
                    "embed {dtype:?} dim {dim} parts {part_rows:?}"
                );
                assert!(
                    got[tokens * dim..].iter().all(|&v| v == SENTINEL),
                    "embed wrote past the output"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rms_norm
// ---------------------------------------------------------------------------------------------

#[test]
fn rms_norm_strided_rows() {
    let c = ctx();
    let mut worst = Worst("rms_norm", 0.0, "x scale");
    let rows = 3;
    for dim in [1, 7, 300, 1000] {
        let mut r = rng(&[dim, 1]);
        let x = r.uniform_vec(rows * dim, -3.0, 3.0);
        let w = r.uniform_vec(dim, 0.5, 1.5);
        let eps = 1e-6;
        let (x_off, x_stride) = (5, dim + 11);
        let (y_off, y_stride) = (2, dim + 3);
        let xb = c.buf(&strided(&x, rows, dim, x_off, x_stride, f32::NAN));
        let wb = c.buf(&w);
        let y_init = vec![SENTINEL; y_off + rows * y_stride + 3];
        let yb = c.buf(&y_init);
        let xr = Rows {
            buf: s(&xb),
            offset: x_off,
            stride: x_stride,
        };
        let yr = Rows {
            buf: s(&yb),
            offset: y_off,
            stride: y_stride,
        };
        c.run(|pb| ops::rms_norm(pb, &c.ops_f32, &xr, ops::Norm { weight: &s(&wb), eps }, dim, rows, &yr));
        let got = c.read(&yb, 0, y_init.len());
        assert_untouched("rms_norm", &got, rows, dim, y_off, y_stride);
        let want = cpu::rms_norm(&x, &w, eps);
        worst.add(close(
            &format!("rms_norm dim {dim}"),
            &gather_rows(&got, rows, dim, y_off, y_stride),
            &want,
            1e-5,
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// matmul (gemm + gemv)
// ---------------------------------------------------------------------------------------------

struct MatCase {
    tokens: usize,
    k: usize,
    n: usize,
    dtype: WeightDtype,
    epi: Epilogue,
    part_rows: Option<usize>,
}

/// Runs one matmul with offset/strided input and output rows; returns the error relative to the
/// magnitude max Σ|x·w| (+ |y0|).
fn check_matmul(c: &Ctx, case: &MatCase) -> f32 {
    check_matmul_at(c, case, (3, case.k + 5), (7, case.n + 2))
}

/// `check_matmul` with the input and output rows at (offset, stride) `xl` and `yl`.
fn check_matmul_at(c: &Ctx, case: &MatCase, xl: (usize, usize), yl: (usize, usize)) -> f32 {
    let MatCase {
        tokens,
        k,
        n,
        dtype,
        epi,
        part_rows,
    } = *case;
    let mut r = rng(&[
        tokens,
        k,
        n,
        dtype as usize,
        epi.accumulate as usize,
        part_rows.unwrap_or(0),
    ]);
    let x = r.uniform_vec(tokens * k, -1.0, 1.0);
    let w = r.uniform_vec(n * k, -1.0, 1.0);
    let y0 = r.uniform_vec(tokens * n, -2.0, 2.0);
    let m = c.matrix(&w, n, k, dtype, part_rows);
    if let Some(p) = part_rows {
        assert_eq!(m.parts.len(), n.div_ceil(p));
    }
    let (x_off, x_stride) = xl;
    let (y_off, y_stride) = yl;
    // NaN in the input's gaps: reading past k would poison the result.
    let xb = c.buf(&strided(&x, tokens, k, x_off, x_stride, f32::NAN));
    let y_init = strided(&y0, tokens, n, y_off, y_stride, SENTINEL);
    let yb = c.buf(&y_init);
    let xr = Rows {
        buf: s(&xb),
        offset: x_off,
        stride: x_stride,
    };
    let yr = Rows {
        buf: s(&yb),
        offset: y_off,
        stride: y_stride,
    };
    c.run(|pb| ops::matmul(pb, c.ops(dtype), &xr, tokens, &m, &yr, epi));
    let got_all = c.read(&yb, 0, y_init.len());
    let what = format!("matmul tokens {tokens} k {k} n {n} {dtype:?} {epi:?} parts {part_rows:?}");
    assert_untouched(&what, &got_all, tokens, n, y_off, y_stride);
    let got = gather_rows(&got_all, tokens, n, y_off, y_stride);

    let ws = weights_as_stored(&w, dtype);
    // The matrix-unit GEMM (adapters with 16x16 f16 cooperative matrices, f16 weights, more than
    // one token) multiplies f16 activations: compare against activations rounded the same way.
    let coop = tokens > 1 && c.ops(dtype).uses_coop_gemm();
    let x = if coop {
        weights_as_stored(&x, WeightDtype::F16)
    } else {
        x
    };
    let prod = cpu::matmul_t(&x, &ws, tokens, k, n);
    let abs_x: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let abs_w: Vec<f32> = ws.iter().map(|v| v.abs()).collect();
    let mut mag = cpu::matmul_t(&abs_x, &abs_w, tokens, k, n);
    let want: Vec<f32> = prod
        .iter()
        .zip(&y0)
        .zip(mag.iter_mut())
        .map(|((&p, &y), mg)| {
            let v = if epi.accumulate {
                *mg += y.abs();
                p + y
            } else {
                p
            };
            cpu::soft_cap(v, epi.soft_cap)
        })
        .collect();
    let scale = max_abs(&mag);
    // tanh's error is absolute near 0, so the soft cap adds a little absolute slack.
    let e = check(&what, &got, &want, 1e-5 * scale + 1e-6 * epi.soft_cap, 1e-5) / scale;
    if std::env::var_os("KERNELS_VERBOSE").is_some() {
        eprintln!("[kernels]   {what}: max error / scale {e:.2e}");
    }
    e
}

fn epilogues() -> [Epilogue; 4] {
    [
        Epilogue::default(),
        Epilogue {
            accumulate: true,
            soft_cap: 0.0,
        },
        Epilogue {
            accumulate: false,
            soft_cap: 3.0,
        },
        Epilogue {
            accumulate: true,
            soft_cap: 2.5,
        },
    ]
}

fn matmul_sweep(name: &'static str, tokens_list: &[usize]) {
    let c = ctx();
    let mut worst = Worst(name, 0.0, "x scale");
    let mut i = 0usize;
    for &tokens in tokens_list {
        for k in [5, 37, 100] {
            for n in [1, 9, 70] {
                for dtype in [WeightDtype::F32, WeightDtype::F16] {
                    // Every epilogue with every shape and format; the part split rotates so each
                    // shape and each epilogue meets every split (1 part, 4 or 1 rows per part, 64).
                    for (e, epi) in epilogues().into_iter().enumerate() {
                        let part_rows = [None, Some(4), Some(1), Some(64)][(i + e) % 4];
                        worst.add(check_matmul(
                            c,
                            &MatCase {
                                tokens,
                                k,
                                n,
                                dtype,
                                epi,
                                part_rows,
                            },
                        ));
                    }
                    i += 1;
                }
            }
        }
    }
}

#[test]
fn matmul_gemm_path() {
    matmul_sweep("matmul gemm", &[2, 63, 65, 130]);
    if ctx().ops(WeightDtype::F16).uses_coop_gemm() {
        // Tiles of 128 x 128: cover several tiles in both directions with ragged edges.
        matmul_sweep("matmul gemm coop", &[129, 300]);
    }
}

/// The matrix-unit GEMM's whole-tile fast path (128 x 128 tiles inside both matrices, 4-aligned
/// activation rows, K a multiple of 64) next to ragged edge tiles, with every epilogue.
#[test]
fn matmul_coop_whole_tiles() {
    let c = ctx();
    if !c.ops(WeightDtype::F16).uses_coop_gemm() {
        eprintln!("[kernels] no matrix-unit GEMM on this adapter: skipped");
        return;
    }
    let mut worst = Worst("matmul coop whole tiles", 0.0, "x scale");
    for (i, (tokens, k, n)) in [(256, 128, 256), (300, 192, 300), (384, 64, 130)]
        .into_iter()
        .enumerate()
    {
        for (e, epi) in epilogues().into_iter().enumerate() {
            let case = MatCase {
                tokens,
                k,
                n,
                dtype: WeightDtype::F16,
                epi,
                part_rows: [None, Some(128)][(i + e) % 2],
            };
            // Aligned rows take the fast path; the same shapes unaligned take the checked one.
            worst.add(check_matmul_at(c, &case, (4, k + 4), (8, n + 4)));
            if e == 0 {
                worst.add(check_matmul(c, &case));
            }
        }
    }
}

#[test]
fn matmul_gemv_path() {
    matmul_sweep("matmul gemv", &[1]);
    // And every epilogue with both formats on a split matrix.
    let c = ctx();
    let mut worst = Worst("matmul gemv epilogues", 0.0, "x scale");
    for dtype in [WeightDtype::F32, WeightDtype::F16] {
        for epi in epilogues() {
            worst.add(check_matmul(
                c,
                &MatCase {
                    tokens: 1,
                    k: 300,
                    n: 21,
                    dtype,
                    epi,
                    part_rows: Some(8),
                },
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mLSTM cell
// ---------------------------------------------------------------------------------------------

const GATE_CAP: f32 = 15.0;
const CELL_EPS: f32 = 1e-6;

/// Random cell inputs in the fused projection layout plus the same inputs as the CPU reference
/// wants them (gates soft-capped, q and k unscaled).
struct CellInputs {
    l: CellLayout,
    shape: CellShape,
    t: usize,
    proj: Vec<f32>,
    bias: Vec<f32>,
    init: CellState,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    i_pre: Vec<f32>,
    f_pre: Vec<f32>,
}

fn cell_inputs(nh: usize, dqk: usize, dv: usize, t: usize, seed: usize) -> CellInputs {
    cell_inputs_capped(nh, dqk, dv, t, seed, GATE_CAP)
}

/// [`cell_inputs`] with gate soft cap `cap` (<= 0: none, the original xLSTM's mLSTM).
fn cell_inputs_capped(nh: usize, dqk: usize, dv: usize, t: usize, seed: usize, cap: f32) -> CellInputs {
    let l = CellLayout::fused(nh, dqk, dv, cap, CELL_EPS);
    let shape = CellShape {
        num_heads: nh,
        dqk,
        dv,
        eps: CELL_EPS,
    };
    let mut r = rng(&[nh, dqk, dv, t, seed]);
    let mut proj = vec![0.0f32; t * l.proj_stride];
    for row in proj.chunks_exact_mut(l.proj_stride) {
        for (col, x) in row.iter_mut().enumerate() {
            *x = if col >= l.i_col {
                // Raw gate pre-activations well beyond the cap, so tanh saturates.
                r.uniform(-40.0, 40.0)
            } else if col >= l.o_col {
                r.uniform(-4.0, 4.0)
            } else {
                r.uniform(-1.0, 1.0)
            };
        }
    }
    // Input-gate biases, then forget-gate biases (some heads remember, some forget).
    let mut bias = r.uniform_vec(nh, -3.0, 3.0);
    bias.extend(r.uniform_vec(nh, -2.0, 8.0));
    let init = CellState {
        c: r.uniform_vec(nh * dqk * dv, -1.0, 1.0),
        n: r.uniform_vec(nh * dqk, -1.0, 1.0),
        m: r.uniform_vec(nh, -1.0, 4.0),
    };
    let cols = |c0: usize, w: usize| -> Vec<f32> {
        proj.chunks_exact(l.proj_stride)
            .flat_map(|row| row[c0..c0 + w].iter().copied())
            .collect()
    };
    let gate = |c0: usize, b: &[f32]| -> Vec<f32> {
        proj.chunks_exact(l.proj_stride)
            .flat_map(|row| (0..nh).map(move |h| cpu::soft_cap(row[c0 + h] + b[h], cap)))
            .collect()
    };
    CellInputs {
        q: cols(l.q_col, nh * dqk),
        k: cols(l.k_col, nh * dqk),
        v: cols(l.v_col, nh * dv),
        i_pre: gate(l.i_col, &bias[..nh]),
        f_pre: gate(l.f_col, &bias[nh..]),
        l,
        shape,
        t,
        proj,
        bias,
        init,
    }
}

/// h [T, NH*dv] and the final state.
struct CellOut {
    h: Vec<f32>,
    state: CellState,
}

fn cpu_chunkwise(x: &CellInputs, chunk: usize) -> CellOut {
    let mut state = x.init.clone();
    let h = mlstm::chunkwise(&x.shape, chunk, x.t, &x.q, &x.k, &x.v, &x.i_pre, &x.f_pre, &mut state);
    CellOut { h, state }
}

fn cpu_recurrent(x: &CellInputs) -> CellOut {
    let mut state = x.init.clone();
    let h = mlstm::recurrent(&x.shape, x.t, &x.q, &x.k, &x.v, &x.i_pre, &x.f_pre, &mut state);
    CellOut { h, state }
}

/// What the chunkwise kernels produced: h and the final state, every boundary state (C, n, m of
/// all boundaries concatenated, for comparing schedules bit for bit) and the gate buffers.
struct ChunkRun {
    out: CellOut,
    boundaries: Vec<f32>,
    gi: Vec<f32>,
    gb: Vec<f32>,
}

/// One band or tile covering `r` (every head, or every chunk).
fn whole(r: Range<usize>) -> [Range<usize>; 1] {
    [r]
}

/// mlstm_gates + mlstm_chunk_state + mlstm_chunk_out, with the state and output passes split into
/// the given head bands and chunk tiles.
fn gpu_chunkwise(c: &Ctx, x: &CellInputs, chunk: usize, bands: &[Range<usize>], tiles: &[Range<usize>]) -> ChunkRun {
    gpu_chunkwise_with(c, x, chunk, bands, tiles, (false, false))
}

/// [`gpu_chunkwise`] with phase 1 and/or phase 2 on the matrix units (`coop` = (state, out);
/// the f16-weight pipelines, where the adapter has them).
fn gpu_chunkwise_with(
    c: &Ctx,
    x: &CellInputs,
    chunk: usize,
    bands: &[Range<usize>],
    tiles: &[Range<usize>],
    coop: (bool, bool),
) -> ChunkRun {
    let (nh, dqk, dv, t) = (x.shape.num_heads, x.shape.dqk, x.shape.dv, x.t);
    let chunks = t.div_ceil(chunk);
    let (cs, ns) = (nh * dqk * dv, nh * dqk);
    let with_init = |init: &[f32], per: usize| {
        let mut v = init.to_vec();
        v.resize((chunks + 1) * per + TAIL, SENTINEL);
        v
    };
    let proj = c.buf(&x.proj);
    let bias = c.buf(&x.bias);
    let gi = c.buf_tail(&vec![SENTINEL; nh * t]);
    let gb = c.buf_tail(&vec![SENTINEL; nh * t]);
    let cb = c.buf(&with_init(&x.init.c, cs));
    let nb = c.buf(&with_init(&x.init.n, ns));
    let mb = c.buf(&with_init(&x.init.m, nh));
    let hb = c.buf_tail(&vec![SENTINEL; t * nh * dv]);
    let b = Boundaries {
        c: s(&cb),
        n: s(&nb),
        m: s(&mb),
    };
    let ops = if coop.0 || coop.1 { &c.ops_f16 } else { &c.ops_f32 };
    let state = if coop.0 {
        ops::mlstm_chunk_state_coop
    } else {
        ops::mlstm_chunk_state
    };
    let out = if coop.1 {
        ops::mlstm_chunk_out_coop
    } else {
        ops::mlstm_chunk_out
    };
    let (proj, gi_s, gb_s) = (s(&proj), s(&gi), s(&gb));
    let inputs = ops::ChunkInputs {
        l: &x.l,
        proj: &proj,
        gi: &gi_s,
        gb: &gb_s,
        b: &b,
        tokens: t,
        chunk,
    };
    c.run(|pb| {
        ops::mlstm_gates(
            pb,
            ops,
            &ops::MlstmGates {
                l: &x.l,
                proj: &proj,
                bias: &s(&bias),
                tokens: t,
                chunk,
                gi: &gi_s,
                gb: &gb_s,
            },
        )?;
        for heads in bands {
            for tile in tiles {
                state(pb, ops, &inputs, tile.clone(), heads.clone())?;
            }
        }
        for heads in bands {
            for tile in tiles {
                out(pb, ops, &inputs, tile.clone(), heads.clone(), &s(&hb))?;
            }
        }
        Ok(())
    });
    for (name, b, n) in [
        ("gi", &gi, nh * t),
        ("gb", &gb, nh * t),
        ("h", &hb, t * nh * dv),
        ("C", &cb, (chunks + 1) * cs),
        ("n", &nb, (chunks + 1) * ns),
        ("m", &mb, (chunks + 1) * nh),
    ] {
        c.assert_tail(&format!("chunkwise T {t} chunk {chunk}: {name}"), b, n);
    }
    let all_c = c.read(&cb, 0, (chunks + 1) * cs);
    let mut boundaries = all_c.clone();
    let state = CellState {
        c: all_c[chunks * cs..].to_vec(),
        n: c.read(&nb, chunks * ns, ns),
        m: c.read(&mb, chunks * nh, nh),
    };
    boundaries.extend(c.read(&nb, 0, (chunks + 1) * ns));
    boundaries.extend(c.read(&mb, 0, (chunks + 1) * nh));
    ChunkRun {
        out: CellOut {
            h: c.read(&hb, 0, t * nh * dv),
            state,
        },
        boundaries,
        gi: c.read(&gi, 0, nh * t),
        gb: c.read(&gb, 0, nh * t),
    }
}

/// mlstm_gates' outputs, [NH, T] each: the soft-capped input gate, and the cumulative log forget
/// gate restarting at every chunk (log sigmoid <= 0, so |b| is also the sum of |terms|).
/// Returns the largest error relative to the gate cap (without a cap: the largest gate).
fn check_gates(what: &str, x: &CellInputs, chunk: usize, run: &ChunkRun) -> f32 {
    let (nh, t) = (x.shape.num_heads, x.t);
    let mut gi = Vec::with_capacity(nh * t);
    let mut gb = Vec::with_capacity(nh * t);
    for h in 0..nh {
        gi.extend((0..t).map(|s| x.i_pre[s * nh + h]));
        for start in (0..t).step_by(chunk) {
            let mut acc = 0.0f64;
            for s in start..(start + chunk).min(t) {
                acc += f64::from(cpu::log_sigmoid(x.f_pre[s * nh + h]));
                gb.push(acc as f32);
            }
        }
    }
    // The gates' magnitude: the cap, or without one the largest raw gate.
    let cap = if x.l.soft_cap > 0.0 {
        x.l.soft_cap
    } else {
        max_abs(&x.i_pre).max(max_abs(&x.f_pre))
    };
    let e = check(&format!("{what}: gi"), &run.gi, &gi, 1e-5 * cap, 0.0);
    // Each term is off by a few ulp of the cap; the running f32 sum adds u * |b| per step.
    let len = chunk.min(t) as f32;
    let e2 = check(&format!("{what}: gb"), &run.gb, &gb, 1e-5 * cap, 2.0 * len * U);
    e.max(e2) / cap
}

/// T mlstm_step dispatches in one plan, parity alternating from `parity0`; the other half of the
/// double-buffered n and m starts as NaN, so reading it would show.
fn gpu_recurrent(c: &Ctx, x: &CellInputs, parity0: u32) -> CellOut {
    let (nh, dqk, dv, t) = (x.shape.num_heads, x.shape.dqk, x.shape.dv, x.t);
    let halves = |init: &[f32]| {
        let mut v = vec![f32::NAN; 2 * init.len()];
        v[parity0 as usize * init.len()..][..init.len()].copy_from_slice(init);
        v.extend([SENTINEL; TAIL]);
        v
    };
    let proj = c.buf(&x.proj);
    let bias = c.buf(&x.bias);
    let cbuf = c.buf_tail(&x.init.c);
    let nbuf = c.buf(&halves(&x.init.n));
    let mbuf = c.buf(&halves(&x.init.m));
    let hb = c.buf_tail(&vec![SENTINEL; t * nh * dv]);
    let st = CellStateBuffers {
        c: s(&cbuf),
        n: s(&nbuf),
        m: s(&mbuf),
    };
    c.run(|pb| {
        let mut p = parity0;
        for row in 0..t {
            ops::mlstm_step(
                pb,
                &c.ops_f32,
                &ops::MlstmStep {
                    l: &x.l,
                    proj: &s(&proj),
                    bias: &s(&bias),
                    row,
                    state: &st,
                    parity: p,
                    h: &s(&hb),
                    h_offset: row * nh * dv,
                },
            )?;
            p ^= 1;
        }
        Ok(())
    });
    for (name, b, n) in [
        ("h", &hb, t * nh * dv),
        ("C", &cbuf, nh * dqk * dv),
        ("n", &nbuf, 2 * nh * dqk),
        ("m", &mbuf, 2 * nh),
    ] {
        c.assert_tail(&format!("step T {t}: {name}"), b, n);
    }
    let p = (parity0 as usize + t) % 2;
    CellOut {
        h: c.read(&hb, 0, t * nh * dv),
        state: CellState {
            c: c.read(&cbuf, 0, nh * dqk * dv),
            n: c.read(&nbuf, p * nh * dqk, nh * dqk),
            m: c.read(&mbuf, p * nh, nh),
        },
    }
}

/// How far f32 rounding can move each output: the sum of the absolute values of the terms behind
/// every element, from a token-by-token reference run on |q|, |k|, |v|, |C0|, |n0| with the same
/// gates (hence the same stabiliser m). To first order, rounding moves h by about
/// u * (sum|num terms| + |h| * sum|den terms|) / denominator, and C and n by u * their |terms|.
/// Where q.n nearly cancels (the reference notes this too) the bound is large; elsewhere it is
/// tight, so the check is strict where the problem is well conditioned.
struct CellCond {
    h: Vec<f32>,
    c: Vec<f32>,
    n: Vec<f32>,
}

fn cell_condition(x: &CellInputs) -> CellCond {
    let sh = &x.shape;
    let (nh, dqk, dv) = (sh.num_heads, sh.dqk, sh.dv);
    let abs = |v: &[f32]| v.iter().map(|a| a.abs()).collect::<Vec<f32>>();
    let (qa, ka, va) = (abs(&x.q), abs(&x.k), abs(&x.v));
    let mut real = x.init.clone();
    let mut mag = CellState {
        c: abs(&x.init.c),
        n: abs(&x.init.n),
        m: x.init.m.clone(),
    };
    let scale = 1.0 / (dqk as f64).sqrt();
    let mut h_cond = Vec::with_capacity(x.t * nh * dv);
    for t in 0..x.t {
        let (qk, vv, g) = (
            t * nh * dqk..(t + 1) * nh * dqk,
            t * nh * dv..(t + 1) * nh * dv,
            t * nh..(t + 1) * nh,
        );
        let h = mlstm::step(
            sh,
            &x.q[qk.clone()],
            &x.k[qk.clone()],
            &x.v[vv.clone()],
            &x.i_pre[g.clone()],
            &x.f_pre[g.clone()],
            &mut real,
        );
        mlstm::step(
            sh,
            &qa[qk.clone()],
            &ka[qk.clone()],
            &va[vv],
            &x.i_pre[g.clone()],
            &x.f_pre[g],
            &mut mag,
        );
        for hd in 0..nh {
            let q = &x.q[(t * nh + hd) * dqk..][..dqk];
            let den: f64 = (0..dqk)
                .map(|a| q[a] as f64 * scale * real.n[hd * dqk + a] as f64)
                .sum();
            let d = den.abs().max((-(real.m[hd] as f64)).exp()) + sh.eps as f64;
            let den_abs: f64 = (0..dqk)
                .map(|a| (q[a] as f64 * scale).abs() * mag.n[hd * dqk + a] as f64)
                .sum();
            for j in 0..dv {
                let num_abs: f64 = (0..dqk)
                    .map(|a| (q[a] as f64 * scale).abs() * mag.c[(hd * dqk + a) * dv + j] as f64)
                    .sum();
                h_cond.push(((num_abs + (h[hd * dv + j] as f64).abs() * den_abs) / d) as f32);
            }
        }
    }
    CellCond {
        h: h_cond,
        c: mag.c,
        n: mag.n,
    }
}

/// Unit roundoff of f32.
const U: f32 = f32::EPSILON / 2.0;
/// Allowed error in units of u * condition (see [`CellCond`]) for accumulation lengths and the
/// adapter's exp/log/tanh accuracy (lavapipe: observed <= 7 for the step kernel).
const CELL_K: f32 = 32.0;

/// The chunkwise kernels also keep the cumulative log forget gate of a chunk in f32: its absolute
/// error, about u * sum |log sigmoid(f)| over the chunk, becomes a relative error of the decay
/// weights. Returns the largest such sum over chunks and heads (0 for the step kernel).
fn chunk_gate_magnitude(x: &CellInputs, chunk: Option<usize>) -> f32 {
    let Some(chunk) = chunk else { return 0.0 };
    let nh = x.shape.num_heads;
    let mut worst = 0.0f32;
    for h in 0..nh {
        for start in (0..x.t).step_by(chunk) {
            let sum: f32 = (start..(start + chunk).min(x.t))
                .map(|t| cpu::log_sigmoid(x.f_pre[t * nh + h]).abs())
                .sum();
            worst = worst.max(sum);
        }
    }
    worst
}

/// |got - want| <= 1e-6 * max|want| + k * u * cond, elementwise; returns max err / (u * cond).
#[track_caller]
fn check_cond(what: &str, got: &[f32], want: &[f32], cond: &[f32], k: f32) -> f32 {
    check_cond_unit(what, got, want, cond, k, U, 1e-6)
}

/// [`check_cond`] with rounding unit `unit` and floor `floor_rel * max|want|`.
#[track_caller]
fn check_cond_unit(what: &str, got: &[f32], want: &[f32], cond: &[f32], k: f32, unit: f32, floor_rel: f32) -> f32 {
    let floor = floor_rel * max_abs(want);
    let tol: Vec<f32> = cond.iter().map(|&c| floor + k * unit * c).collect();
    let mut ratio = 0.0f32;
    let mut bad = Vec::new();
    for (i, ((&g, &w), &t)) in got.iter().zip(want).zip(&tol).enumerate() {
        let err = (g - w).abs();
        let within = err <= t; // false for NaN
        if !within {
            bad.push(format!("[{i}] got {g} want {w} (|err| {err:e}, tol {t:e})"));
        }
        ratio = ratio.max(err / (unit * cond[i]).max(floor));
    }
    if !bad.is_empty() {
        let n = bad.len();
        bad.truncate(6);
        panic!(
            "{what}: {n} of {} values out of tolerance:\n  {}",
            got.len(),
            bad.join("\n  ")
        );
    }
    ratio
}

/// Compares h and the final state; returns the largest observed error in units of u * condition.
/// `chunk` is the chunk size of the chunkwise kernels, `None` for the step kernel.
fn compare_cell(what: &str, x: &CellInputs, chunk: Option<usize>, got: &CellOut, want: &CellOut) -> f32 {
    let cond = cell_condition(x);
    let k = CELL_K + chunk_gate_magnitude(x, chunk);
    let mut r = check_cond(&format!("{what}: h"), &got.h, &want.h, &cond.h, k);
    r = r.max(check_cond(
        &format!("{what}: C"),
        &got.state.c,
        &want.state.c,
        &cond.c,
        k,
    ));
    r = r.max(check_cond(
        &format!("{what}: n"),
        &got.state.n,
        &want.state.n,
        &cond.n,
        k,
    ));
    // m is a log-space stabiliser: compare absolutely (an offset of d rescales C and n by e^-d).
    check(&format!("{what}: m"), &got.state.m, &want.state.m, 1e-5, 1e-6);
    if std::env::var_os("KERNELS_VERBOSE").is_some() {
        eprintln!("[kernels]   {what}: max err / (u * cond) = {r:.1} (allowed {k:.0})");
    }
    r
}

/// Unit roundoff of f16 (the matrix-unit kernels' operands).
const U16: f32 = 1.0 / 2048.0;
/// Allowed error of the matrix-unit chunkwise kernels in units of u16 * condition: every product
/// term has up to four rounded f16 factors (q, k, the decay-weighted score, v; or q and C).
const CELL_K16: f32 = 8.0;

/// [`compare_cell`] for the matrix-unit chunkwise kernels: f16 operands, so the bound is in units of
/// f16's roundoff (plus the f32 kernels' own bound), with a floor of 1e-5 * max|want| for terms
/// that fall into f16's subnormal range.
fn compare_cell_f16(what: &str, x: &CellInputs, chunk: Option<usize>, got: &CellOut, want: &CellOut) -> f32 {
    let cond = cell_condition(x);
    let k = CELL_K16 + (CELL_K + chunk_gate_magnitude(x, chunk)) * U / U16;
    let mut r = 0.0f32;
    // The final state first: a wrong state shows there before it spoils h.
    check(&format!("{what}: m"), &got.state.m, &want.state.m, 1e-5, 1e-6);
    for (name, g, w, cd) in [
        ("C", &got.state.c, &want.state.c, &cond.c),
        ("n", &got.state.n, &want.state.n, &cond.n),
        ("h", &got.h, &want.h, &cond.h),
    ] {
        r = r.max(check_cond_unit(&format!("{what}: {name}"), g, w, cd, k, U16, 1e-5));
    }
    if std::env::var_os("KERNELS_VERBOSE").is_some() {
        eprintln!("[kernels]   {what}: max err / (u16 * cond) = {r:.2} (allowed {k:.1})");
    }
    r
}

/// (NH, dqk, dv) combinations: every value of every dimension appears.
fn cell_shapes() -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    for nh in [1, 3] {
        for dqk in [5, 16, 20, 33] {
            for dv in [7, 64, 70] {
                v.push((nh, dqk, dv));
            }
        }
    }
    v
}

const CELL_TOKENS: [usize; 5] = [1, 7, 64, 65, 130];

#[test]
fn mlstm_chunkwise_matches_reference() {
    let c = ctx();
    let mut worst = Worst("mlstm chunkwise", 0.0, "x u*cond");
    let mut gates = Worst("mlstm gates", 0.0, "x cap");
    let shapes = cell_shapes();
    let mut i = 0;
    for t in CELL_TOKENS {
        for chunk in [1, 4, 16, 64] {
            // Two shapes per (T, chunk); over the 20 pairs every shape is used at least once.
            for _ in 0..2 {
                let (nh, dqk, dv) = shapes[(i * 7) % shapes.len()];
                i += 1;
                let x = cell_inputs(nh, dqk, dv, t, chunk);
                let chunks = t.div_ceil(chunk);
                let run = gpu_chunkwise(c, &x, chunk, &whole(0..nh), &whole(0..chunks));
                let what = format!("chunkwise NH {nh} dqk {dqk} dv {dv} T {t} chunk {chunk}");
                gates.add(check_gates(&what, &x, chunk, &run));
                worst.add(compare_cell(
                    &what,
                    &x,
                    Some(chunk),
                    &run.out,
                    &cpu_chunkwise(&x, chunk),
                ));
            }
        }
    }
}

#[test]
fn mlstm_chunkwise_schedules_agree() {
    let c = ctx();
    let mut worst = Worst("mlstm chunkwise schedules", 0.0, "x u*cond");
    // 5 chunks (the last one short), 3 heads, split into head bands and chunk tiles.
    for (dqk, dv, chunk) in [(20, 70, 4), (33, 7, 16)] {
        let t = 4 * chunk + 3;
        let x = cell_inputs(3, dqk, dv, t, 99);
        let one = gpu_chunkwise(c, &x, chunk, &whole(0..3), &whole(0..5));
        let split = gpu_chunkwise(c, &x, chunk, &[0..1, 1..3], &[0..2, 2..5]);
        let what = format!("schedules dqk {dqk} dv {dv} chunk {chunk}");
        // Bit for bit: a tile boundary only stores and reloads the f32 state.
        assert_eq!(
            one.out.h, split.out.h,
            "{what}: h differs between one dispatch and bands/tiles"
        );
        assert_eq!(
            one.boundaries, split.boundaries,
            "{what}: boundary states differ between one dispatch and bands/tiles"
        );
        worst.add(compare_cell(
            &what,
            &x,
            Some(chunk),
            &split.out,
            &cpu_chunkwise(&x, chunk),
        ));
    }
}

/// The matrix-unit chunkwise kernels (f16-weight mode on adapters with 16x16 f16 cooperative
/// matrices), `coop` = (phase 1, phase 2) on the matrix units, against the reference within the
/// f16 bound. Shapes: odd widths (unaligned rows), dqk over several 64-wide slices with a ragged
/// last one, dv tiles with ragged edges, aligned rows (the vector loads), short last chunks,
/// chunk 1, several heads.
fn coop_chunkwise_cases(name: &'static str, coop: (bool, bool)) {
    let c = ctx();
    if !c.ops(WeightDtype::F16).uses_coop_chunk() {
        eprintln!("[kernels] no matrix-unit chunkwise kernels on this adapter: skipped");
        return;
    }
    let mut worst = Worst(name, 0.0, "x u16*cond");
    // (NH, dqk, dv, T, chunk)
    let cases = [
        (3, 20, 70, 130, 64),
        (2, 33, 7, 67, 16),
        (1, 5, 64, 7, 4),
        (2, 64, 64, 64, 64),
        (1, 130, 100, 100, 64),
        (2, 96, 72, 100, 64),
        (2, 256, 160, 150, 64),
        (1, 16, 16, 33, 1),
        (3, 48, 80, 45, 7),
    ];
    for (i, &(nh, dqk, dv, t, chunk)) in cases.iter().enumerate() {
        let x = cell_inputs(nh, dqk, dv, t, 500 + i);
        let chunks = t.div_ceil(chunk);
        let run = gpu_chunkwise_with(c, &x, chunk, &whole(0..nh), &whole(0..chunks), coop);
        let what = format!("coop (state, out) {coop:?} NH {nh} dqk {dqk} dv {dv} T {t} chunk {chunk}");
        worst.add(compare_cell_f16(
            &what,
            &x,
            Some(chunk),
            &run.out,
            &cpu_chunkwise(&x, chunk),
        ));
    }
}

#[test]
fn mlstm_chunkwise_coop_state_matches_reference() {
    coop_chunkwise_cases("mlstm chunkwise coop phase 1", (true, false));
}

#[test]
fn mlstm_chunkwise_coop_out_matches_reference() {
    coop_chunkwise_cases("mlstm chunkwise coop phase 2", (false, true));
}

#[test]
fn mlstm_chunkwise_coop_both_match_reference() {
    coop_chunkwise_cases("mlstm chunkwise coop both phases", (true, true));
}

/// Diagnostic: which cooperative-matrix load layouts give A·B on this adapter. A and B are staged
/// in f16 workgroup memory both row-major and column-major (row stride 24 halves) and multiplied
/// in all four combinations; every result is stored row-major. The kernels use only row-major A
/// (`coopLoadT`) and column-major B (`coopLoad`), the combination gemm_coop.wgsl uses: that one
/// must be exact (the others are reported only).
#[test]
fn coop_layouts_probe() {
    let c = ctx();
    if !c.ops(WeightDtype::F16).uses_coop_chunk() {
        eprintln!("[kernels] no matrix-unit kernels on this adapter: skipped");
        return;
    }
    const SRC: &str = r#"
enable f16;
enable wgpu_cooperative_matrix;
@group(0) @binding(0) var<storage, read> ab: array<f32>;
@group(0) @binding(1) var<storage, read_write> outp: array<f32>;
var<workgroup> ar: array<f16, 384>;
var<workgroup> ac: array<f16, 384>;
var<workgroup> br: array<f16, 384>;
var<workgroup> bc: array<f16, 384>;
fn st(m: coop_mat16x16<f32, C>, o: u32, stride: u32) {
    coopStoreT(m, &outp[o], stride);
}
@compute @workgroup_size(32)
fn main(@builtin(local_invocation_index) lid: u32) {
    for (var e = lid; e < 256u; e += 32u) {
        let r = e / 16u;
        let k = e % 16u;
        ar[r * 24u + k] = f16(ab[e]);
        ac[k * 24u + r] = f16(ab[e]);
        br[r * 24u + k] = f16(ab[256u + e]);
        bc[k * 24u + r] = f16(ab[256u + e]);
    }
    workgroupBarrier();
    let a_row = coopLoadT<coop_mat16x16<f16, A>>(&ar[0], 24u);
    let a_col = coopLoad<coop_mat16x16<f16, A>>(&ac[0], 24u);
    let b_row = coopLoadT<coop_mat16x16<f16, B>>(&br[0], 24u);
    let b_col = coopLoad<coop_mat16x16<f16, B>>(&bc[0], 24u);
    let z = coop_mat16x16<f32, C>();
    st(coopMultiplyAdd(a_row, b_col, z), 0u, 16u);
    st(coopMultiplyAdd(a_row, b_row, z), 256u, 16u);
    st(coopMultiplyAdd(a_col, b_col, z), 512u, 16u);
    st(coopMultiplyAdd(a_col, b_row, z), 768u, 16u);
}
"#;
    let mut r = rng(&[16, 16, 777]);
    // Small integers: every product and sum is exact in f16 inputs and f32 accumulation.
    let ab: Vec<f32> = (0..512).map(|_| (r.uniform(-4.0, 4.0)).round()).collect();
    let mut want = vec![0.0f32; 256];
    for i in 0..16 {
        for j in 0..16 {
            want[i * 16 + j] = (0..16).map(|k| ab[i * 16 + k] * ab[256 + k * 16 + j]).sum();
        }
    }
    let inb = c.buf(&ab);
    let outb = c.buf(&vec![f32::NAN; 1024]);
    let dev = &c.gpu.device;
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("coop layout probe"),
        source: wgpu::ShaderSource::Wgsl(SRC.into()),
    });
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("coop layout probe"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: inb.raw().as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: outb.raw().as_entire_binding(),
            },
        ],
    });
    let mut enc = dev.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    c.gpu.queue.submit([enc.finish()]);
    c.gpu.wait().unwrap();
    let got = c.read(&outb, 0, 1024);
    let names = [
        "A row-major x B column-major",
        "A row-major x B row-major",
        "A column-major x B column-major",
        "A column-major x B row-major",
    ];
    let mut ok = [false; 4];
    for (k, name) in names.iter().enumerate() {
        let g = &got[k * 256..(k + 1) * 256];
        let bad = g.iter().zip(&want).filter(|(a, b)| a != b).count();
        ok[k] = bad == 0;
        eprintln!("[kernels] coop layouts: {name}: {bad} of 256 elements differ from A·B");
    }
    assert!(ok[0], "row-major A x column-major B must give A·B");
}

/// The matrix-unit chunkwise kernels split into head bands and chunk tiles give the same bits as
/// one dispatch per phase.
#[test]
fn mlstm_chunkwise_coop_schedules_agree() {
    let c = ctx();
    if !c.ops(WeightDtype::F16).uses_coop_chunk() {
        eprintln!("[kernels] no matrix-unit chunkwise kernels on this adapter: skipped");
        return;
    }
    let mut worst = Worst("mlstm chunkwise coop schedules", 0.0, "x u16*cond");
    for (dqk, dv, chunk) in [(20, 70, 4), (64, 130, 16), (33, 7, 64)] {
        let t = 4 * chunk + 3;
        let x = cell_inputs(3, dqk, dv, t, 98);
        let one = gpu_chunkwise_with(c, &x, chunk, &whole(0..3), &whole(0..5), (true, true));
        let split = gpu_chunkwise_with(c, &x, chunk, &[0..1, 1..3], &[0..2, 2..5], (true, true));
        let what = format!("coop schedules dqk {dqk} dv {dv} chunk {chunk}");
        assert_eq!(
            one.out.h, split.out.h,
            "{what}: h differs between one dispatch and bands/tiles"
        );
        assert_eq!(
            one.boundaries, split.boundaries,
            "{what}: boundary states differ between one dispatch and bands/tiles"
        );
        worst.add(compare_cell_f16(
            &what,
            &x,
            Some(chunk),
            &split.out,
            &cpu_chunkwise(&x, chunk),
        ));
    }
}

/// Without the matrix-unit pipelines (f32 weights, or an adapter without them) the coop launchers
/// return an error instead of recording anything.
#[test]
fn mlstm_chunkwise_coop_refused_without_pipelines() {
    let c = ctx();
    let x = cell_inputs(1, 8, 8, 4, 1);
    let buf = c.buf(&vec![0.0; 4096]);
    let b = Boundaries {
        c: s(&buf),
        n: s(&buf),
        m: s(&buf),
    };
    let mut pb = PlanBuilder::new(c.gpu.clone());
    let ops = &c.ops_f32;
    assert!(!ops.uses_coop_chunk());
    let inputs = ops::ChunkInputs {
        l: &x.l,
        proj: &s(&buf),
        gi: &s(&buf),
        gb: &s(&buf),
        b: &b,
        tokens: 4,
        chunk: 4,
    };
    let st = ops::mlstm_chunk_state_coop(&mut pb, ops, &inputs, 0..1, 0..1);
    assert!(st.is_err(), "phase 1 on the matrix units without its pipeline");
    let out = ops::mlstm_chunk_out_coop(&mut pb, ops, &inputs, 0..1, 0..1, &s(&buf));
    assert!(out.is_err(), "phase 2 on the matrix units without its pipeline");
    assert_eq!(pb.dispatch_count(), 0);
}

/// Gate soft cap 0 (the original xLSTM's mLSTM): the raw gate pre-activations (up to ±48 here)
/// reach the cell unchanged, in the chunkwise kernels and the step kernel.
#[test]
fn mlstm_without_gate_cap_matches_reference() {
    let c = ctx();
    let mut worst = Worst("mlstm no cap", 0.0, "x u*cond");
    let mut gates = Worst("mlstm gates no cap", 0.0, "x max gate");
    let shapes = cell_shapes();
    let mut largest = 0.0f32;
    for (i, &t) in CELL_TOKENS.iter().enumerate() {
        let (nh, dqk, dv) = shapes[(i * 5 + 3) % shapes.len()];
        for cap in [0.0, -1.0] {
            let x = cell_inputs_capped(nh, dqk, dv, t, 11 + i, cap);
            largest = largest.max(max_abs(&x.i_pre)).max(max_abs(&x.f_pre));
            for chunk in [4, 64] {
                let run = gpu_chunkwise(c, &x, chunk, &whole(0..nh), &whole(0..t.div_ceil(chunk)));
                let what = format!("no cap ({cap}) chunkwise NH {nh} dqk {dqk} dv {dv} T {t} chunk {chunk}");
                gates.add(check_gates(&what, &x, chunk, &run));
                worst.add(compare_cell(
                    &what,
                    &x,
                    Some(chunk),
                    &run.out,
                    &cpu_chunkwise(&x, chunk),
                ));
            }
            let got = gpu_recurrent(c, &x, (i % 2) as u32);
            let what = format!("no cap ({cap}) step NH {nh} dqk {dqk} dv {dv} T {t}");
            worst.add(compare_cell(&what, &x, None, &got, &cpu_recurrent(&x)));
        }
    }
    assert!(largest > 2.0 * GATE_CAP, "the uncapped gates should exceed any cap");
}

#[test]
fn mlstm_step_matches_recurrent_reference() {
    let c = ctx();
    let mut worst = Worst("mlstm step", 0.0, "x u*cond");
    for (i, (nh, dqk, dv)) in cell_shapes().into_iter().enumerate() {
        for t in [CELL_TOKENS[i % 5], CELL_TOKENS[(i + 2) % 5]] {
            let parity0 = (i % 2) as u32;
            let x = cell_inputs(nh, dqk, dv, t, 7);
            let got = gpu_recurrent(c, &x, parity0);
            let what = format!("step NH {nh} dqk {dqk} dv {dv} T {t} parity {parity0}");
            worst.add(compare_cell(&what, &x, None, &got, &cpu_recurrent(&x)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// head_norm_gate, swiglu, argmax
// ---------------------------------------------------------------------------------------------

#[test]
fn head_norm_gate_matches_reference() {
    let c = ctx();
    let mut worst = Worst("head_norm_gate", 0.0, "x scale");
    let tokens = 3;
    for nh in [1, 4] {
        for dv in [1, 7, 300, 512] {
            let l = CellLayout::fused(nh, 3, dv, GATE_CAP, CELL_EPS);
            let mut r = rng(&[nh, dv, 2]);
            let h = r.uniform_vec(tokens * nh * dv, -2.0, 3.0);
            let w = r.uniform_vec(nh * dv, 0.5, 1.5);
            let proj = r.uniform_vec(tokens * l.proj_stride, -5.0, 5.0);
            let eps = 1e-5;
            let (hb, wb, pb_, yb) = (
                c.buf(&h),
                c.buf(&w),
                c.buf(&proj),
                c.buf(&vec![SENTINEL; tokens * nh * dv + 2]),
            );
            c.run(|pb| {
                ops::head_norm_gate(
                    pb,
                    &c.ops_f32,
                    &ops::HeadNormGate {
                        l: &l,
                        h: &s(&hb),
                        norm: ops::Norm { weight: &s(&wb), eps },
                        proj: &s(&pb_),
                        tokens,
                        y: &s(&yb),
                    },
                )
            });
            let got = c.read(&yb, 0, tokens * nh * dv + 2);
            assert_eq!(
                &got[tokens * nh * dv..],
                &[SENTINEL; 2],
                "head_norm_gate wrote past the output"
            );
            let normed = cpu::head_layer_norm(&h, &w, nh, eps);
            let want: Vec<f32> = normed
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let (t, col) = (i / (nh * dv), i % (nh * dv));
                    v * cpu::sigmoid(proj[t * l.proj_stride + l.o_col + col])
                })
                .collect();
            worst.add(close(
                &format!("head_norm_gate NH {nh} dv {dv}"),
                &got[..tokens * nh * dv],
                &want,
                1e-5,
            ));
        }
    }
}

#[test]
fn swiglu_matches_reference() {
    let c = ctx();
    let mut worst = Worst("swiglu", 0.0, "x scale");
    let tokens = 3;
    for ffn in [1, 7, 300] {
        let mut r = rng(&[ffn, 3]);
        let u = r.uniform_vec(tokens * 2 * ffn, -6.0, 6.0);
        let (ub, yb) = (c.buf(&u), c.buf(&vec![SENTINEL; tokens * ffn + 2]));
        c.run(|pb| ops::swiglu(pb, &c.ops_f32, &s(&ub), tokens, ffn, &s(&yb)));
        let got = c.read(&yb, 0, tokens * ffn + 2);
        assert_eq!(&got[tokens * ffn..], &[SENTINEL; 2], "swiglu wrote past the output");
        let (gate, up): (Vec<f32>, Vec<f32>) = (
            u.chunks_exact(2 * ffn).flat_map(|row| row[..ffn].to_vec()).collect(),
            u.chunks_exact(2 * ffn).flat_map(|row| row[ffn..].to_vec()).collect(),
        );
        worst.add(close(
            &format!("swiglu ffn {ffn}"),
            &got[..tokens * ffn],
            &cpu::swiglu(&gate, &up),
            1e-5,
        ));
    }
}

#[test]
fn argmax_first_index_wins() {
    let c = ctx();
    for vocab in [1, 7, 1000, 50304] {
        let mut r = rng(&[vocab, 4]);
        let mut rows: Vec<Vec<f32>> = (0..5).map(|_| r.uniform_vec(vocab, -10.0, 10.0)).collect();
        if vocab > 1 {
            // Ties: in different lanes (first at the higher lane), and in the same lane.
            let a = vocab / 3 + 1;
            let b = (a + 257).min(vocab - 1);
            rows[1][a] = 50.0;
            rows[1][b] = 50.0;
            rows[1][vocab - 1] = 50.0;
            let lane_a = 3usize.min(vocab - 1);
            rows[2][lane_a] = 60.0;
            rows[2][(lane_a + 256).min(vocab - 1)] = 60.0;
            rows[2][vocab - 1] = 60.0;
            // The maximum at the very end, and a NaN: the row has no meaningful choice.
            rows[3][vocab - 1] = 70.0;
            rows[3][0] = f32::NAN;
        } else {
            // An infinity is non-finite too.
            rows[3][0] = f32::INFINITY;
        }
        // All equal: index 0.
        rows[4] = vec![-1.0; vocab];
        let flat: Vec<f32> = rows.concat();
        let lb = c.buf(&flat);
        let (first, second) = (2, 11);
        let ob = c.buf_u32(&[u32::MAX; 20]);
        c.run(|pb| {
            ops::argmax(
                pb,
                &c.ops_f32,
                &s(&lb),
                rows.len(),
                vocab,
                &ops::TokenOut {
                    buf: &s(&ob),
                    first,
                    second: Some(second),
                },
            )
        });
        let got = c.read_u32(&ob, 0, 20);
        let want: Vec<u32> = rows.iter().map(|row| cpu::argmax_or_non_finite(row)).collect();
        assert_eq!(want[3], ops::NON_FINITE_ID, "the reference marks the non-finite row");
        assert_eq!(&got[first..first + 5], &want[..], "argmax vocab {vocab} (first)");
        assert_eq!(&got[second..second + 5], &want[..], "argmax vocab {vocab} (second)");
        assert!(
            got[..first]
                .iter()
                .chain(&got[first + 5..second])
                .chain(&got[second + 5..])
                .all(|&v| v == u32::MAX),
            "argmax wrote elsewhere: {got:?}"
        );
        // Without a second destination only `first` is written.
        let ob2 = c.buf_u32(&[u32::MAX; 8]);
        c.run(|pb| {
            ops::argmax(
                pb,
                &c.ops_f32,
                &s(&lb),
                rows.len(),
                vocab,
                &ops::TokenOut {
                    buf: &s(&ob2),
                    first: 0,
                    second: None,
                },
            )
        });
        let got = c.read_u32(&ob2, 0, 8);
        assert_eq!(&got[..5], &want[..], "argmax vocab {vocab} (no second)");
        assert_eq!(&got[5..], &[u32::MAX; 3]);
    }
}

// ---------------------------------------------------------------------------------------------
// Portable paths with features masked
// ---------------------------------------------------------------------------------------------

#[test]
fn f16_weights_without_shader_f16_or_subgroups() {
    let gpu = Arc::new(
        Gpu::new(&GpuOptions {
            disable: vec!["f16".into(), "subgroup".into()],
            ..Default::default()
        })
        .expect("a GPU adapter"),
    );
    assert!(!gpu.caps.f16, "f16 still enabled: {}", gpu.caps);
    assert!(!gpu.caps.subgroup, "subgroups still enabled: {}", gpu.caps);
    let c = Ctx::new(gpu);
    let mut worst = Worst("masked f16 gemv/gemm", 0.0, "x scale");
    for (tokens, k, n) in [(1, 37, 70), (1, 300, 9), (65, 37, 9)] {
        for epi in [
            Epilogue::default(),
            Epilogue {
                accumulate: true,
                soft_cap: 2.5,
            },
        ] {
            worst.add(check_matmul(
                &c,
                &MatCase {
                    tokens,
                    k,
                    n,
                    dtype: WeightDtype::F16,
                    epi,
                    part_rows: Some(8),
                },
            ));
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

// ---------------------------------------------------------------------------------------------
// Decode GEMVs with fused input transforms
// ---------------------------------------------------------------------------------------------

/// gemv_rms_norm = rms_norm then matmul, and gemv_swiglu = swiglu then matmul, for awkward k
/// (not a multiple of 4 or 8), split weights, an unaligned input offset and both epilogues.
#[test]
fn fused_gemv_transforms_match_reference() {
    let c = ctx();
    let mut worst = Worst("fused gemv", 0.0, "x scale");
    for dtype in [WeightDtype::F32, WeightDtype::F16] {
        for (k, n, x_off) in [(5usize, 9usize, 0usize), (37, 70, 3), (300, 21, 4), (1000, 13, 1)] {
            for epi in epilogues() {
                let mut r = rng(&[k, n, x_off, dtype as usize, epi.accumulate as usize, 77]);
                let w = r.uniform_vec(n * k, -1.0, 1.0);
                let m = c.matrix(&w, n, k, dtype, Some(8));
                let ws = weights_as_stored(&w, dtype);
                let y0 = r.uniform_vec(n, -2.0, 2.0);
                let finish = |prod: Vec<f32>| -> Vec<f32> {
                    prod.iter()
                        .zip(&y0)
                        .map(|(&p, &y)| cpu::soft_cap(if epi.accumulate { p + y } else { p }, epi.soft_cap))
                        .collect()
                };
                // RMSNorm transform.
                let x = r.uniform_vec(k, -3.0, 3.0);
                let g = r.uniform_vec(k, 0.5, 1.5);
                let mut xin = vec![f32::NAN; x_off];
                xin.extend(&x);
                let (xb, gb, yb) = (c.buf(&xin), c.buf(&g), c.buf(&y0));
                let xr = Rows {
                    buf: s(&xb),
                    offset: x_off,
                    stride: k,
                };
                c.run(|pb| {
                    ops::gemv_rms_norm(
                        pb,
                        c.ops(dtype),
                        &xr,
                        ops::Norm {
                            weight: &s(&gb),
                            eps: 1e-6,
                        },
                        &m,
                        &Rows::new(&s(&yb), n),
                        epi,
                    )
                });
                let want = finish(cpu::matmul_t(&cpu::rms_norm(&x, &g, 1e-6), &ws, 1, k, n));
                let scale = max_abs(&want) + 1.0;
                let what = format!("gemv+norm k {k} n {n} off {x_off} {dtype:?} {epi:?}");
                worst.add(check(&what, &c.read(&yb, 0, n), &want, 2e-5 * scale, 2e-5) / scale);
                // SwiGLU transform.
                let u = r.uniform_vec(2 * k, -3.0, 3.0);
                let mut uin = vec![f32::NAN; x_off];
                uin.extend(&u);
                let (ub, yb) = (c.buf(&uin), c.buf(&y0));
                let ur = Rows {
                    buf: s(&ub),
                    offset: x_off,
                    stride: 2 * k,
                };
                c.run(|pb| ops::gemv_swiglu(pb, c.ops(dtype), &ur, &m, &Rows::new(&s(&yb), n), epi));
                let want = finish(cpu::matmul_t(&cpu::swiglu(&u[..k], &u[k..]), &ws, 1, k, n));
                let scale = max_abs(&want) + 1.0;
                let what = format!("gemv+swiglu k {k} n {n} off {x_off} {dtype:?} {epi:?}");
                worst.add(check(&what, &c.read(&yb, 0, n), &want, 2e-5 * scale, 2e-5) / scale);
            }
        }
    }
}

/// The decode GEMV with xLSTM Large's head norm and output gate as its input transform equals
/// head_layer_norm * sigmoid(o) followed by the matmul: heads of 4 to 512 inputs, runs of 1 to 16
/// inputs per invocation, unaligned input and gate offsets, a large mean against a small spread
/// (the statistics are shifted per head), row counts that leave a partial workgroup, both weight
/// formats, every epilogue; shapes it cannot take (or whose input is wider than it stages) are
/// refused.
#[test]
fn gemv_head_norm_gate_matches_reference() {
    let c = ctx();
    let mut worst = Worst("gemv+head_norm", 0.0, "x scale");
    for dtype in [WeightDtype::F32, WeightDtype::F16] {
        for (nh, dv, n, h_off, g_off, mean) in [
            (1usize, 4usize, 9usize, 0usize, 0usize, 0.0f32),
            (3, 32, 70, 3, 1, 0.0),
            (8, 512, 37, 4, 8, 0.0),
            (4, 128, 21, 1, 5, 40.0),
            (2, 256, 300, 0, 3, -7.0),
        ] {
            let k = nh * dv;
            assert!(
                ops::gemv_head_norm_fits(c.ops(dtype), nh, dv, k.next_multiple_of(8)),
                "nh {nh} dv {dv}"
            );
            for epi in epilogues() {
                let mut r = rng(&[nh, dv, n, dtype as usize, epi.accumulate as usize, 91]);
                let w = r.uniform_vec(n * k, -1.0, 1.0);
                let m = c.matrix(&w, n, k, dtype, Some(8));
                let ws = weights_as_stored(&w, dtype);
                let y0 = r.uniform_vec(n, -2.0, 2.0);
                let h: Vec<f32> = r.uniform_vec(k, -2.0, 3.0).iter().map(|v| v + mean).collect();
                let norm = r.uniform_vec(k, 0.5, 1.5);
                let o = r.uniform_vec(k, -5.0, 5.0);
                let mut hin = vec![f32::NAN; h_off];
                hin.extend(&h);
                let mut gin = vec![f32::NAN; g_off];
                gin.extend(&o);
                let (hb, nb, gb, yb) = (c.buf(&hin), c.buf(&norm), c.buf(&gin), c.buf(&y0));
                let eps = 1e-6;
                let hr = Rows {
                    buf: s(&hb),
                    offset: h_off,
                    stride: k,
                };
                let gr = Rows {
                    buf: s(&gb),
                    offset: g_off,
                    stride: k,
                };
                c.run(|pb| {
                    ops::gemv_head_norm_gate(
                        pb,
                        c.ops(dtype),
                        &ops::HeadNormInput {
                            h: &hr,
                            head_dim: dv,
                            norm: ops::Norm { weight: &s(&nb), eps },
                            gate: &gr,
                        },
                        &m,
                        &Rows::new(&s(&yb), n),
                        epi,
                    )
                });
                let normed = cpu::head_layer_norm(&h, &norm, nh, eps);
                let xin: Vec<f32> = normed.iter().zip(&o).map(|(&v, &g)| v * cpu::sigmoid(g)).collect();
                let want: Vec<f32> = cpu::matmul_t(&xin, &ws, 1, k, n)
                    .iter()
                    .zip(&y0)
                    .map(|(&p, &y)| cpu::soft_cap(if epi.accumulate { p + y } else { p }, epi.soft_cap))
                    .collect();
                let scale = max_abs(&want) + 1.0;
                let what =
                    format!("gemv+head_norm nh {nh} dv {dv} n {n} offs {h_off}/{g_off} mean {mean} {dtype:?} {epi:?}");
                worst.add(check(&what, &c.read(&yb, 0, n), &want, 5e-5 * scale, 5e-5) / scale);
            }
        }
    }
    // Runs of inputs that would straddle heads, heads not a multiple of 4 wide, too many heads.
    for (nh, dv) in [(3usize, 256usize), (2, 6), (300, 4), (5, 1000), (2, 4096)] {
        let kp = (nh * dv).next_multiple_of(8);
        assert!(
            !ops::gemv_head_norm_fits(&c.ops_f32, nh, dv, kp),
            "nh {nh} dv {dv} should not fit"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// sLSTM cell: sequence kernel and per-token kernel
// ---------------------------------------------------------------------------------------------

/// The sLSTM recurrence of reference/xlstm.md §3.4, in f64, token by token, with the package's
/// first-step rule (m' = ĩ at a step where the layer's n is all zero).
fn slstm_reference(
    wx: &[f32],
    bias: &[f32],
    r: &[f32],
    state: &mut [f32],
    tokens: usize,
    nh: usize,
    dh: usize,
) -> Vec<f32> {
    let e = nh * dh;
    let mut out = Vec::with_capacity(tokens * e);
    let ls = |v: f64| v.min(0.0) - (-v.abs()).exp().ln_1p();
    for t in 0..tokens {
        let first = state[2 * e..3 * e].iter().all(|&v| v == 0.0);
        let y_prev: Vec<f64> = state[..e].iter().map(|&v| v as f64).collect();
        let mut raw = vec![0.0f64; 4 * e];
        for h in 0..nh {
            for g in 0..4 {
                for j in 0..dh {
                    let row = (h * 4 * dh + g * dh + j) * dh;
                    let ry: f64 = (0..dh).map(|d| r[row + d] as f64 * y_prev[h * dh + d]).sum();
                    let u = h * dh + j;
                    raw[g * e + u] = wx[(t * 4 + g) * e + u] as f64 + bias[g * e + u] as f64 + ry;
                }
            }
        }
        for u in 0..e {
            let (i_raw, f_raw, z_raw, o_raw) = (raw[u], raw[e + u], raw[2 * e + u], raw[3 * e + u]);
            let (c, n, m) = (state[e + u] as f64, state[2 * e + u] as f64, state[3 * e + u] as f64);
            let lfm = m + ls(f_raw);
            let m_new = if first { i_raw } else { i_raw.max(lfm) };
            let ig = (i_raw - m_new).exp().min(1.0);
            let fg = (lfm - m_new).exp().min(1.0);
            let c2 = fg * c + ig * z_raw.tanh();
            let n2 = fg * n + ig;
            let y = c2 / n2 / (1.0 + (-o_raw).exp());
            state[u] = y as f32;
            state[e + u] = c2 as f32;
            state[2 * e + u] = n2 as f32;
            state[3 * e + u] = m_new as f32;
        }
        out.extend_from_slice(&state[..e]);
    }
    out
}

/// `ops::slstm::slstm` in every mode against the reference: head widths 1 to 1024 (the sequence
/// kernel up to its limit of 256), 1 to 5 heads, 1 to 64 tokens, from a fresh state, from a
/// restored non-fresh state, and as a continuation (two calls, odd and even token counts, also
/// switching modes between the calls, compared with one reference run). h is checked at every
/// step, the final state in full, and sentinels after h, state and scratch catch stray writes.
#[test]
fn slstm_modes_match_reference() {
    use ops::slstm::{self, SlstmMode};
    let c = ctx();
    let mut worst = Worst("slstm (all modes)", 0.0, "rel. to max|ref|");
    let verbose = std::env::var_os("KERNELS_VERBOSE").is_some();
    // (head width, heads, tokens)
    let cases = [
        (1usize, 1usize, 1usize),
        (1, 3, 2),
        (1, 5, 64),
        (3, 2, 7),
        (3, 4, 64),
        (3, 1, 1),
        (32, 4, 64),
        (32, 5, 7),
        (32, 1, 2),
        (100, 2, 64),
        (100, 3, 7),
        (100, 1, 1),
        (256, 4, 7),
        (256, 1, 64),
        (256, 2, 2),
        (300, 2, 7),
        (300, 1, 64),
        (1024, 1, 7),
        (1024, 2, 2),
        // Long sequences: the sequence kernel runs as several dispatches (lavapipe ends every loop
        // of an invocation after 65535 iterations in total; see ops::slstm).
        (256, 2, 300),
        (32, 1, 3000),
    ];
    for (dh, nh, tokens) in cases {
        let e = nh * dh;
        let mut rg = rng(&[nh, dh, tokens, 92]);
        let wx = rg.uniform_vec(tokens * 4 * e, -2.0, 2.0);
        let bias = rg.uniform_vec(4 * e, -1.0, 1.0);
        let scale = 1.0 / (dh as f32).sqrt();
        let r = rg.uniform_vec(nh * 4 * dh * dh, -scale, scale);
        let mut restored = rg.uniform_vec(4 * e, -1.0, 1.0);
        for u in 0..e {
            restored[2 * e + u] = restored[2 * e + u].abs() + 0.5; // n > 0
            restored[3 * e + u] *= 3.0;
        }
        let (bb, rb) = (c.buf(&bias), c.buf(&r));
        let modes: &[SlstmMode] = if dh <= slstm::MAX_SEQUENCE_HEAD_DIM {
            &[SlstmMode::Sequence, SlstmMode::PerToken, SlstmMode::Auto]
        } else {
            &[SlstmMode::PerToken, SlstmMode::Auto]
        };
        // (initial state, token split, mode of each call)
        let mut runs: Vec<(bool, usize, SlstmMode, SlstmMode)> = Vec::new();
        for &m in modes {
            runs.push((true, tokens, m, m));
            runs.push((false, tokens, m, m));
            runs.push((true, tokens / 2, m, m));
        }
        if dh <= slstm::MAX_SEQUENCE_HEAD_DIM {
            runs.push((false, tokens.div_ceil(2), SlstmMode::Sequence, SlstmMode::PerToken));
            runs.push((true, tokens / 2, SlstmMode::PerToken, SlstmMode::Sequence));
        }
        let fresh_state = vec![0.0f32; 4 * e];
        let mut want = std::collections::HashMap::new();
        for (fresh, split, m1, m2) in runs {
            let init = if fresh { &fresh_state } else { &restored };
            let (want_h, want_s) = want.entry(fresh).or_insert_with(|| {
                let mut st = init.clone();
                let h = slstm_reference(&wx, &bias, &r, &mut st, tokens, nh, dh);
                (h, st)
            });
            let (sb, scb) = (c.buf_tail(init), c.buf_tail(&vec![SENTINEL; 4 * e]));
            // Each call gets its own wx and h buffers (row offsets need not meet the storage
            // offset alignment).
            let parts = [(0, split, m1), (split, tokens - split, m2)];
            let wbs: Vec<GpuBuffer> = parts
                .iter()
                .map(|&(f, n, _)| c.buf(&wx[f * 4 * e..(f + n) * 4 * e]))
                .collect();
            let hbs: Vec<GpuBuffer> = parts
                .iter()
                .map(|&(_, n, _)| c.buf_tail(&vec![SENTINEL; n * e]))
                .collect();
            c.run(|pb| {
                for (i, &(_, n, mode)) in parts.iter().enumerate() {
                    slstm::slstm(
                        pb,
                        c.ops(WeightDtype::F32),
                        &slstm::Slstm {
                            wx: &s(&wbs[i]),
                            bias: &s(&bb),
                            r: &s(&rb),
                            state: &s(&sb),
                            scratch: &s(&scb),
                            h: &s(&hbs[i]),
                            tokens: n,
                            num_heads: nh,
                            head_dim: dh,
                            mode,
                        },
                    )?;
                }
                Ok(())
            });
            let what = format!("slstm dh {dh} nh {nh} T {tokens} fresh {fresh} split {split} {m1:?}/{m2:?}");
            let mut got_h = Vec::with_capacity(tokens * e);
            for (i, &(_, n, _)) in parts.iter().enumerate() {
                if n > 0 {
                    got_h.extend(c.read(&hbs[i], 0, n * e));
                }
                c.assert_tail(&format!("{what} h part {i}"), &hbs[i], n * e);
            }
            let scale = max_abs(want_h);
            let err_h = check(&format!("{what} h"), &got_h, want_h, 1e-5 * scale, 2e-5);
            let scale_s = max_abs(want_s);
            let err_s = check(
                &format!("{what} state"),
                &c.read(&sb, 0, 4 * e),
                want_s,
                1e-5 * scale_s,
                2e-5,
            );
            if verbose {
                eprintln!("{what}: h {err_h:.2e} state {err_s:.2e}");
            }
            worst.add(err_h / scale);
            worst.add(err_s / scale_s);
            c.assert_tail(&format!("{what} state"), &sb, 4 * e);
            c.assert_tail(&format!("{what} scratch"), &scb, 4 * e);
        }
    }
}

/// Shapes and buffers the sLSTM launcher must refuse with an input error (no panic, no dispatch).
#[test]
fn slstm_rejects_bad_shapes() {
    use ops::slstm::{self, SlstmMode};
    let c = ctx();
    let (nh, dh, tokens) = (2usize, 300usize, 3usize);
    let e = nh * dh;
    let (wb, bb, rb, sb, scb, hb) = (
        c.buf(&vec![0.0; tokens * 4 * e]),
        c.buf(&vec![0.0; 4 * e]),
        c.buf(&vec![0.0; nh * 4 * dh * dh]),
        c.buf(&vec![0.0; 8 * e]),
        c.buf(&vec![0.0; 4 * e]),
        c.buf(&vec![0.0; tokens * e]),
    );
    let state = Slice::range(&sb, 0, (16 * e) as u64);
    let call = |state: &Slice, scratch: &Slice, h: &Slice, tokens: usize, nh: usize, dh: usize, mode: SlstmMode| {
        let mut pb = PlanBuilder::new(c.gpu.clone());
        let r = slstm::slstm(
            &mut pb,
            c.ops(WeightDtype::F32),
            &slstm::Slstm {
                wx: &s(&wb),
                bias: &s(&bb),
                r: &s(&rb),
                state,
                scratch,
                h,
                tokens,
                num_heads: nh,
                head_dim: dh,
                mode,
            },
        );
        (r, pb.dispatch_count())
    };
    let input_err = |what: &str, (r, n): (Result<()>, usize)| {
        assert!(matches!(r, Err(xlstm_wgpu::Error::Input(_))), "{what}: {r:?}");
        assert_eq!(n, 0, "{what}: dispatches recorded");
    };
    let ok = call(&state, &s(&scb), &s(&hb), tokens, nh, dh, SlstmMode::PerToken);
    assert!(ok.0.is_ok(), "valid call: {:?}", ok.0);
    input_err(
        "sequence, head width 300",
        call(&state, &s(&scb), &s(&hb), tokens, nh, dh, SlstmMode::Sequence),
    );
    input_err(
        "zero heads",
        call(&state, &s(&scb), &s(&hb), tokens, 0, dh, SlstmMode::Auto),
    );
    input_err(
        "zero width",
        call(&state, &s(&scb), &s(&hb), tokens, nh, 0, SlstmMode::Auto),
    );
    input_err(
        "h too small",
        call(&state, &s(&scb), &s(&hb), tokens + 1, nh, dh, SlstmMode::Auto),
    );
    input_err(
        "scratch too small",
        call(
            &state,
            &Slice::range(&scb, 0, 16),
            &s(&hb),
            tokens,
            nh,
            dh,
            SlstmMode::PerToken,
        ),
    );
    let overlap = Slice::range(&sb, 16 * (e as u64) - 16, (16 * e) as u64);
    input_err(
        "overlapping scratch",
        call(&state, &overlap, &s(&hb), 2, nh, dh, SlstmMode::PerToken),
    );
    let other_half = Slice::range(&sb, (16 * e) as u64, (16 * e) as u64);
    input_err(
        "odd tokens, scratch in the state buffer",
        call(&state, &other_half, &s(&hb), tokens, nh, dh, SlstmMode::PerToken),
    );
    let even = call(&state, &other_half, &s(&hb), 2, nh, dh, SlstmMode::PerToken);
    assert!(even.0.is_ok(), "even tokens, scratch in the state buffer: {:?}", even.0);
}

// ---------------------------------------------------------------------------------------------
// Sampling on the GPU
// ---------------------------------------------------------------------------------------------

/// `draws` samples from one row of logits, each a separate dispatch advancing the draw counter.
fn gpu_samples(logits: &[f32], cfg: &xlstm_wgpu::SamplerConfig, draws: usize) -> Vec<u32> {
    let c = ctx();
    let lb = c.buf(logits);
    let out = c.buf_u32(&vec![u32::MAX; draws]);
    let counter = c.buf_u32(&[0]);
    c.run(|pb| {
        for i in 0..draws {
            ops::sample(
                pb,
                c.ops(WeightDtype::F32),
                &s(&lb),
                0..logits.len(),
                cfg,
                &s(&counter),
                &ops::TokenOut {
                    buf: &s(&out),
                    first: i,
                    second: None,
                },
            )?;
        }
        Ok(())
    });
    c.read_u32(&out, 0, draws)
}

#[test]
fn gpu_sampling_marks_rows_with_nan_or_inf_as_non_finite() {
    let cfg = xlstm_wgpu::SamplerConfig {
        temperature: 0.8,
        top_k: 5,
        top_p: 0.9,
        seed: 1,
    };
    let mut r = rng(&[1000, 6]);
    let finite = r.uniform_vec(1000, -5.0, 5.0);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for at in [0, 517, 999] {
            let mut logits = finite.clone();
            logits[at] = bad;
            assert_eq!(
                gpu_samples(&logits, &cfg, 2),
                vec![ops::NON_FINITE_ID; 2],
                "{bad} at {at}"
            );
        }
    }
    assert!(gpu_samples(&finite, &cfg, 4).iter().all(|&t| t < 1000));
}

#[test]
fn gpu_sampling_respects_temperature_top_k_and_top_p() {
    let cfg = |temperature: f32, top_k: usize, top_p: f32, seed: u64| xlstm_wgpu::SamplerConfig {
        temperature,
        top_k,
        top_p,
        seed,
    };
    let mut r = rng(&[1000, 5]);
    let logits = r.uniform_vec(1000, -5.0, 5.0);
    // top-k = 1 is greedy.
    let best = cpu::argmax(&logits) as u32;
    assert!(gpu_samples(&logits, &cfg(1.0, 1, 1.0, 3), 20)
        .iter()
        .all(|&t| t == best));
    // top-k = 5 never leaves the five largest.
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let top5: Vec<u32> = order[..5].iter().map(|&i| i as u32).collect();
    let got = gpu_samples(&logits, &cfg(2.0, 5, 1.0, 4), 300);
    assert!(got.iter().all(|t| top5.contains(t)), "outside the top 5: {got:?}");
    assert!(
        top5.iter().filter(|t| got.contains(t)).count() >= 3,
        "top-5 draws not spread: {got:?}"
    );
    // A nucleus of one: p(0) = 0.525 already reaches top-p 0.5.
    let mut two = vec![-30.0f32; 50];
    two[7] = 10.0;
    two[3] = 9.9;
    assert!(gpu_samples(&two, &cfg(1.0, 0, 0.5, 5), 100).iter().all(|&t| t == 7));
    // Frequencies follow the softmax; the vocabulary limit excludes the padded tail.
    let probs = [0.5f32, 0.3, 0.2];
    let mut padded: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
    padded.extend([50.0, 50.0]); // beyond `count`: must never be drawn
    let c = ctx();
    let lb = c.buf(&padded);
    let draws = 3000;
    let out = c.buf_u32(&vec![u32::MAX; draws]);
    let counter = c.buf_u32(&[0]);
    let sc = cfg(1.0, 0, 1.0, 6);
    c.run(|pb| {
        for i in 0..draws {
            ops::sample(
                pb,
                c.ops(WeightDtype::F32),
                &s(&lb),
                0..3,
                &sc,
                &s(&counter),
                &ops::TokenOut {
                    buf: &s(&out),
                    first: i,
                    second: None,
                },
            )?;
        }
        Ok(())
    });
    let got = c.read_u32(&out, 0, draws);
    for (t, p) in probs.iter().enumerate() {
        let f = got.iter().filter(|&&g| g as usize == t).count() as f32 / draws as f32;
        assert!((f - p).abs() < 0.035, "token {t}: frequency {f} vs probability {p}");
    }
    assert!(got.iter().all(|&g| g < 3));
    // The same seed reproduces the same draws; another seed does not.
    let a = gpu_samples(&logits, &cfg(1.5, 0, 0.9, 11), 50);
    assert_eq!(a, gpu_samples(&logits, &cfg(1.5, 0, 0.9, 11), 50));
    assert_ne!(a, gpu_samples(&logits, &cfg(1.5, 0, 0.9, 12), 50));
}
