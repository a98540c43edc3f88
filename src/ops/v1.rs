//! Launchers of the original-xLSTM (v1) kernels: LayerNorm/GroupNorm with the 1 + w scale,
//! the causal depthwise conv1d + SiLU with its decode state, block-diagonal (headwise)
//! projections, the gated feed-forward activation and bias adds.
//!
//! WGSL: `wgsl/norms/layer_norm.wgsl`, `wgsl/v1/{conv_silu,headwise,gated_act,bias_add}.wgsl`.
//! Reference: `xlstm_reference::v1::{group_norm, conv_silu_step, headwise, activation}`;
//! tests: `tests/kernels/v1.rs`.
//!
//! Every launcher checks its shapes against the bound slices (rows and columns inside the
//! binding, output rows not overlapping each other, u32 indices) and returns [`Error::Input`]
//! instead of letting a kernel read or write out of bounds. Grids are linear workgroup counts
//! folded into (x, y) so no dimension exceeds 65535.
//!
//! Activation bindings of these kernels are `read_write` in WGSL (even where only read), so the
//! model graph may keep several operands in one buffer: wgpu rejects a buffer that is bound both
//! read-only and read-write in one dispatch, but allows it bound read-write several times.

use super::Compile;
use super::{check_len, check_out_rows, check_rows, u, Ops, Rows};
use crate::error::{Error, Result};
use crate::gpu::{ConstValue, Kernels, LazyPipeline, PlanBuilder, Slice};

/// The gated feed-forward's activation (XL `components/feedforward.py` registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU `x·Φ(x)` (torch default, erf form).
    Gelu,
    Relu,
    /// `relu(x)²`.
    Relu2,
    Sigmoid,
    /// SiLU `x·σ(x)`.
    Swish,
    Selu,
}

/// The pipelines of the v1 kernels.
pub struct V1Pipelines<P = LazyPipeline> {
    /// layer_norm.wgsl by epilogue: Write, Accumulate, MlstmGate.
    layer_norm: [P; 3],
    conv: P,
    conv_update: P,
    headwise_direct: P,
    headwise_rows: P,
    headwise_tiled: P,
    /// gated_act.wgsl by [`act_index`].
    gated_act: [P; 6],
    bias_add: P,
}

impl V1Pipelines {
    pub fn new(kernels: &Kernels) -> Result<Self> {
        Self::build(&|k: &str, e: &str, c: &[(&str, ConstValue)]| Ok(kernels.lazy(k, e, c)))
    }
}

impl<P> V1Pipelines<P> {
    pub(crate) fn build(c: &impl Compile<P>) -> Result<Self> {
        let norm = |mode: u32| c("layer_norm", "main", &[("MODE", ConstValue::U32(mode))]);
        let act = |a: u32| c("gated_act", "main", &[("ACT", ConstValue::U32(a))]);
        Ok(V1Pipelines {
            layer_norm: [norm(0)?, norm(1)?, norm(2)?],
            conv: c("conv_silu", "main", &[])?,
            conv_update: c("conv_silu", "update", &[])?,
            headwise_direct: c("headwise", "direct", &[])?,
            headwise_rows: c("headwise", "rows", &[])?,
            headwise_tiled: c("headwise", "tiled", &[])?,
            gated_act: [act(0)?, act(1)?, act(2)?, act(3)?, act(4)?, act(5)?],
            bias_add: c("bias_add", "main", &[])?,
        })
    }
}

/// The `ACT` constant of gated_act.wgsl.
fn act_index(act: Activation) -> usize {
    match act {
        Activation::Gelu => 0,
        Activation::Relu => 1,
        Activation::Relu2 => 2,
        Activation::Sigmoid => 3,
        Activation::Swish => 4,
        Activation::Selu => 5,
    }
}

/// Largest workgroup count per grid dimension WebGPU guarantees.
const MAX_GRID: usize = 65535;

/// A grid of `n` workgroups, linear index `wid.x + wid.y * grid_x`; returns (grid, grid_x).
fn grid(what: &str, n: usize) -> Result<([u32; 3], u32)> {
    if n == 0 {
        return Ok(([0, 1, 1], 1));
    }
    let gx = n.min(MAX_GRID);
    let gy = n.div_ceil(gx);
    if gy > MAX_GRID {
        return Err(Error::Limit(format!(
            "{what}: {n} workgroups are too many for one dispatch"
        )));
    }
    Ok(([gx as u32, gy as u32, 1], gx as u32))
}

