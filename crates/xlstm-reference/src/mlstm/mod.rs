//! The mLSTM cell in the xLSTM Large convention (reference §2.3 step, §2.4 chunkwise).
//!
//! Conventions shared by every function here:
//! - `q` is scaled by `1/sqrt(dqk)` inside the cell, `k` is used unscaled;
//! - `i_pre`/`f_pre` are gate pre-activations that are already soft-capped;
//! - layouts are token-major: `q`,`k` are `[T, NH*dqk]`, `v` and `h` are `[T, NH*dv]`, gates
//!   `[T, NH]`, and the state is `C [NH, dqk, dv]`, `n [NH, dqk]`, `m [NH]`.
//!
//! Inputs, outputs and the [`CellState`] between calls are f32 (like the GPU buffers). Within one
//! call every head's memory is held in f64 (`HeadMemory`) and all arithmetic — gates, cumulative
//! sums, stabiliser, dot products — is f64; the stabiliser `m` is kept at f32 precision so that the
//! stored state is self-consistent. The only rounding of note is the f32 store at the end of a
//! call, so [`recurrent`] and [`chunkwise`] agree to ~3e-7 (relative to max |h|) and both stay
//! close to exact arithmetic. Separate [`step`] calls round the state every token; where `q̂·n`
//! nearly cancels that is amplified to ~2e-5 (see the test tolerances).

use crate::ops::log_sigmoid_f64;

/// Head count and widths of one mLSTM cell, plus the `eps` added to the output denominator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellShape {
    pub num_heads: usize,
    pub dqk: usize,
    pub dv: usize,
    pub eps: f32,
}

impl CellShape {
    fn qk_width(&self) -> usize {
        self.num_heads * self.dqk
    }

    fn v_width(&self) -> usize {
        self.num_heads * self.dv
    }

    fn q_scale(&self) -> f64 {
        1.0 / (self.dqk as f64).sqrt()
    }
}

/// The recurrent memory of one mLSTM layer: `C [NH, dqk, dv]`, `n [NH, dqk]`, stabiliser `m [NH]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CellState {
    pub c: Vec<f32>,
    pub n: Vec<f32>,
    pub m: Vec<f32>,
}

impl CellState {
    /// The empty memory. `m = 0` (not −∞), as mlstm_kernels creates it in inference mode; with
    /// `C = n = 0` the outputs do not depend on `m0` except through `eps` (reference §2.3).
    pub fn zeros(shape: &CellShape) -> Self {
        Self {
            c: vec![0.0; shape.num_heads * shape.dqk * shape.dv],
            n: vec![0.0; shape.num_heads * shape.dqk],
            m: vec![0.0; shape.num_heads],
        }
    }

    fn assert_fits(&self, shape: &CellShape) {
        let fresh = Self::zeros(shape);
        assert_eq!(self.c.len(), fresh.c.len(), "CellState.c is not [NH, dqk, dv]");
        assert_eq!(self.n.len(), fresh.n.len(), "CellState.n is not [NH, dqk]");
        assert_eq!(self.m.len(), fresh.m.len(), "CellState.m is not [NH]");
    }
}

/// One head's memory in f64 while a call runs: `c [dqk, dv]`, `n [dqk]`, stabiliser `m`.
struct HeadMemory {
    c: Vec<f64>,
    n: Vec<f64>,
    m: f64,
}

impl HeadMemory {
    fn load(state: &CellState, shape: &CellShape, head: usize) -> Self {
        let c_len = shape.dqk * shape.dv;
        let widen = |x: &[f32]| x.iter().map(|&v| f64::from(v)).collect();
        Self {
            c: widen(&state.c[head * c_len..][..c_len]),
            n: widen(&state.n[head * shape.dqk..][..shape.dqk]),
            m: f64::from(state.m[head]),
        }
    }

    fn store(&self, state: &mut CellState, shape: &CellShape, head: usize) {
        let c_len = shape.dqk * shape.dv;
        let narrow = |dst: &mut [f32], src: &[f64]| {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s as f32;
            }
        };
        narrow(&mut state.c[head * c_len..][..c_len], &self.c);
        narrow(&mut state.n[head * shape.dqk..][..shape.dqk], &self.n);
        state.m[head] = self.m as f32;
    }
}

