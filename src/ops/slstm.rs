//! Launchers of the sLSTM recurrence: the persistent sequence kernel (one workgroup per head
//! loops over time) and the per-token kernel (many workgroups per step, for wide heads).
//!
//! WGSL: `wgsl/slstm/slstm_seq.wgsl`, `wgsl/slstm/slstm_step.wgsl`. Reference:
//! `xlstm_reference::slstm::sequence`; tests: `tests/kernels/slstm.rs` (end to end: the sLSTM layer of
//! `xlstm_reference::v1::forward`).

use super::Compile;
use super::{check_len, u, Ops};
use crate::error::{Error, Result};
use crate::gpu::{ConstValue, Kernels, LazyPipeline, PlanBuilder, Slice};

/// Largest head width of the sequence kernel (slstm_seq.wgsl keeps y and the 4·DH gate
/// pre-activations of its head in workgroup memory, and one invocation per unit).
pub const MAX_SEQUENCE_HEAD_DIM: usize = 256;

/// [`SlstmMode::Auto`] runs the sequence kernel up to this head width and the per-token kernel
/// above it. The sequence kernel runs each head on ONE workgroup: it saves the per-dispatch
/// overhead, which dominates for narrow heads, but for wide heads a step's 4·DH² recurrent product
/// on NH workgroups leaves most of a large GPU idle. Measured on an H100 (`cargo bench --bench
/// kernels -- slstm`, see BENCHMARKS.md): heads of 32 — sequence 0.88 ms vs per-token 1.94 ms
/// (4 heads, 256 tokens); heads of 64 — 5.0 vs 4.1 ms; 128 — 18.3 vs 4.1 ms; 256 — 142 vs 10.6 ms
/// (4 heads, 1024 tokens). On a CPU adapter (lavapipe) the sequence kernel wins at every width.
pub const AUTO_SEQUENCE_MAX_HEAD_DIM: usize = 32;

/// Loop iterations one invocation of slstm_seq.wgsl may run in one dispatch. lavapipe (llvmpipe)
/// silently ends every loop of an invocation once 65535 iterations have run in total (gallivm's
/// `LP_MAX_TGSI_LOOP_ITERATIONS`, shared by all loops of a shader: one dispatch over 64 tokens of
/// width 256 already hit it), so the launcher splits a long sequence into dispatches that stay at
/// half that count. A few dispatches per sequence cost nothing measurable (and they bound the
/// duration of one dispatch on drivers with a watchdog).
const SEQ_LOOP_BUDGET: usize = 32768;

/// Tokens per dispatch of slstm_seq.wgsl: per step an invocation runs the token loop once and at
/// most ceil(4·DH / 256) rows of at most DH / 4 + 4 iterations each.
fn seq_tokens_per_dispatch(head_dim: usize) -> usize {
    let per_step = 1 + (4 * head_dim).div_ceil(256) * (head_dim / 4 + 4);
    (SEQ_LOOP_BUDGET / per_step).max(1)
}

/// Invocations per row of R in slstm_step.wgsl (its `LANES` specialisations; a workgroup of 256
/// invocations covers 64 / LANES units). Wider heads get more lanes per row.
const STEP_LANES: [u32; 3] = [8, 16, 32];

/// Index into [`STEP_LANES`] for a head width: DH / LANES multiply-adds per invocation (at most 8
/// up to DH 64, 32 up to DH 512) and ceil(DH / UNITS) workgroups per head.
fn step_variant(head_dim: usize) -> usize {
    match head_dim {
        0..=64 => 0,
        65..=512 => 1,
        _ => 2,
    }
}

/// Largest workgroup count per grid dimension every adapter supports.
const MAX_GROUPS: usize = 65535;

/// The sLSTM pipelines.
pub struct SlstmPipelines<P = LazyPipeline> {
    seq: P,
    step: [P; 3],
}

impl SlstmPipelines {
    pub fn new(kernels: &Kernels) -> Result<Self> {
        Self::build(&|k: &str, e: &str, c: &[(&str, ConstValue)]| Ok(kernels.lazy(k, e, c)))
    }
}

