//! The chunkwise mLSTM (`ops::mlstm_chunk`): gates, phase 1 (chunk states) and phase 2 (outputs),
//! portable and on the matrix units, whole and split into head bands and chunk tiles.

use super::mlstm_cell::*;
use super::mlstm_step::gpu_recurrent;
use super::*;

/// What the chunkwise kernels produced: h and the final state, every boundary state (C, n, m of
/// all boundaries concatenated, for comparing schedules bit for bit) and the gate buffers.
pub(crate) struct ChunkRun {
    pub(crate) out: CellOut,
    pub(crate) boundaries: Vec<f32>,
    pub(crate) gi: Vec<f32>,
    pub(crate) gb: Vec<f32>,
}

/// One band or tile covering `r` (every head, or every chunk).
pub(crate) fn whole(r: Range<usize>) -> [Range<usize>; 1] {
    [r]
}

/// mlstm_gates + mlstm_chunk_state + mlstm_chunk_out, with the state and output passes split into
/// the given head bands and chunk tiles.
pub(crate) fn gpu_chunkwise(
    c: &Ctx,
    x: &CellInputs,
    chunk: usize,
    bands: &[Range<usize>],
    tiles: &[Range<usize>],
) -> ChunkRun {
    gpu_chunkwise_with(c, x, chunk, bands, tiles, (false, false))
}