/// A checked, read-only view of a token sequence of cell inputs with per-head accessors.
struct Sequence<'a> {
    shape: CellShape,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    i_pre: &'a [f32],
    f_pre: &'a [f32],
}

impl<'a> Sequence<'a> {
    fn new(
        shape: &CellShape,
        t: usize,
        q: &'a [f32],
        k: &'a [f32],
        v: &'a [f32],
        i_pre: &'a [f32],
        f_pre: &'a [f32],
    ) -> Self {
        assert!(shape.num_heads > 0 && shape.dqk > 0 && shape.dv > 0, "empty CellShape");
        assert_eq!(q.len(), t * shape.qk_width(), "q is not [T, NH*dqk]");
        assert_eq!(k.len(), t * shape.qk_width(), "k is not [T, NH*dqk]");
        assert_eq!(v.len(), t * shape.v_width(), "v is not [T, NH*dv]");
        assert_eq!(i_pre.len(), t * shape.num_heads, "i_pre is not [T, NH]");
        assert_eq!(f_pre.len(), t * shape.num_heads, "f_pre is not [T, NH]");
        Self {
            shape: *shape,
            q,
            k,
            v,
            i_pre,
            f_pre,
        }
    }

    fn q(&self, token: usize, head: usize) -> &'a [f32] {
        let d = self.shape.dqk;
        &self.q[token * self.shape.qk_width() + head * d..][..d]
    }

    fn k(&self, token: usize, head: usize) -> &'a [f32] {
        let d = self.shape.dqk;
        &self.k[token * self.shape.qk_width() + head * d..][..d]
    }

    fn v(&self, token: usize, head: usize) -> &'a [f32] {
        let d = self.shape.dv;
        &self.v[token * self.shape.v_width() + head * d..][..d]
    }

    fn i_pre(&self, token: usize, head: usize) -> f64 {
        f64::from(self.i_pre[token * self.shape.num_heads + head])
    }

    /// `ln σ(f̃)`, the log forget gate.
    fn f_log(&self, token: usize, head: usize) -> f64 {
        log_sigmoid_f64(f64::from(self.f_pre[token * self.shape.num_heads + head]))
    }

    /// `q · dqk^-1/2` in f64.
    fn q_scaled(&self, token: usize, head: usize) -> Vec<f64> {
        let scale = self.shape.q_scale();
        self.q(token, head).iter().map(|&x| f64::from(x) * scale).collect()
    }
}

/// Rounds a new stabiliser value to f32 *before* it scales `C` and `n`: the stored f32 `m` is then
/// exactly the one the stored memory was scaled with (`C = C̃·e^{−m}`), so storing and reloading
/// the state between calls adds no drift. Any `m` near the max is equally valid mathematically.
fn f32_exact(m: f64) -> f64 {
    f64::from(m as f32)
}

/// `q̂ᵀ C` for one head (`C` is `[dqk, dv]`).
fn query_memory(q_scaled: &[f64], c: &[f64], dv: usize) -> Vec<f64> {
    let mut out = vec![0.0; dv];
    for (&qa, c_row) in q_scaled.iter().zip(c.chunks_exact(dv)) {
        for (o, &cv) in out.iter_mut().zip(c_row) {
            *o += qa * cv;
        }
    }
    out
}

/// `q̂ · n` for one head.
fn query_normaliser(q_scaled: &[f64], n: &[f64]) -> f64 {
    q_scaled.iter().zip(n).map(|(&a, &b)| a * b).sum()
}

/// `h = num / (max(|den|, e^{-m}) + eps)`, the stabilised mLSTM readout (both §2.3 and §2.4).
fn readout(num: &[f64], den: f64, m: f64, eps: f32, out: &mut [f32]) {
    let denominator = den.abs().max((-m).exp()) + f64::from(eps);
    for (o, &x) in out.iter_mut().zip(num) {
        *o = (x / denominator) as f32;
    }
}