/// What a LayerNorm / GroupNorm does with its result.
#[derive(Clone, Copy)]
pub enum NormOut<'a> {
    /// out = norm(x)
    Write,
    /// out += norm(x) (the residual add after an sLSTM layer)
    Accumulate,
    /// out = (norm(x) + skip ⊙ xc) ⊙ SiLU(z): the v1 mLSTM output gate; `skip` is [width].
    MlstmGate { skip: &'a Slice, xc: &'a Rows, z: &'a Rows },
}

params! {
    struct NormParams for ["layer_norm"] {
        rows: u32,
        width: u32,
        groups: u32,
        gw: u32,
        x_offset: u32,
        x_stride: u32,
        out_offset: u32,
        out_stride: u32,
        xc_offset: u32,
        xc_stride: u32,
        z_offset: u32,
        z_stride: u32,
        has_weight: u32,
        grid_x: u32,
        eps: f32,
        _pad: u32,
    }
}

/// A [`layer_norm`]'s shape and parameters: rows of `width` in `groups` groups, the optional
/// scale (applied as 1 + weight) and epsilon.
#[derive(Clone, Copy)]
pub struct LayerNorm<'a> {
    pub weight: Option<&'a Slice>,
    pub width: usize,
    pub groups: usize,
    pub eps: f32,
}

/// Per-row LayerNorm over `groups` equal groups of `width / groups` columns (1 group: LayerNorm;
/// NH groups: the package's MultiHeadLayerNorm / GroupNorm): centre, divide by
/// sqrt(biased variance + eps), scale by 1 + weight (`None`: scale 1); no bias.
pub fn layer_norm(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &Rows,
    rows: usize,
    n: &LayerNorm,
    out: &Rows,
    epi: NormOut,
) -> Result<()> {
    let LayerNorm {
        weight,
        width,
        groups,
        eps,
    } = *n;
    if width == 0 || groups == 0 || !width.is_multiple_of(groups) {
        return Err(Error::Input(format!(
            "layer_norm: width {width} is not {groups} equal non-empty groups"
        )));
    }
    check_rows("layer_norm x", x, rows, width)?;
    check_out_rows("layer_norm out", out, rows, width)?;
    if let Some(w) = weight {
        check_len("layer_norm weight", w, width)?;
    }
    let (mode, skip, xc, z) = match epi {
        NormOut::Write => (0, &x.buf, x, x),
        NormOut::Accumulate => (1, &x.buf, x, x),
        NormOut::MlstmGate { skip, xc, z } => {
            check_len("layer_norm skip", skip, width)?;
            check_rows("layer_norm xc", xc, rows, width)?;
            check_rows("layer_norm z", z, rows, width)?;
            (2, skip, xc, z)
        }
    };
    let (g, grid_x) = grid("layer_norm", rows * groups)?;
    let p = NormParams {
        rows: u(rows),
        width: u(width),
        groups: u(groups),
        gw: u(width / groups),
        x_offset: u(x.offset),
        x_stride: u(x.stride),
        out_offset: u(out.offset),
        out_stride: u(out.stride),
        xc_offset: u(xc.offset),
        xc_stride: u(xc.stride),
        z_offset: u(z.offset),
        z_stride: u(z.stride),
        has_weight: weight.is_some() as u32,
        grid_x,
        eps,
        _pad: 0,
    };
    let bufs = [
        x.buf.clone(),
        weight.unwrap_or(&x.buf).clone(),
        out.buf.clone(),
        skip.clone(),
        xc.buf.clone(),
        z.buf.clone(),
    ];
    pb.dispatch("layer_norm", &ops.v1.layer_norm[mode], &p, &bufs, g)?;
    let passes = if mode == 2 { 6 } else { 4 };
    pb.cost(4.0 * (passes * rows * width) as f64, 8.0 * (rows * width) as f64);
    Ok(())
}

