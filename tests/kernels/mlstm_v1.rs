//! The original xLSTM's mLSTM gate projection (`ops::mlstm_v1`, `wgsl/v1/mlstm_v1_gates.wgsl`)
//! against `xlstm_reference::v1::gate_projection`: the gate columns are written in place after
//! q | k | v in each projection row; everything else in the row stays as it was.

use super::*;
use xlstm_wgpu::ops::mlstm_v1;

/// One case: `tokens` rows of `stride` floats, q | k | v in the first `k`, `rows` gate columns
/// at `gate_col`.
fn gates_case(c: &Ctx, &(tokens, rows, k, stride, gate_col): &(usize, usize, usize, usize, usize)) -> f32 {
    let mut r = rng(&[tokens, rows, k, stride, gate_col, 17]);
    let proj = r.uniform_vec(tokens * stride, -2.0, 2.0);
    let w = r.uniform_vec(rows * k, -0.5, 0.5);
    let (pb_, wb) = (c.buf_tail(&proj), c.buf(&w));
    c.run(|pb| {
        mlstm_v1::gates(
            pb,
            &c.ops_f32,
            &mlstm_v1::Gates {
                w: &s(&wb),
                proj: &s(&pb_),
                tokens,
                rows,
                k,
                stride,
                gate_col,
            },
        )
    });
    c.assert_tail("mlstm_v1_gates proj", &pb_, tokens * stride);
    let got = c.read(&pb_, 0, tokens * stride);
    let mut err = 0.0f32;
    for t in 0..tokens {
        let row = &proj[t * stride..][..stride];
        let want = cpu_v1::gate_projection(&row[..k], &w, rows);
        let got_row = &got[t * stride..][..stride];
        let what = format!("mlstm_v1_gates T {tokens} rows {rows} k {k} stride {stride} row {t}");
        let atol = 1e-5 * row[..k].iter().map(|v| v.abs()).sum::<f32>().max(1.0);
        err = err.max(check(&what, &got_row[gate_col..gate_col + rows], &want, atol, 1e-5));
        // Columns outside the gates are untouched (bit for bit).
        for (j, (&g, &p)) in got_row.iter().zip(row).enumerate() {
            if j < gate_col || j >= gate_col + rows {
                assert_eq!(g.to_bits(), p.to_bits(), "{what}: column {j} changed");
            }
        }
    }
    err
}

#[test]
fn mlstm_v1_gates_match_reference() {
    for c in modes() {
        let mut worst = Worst("mlstm_v1_gates", 0.0, "x atol");
        for case in cases::MLSTM_V1_GATES {
            worst.add(gates_case(c, case));
        }
    }
}

#[test]
fn mlstm_v1_gates_rejects_bad_shapes() {
    let c = ctx();
    let b = c.buf(&[0.0; 64]);
    let bad = [
        // Gate columns overlapping the inputs, past the row, and a weight too short.
        (2, 2, 8, 16, 7),
        (2, 2, 8, 16, 15),
        (2, 4, 8, 16, 8),
    ];
    for (i, &(tokens, rows, k, stride, gate_col)) in bad.iter().enumerate() {
        let w = if i == 2 {
            c.buf(&[0.0; 3])
        } else {
            c.buf(&vec![0.0; rows * k])
        };
        let r = c.try_run(|pb| {
            mlstm_v1::gates(
                pb,
                &c.ops_f32,
                &mlstm_v1::Gates {
                    w: &s(&w),
                    proj: &s(&b),
                    tokens,
                    rows,
                    k,
                    stride,
                    gate_col,
                },
            )
        });
        assert!(matches!(r, Err(Error::Input(_))), "case {i}: {r:?}");
    }
}
