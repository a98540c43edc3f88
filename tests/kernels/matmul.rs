//! Matrix products (`ops::matmul`): the tiled and matrix-unit GEMM, the GEMV with its fused
//! input transforms, and the GEMV with the head norm fused in; f16 weights also with shader-f16
//! and subgroups masked (the portable paths).

use super::*;

pub(crate) struct MatCase {
    pub(crate) tokens: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) dtype: WeightDtype,
    pub(crate) epi: Epilogue,
    pub(crate) part_rows: Option<usize>,
}

/// Runs one matmul with offset/strided input and output rows; returns the error relative to the
/// magnitude max Σ|x·w| (+ |y0|).
pub(crate) fn check_matmul(c: &Ctx, case: &MatCase) -> f32 {
    check_matmul_at(c, case, (3, case.k + 5), (7, case.n + 2))
}

/// `check_matmul` with the input and output rows at (offset, stride) `xl` and `yl`.
pub(crate) fn check_matmul_at(c: &Ctx, case: &MatCase, xl: (usize, usize), yl: (usize, usize)) -> f32 {
    check_matmul_with(c, case, xl, yl, None)
}

/// `check_matmul_at` with a weight staging buffer of `staging` bytes set on the plan.
pub(crate) fn check_matmul_with(
    c: &Ctx,
    case: &MatCase,
    xl: (usize, usize),
    yl: (usize, usize),
    staging: Option<usize>,
) -> f32 {
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
    let staging = staging.map(|bytes| c.pool.storage(bytes as u64, Category::Scratch, "staging").unwrap());
    c.run(|pb| {
        if let Some(b) = &staging {
            pb.stage_weights_in(s(b));
        }
        ops::matmul(pb, c.ops(dtype), &xr, tokens, &m, &yr, epi)
    });
    let got_all = c.read(&yb, 0, y_init.len());
    let what = format!("matmul tokens {tokens} k {k} n {n} {dtype:?} {epi:?} parts {part_rows:?}");
    assert_untouched(&what, &got_all, tokens, n, y_off, y_stride);
    let got = gather_rows(&got_all, tokens, n, y_off, y_stride);

    let ws = weights_as_stored(&w, n, k, dtype);
    // The matrix-unit GEMM (adapters with 16x16 f16 cooperative matrices, f16 weights, more than
    // one token) multiplies f16 activations: compare against activations rounded the same way.
    let coop = tokens > 1 && c.ops(dtype).uses_coop_gemm();
    let x = if coop { f16_round(&x) } else { x };
    // ... and stages quantized weights dequantized to f16.
    let ws = if coop && dtype.is_quantized() {
        f16_round(&ws)
    } else {
        ws
    };
    // One token over quantized weights with integer dot products rounds x to int8 in blocks.
    let (prod, slack) = if tokens == 1 {
        gemv_reference(c, dtype, &w, n, k, &x)
    } else {
        (cpu::matmul_t(&x, &ws, tokens, k, n), 0.0)
    };
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
    let e = check(&what, &got, &want, 1e-5 * scale + 1e-6 * epi.soft_cap + slack, 1e-5) / scale;
    if std::env::var_os("KERNELS_VERBOSE").is_some() {
        eprintln!("[kernels]   {what}: max error / scale {e:.2e}");
    }
    e
}