impl<P> SlstmPipelines<P> {
    pub(crate) fn build(c: &impl Compile<P>) -> Result<Self> {
        let step = |lanes: u32| c("slstm_step", "main", &[("LANES", ConstValue::U32(lanes))]);
        Ok(SlstmPipelines {
            seq: c("slstm_seq", "main", &[])?,
            step: [step(STEP_LANES[0])?, step(STEP_LANES[1])?, step(STEP_LANES[2])?],
        })
    }
}

/// How the sLSTM recurrence is dispatched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlstmMode {
    /// By head width (measured crossover).
    #[default]
    Auto,
    /// One dispatch for the whole sequence (a persistent workgroup per head).
    Sequence,
    /// One dispatch per token, each step spread over many workgroups.
    PerToken,
}

impl SlstmMode {
    /// The mode that runs for `head_dim`: `Auto` becomes `Sequence` up to
    /// [`AUTO_SEQUENCE_MAX_HEAD_DIM`] and `PerToken` above; the others stay as they are.
    pub fn resolve(self, head_dim: usize) -> SlstmMode {
        match self {
            SlstmMode::Auto if head_dim <= AUTO_SEQUENCE_MAX_HEAD_DIM => SlstmMode::Sequence,
            SlstmMode::Auto => SlstmMode::PerToken,
            m => m,
        }
    }
}

params! {
    struct SeqParams for ["slstm_seq"] {
        tokens: u32,
        num_heads: u32,
        head_dim: u32,
        t0: u32,
    }
}

params! {
    struct StepParams for ["slstm_step"] {
        num_heads: u32,
        head_dim: u32,
        t: u32,
        check_first: u32,
    }
}

fn input(msg: String) -> Error {
    Error::Input(msg)
}

/// `a · b`, or an input error naming `what` if it overflows.
fn mul(a: usize, b: usize, what: &str) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| input(format!("sLSTM: {what} overflows")))
}

/// Errors unless `s` holds at least `floats` f32 values (the launchers' one length check).
fn need(s: &Slice, floats: usize, what: &str) -> Result<()> {
    check_len(&format!("sLSTM `{what}`"), s, floats)
}

/// The first `bytes` of `s`.
fn head(s: &Slice, bytes: u64) -> Slice {
    Slice {
        buffer: s.buffer.clone(),
        offset: s.offset,
        size: bytes,
    }
}

/// The buffers and shape of one [`slstm`] call (see there for the layouts).
#[derive(Clone, Copy)]
pub struct Slstm<'a> {
    pub wx: &'a Slice,
    pub bias: &'a Slice,
    pub r: &'a Slice,
    pub state: &'a Slice,
    pub scratch: &'a Slice,
    pub h: &'a Slice,
    pub tokens: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub mode: SlstmMode,
}

