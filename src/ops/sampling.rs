//! Choosing the next token on the GPU: greedy (`wgsl/sampling/argmax.wgsl`) and sampled with
//! temperature, top-k and top-p (`wgsl/sampling/sample.wgsl`).
//!
//! Reference: `xlstm_reference::ops::argmax_or_non_finite` and `crate::sample::Sampler`;
//! tests: `tests/kernels/sampling.rs`.

use super::{check_len, check_strided, u, Ops};
use crate::error::{Error, Result};
use crate::gpu::{PlanBuilder, Slice};
use std::ops::Range;

params! {
    struct ArgmaxParams for ["argmax"] {
        vocab: u32,
        first: u32,
        second: u32,
        stride: u32,
    }
}

/// The id `argmax` and `sample` choose for a row holding a NaN or an infinity: no choice is
/// meaningful, and the host turns it into [`Error::Numeric`]. It is outside every vocabulary, so
/// the embedding kernel skips it when a decode batch feeds it back.
pub const NON_FINITE_ID: u32 = u32::MAX;

/// Where a token choice goes: `buf[first + r]` (and `buf[second + r]` if given) for row r (the
/// second copy feeds the next decode step's embedding).
#[derive(Clone, Copy, Debug)]
pub struct TokenOut<'a> {
    pub buf: &'a Slice,
    pub first: usize,
    pub second: Option<usize>,
}

/// out row r = argmax of logits row r, for r < rows. A row holding a NaN or an infinity gets
/// [`NON_FINITE_ID`].
pub fn argmax(
    pb: &mut PlanBuilder,
    ops: &Ops,
    logits: &Slice,
    rows: usize,
    vocab: usize,
    out: &TokenOut,
) -> Result<()> {
    argmax_prefix(pb, ops, logits, rows, vocab, vocab, out)
}

/// Like [`argmax`] over only the first `count` entries of rows `stride` apart.
pub fn argmax_prefix(
    pb: &mut PlanBuilder,
    ops: &Ops,
    logits: &Slice,
    rows: usize,
    stride: usize,
    count: usize,
    out: &TokenOut,
) -> Result<()> {
    let TokenOut {
        buf: out,
        first,
        second,
    } = *out;
    if count == 0 || count > stride {
        return Err(Error::Input(format!("argmax over {count} of {stride} logits")));
    }
    // argmax.wgsl runs without runtime checks (`gpu::kernels::TRUSTED`).
    check_strided("argmax logits", logits, 0, stride, rows, count)?;
    check_ids("argmax out", out, first, second, rows)?;
    let p = ArgmaxParams {
        vocab: u(count),
        first: u(first),
        second: second.map(u).unwrap_or(u32::MAX),
        stride: u(stride),
    };
    pb.dispatch(
        "argmax",
        &ops.argmax,
        &p,
        &[logits.clone(), out.clone()],
        [u(rows), 1, 1],
    )?;
    pb.cost(4.0 * (rows * count) as f64, (rows * count) as f64);
    Ok(())
}

params! {
    struct SampleParams for ["sample"] {
        vocab: u32,
        row_offset: u32,
        top_k: u32,
        seed: u32,
        temperature: f32,
        top_p: f32,
        first: u32,
        second: u32,
    }
}

/// Samples one token on the GPU from the logits `logits[row]` (temperature > 0, top-k, top-p)
/// and writes it to `out`; `counter[0]` is the draw counter, incremented by every call.
pub fn sample(
    pb: &mut PlanBuilder,
    ops: &Ops,
    logits: &Slice,
    row: Range<usize>,
    cfg: &crate::sample::SamplerConfig,
    counter: &Slice,
    out: &TokenOut,
) -> Result<()> {
    let TokenOut {
        buf: out,
        first,
        second,
    } = *out;
    let (row_offset, count) = (row.start, row.len());
    cfg.validate()?;
    if cfg.is_greedy() {
        return Err(Error::Input(
            "GPU sampling needs a temperature > 0 (greedy uses argmax)".into(),
        ));
    }
    check_len("sample logits", logits, row_offset.saturating_add(count))?;
    check_len("sample counter", counter, 1)?;
    check_ids("sample out", out, first, second, 1)?;
    let p = SampleParams {
        vocab: u(count),
        row_offset: u(row_offset),
        top_k: u(cfg.top_k),
        seed: (cfg.seed ^ (cfg.seed >> 32)) as u32,
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        first: u(first),
        second: second.map(u).unwrap_or(u32::MAX),
    };
    pb.dispatch(
        "sample",
        &ops.sample,
        &p,
        &[logits.clone(), out.clone(), counter.clone()],
        [1, 1, 1],
    )?;
    // The row is read a few times (maximum, softmax sums, the nucleus search); an exp a logit.
    pb.cost(12.0 * count as f64, 4.0 * count as f64);
    Ok(())
}

/// `rows` ids fit at `first` (and at `second`, if given) of `out`.
fn check_ids(what: &str, out: &Slice, first: usize, second: Option<usize>, rows: usize) -> Result<()> {
    check_len(what, out, first.saturating_add(rows))?;
    match second {
        Some(s) => check_len(what, out, s.saturating_add(rows)),
        None => Ok(()),
    }
}