params! {
    struct ConvParams for ["conv_silu"] {
        tokens: u32,
        width: u32,
        ks: u32,
        col_groups: u32,
        x_offset: u32,
        x_stride: u32,
        out_offset: u32,
        out_stride: u32,
        grid_x: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// A [`conv_silu`]'s channels: `width` channels, kernel size `ks`, weight [width, KS], bias
/// [width] and the rolling state [KS, width].
#[derive(Clone, Copy)]
pub struct Conv<'a> {
    pub width: usize,
    pub ks: usize,
    pub weight: &'a Slice,
    pub bias: &'a Slice,
    pub state: &'a Slice,
}

/// Causal depthwise conv1d + SiLU over `tokens` rows, continuing from `state`, then the state
/// update: out[t, f] = SiLU(bias[f] + Σ_{j<KS} w[f, j] · in(t − (KS − 1) + j, f)) with in(s) = x[s]
/// for s ≥ 0 and state[KS + s] for s < 0. `state` [KS, width] (the package's conv_state: the
/// last KS inputs, newest last) becomes the last KS rows of (state ++ x). `weight` [width, KS].
/// Two dispatches (outputs, then the state update); `out` must not overlap `x` or `state`.
pub fn conv_silu(pb: &mut PlanBuilder, ops: &Ops, x: &Rows, tokens: usize, conv: &Conv, out: &Rows) -> Result<()> {
    let Conv {
        width,
        ks,
        weight,
        bias,
        state,
    } = *conv;
    if ks == 0 || width == 0 {
        return Err(Error::Input(format!(
            "conv_silu: kernel size {ks} and width {width} must be positive"
        )));
    }
    check_rows("conv_silu x", x, tokens, width)?;
    check_out_rows("conv_silu out", out, tokens, width)?;
    check_len("conv_silu weight", weight, width * ks)?;
    check_len("conv_silu bias", bias, width)?;
    check_len("conv_silu state", state, width * ks)?;
    if tokens == 0 {
        return Ok(());
    }
    let col_groups = width.div_ceil(256);
    let mut p = ConvParams {
        tokens: u(tokens),
        width: u(width),
        ks: u(ks),
        col_groups: u(col_groups),
        x_offset: u(x.offset),
        x_stride: u(x.stride),
        out_offset: u(out.offset),
        out_stride: u(out.stride),
        grid_x: 0,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    let (g, grid_x) = grid("conv_silu", tokens * col_groups)?;
    p.grid_x = grid_x;
    let bufs = [
        x.buf.clone(),
        state.clone(),
        weight.clone(),
        bias.clone(),
        out.buf.clone(),
    ];
    pb.dispatch("conv_silu", &ops.v1.conv, &p, &bufs, g)?;
    pb.cost(
        4.0 * (2 * tokens * width + (2 * ks + 1) * width) as f64,
        (2 * ks + 4) as f64 * (tokens * width) as f64,
    );
    // The state update reads the old state rows and x: a second dispatch, after every output.
    let (g, grid_x) = grid("conv_silu state", col_groups)?;
    p.grid_x = grid_x;
    pb.dispatch(
        "conv_silu state",
        &ops.v1.conv_update,
        &p,
        &[x.buf.clone(), state.clone()],
        g,
    )?;
    pb.cost(4.0 * (3 * ks * width) as f64, 0.0);
    Ok(())
}

params! {
    struct HeadwiseParams for ["headwise"] {
        tokens: u32,
        groups: u32,
        width: u32,
        bs: u32,
        split: u32,
        nb: u32,
        first_offset: u32,
        first_stride: u32,
        second_offset: u32,
        second_stride: u32,
        out_offset: u32,
        out_stride: u32,
        has_bias: u32,
        grid_x: u32,
        per_row: u32,
        _pad: u32,
    }
}

/// Blocks up to this size use the one-value-per-invocation kernel.
const HEADWISE_DIRECT_MAX_BS: usize = 16;
/// From this many tokens on, larger blocks use the tiled kernel (else the GEMV-like one).
const HEADWISE_TILED_MIN_TOKENS: usize = 16;

/// The projections of one [`headwise`] call: `groups` of them, the first `split` reading
/// `first` and the rest `second`, each `width` wide in blocks of `bs`; weights `w`
/// [groups, width / bs, bs, bs] and the optional bias [groups · width].
#[derive(Clone, Copy)]
pub struct Headwise<'a> {
    pub split: usize,
    pub groups: usize,
    pub width: usize,
    pub bs: usize,
    pub w: &'a Slice,
    pub bias: Option<&'a Slice>,
}

/// Block-diagonal (headwise) projections, `groups` of them in one dispatch. Projection g reads
/// X = `first` for g < `split`, else `second`:
/// out[t, g·width + b·bs + o] = Σ_{d<bs} X[t, b·bs + d] · w[g, b, o, d] (+ bias[g·width + b·bs + o]).
/// `w` is [groups, width / bs, bs, bs] f32. `out` must not overlap `first` or `second`.
pub fn headwise(
    pb: &mut PlanBuilder,
    ops: &Ops,
    first: &Rows,
    second: &Rows,
    tokens: usize,
    hw: &Headwise,
    out: &Rows,
) -> Result<()> {
    let Headwise {
        split,
        groups,
        width,
        bs,
        w,
        bias,
    } = *hw;
    if bs == 0 || width == 0 || groups == 0 || !width.is_multiple_of(bs) {
        return Err(Error::Input(format!(
            "headwise: width {width} is not a whole number of {bs}-wide blocks ({groups} projections)"
        )));
    }
    let total = groups * width;
    if split > 0 {
        check_rows("headwise first", first, tokens, width)?;
    }
    if split < groups {
        check_rows("headwise second", second, tokens, width)?;
    }
    check_out_rows("headwise out", out, tokens, total)?;
    check_len("headwise weight", w, total * bs)?;
    if let Some(b) = bias {
        check_len("headwise bias", b, total)?;
    }
    let nb = width / bs;
    let (label, pipeline, per_row, n) = if bs <= HEADWISE_DIRECT_MAX_BS {
        let per_row = total.div_ceil(256);
        ("headwise direct", &ops.v1.headwise_direct, per_row, tokens * per_row)
    } else if tokens < HEADWISE_TILED_MIN_TOKENS {
        let per_row = total.div_ceil(8);
        ("headwise rows", &ops.v1.headwise_rows, per_row, tokens * per_row)
    } else {
        let per_row = groups * nb * bs.div_ceil(64);
        (
            "headwise tiled",
            &ops.v1.headwise_tiled,
            per_row,
            tokens.div_ceil(64) * per_row,
        )
    };
    let (g, grid_x) = grid(label, n)?;
    let p = HeadwiseParams {
        tokens: u(tokens),
        groups: u(groups),
        width: u(width),
        bs: u(bs),
        split: u(split.min(groups)),
        nb: u(nb),
        first_offset: u(first.offset),
        first_stride: u(first.stride),
        second_offset: u(second.offset),
        second_stride: u(second.stride),
        out_offset: u(out.offset),
        out_stride: u(out.stride),
        has_bias: bias.is_some() as u32,
        grid_x,
        per_row: u(per_row),
        _pad: 0,
    };
    let bufs = [
        first.buf.clone(),
        second.buf.clone(),
        w.clone(),
        bias.unwrap_or(w).clone(),
        out.buf.clone(),
    ];
    pb.dispatch(label, pipeline, &p, &bufs, g)?;
    pb.cost(
        4.0 * (total * bs + tokens * 2 * total) as f64,
        2.0 * (tokens * total * bs) as f64,
    );
    Ok(())
}

params! {
    struct GatedParams for ["gated_act"] {
        tokens: u32,
        f: u32,
        u_offset: u32,
        u_stride: u32,
        out_offset: u32,
        out_stride: u32,
        col_groups: u32,
        grid_x: u32,
    }
}

/// out[t, j] = act(u[t, j]) · u[t, f + j] for j < f: the gated feed-forward's hidden layer
/// (rows of `u` are [gate | up]).
pub fn gated_act(
    pb: &mut PlanBuilder,
    ops: &Ops,
    act: Activation,
    u_in: &Rows,
    tokens: usize,
    f: usize,
    out: &Rows,
) -> Result<()> {
    if f == 0 {
        return Err(Error::Input("gated_act: zero width".into()));
    }
    check_rows("gated_act u", u_in, tokens, 2 * f)?;
    check_out_rows("gated_act out", out, tokens, f)?;
    let col_groups = f.div_ceil(256);
    let (g, grid_x) = grid("gated_act", tokens * col_groups)?;
    let p = GatedParams {
        tokens: u(tokens),
        f: u(f),
        u_offset: u(u_in.offset),
        u_stride: u(u_in.stride),
        out_offset: u(out.offset),
        out_stride: u(out.stride),
        col_groups: u(col_groups),
        grid_x,
    };
    pb.dispatch(
        "gated_act",
        &ops.v1.gated_act[act_index(act)],
        &p,
        &[u_in.buf.clone(), out.buf.clone()],
        g,
    )?;
    pb.cost(12.0 * (tokens * f) as f64, 20.0 * (tokens * f) as f64);
    Ok(())
}

params! {
    struct BiasParams for ["bias_add"] {
        tokens: u32,
        width: u32,
        y_offset: u32,
        y_stride: u32,
        col_groups: u32,
        grid_x: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// y[t, j] += bias[j] for j < width.
pub fn bias_add(pb: &mut PlanBuilder, ops: &Ops, y: &Rows, bias: &Slice, tokens: usize, width: usize) -> Result<()> {
    if width == 0 {
        return Ok(());
    }
    check_out_rows("bias_add y", y, tokens, width)?;
    check_len("bias_add bias", bias, width)?;
    let col_groups = width.div_ceil(256);
    let (g, grid_x) = grid("bias_add", tokens * col_groups)?;
    let p = BiasParams {
        tokens: u(tokens),
        width: u(width),
        y_offset: u(y.offset),
        y_stride: u(y.stride),
        col_groups: u(col_groups),
        grid_x,
        _pad0: 0,
        _pad1: 0,
    };
    pb.dispatch("bias_add", &ops.v1.bias_add, &p, &[y.buf.clone(), bias.clone()], g)?;
    pb.cost(4.0 * (2 * tokens * width + width) as f64, (tokens * width) as f64);
    Ok(())
}