/// One decode step for one head, exactly reference §2.3.
fn step_head(seq: &Sequence, token: usize, head: usize, mem: &mut HeadMemory, h: &mut [f32]) {
    let dv = seq.shape.dv;
    let f_log = seq.f_log(token, head);
    let i_pre = seq.i_pre(token, head);
    let m_new = f32_exact((f_log + mem.m).max(i_pre));
    let f_act = (f_log + mem.m - m_new).exp();
    let i_act = (i_pre - m_new).exp();

    let k = seq.k(token, head);
    let v = seq.v(token, head);
    for ((c_row, n_a), &k_a) in mem.c.chunks_exact_mut(dv).zip(mem.n.iter_mut()).zip(k) {
        let ik = i_act * f64::from(k_a);
        for (c, &v_j) in c_row.iter_mut().zip(v) {
            *c = f_act * *c + ik * f64::from(v_j);
        }
        *n_a = f_act * *n_a + ik;
    }
    mem.m = m_new;

    let q_scaled = seq.q_scaled(token, head);
    let num = query_memory(&q_scaled, &mem.c, dv);
    let den = query_normaliser(&q_scaled, &mem.n);
    readout(&num, den, m_new, seq.shape.eps, h);
}

/// Advances every head by one token (reference §2.3): `q`,`k` are `[NH*dqk]`, `v` `[NH*dv]`,
/// gates `[NH]`. Returns `h` `[NH*dv]` and leaves the new state in `state`.
pub fn step(
    shape: &CellShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    i_pre: &[f32],
    f_pre: &[f32],
    state: &mut CellState,
) -> Vec<f32> {
    let seq = Sequence::new(shape, 1, q, k, v, i_pre, f_pre);
    state.assert_fits(shape);
    let mut h = vec![0.0; shape.v_width()];
    for (head, h_head) in h.chunks_exact_mut(shape.dv).enumerate() {
        let mut mem = HeadMemory::load(state, shape, head);
        step_head(&seq, 0, head, &mut mem, h_head);
        mem.store(state, shape, head);
    }
    h
}

/// Runs [`step`] over `t` tokens (`q`,`k` `[T, NH*dqk]`, `v` `[T, NH*dv]`, gates `[T, NH]`) and
/// returns `h` `[T, NH*dv]`. This is the `native_sequence` kernel: the definition the chunkwise
/// form must reproduce. (Unlike `t` separate [`step`] calls, the state stays in f64 between the
/// tokens of one call.)
#[allow(clippy::too_many_arguments)]
pub fn recurrent(
    shape: &CellShape,
    t: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    i_pre: &[f32],
    f_pre: &[f32],
    state: &mut CellState,
) -> Vec<f32> {
    let seq = Sequence::new(shape, t, q, k, v, i_pre, f_pre);
    state.assert_fits(shape);
    let (dv, v_width) = (shape.dv, shape.v_width());
    let mut h = vec![0.0; t * v_width];
    for head in 0..shape.num_heads {
        let mut mem = HeadMemory::load(state, shape, head);
        for (token, h_row) in h.chunks_exact_mut(v_width).enumerate() {
            step_head(&seq, token, head, &mut mem, &mut h_row[head * dv..][..dv]);
        }
        mem.store(state, shape, head);
    }
    h
}

/// Gate quantities of one chunk of one head (reference §2.4), all in f64 and indexed by the local
/// position `s` in `0..len`.
struct ChunkGates {
    /// `ĩ_s`.
    i_pre: Vec<f64>,
    /// `b_s = Σ_{r ≤ s} ln σ(f̃_r)`, the inclusive cumulative log forget gate.
    b: Vec<f64>,
    /// `g = b_{len-1}`, the total log forget of the chunk.
    g: f64,
    /// `a_s = (g − b_s) + ĩ_s`, the log weight of token `s` in the chunk-end state.
    a: Vec<f64>,
}

impl ChunkGates {
    fn new(seq: &Sequence, head: usize, start: usize, len: usize) -> Self {
        let i_pre: Vec<f64> = (start..start + len).map(|s| seq.i_pre(s, head)).collect();
        let mut b = Vec::with_capacity(len);
        let mut sum = 0.0;
        for s in start..start + len {
            sum += seq.f_log(s, head);
            b.push(sum);
        }
        let g = sum;
        let a = b.iter().zip(&i_pre).map(|(&b_s, &i_s)| (g - b_s) + i_s).collect();
        Self { i_pre, b, g, a }
    }
}