/// The sLSTM cell over `tokens` steps. `wx` [tokens, 4, E] input pre-activations (gate order
/// i, f, z, o), `bias` [4, E], `r` [NH, 4·DH, DH] (vanilla layout), `state` [4, E] = (y, c, n, m)
/// updated in place, `scratch` [4, E] (ping-pong state of the per-token path; not used by the
/// sequence kernel; must not overlap `state`, and for an odd number of tokens must be in a different
/// buffer, since the final state is copied back), `h` [tokens, E] (y at every step). The package's
/// first-step rule (m' = ĩ while n is all zero) is checked on the GPU from the state itself.
/// `mode`: see [`SlstmMode`]; `Sequence` supports head widths up to [`MAX_SEQUENCE_HEAD_DIM`],
/// `PerToken` any width.
pub fn slstm(pb: &mut PlanBuilder, ops: &Ops, a: &Slstm) -> Result<()> {
    let Slstm {
        wx,
        bias,
        r,
        state,
        scratch,
        h,
        tokens,
        num_heads,
        head_dim,
        mode,
    } = *a;
    if num_heads == 0 || head_dim == 0 {
        return Err(input(format!(
            "sLSTM: {num_heads} heads of width {head_dim} (both must be at least 1)"
        )));
    }
    let e = mul(num_heads, head_dim, "width")?;
    let wx_len = mul(mul(tokens, 4, "input size")?, e, "input size")?;
    let r_len = mul(mul(e, 4, "recurrent kernel size")?, head_dim, "recurrent kernel size")?;
    // Every index the kernels form must fit in a u32.
    if wx_len > u32::MAX as usize || r_len > u32::MAX as usize {
        return Err(input(format!(
            "sLSTM: {tokens} tokens x {num_heads} heads of width {head_dim} exceed the kernels' \
             32-bit indexing"
        )));
    }
    need(wx, wx_len, "wx")?;
    need(bias, 4 * e, "bias")?;
    need(r, r_len, "r")?;
    need(state, 4 * e, "state")?;
    need(h, tokens * e, "h")?;
    if num_heads > MAX_GROUPS {
        return Err(input(format!(
            "sLSTM: {num_heads} heads exceed {MAX_GROUPS} workgroups per grid dimension"
        )));
    }
    let sl = &ops.slstm;
    // Per step: R, the wx row, bias, the state in and out, the h row.
    let bytes = (4 * (r_len + 17 * e)) as f64;
    let flops = (2 * r_len) as f64;
    match mode.resolve(head_dim) {
        SlstmMode::Sequence => {
            if head_dim > MAX_SEQUENCE_HEAD_DIM {
                return Err(input(format!(
                    "sLSTM: the sequence kernel supports head widths up to {MAX_SEQUENCE_HEAD_DIM}, \
                     got {head_dim} (use the per-token mode)"
                )));
            }
            let bufs = [wx.clone(), bias.clone(), r.clone(), state.clone(), h.clone()];
            let chunk = seq_tokens_per_dispatch(head_dim);
            for t0 in (0..tokens).step_by(chunk) {
                let n = chunk.min(tokens - t0);
                let p = SeqParams {
                    tokens: u(n),
                    num_heads: u(num_heads),
                    head_dim: u(head_dim),
                    t0: u(t0),
                };
                pb.dispatch("slstm_seq", &sl.seq, &p, &bufs, [u(num_heads), 1, 1])?;
                pb.cost(bytes * n as f64, flops * n as f64);
            }
            Ok(())
        }
        SlstmMode::PerToken | SlstmMode::Auto => {
            need(scratch, 4 * e, "scratch")?;
            let state_bytes = (16 * e) as u64;
            let same = state.buffer == scratch.buffer;
            if same && state.offset < scratch.offset + state_bytes && scratch.offset < state.offset + state_bytes {
                return Err(input("sLSTM: `state` and `scratch` overlap".into()));
            }
            if same && tokens % 2 == 1 {
                return Err(input(
                    "sLSTM: for an odd number of tokens `scratch` must be in a different buffer from \
                     `state` (the final state is copied back)"
                        .into(),
                ));
            }
            let v = step_variant(head_dim);
            let units = 64 / STEP_LANES[v] as usize;
            let grid_x = head_dim.div_ceil(units);
            if grid_x > MAX_GROUPS {
                return Err(input(format!(
                    "sLSTM: head width {head_dim} needs {grid_x} workgroups per head, more than \
                     {MAX_GROUPS}"
                )));
            }
            for t in 0..tokens {
                let (src, dst) = if t % 2 == 0 { (state, scratch) } else { (scratch, state) };
                let p = StepParams {
                    num_heads: u(num_heads),
                    head_dim: u(head_dim),
                    t: u(t),
                    check_first: (t == 0) as u32,
                };
                let bufs = [wx.clone(), bias.clone(), r.clone(), src.clone(), dst.clone(), h.clone()];
                pb.dispatch("slstm_step", &sl.step[v], &p, &bufs, [u(grid_x), u(num_heads), 1])?;
                pb.cost(bytes, flops);
            }
            if tokens % 2 == 1 {
                pb.copy(head(scratch, state_bytes), head(state, state_bytes));
            }
            Ok(())
        }
    }
}
