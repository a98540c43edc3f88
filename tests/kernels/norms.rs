//! Norms (`ops::norms`): RMSNorm on strided rows and the per-head LayerNorm times the output gate.

use super::mlstm_cell::{CELL_EPS, GATE_CAP};
use super::*;

#[test]
pub(crate) fn rms_norm_strided_rows() {
    for c in modes() {
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
}

#[test]
pub(crate) fn head_norm_gate_matches_reference() {
    for c in modes() {
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
}
