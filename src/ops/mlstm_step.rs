//! One recurrent mLSTM step (decode and the `recurrent` prefill strategy):
//! `wgsl/mlstm_step/mlstm_step.wgsl`.
//!
//! Reference: `xlstm_reference::mlstm::step`; tests: `tests/kernels/mlstm_step.rs`.

use super::{check_len, groups, u, CellLayout, Ops};
use crate::error::{Error, Result};
use crate::gpu::{PlanBuilder, Slice};

/// dv columns per workgroup of mlstm_step.wgsl (TILE_V).
const STEP_TILE_V: usize = 16;

params! {
    struct StepParams for ["mlstm_step"] {
        num_heads: u32,
        dqk: u32,
        dv: u32,
        row: u32,
        proj_stride: u32,
        q_col: u32,
        k_col: u32,
        v_col: u32,
        i_col: u32,
        f_col: u32,
        parity: u32,
        out_offset: u32,
        scale: f32,
        eps: f32,
        soft_cap: f32,
        _pad: u32,
    }
}

/// Recurrent state of one mLSTM layer: C [NH, dqk, dv], n [2, NH, dqk], m [2, NH] (n and m
/// double-buffered, selected by the session's parity).
pub struct CellStateBuffers {
    pub c: Slice,
    pub n: Slice,
    pub m: Slice,
}

/// One recurrent step: the token in row `row` of `proj` (columns per `l`), the gate biases
/// `bias` [2, NH], the layer's state at `parity`, and h [NH*dv] written at `h_offset` of `h`.
#[derive(Clone, Copy)]
pub struct MlstmStep<'a> {
    pub l: &'a CellLayout,
    pub proj: &'a Slice,
    pub bias: &'a Slice,
    pub row: usize,
    pub state: &'a CellStateBuffers,
    pub parity: u32,
    pub h: &'a Slice,
    pub h_offset: usize,
}

/// One recurrent step (see [`MlstmStep`]).
pub fn mlstm_step(pb: &mut PlanBuilder, ops: &Ops, a: &MlstmStep) -> Result<()> {
    check_step_lengths(a)?;
    let MlstmStep {
        l,
        proj,
        bias,
        row,
        state,
        parity,
        h,
        h_offset,
    } = *a;
    let p = StepParams {
        num_heads: u(l.num_heads),
        dqk: u(l.dqk),
        dv: u(l.dv),
        row: u(row),
        proj_stride: u(l.proj_stride),
        q_col: u(l.q_col),
        k_col: u(l.k_col),
        v_col: u(l.v_col),
        i_col: u(l.i_col),
        f_col: u(l.f_col),
        parity,
        out_offset: u(h_offset),
        scale: l.scale(),
        eps: l.eps,
        soft_cap: l.soft_cap,
        _pad: 0,
    };
    let bufs = [
        proj.clone(),
        bias.clone(),
        state.c.clone(),
        state.n.clone(),
        state.m.clone(),
        h.clone(),
    ];
    pb.dispatch(
        "mlstm_step",
        &ops.step,
        &p,
        &bufs,
        [groups(l.dv, STEP_TILE_V), u(l.num_heads), 1],
    )?;
    // Per head: C (dqk x dv) read and written, q, k, v and h; C = f C + i k v^T and h = q^T C.
    let (nh, dqk, dv) = (l.num_heads as f64, l.dqk as f64, l.dv as f64);
    pb.cost(
        nh * (8.0 * dqk * dv + 4.0 * (2.0 * dqk + 2.0 * dv)),
        nh * 5.0 * dqk * dv,
    );
    Ok(())
}

/// mlstm_step.wgsl runs without runtime checks (`gpu::kernels::TRUSTED`): every binding must hold
/// what the parameters address, and the parity must select one of the two n/m slots.
fn check_step_lengths(a: &MlstmStep) -> Result<()> {
    let MlstmStep {
        l,
        proj,
        bias,
        row,
        state,
        parity,
        h,
        h_offset,
    } = *a;
    if parity > 1 {
        return Err(Error::Input(format!("mlstm_step: parity must be 0 or 1, got {parity}")));
    }
    let nh = l.num_heads;
    let qk = nh.saturating_mul(l.dqk);
    let v = nh.saturating_mul(l.dv);
    // The last column of the token's row the kernel reads.
    let cols = [
        l.q_col.saturating_add(qk),
        l.k_col.saturating_add(qk),
        l.v_col.saturating_add(v),
        l.i_col.saturating_add(nh),
        l.f_col.saturating_add(nh),
    ];
    let row_end = row
        .saturating_mul(l.proj_stride)
        .saturating_add(cols.into_iter().max().unwrap_or(0));
    check_len("mlstm_step proj", proj, row_end)?;
    check_len("mlstm_step gate bias", bias, nh.saturating_mul(2))?;
    check_len("mlstm_step C", &state.c, qk.saturating_mul(l.dv))?;
    check_len("mlstm_step n", &state.n, qk.saturating_mul(2))?;
    check_len("mlstm_step m", &state.m, nh.saturating_mul(2))?;
    check_len("mlstm_step h", h, h_offset.saturating_add(v))
}