/// [`gpu_chunkwise`] with phase 1 and/or phase 2 on the matrix units (`coop` = (state, out);
/// the f16-weight pipelines, where the adapter has them).
pub(crate) fn gpu_chunkwise_with(
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
pub(crate) fn check_gates(what: &str, x: &CellInputs, chunk: usize, run: &ChunkRun) -> f32 {
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

#[test]
pub(crate) fn mlstm_chunkwise_matches_reference() {
    for c in modes() {
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
}

/// Chunks beyond one 64 x 64 block (phase 2 in 64-row blocks walking the causal key blocks,
/// phase 1 in 32-position slices), every size of `cases::MLSTM_CHUNK_SIZES`, against the
/// reference: the gates, h and the final state.
#[test]
pub(crate) fn mlstm_chunkwise_long_chunks_match_reference() {
    for c in modes() {
        let mut worst = Worst("mlstm chunkwise long chunks", 0.0, "x u*cond");
        let mut gates = Worst("mlstm gates long chunks", 0.0, "x cap");
        // (NH, dqk, dv): widths that are not multiples of 4 or 64, a dv over two tiles.
        let shapes = [(2, 33, 70), (1, 20, 7), (3, 16, 64), (1, 5, 130)];
        for (i, &(chunk, t)) in cases::MLSTM_CHUNK_SIZES.iter().enumerate() {
            let (nh, dqk, dv) = shapes[i % shapes.len()];
            let x = cell_inputs(nh, dqk, dv, t, 700 + i);
            let chunks = t.div_ceil(chunk);
            let run = gpu_chunkwise(c, &x, chunk, &whole(0..nh), &whole(0..chunks));
            let what = format!("long chunks NH {nh} dqk {dqk} dv {dv} T {t} chunk {chunk}");
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

/// The chunk sizes the kernels refuse: 0 and past `ops::MAX_CHUNK`, with an error naming the
/// limit and nothing recorded.
#[test]
pub(crate) fn mlstm_chunkwise_refuses_chunk_sizes_out_of_range() {
    for c in modes() {
        let x = cell_inputs(1, 8, 8, 600, 2);
        let buf = c.buf(&vec![0.0; 1 << 16]);
        let b = Boundaries {
            c: s(&buf),
            n: s(&buf),
            m: s(&buf),
        };
        let mut pb = PlanBuilder::new(c.gpu.clone());
        let ops = &c.ops_f32;
        for chunk in [0, ops::MAX_CHUNK + 1, 512] {
            let inputs = ops::ChunkInputs {
                l: &x.l,
                proj: &s(&buf),
                gi: &s(&buf),
                gb: &s(&buf),
                b: &b,
                tokens: 600,
                chunk,
            };
            let errs = [
                ops::mlstm_chunk_state(&mut pb, ops, &inputs, 0..1, 0..1).err(),
                ops::mlstm_chunk_out(&mut pb, ops, &inputs, 0..1, 0..1, &s(&buf)).err(),
            ];
            for e in errs {
                let e = e.unwrap_or_else(|| panic!("chunk {chunk} accepted")).to_string();
                assert!(
                    e.contains(&format!("between 1 and {}", ops::MAX_CHUNK)),
                    "chunk {chunk}: {e}"
                );
            }
        }
        assert_eq!(pb.dispatch_count(), 0);
    }
}

#[test]
pub(crate) fn mlstm_chunkwise_schedules_agree() {
    for c in modes() {
        let mut worst = Worst("mlstm chunkwise schedules", 0.0, "x u*cond");
        // 5 chunks (the last one short), 3 heads, split into head bands and chunk tiles.
        for (dqk, dv, chunk) in [(20, 70, 4), (33, 7, 16), (20, 70, 128), (16, 9, 100)] {
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
}

/// The matrix-unit chunkwise kernels (f16-weight mode on adapters with 16x16 f16 cooperative
/// matrices), `coop` = (phase 1, phase 2) on the matrix units, against the reference within the
/// f16 bound. Shapes: odd widths (unaligned rows), dqk over several 64-wide slices with a ragged
/// last one, dv tiles with ragged edges, aligned rows (the vector loads), short last chunks,
/// chunk 1, several heads, and every chunk size of `cases::MLSTM_CHUNK_SIZES` past 64.
pub(crate) fn coop_chunkwise_cases(name: &'static str, coop: (bool, bool)) {
    for c in modes() {
        if !c.ops(WeightDtype::F16).uses_coop_chunk() {
            eprintln!("[kernels] no matrix-unit chunkwise kernels on this adapter: skipped");
            continue;
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
            (2, 40, 72, 100, 37),
            // Chunks past one 64-row block (phase 2 walks the causal key blocks, phase 1 the
            // chunk's 64-position slices), with short last chunks and dqk over two slices.
            (1, 20, 70, 140, 65),
            (2, 96, 72, 230, 100),
            (2, 33, 130, 300, 128),
            (1, 130, 64, 430, 200),
            (3, 64, 40, 300, 256),
            (1, 16, 16, 131, 256),
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
}

#[test]
pub(crate) fn mlstm_chunkwise_coop_state_matches_reference() {
    coop_chunkwise_cases("mlstm chunkwise coop phase 1", (true, false));
}

#[test]
pub(crate) fn mlstm_chunkwise_coop_out_matches_reference() {
    coop_chunkwise_cases("mlstm chunkwise coop phase 2", (false, true));
}

#[test]
pub(crate) fn mlstm_chunkwise_coop_both_match_reference() {
    coop_chunkwise_cases("mlstm chunkwise coop both phases", (true, true));
}

/// Diagnostic: which cooperative-matrix load layouts give A·B on this adapter. A and B are staged
/// in f16 workgroup memory both row-major and column-major (row stride 24 halves) and multiplied
/// in all four combinations; every result is stored row-major. The kernels use only row-major A
/// (`coopLoadT`) and column-major B (`coopLoad`), the combination gemm_coop.wgsl uses: that one
/// must be exact (the others are reported only).
#[test]
pub(crate) fn coop_layouts_probe() {
    for c in modes() {
        if !c.ops(WeightDtype::F16).uses_coop_chunk() {
            eprintln!("[kernels] no matrix-unit kernels on this adapter: skipped");
            continue;
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
}

/// The matrix-unit chunkwise kernels split into head bands and chunk tiles give the same bits as
/// one dispatch per phase.
#[test]
pub(crate) fn mlstm_chunkwise_coop_schedules_agree() {
    for c in modes() {
        if !c.ops(WeightDtype::F16).uses_coop_chunk() {
            eprintln!("[kernels] no matrix-unit chunkwise kernels on this adapter: skipped");
            continue;
        }
        let mut worst = Worst("mlstm chunkwise coop schedules", 0.0, "x u16*cond");
        for (dqk, dv, chunk) in [(20, 70, 4), (64, 130, 16), (33, 7, 64), (20, 70, 128)] {
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
}

/// Without the matrix-unit pipelines (f32 weights, or an adapter without them) the coop launchers
/// return an error instead of recording anything.
#[test]
pub(crate) fn mlstm_chunkwise_coop_refused_without_pipelines() {
    for c in modes() {
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
}

/// Gate soft cap 0 (the original xLSTM's mLSTM): the raw gate pre-activations (up to ±48 here)
/// reach the cell unchanged, in the chunkwise kernels and the step kernel.
#[test]
pub(crate) fn mlstm_without_gate_cap_matches_reference() {
    for c in modes() {
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
}
