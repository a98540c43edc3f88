//! The original (v1) mLSTM's gate projection: Linear(3I -> NH) for the input and the forget gate
//! over concat(q, k, v), computed in place in the cell's projection rows.
//!
//! WGSL: `wgsl/v1/mlstm_v1_gates.wgsl`. Reference: `xlstm_reference::v1::gate_projection`;
//! tests: `tests/kernels/mlstm_v1.rs` (and end to end, `tests/end_to_end_v1.rs`).

use super::Compile;
use super::{check_len, check_strided, Ops};
use crate::error::{Error, Result};
use crate::gpu::{ConstValue, Kernels, LazyPipeline, PlanBuilder, Slice};

/// The pipeline of mlstm_v1_gates.wgsl.
pub struct MlstmV1Pipelines<P = LazyPipeline> {
    gates: P,
}

impl MlstmV1Pipelines {
    pub fn new(kernels: &Kernels) -> Result<Self> {
        Self::build(&|k: &str, e: &str, c: &[(&str, ConstValue)]| Ok(kernels.lazy(k, e, c)))
    }
}

impl<P> MlstmV1Pipelines<P> {
    pub(crate) fn build(c: &impl Compile<P>) -> Result<Self> {
        Ok(MlstmV1Pipelines {
            gates: c("mlstm_v1_gates", "main", &[])?,
        })
    }
}

params! {
    struct GatesParams for ["mlstm_v1_gates"] {
        tokens: u32,
        rows: u32,
        k: u32,
        stride: u32,
        gate_col: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// The weights, projection rows and shape of one [`gates`] call.
#[derive(Clone, Copy)]
pub struct Gates<'a> {
    pub w: &'a Slice,
    pub proj: &'a Slice,
    pub tokens: usize,
    pub rows: usize,
    pub k: usize,
    pub stride: usize,
    pub gate_col: usize,
}

/// proj[t, gate_col + r] = Σ_{j<k} proj[t, j] · w[r, j] for r < rows, t < tokens: `w` [rows, k]
/// (input-gate rows, then forget-gate rows), `proj` rows of `stride` floats whose first `k`
/// columns are q | k | v. The gate columns must lie after the first `k`.
pub fn gates(pb: &mut PlanBuilder, ops: &Ops, a: &Gates) -> Result<()> {
    let Gates {
        w,
        proj,
        tokens,
        rows,
        k,
        stride,
        gate_col,
    } = *a;
    if gate_col < k || gate_col + rows > stride || tokens > 65535 || rows > 65535 {
        return Err(Error::Input(format!(
            "v1 mLSTM gates: {rows} gate columns at {gate_col} do not fit rows of {stride} after {k} inputs \
             ({tokens} tokens)"
        )));
    }
    check_len("v1 mLSTM gate weights", w, rows.saturating_mul(k))?;
    check_strided("v1 mLSTM gates proj", proj, 0, stride, tokens, gate_col + rows)?;
    let p = GatesParams {
        tokens: tokens as u32,
        rows: rows as u32,
        k: k as u32,
        stride: stride as u32,
        gate_col: gate_col as u32,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    pb.dispatch(
        "mlstm_v1_gates",
        &ops.mlstm_v1.gates,
        &p,
        &[w.clone(), proj.clone()],
        [rows as u32, tokens as u32, 1],
    )?;
    pb.cost(
        4.0 * (rows * k + tokens * (k + rows)) as f64,
        2.0 * (tokens * rows * k) as f64,
    );
    Ok(())
}
