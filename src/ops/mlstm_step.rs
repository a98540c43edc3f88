//! One recurrent mLSTM step (decode and the `recurrent` prefill strategy):
//! `wgsl/mlstm_step/mlstm_step.wgsl`.
//!
//! Reference: `xlstm_reference::mlstm::step`; tests: `tests/kernels.rs` (step).

use super::{groups, u, CellLayout, Ops};
use crate::error::Result;
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

/// One recurrent step for the token in row `row` of `proj`; h written at h_offset.
#[allow(clippy::too_many_arguments)] // one argument per binding and shape
pub fn mlstm_step(
    pb: &mut PlanBuilder,
    ops: &Ops,
    l: &CellLayout,
    proj: &Slice,
    bias: &Slice,
    row: usize,
    state: &CellStateBuffers,
    parity: u32,
    h: &Slice,
    h_offset: usize,
) -> Result<()> {
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
    )
}
