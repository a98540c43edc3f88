//! The mLSTM cell inputs, CPU references and rounding-bound comparisons both mLSTM kernel
//! families (`mlstm_chunk`, `mlstm_step`) are checked with.

use super::*;

pub(crate) const GATE_CAP: f32 = 15.0;
pub(crate) const CELL_EPS: f32 = 1e-6;

/// Random cell inputs in the fused projection layout plus the same inputs as the CPU reference
/// wants them (gates soft-capped, q and k unscaled).
pub(crate) struct CellInputs {
    pub(crate) l: CellLayout,
    pub(crate) shape: CellShape,
    pub(crate) t: usize,
    pub(crate) proj: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    pub(crate) init: CellState,
    pub(crate) q: Vec<f32>,
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) i_pre: Vec<f32>,
    pub(crate) f_pre: Vec<f32>,
}

pub(crate) fn cell_inputs(nh: usize, dqk: usize, dv: usize, t: usize, seed: usize) -> CellInputs {
    cell_inputs_capped(nh, dqk, dv, t, seed, GATE_CAP)
}

/// [`cell_inputs`] with gate soft cap `cap` (<= 0: none, the original xLSTM's mLSTM).
pub(crate) fn cell_inputs_capped(nh: usize, dqk: usize, dv: usize, t: usize, seed: usize, cap: f32) -> CellInputs {
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
pub(crate) struct CellOut {
    pub(crate) h: Vec<f32>,
    pub(crate) state: CellState,
}

pub(crate) fn cpu_chunkwise(x: &CellInputs, chunk: usize) -> CellOut {
    let mut state = x.init.clone();
    let h = mlstm::chunkwise(&x.shape, chunk, x.t, &x.q, &x.k, &x.v, &x.i_pre, &x.f_pre, &mut state);
    CellOut { h, state }
}

pub(crate) fn cpu_recurrent(x: &CellInputs) -> CellOut {
    let mut state = x.init.clone();
    let h = mlstm::recurrent(&x.shape, x.t, &x.q, &x.k, &x.v, &x.i_pre, &x.f_pre, &mut state);
    CellOut { h, state }
}

/// How far f32 rounding can move each output: the sum of the absolute values of the terms behind
/// every element, from a token-by-token reference run on |q|, |k|, |v|, |C0|, |n0| with the same
/// gates (hence the same stabiliser m). To first order, rounding moves h by about
/// u * (sum|num terms| + |h| * sum|den terms|) / denominator, and C and n by u * their |terms|.
/// Where q.n nearly cancels (the reference notes this too) the bound is large; elsewhere it is
/// tight, so the check is strict where the problem is well conditioned.
pub(crate) struct CellCond {
    pub(crate) h: Vec<f32>,
    pub(crate) c: Vec<f32>,
    pub(crate) n: Vec<f32>,
}

pub(crate) fn cell_condition(x: &CellInputs) -> CellCond {
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
pub(crate) const U: f32 = f32::EPSILON / 2.0;
/// Allowed error in units of u * condition (see [`CellCond`]) for accumulation lengths and the
/// adapter's exp/log/tanh accuracy (lavapipe: observed <= 7 for the step kernel).
pub(crate) const CELL_K: f32 = 32.0;

/// The chunkwise kernels also keep the cumulative log forget gate of a chunk in f32: its absolute
/// error, about u * sum |log sigmoid(f)| over the chunk, becomes a relative error of the decay
/// weights. Returns the largest such sum over chunks and heads (0 for the step kernel).
pub(crate) fn chunk_gate_magnitude(x: &CellInputs, chunk: Option<usize>) -> f32 {
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

/// The absolute tolerance of the final stabiliser m: it carries a chunk's sum of log forget gates,
/// summed in f32 over up to `chunk` terms (in any order: a scan on one adapter, a loop on
/// another), so its rounding bound is (terms) * u * sum|log f| (first order), plus 1e-5. At chunk
/// 256 (131 tokens) the H200 differed from the f64 reference by 4e-5 there, beyond a fixed 1e-5.
pub(crate) fn m_tolerance(x: &CellInputs, chunk: Option<usize>) -> f32 {
    let terms = chunk.unwrap_or(1).min(x.t) as f32;
    1e-5 + terms * U * chunk_gate_magnitude(x, chunk)
}

/// |got - want| <= 1e-6 * max|want| + k * u * cond, elementwise; returns max err / (u * cond).
#[track_caller]
pub(crate) fn check_cond(what: &str, got: &[f32], want: &[f32], cond: &[f32], k: f32) -> f32 {
    check_cond_unit(what, got, want, cond, k, U, 1e-6)
}

/// [`check_cond`] with rounding unit `unit` and floor `floor_rel * max|want|`.
#[track_caller]
pub(crate) fn check_cond_unit(
    what: &str,
    got: &[f32],
    want: &[f32],
    cond: &[f32],
    k: f32,
    unit: f32,
    floor_rel: f32,
) -> f32 {
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
pub(crate) fn compare_cell(what: &str, x: &CellInputs, chunk: Option<usize>, got: &CellOut, want: &CellOut) -> f32 {
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
    check(
        &format!("{what}: m"),
        &got.state.m,
        &want.state.m,
        m_tolerance(x, chunk),
        1e-6,
    );
    if std::env::var_os("KERNELS_VERBOSE").is_some() {
        eprintln!("[kernels]   {what}: max err / (u * cond) = {r:.1} (allowed {k:.0})");
    }
    r
}

/// Unit roundoff of f16 (the matrix-unit kernels' operands).
pub(crate) const U16: f32 = 1.0 / 2048.0;
/// Allowed error of the matrix-unit chunkwise kernels in units of u16 * condition: every product
/// term has up to four rounded f16 factors (q, k, the decay-weighted score, v; or q and C).
pub(crate) const CELL_K16: f32 = 8.0;

/// [`compare_cell`] for the matrix-unit chunkwise kernels: f16 operands, so the bound is in units of
/// f16's roundoff (plus the f32 kernels' own bound), with a floor of 1e-5 * max|want| for terms
/// that fall into f16's subnormal range.
pub(crate) fn compare_cell_f16(what: &str, x: &CellInputs, chunk: Option<usize>, got: &CellOut, want: &CellOut) -> f32 {
    let cond = cell_condition(x);
    let k = CELL_K16 + (CELL_K + chunk_gate_magnitude(x, chunk)) * U / U16;
    let mut r = 0.0f32;
    // The final state first: a wrong state shows there before it spoils h.
    check(
        &format!("{what}: m"),
        &got.state.m,
        &want.state.m,
        m_tolerance(x, chunk),
        1e-6,
    );
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
pub(crate) fn cell_shapes() -> Vec<(usize, usize, usize)> {
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

pub(crate) const CELL_TOKENS: [usize; 5] = [1, 7, 64, 65, 130];