pub(crate) fn epilogues() -> [Epilogue; 4] {
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

pub(crate) fn matmul_sweep(name: &'static str, tokens_list: &[usize]) {
    for c in modes() {
        let mut worst = Worst(name, 0.0, "x scale");
        let mut i = 0usize;
        for &tokens in tokens_list {
            for k in cases::MATMUL_K {
                for n in cases::MATMUL_N {
                    for dtype in DTYPES {
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
}

#[test]
pub(crate) fn matmul_gemm_path() {
    matmul_sweep("matmul gemm", &cases::GEMM_TOKENS);
    // Tiles of 128 x 128 (gemm_coop, and gemm_8x8 from GEMM_8X8_MIN_TOKENS without matrix
    // units): several tiles in both directions with ragged edges.
    matmul_sweep("matmul gemm 128-tiles", &cases::GEMM_COOP_TOKENS);
    for c in modes() {
        let mut worst = Worst("matmul gemm 128-tiles, 300 x 300", 0.0, "x scale");
        for (i, dtype) in DTYPES.into_iter().enumerate() {
            for tokens in [ops::GEMM_8X8_MIN_TOKENS, 300] {
                worst.add(check_matmul(
                    c,
                    &MatCase {
                        tokens,
                        k: 300,
                        n: 300,
                        dtype,
                        epi: epilogues()[i],
                        part_rows: Some(200),
                    },
                ));
            }
        }
    }
}

/// The matrix-unit GEMM's whole-tile fast path (128 x 128 tiles inside both matrices, 4-aligned
/// activation rows, K a multiple of 64) next to ragged edge tiles, with every epilogue.
#[test]
pub(crate) fn matmul_coop_whole_tiles() {
    for c in modes() {
        if !c.ops(WeightDtype::F16).uses_coop_gemm() {
            eprintln!("[kernels] no matrix-unit GEMM on this adapter: skipped");
            continue;
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
}

#[test]
pub(crate) fn matmul_gemv_path() {
    matmul_sweep("matmul gemv", &[1]);
    // And every epilogue with both formats on a split matrix.
    for c in modes() {
        let mut worst = Worst("matmul gemv epilogues", 0.0, "x scale");
        for dtype in DTYPES {
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
}

#[test]
pub(crate) fn f16_and_quantized_weights_without_shader_f16_or_subgroups() {
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
    for dtype in [WeightDtype::F16, WeightDtype::Q8, WeightDtype::Q4] {
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
                        dtype,
                        epi,
                        part_rows: Some(8),
                    },
                ));
            }
        }
    }
}

/// Long segments over quantized weights on the matrix units expand the weights to f16 rows in
/// a staging buffer first, a band of 128-row tiles at a time: bands smaller than a part, a part
/// split, ragged k and n, every epilogue.
#[test]
pub(crate) fn matmul_staged_quantized_weights() {
    for c in modes() {
        if !c.ops(WeightDtype::Q8).stages_quantized_weights() {
            eprintln!("[kernels] no matrix-unit GEMM on this adapter: staged path skipped");
            continue;
        }
        let mut worst = Worst("matmul staged quantized", 0.0, "x scale");
        let t = ops::STAGED_MIN_TOKENS;
        for dtype in [WeightDtype::Q8, WeightDtype::Q4] {
            for (i, (tokens, k, n, band_rows, part_rows)) in [
                (t, 64, 300, 128, None),
                (t + 37, 100, 130, 256, None),
                (t + 130, 256, 520, 128, Some(200)),
            ]
            .into_iter()
            .enumerate()
            {
                let epi = epilogues()[i % 4];
                let case = MatCase {
                    tokens,
                    k,
                    n,
                    dtype,
                    epi,
                    part_rows,
                };
                let kp = dtype.padded_cols(k);
                worst.add(check_matmul_with(
                    c,
                    &case,
                    (4, k + 4),
                    (8, n + 4),
                    Some(band_rows * kp * 2),
                ));
            }
        }
    }
}

/// gemv_rms_norm = rms_norm then matmul, and gemv_swiglu = swiglu then matmul, for awkward k
/// (not a multiple of 4 or 8), split weights, an unaligned input offset and both epilogues.
#[test]
pub(crate) fn fused_gemv_transforms_match_reference() {
    for c in modes() {
        let mut worst = Worst("fused gemv", 0.0, "x scale");
        for dtype in DTYPES {
            for (k, n, x_off) in [(5usize, 9usize, 0usize), (37, 70, 3), (300, 21, 4), (1000, 13, 1)] {
                for epi in epilogues() {
                    worst.add(check_fused_gemv(c, dtype, k, n, x_off, epi));
                }
            }
        }
    }
}

/// Every lane count the decode GEMV supports (`ops::GEMV_LANES`, the tuner's knob), with lane
/// groups summed by subgroup operations (where the adapter's subgroup size divides the lane
/// count) and through workgroup memory (subgroups masked): all three input transforms, rows that
/// leave a partial workgroup and a partial lane group, split weights, each weight format.
#[test]
pub(crate) fn gemv_every_lane_count_and_reduction() {
    for disable in [vec![], vec!["subgroup".to_string()], vec!["int-dot".to_string()]] {
        let gpu = Arc::new(
            Gpu::new(&GpuOptions {
                disable: disable.clone(),
                ..Default::default()
            })
            .expect("a GPU adapter"),
        );
        let kernels = Kernels::new(gpu.clone());
        let mut worst = Worst("gemv lanes", 0.0, "x scale");
        for gemv_lanes in ops::GEMV_LANES {
            let shapes = ops::KernelShapes {
                gemv_lanes,
                ..Default::default()
            };
            let c = Ctx::with_shapes(gpu.clone(), &kernels, shapes);
            for dtype in DTYPES {
                let (k, n) = (300, 37);
                let epi = epilogues()[gemv_lanes.trailing_zeros() as usize % 4];
                worst.add(check_fused_gemv(&c, dtype, k, n, 1, epi));
                worst.add(check_matmul(
                    &c,
                    &MatCase {
                        tokens: 1,
                        k,
                        n,
                        dtype,
                        epi,
                        part_rows: Some(20),
                    },
                ));
            }
        }
        eprintln!(
            "[kernels] gemv lanes with {disable:?} masked (subgroups: {})",
            gpu.caps.subgroup
        );
    }
}

/// The one-token product the decode GEMVs compute, W x for `w` as given (`[n, k]`, before
/// quantization), and an absolute slack: over quantized weights on an adapter with integer dot
/// products the kernels round x to int8 per block, so the reference does too
/// (`xlstm_reference::quant::gemv_int_dot`) and the slack allows one input rounded the other
/// way; otherwise the f32 product with the weights as stored and no slack.
fn gemv_reference(c: &Ctx, dtype: WeightDtype, w: &[f32], n: usize, k: usize, x: &[f32]) -> (Vec<f32>, f32) {
    if dtype.is_quantized() && c.gpu.caps.int_dot {
        let m = EncodedMatrix::encode(dtype, w, n, k, "test weight").expect("quantizing");
        let (y, slack) = xlstm_reference::quant::gemv_int_dot(dtype, &m.values, &m.scales, n, m.kp, x);
        return (y, slack.iter().fold(0f32, |a, &v| a.max(v)));
    }
    (cpu::matmul_t(x, &weights_as_stored(w, n, k, dtype), 1, k, n), 0.0)
}

/// The streamed decode GEMVs (quantized rows of at most one block a lane, parts of at least
/// 8,192 rows: lane groups that multiply 4 or 8 row groups in turn) against the reference in
/// every input transform, with integer dot products and with them masked: row counts that leave
/// partial row groups and workgroups, rows shorter than the lanes, rows exactly one block a lane
/// (q4 4,096), and a q8 row that is too wide for them (the general kernel).
#[test]
pub(crate) fn gemv_streamed_row_groups() {
    for disable in [vec![], vec!["int-dot".to_string()]] {
        let gpu = Arc::new(
            Gpu::new(&GpuOptions {
                disable: disable.clone(),
                ..Default::default()
            })
            .expect("a GPU adapter"),
        );
        let kernels = Kernels::new(gpu.clone());
        let c = Ctx::with_shapes(gpu.clone(), &kernels, ops::KernelShapes::default());
        let mut worst = Worst("streamed gemv", 0.0, "x scale");
        for (dtype, k, n) in [
            (WeightDtype::Q4, 100, 16_400),
            (WeightDtype::Q4, 300, 8_200),
            (WeightDtype::Q4, 4096, 8_193),
            (WeightDtype::Q8, 2048, 8_250),
            (WeightDtype::Q8, 2100, 8_200),
        ] {
            let epi = epilogues()[n % 4];
            worst.add(check_fused_gemv(&c, dtype, k, n, 1, epi));
            worst.add(check_matmul(
                &c,
                &MatCase {
                    tokens: 1,
                    k,
                    n,
                    dtype,
                    epi,
                    part_rows: None,
                },
            ));
        }
        eprintln!(
            "[kernels] streamed gemv with {disable:?} masked (int dot: {})",
            gpu.caps.int_dot
        );
    }
}

/// One case of the fused GEMVs (RMSNorm and SwiGLU input) against rms_norm / swiglu then the
/// reference matmul; returns the worst error over the output's scale.
fn check_fused_gemv(c: &Ctx, dtype: WeightDtype, k: usize, n: usize, x_off: usize, epi: Epilogue) -> f32 {
    let mut r = rng(&[k, n, x_off, dtype as usize, epi.accumulate as usize, 77]);
    let w = r.uniform_vec(n * k, -1.0, 1.0);
    let m = c.matrix(&w, n, k, dtype, Some(8));
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
    let (prod, slack) = gemv_reference(c, dtype, &w, n, k, &cpu::rms_norm(&x, &g, 1e-6));
    let want = finish(prod);
    let scale = max_abs(&want) + 1.0;
    let what = format!("gemv+norm k {k} n {n} off {x_off} {dtype:?} {epi:?}");
    let norm_err = check(&what, &c.read(&yb, 0, n), &want, 2e-5 * scale + slack, 2e-5) / scale;
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
    let (prod, slack) = gemv_reference(c, dtype, &w, n, k, &cpu::swiglu(&u[..k], &u[k..]));
    let want = finish(prod);
    let scale = max_abs(&want) + 1.0;
    let what = format!("gemv+swiglu k {k} n {n} off {x_off} {dtype:?} {epi:?}");
    let swiglu_err = check(&what, &c.read(&yb, 0, n), &want, 2e-5 * scale + slack, 2e-5) / scale;
    norm_err.max(swiglu_err)
}

/// The decode GEMV with xLSTM Large's head norm and output gate as its input transform equals
/// head_layer_norm * sigmoid(o) followed by the matmul: heads of 4 to 512 inputs, runs of 1 to 16
/// inputs per invocation, unaligned input and gate offsets, a large mean against a small spread
/// (the statistics are shifted per head), row counts that leave a partial workgroup, both weight
/// formats, every epilogue; shapes it cannot take (or whose input is wider than it stages) are
/// refused.
#[test]
pub(crate) fn gemv_head_norm_gate_matches_reference() {
    for c in modes() {
        check_head_norm_gemv(c);
    }
    // The other workgroup heights (`KernelShapes::head_norm_rows`), in the default mode.
    let gpu = ctx().gpu.clone();
    let kernels = Kernels::new(gpu.clone());
    for head_norm_rows in [4, 8, 32] {
        let shapes = ops::KernelShapes {
            head_norm_rows,
            ..Default::default()
        };
        check_head_norm_gemv(&Ctx::with_shapes(gpu.clone(), &kernels, shapes));
    }
}

fn check_head_norm_gemv(c: &Ctx) {
    let mut worst = Worst("gemv+head_norm", 0.0, "x scale");
    for dtype in DTYPES {
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
                let (prod, slack) = gemv_reference(c, dtype, &w, n, k, &xin);
                let want: Vec<f32> = prod
                    .iter()
                    .zip(&y0)
                    .map(|(&p, &y)| cpu::soft_cap(if epi.accumulate { p + y } else { p }, epi.soft_cap))
                    .collect();
                let scale = max_abs(&want) + 1.0;
                let what =
                    format!("gemv+head_norm nh {nh} dv {dv} n {n} offs {h_off}/{g_off} mean {mean} {dtype:?} {epi:?}");
                worst.add(check(&what, &c.read(&yb, 0, n), &want, 5e-5 * scale + slack, 5e-5) / scale);
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

/// The benchmark's software shapes (`cases::GEMV_SOFTWARE`, `cases::GEMM_SOFTWARE`) checked
/// too, so the shapes measured are shapes known correct.
#[test]
pub(crate) fn matmul_bench_shapes_match_reference() {
    for c in modes() {
        let mut worst = Worst("matmul bench shapes", 0.0, "x scale");
        let (t, gn, gk) = cases::GEMM_SOFTWARE;
        let shapes = cases::GEMV_SOFTWARE.iter().map(|&(n, k)| (1, n, k));
        for (tokens, n, k) in shapes.chain([(t, gn, gk)]) {
            for dtype in DTYPES {
                worst.add(check_matmul(
                    c,
                    &MatCase {
                        tokens,
                        k,
                        n,
                        dtype,
                        epi: Epilogue::default(),
                        part_rows: None,
                    },
                ));
            }
        }
    }
}
