//! The sLSTM cell (`ops::slstm`): the sequence kernel and the per-token kernel against
//! `xlstm_reference::slstm::sequence`.

use super::*;

/// `ops::slstm::slstm` in every mode against the reference: head widths 1 to 1024 (the sequence
/// kernel up to its limit of 256), 1 to 5 heads, 1 to 64 tokens, from a fresh state, from a
/// restored non-fresh state, and as a continuation (two calls, odd and even token counts, also
/// switching modes between the calls, compared with one reference run). h is checked at every
/// step, the final state in full, and sentinels after h, state and scratch catch stray writes.
#[test]
pub(crate) fn slstm_modes_match_reference() {
    use ops::slstm::{self, SlstmMode};
    for c in modes() {
        let mut worst = Worst("slstm (all modes)", 0.0, "rel. to max|ref|");
        let verbose = std::env::var_os("KERNELS_VERBOSE").is_some();
        // The table, then the benchmark's software shapes (heads, width, tokens).
        let shapes = cases::SLSTM.iter().copied();
        let bench = cases::SLSTM_SOFTWARE.iter().map(|&(nh, dh, t)| (dh, nh, t));
        for (dh, nh, tokens) in shapes.chain(bench) {
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
                    let h = xlstm_reference::slstm::sequence(&wx, &bias, &r, &mut st, tokens, nh, dh);
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
}

/// Shapes and buffers the sLSTM launcher must refuse with an input error (no panic, no dispatch).
#[test]
pub(crate) fn slstm_rejects_bad_shapes() {
    use ops::slstm::{self, SlstmMode};
    for c in modes() {
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
}