/// Intra-chunk outputs of one head, using the state at the chunk start (reference §2.4).
fn chunk_outputs(seq: &Sequence, head: usize, start: usize, gates: &ChunkGates, mem: &HeadMemory, h: &mut [f32]) {
    let (dv, v_width) = (seq.shape.dv, seq.shape.v_width());
    let m_prev = mem.m;
    for s in 0..gates.b.len() {
        let log_d = |j: usize| gates.b[s] - gates.b[j] + gates.i_pre[j];
        let m_intra = (0..=s).map(log_d).fold(f64::NEG_INFINITY, f64::max);
        let m_inter = gates.b[s] + m_prev;
        let m = m_inter.max(m_intra);
        let beta = (m_inter - m).exp();

        let q_scaled = seq.q_scaled(start + s, head);
        let mut num: Vec<f64> = query_memory(&q_scaled, &mem.c, dv)
            .into_iter()
            .map(|x| beta * x)
            .collect();
        let mut den = beta * query_normaliser(&q_scaled, &mem.n);
        for j in 0..=s {
            let k_j = seq.k(start + j, head);
            let score: f64 = q_scaled.iter().zip(k_j).map(|(&a, &b)| a * f64::from(b)).sum();
            let weight = (log_d(j) - m).exp() * score;
            for (o, &v) in num.iter_mut().zip(seq.v(start + j, head)) {
                *o += weight * f64::from(v);
            }
            den += weight;
        }
        let out = &mut h[(start + s) * v_width + head * dv..][..dv];
        readout(&num, den, m, seq.shape.eps, out);
    }
}

/// Inter-chunk recurrence: moves one head's state from the chunk start to the chunk end
/// (reference §2.4, `m_k`, `ḡ`, `ā_s`, `C_k`, `n_k`).
fn advance_state(seq: &Sequence, head: usize, start: usize, gates: &ChunkGates, mem: &mut HeadMemory) {
    let dv = seq.shape.dv;
    let a_max = gates.a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let m_new = f32_exact((gates.g + mem.m).max(a_max));
    let g_act = (gates.g + mem.m - m_new).exp();
    let a_act: Vec<f64> = gates.a.iter().map(|&a| (a - m_new).exp()).collect();

    for (dim, (c_row, n_a)) in mem.c.chunks_exact_mut(dv).zip(mem.n.iter_mut()).enumerate() {
        for c in c_row.iter_mut() {
            *c *= g_act;
        }
        *n_a *= g_act;
        for (s, &a_s) in a_act.iter().enumerate() {
            let weight = a_s * f64::from(seq.k(start + s, head)[dim]);
            for (c, &v) in c_row.iter_mut().zip(seq.v(start + s, head)) {
                *c += weight * f64::from(v);
            }
            *n_a += weight;
        }
    }
    mem.m = m_new;
}

/// The mlstm_kernels native chunkwise form (reference §2.4) with chunk size `chunk`, starting
/// from `state` and leaving the final state there. Same inputs and output as [`recurrent`].
///
/// `t` need not be a multiple of `chunk`: the last chunk just uses its real length in the
/// cumulative sums, which is exactly what padding with `f̃ = +∞, ĩ = −∞` computes (mlstm_kernels
/// pads with ±25 as an approximation of that).
#[allow(clippy::too_many_arguments)]
pub fn chunkwise(
    shape: &CellShape,
    chunk: usize,
    t: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    i_pre: &[f32],
    f_pre: &[f32],
    state: &mut CellState,
) -> Vec<f32> {
    assert!(chunk > 0, "chunk size must be positive");
    let seq = Sequence::new(shape, t, q, k, v, i_pre, f_pre);
    state.assert_fits(shape);
    let mut h = vec![0.0; t * shape.v_width()];
    for head in 0..shape.num_heads {
        let mut mem = HeadMemory::load(state, shape, head);
        for start in (0..t).step_by(chunk) {
            let len = chunk.min(t - start);
            let gates = ChunkGates::new(&seq, head, start, len);
            chunk_outputs(&seq, head, start, &gates, &mem, &mut h);
            advance_state(&seq, head, start, &gates, &mut mem);
        }
        mem.store(state, shape, head);
    }
    h
}

#[cfg(test)]
mod tests;
