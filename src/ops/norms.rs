//! Normalisations of xLSTM Large: RMSNorm (`wgsl/norms/rms_norm.wgsl`) and the per-head LayerNorm
//! times the output gate (`wgsl/norms/head_norm_gate.wgsl`). The v1 LayerNorm/GroupNorm
//! (`wgsl/norms/layer_norm.wgsl`) is launched by [`super::v1`].
//!
//! Reference: `xlstm_reference::ops::{rms_norm, head_layer_norm}`; tests: `tests/kernels/norms.rs`.

use super::{check_len, check_out_rows, check_rows, check_strided, u, CellLayout, Ops};
use crate::error::Result;
use crate::gpu::{PlanBuilder, Slice};

params! {
    struct RmsNormParams for ["rms_norm"] {
        rows: u32,
        dim: u32,
        x_stride: u32,
        x_offset: u32,
        y_stride: u32,
        y_offset: u32,
        eps: f32,
        _pad: u32,
    }
}

/// A strided view of a row-major f32 matrix inside a buffer: row r starts at offset + r * stride.
#[derive(Clone, Debug)]
pub struct Rows {
    pub buf: Slice,
    pub offset: usize,
    pub stride: usize,
}

impl Rows {
    pub fn new(buf: &Slice, stride: usize) -> Rows {
        Rows {
            buf: buf.clone(),
            offset: 0,
            stride,
        }
    }
    /// The same matrix starting at row `r`.
    pub fn from_row(&self, r: usize) -> Rows {
        Rows {
            buf: self.buf.clone(),
            offset: self.offset + r * self.stride,
            stride: self.stride,
        }
    }
    /// The same rows starting at column `c`.
    pub fn col(&self, c: usize) -> Rows {
        Rows {
            buf: self.buf.clone(),
            offset: self.offset + c,
            stride: self.stride,
        }
    }
}

/// A normalisation's learned scale and epsilon (the pair every norm kernel takes).
#[derive(Clone, Copy, Debug)]
pub struct Norm<'a> {
    pub weight: &'a Slice,
    pub eps: f32,
}

impl<'a> Norm<'a> {
    pub fn new(weight: &'a Slice, eps: f32) -> Self {
        Norm { weight, eps }
    }
}

/// y = x / sqrt(mean(x^2) + eps) * weight, per row, for `rows` rows of `dim` values.
pub fn rms_norm(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &Rows,
    norm: Norm,
    dim: usize,
    rows: usize,
    y: &Rows,
) -> Result<()> {
    let Norm { weight, eps } = norm;
    check_rows("rms_norm x", x, rows, dim)?;
    check_len("rms_norm weight", weight, dim)?;
    check_out_rows("rms_norm y", y, rows, dim)?;
    let p = RmsNormParams {
        rows: u(rows),
        dim: u(dim),
        x_stride: u(x.stride),
        x_offset: u(x.offset),
        y_stride: u(y.stride),
        y_offset: u(y.offset),
        eps,
        _pad: 0,
    };
    pb.dispatch(
        "rms_norm",
        &ops.rms_norm,
        &p,
        &[x.buf.clone(), weight.clone(), y.buf.clone()],
        [u(rows), 1, 1],
    )?;
    // Each row is read twice (statistics, then the scaling) and written once.
    pb.cost(4.0 * (3 * rows * dim + dim) as f64, 4.0 * (rows * dim) as f64);
    Ok(())
}

params! {
    struct HeadNormParams for ["head_norm_gate"] {
        tokens: u32,
        num_heads: u32,
        dv: u32,
        proj_stride: u32,
        o_col: u32,
        eps: f32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// What [`head_norm_gate`] reads and writes: `tokens` rows of the cell output `h` [tokens, NH*dv],
/// the output-gate pre-activations in `proj` (at `l.o_col`, rows `l.proj_stride` apart), the
/// head-norm scale, and the result `y` [tokens, NH*dv].
#[derive(Clone, Copy)]
pub struct HeadNormGate<'a> {
    pub l: &'a CellLayout,
    pub h: &'a Slice,
    pub norm: Norm<'a>,
    pub proj: &'a Slice,
    pub tokens: usize,
    pub y: &'a Slice,
}

/// Per-head LayerNorm of h times sigmoid of the output gate: y [tokens, NH*dv].
pub fn head_norm_gate(pb: &mut PlanBuilder, ops: &Ops, a: &HeadNormGate) -> Result<()> {
    let HeadNormGate {
        l,
        h,
        norm: Norm { weight, eps },
        proj,
        tokens,
        y,
    } = *a;
    let width = l.num_heads.saturating_mul(l.dv);
    check_len("head_norm_gate h", h, tokens.saturating_mul(width))?;
    check_len("head_norm_gate weight", weight, width)?;
    check_strided("head_norm_gate gate", proj, l.o_col, l.proj_stride, tokens, width)?;
    check_len("head_norm_gate y", y, tokens.saturating_mul(width))?;
    let p = HeadNormParams {
        tokens: u(tokens),
        num_heads: u(l.num_heads),
        dv: u(l.dv),
        proj_stride: u(l.proj_stride),
        o_col: u(l.o_col),
        eps,
        _pad0: 0,
        _pad1: 0,
    };
    pb.dispatch(
        "head_norm_gate",
        &ops.head_norm_gate,
        &p,
        &[h.clone(), weight.clone(), proj.clone(), y.clone()],
        [u(l.num_heads), u(tokens), 1],
    )?;
    // h, the output gates and y per value; mean, variance, scale and the sigmoid gate.
    pb.cost(
        4.0 * (3 * tokens * width + width) as f64,
        12.0 * (tokens * width) as f64,
    );
    Ok(())
}
