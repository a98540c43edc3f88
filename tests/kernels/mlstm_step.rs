//! The recurrent mLSTM step (`ops::mlstm_step`) against the recurrent reference.

use super::mlstm_cell::*;
use super::*;

/// T mlstm_step dispatches in one plan, parity alternating from `parity0`; the other half of the
/// double-buffered n and m starts as NaN, so reading it would show.
pub(crate) fn gpu_recurrent(c: &Ctx, x: &CellInputs, parity0: u32) -> CellOut {
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

#[test]
pub(crate) fn mlstm_step_matches_recurrent_reference() {
    for c in modes() {
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
}
