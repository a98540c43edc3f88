//! One function per kernel: each takes a [`PlanBuilder`] and appends the dispatches of one
//! operation, with the parameter block laid out exactly as the WGSL `Params` struct. Shapes are
//! checked here, so a wrong call fails on the host instead of reading out of bounds on the GPU.
//! Launchers take one argument per kernel binding and shape, hence the many parameters.
#![allow(clippy::too_many_arguments)]

use crate::error::{Error, Result};
use crate::gpu::{ConstValue, Kernels, PlanBuilder, Slice};
use crate::model::weights::{GpuMatrix, WeightDtype};
use bytemuck::{Pod, Zeroable};

pub mod mlstm_v1;
pub mod slstm;
pub mod v1;

/// Compiled pipelines for one weight format.
pub struct Ops {
    embed: wgpu::ComputePipeline,
    rms_norm: wgpu::ComputePipeline,
    gemm: wgpu::ComputePipeline,
    gemv: wgpu::ComputePipeline,
    gemv_norm: wgpu::ComputePipeline,
    gemv_swiglu: wgpu::ComputePipeline,
    /// The out-projection GEMV with the head norm and output gate fused (where the adapter has
    /// the workgroup memory for its staged input).
    gemv_head_norm: Option<wgpu::ComputePipeline>,
    /// Rows per GEMV workgroup (256 / lanes).
    gemv_rows: usize,
    /// The matrix-unit GEMM, where the adapter offers it and weights are f16.
    gemm_coop: Option<wgpu::ComputePipeline>,
    gates: wgpu::ComputePipeline,
    chunk_state: wgpu::ComputePipeline,
    chunk_out: wgpu::ComputePipeline,
    /// The chunkwise kernels on the matrix units, where the adapter offers them and weights are
    /// f16 (the same condition as `gemm_coop`).
    chunk_state_coop: Option<wgpu::ComputePipeline>,
    chunk_out_coop: Option<wgpu::ComputePipeline>,
    step: wgpu::ComputePipeline,
    head_norm_gate: wgpu::ComputePipeline,
    swiglu: wgpu::ComputePipeline,
    argmax: wgpu::ComputePipeline,
    fill_random: wgpu::ComputePipeline,
    sample: wgpu::ComputePipeline,
    /// Original-xLSTM kernels (norms, conv, headwise projections, gated FFN).
    pub(crate) v1: v1::V1Pipelines,
    /// The v1 mLSTM gate projection.
    pub(crate) mlstm_v1: mlstm_v1::MlstmV1Pipelines,
    /// sLSTM recurrence kernels.
    pub(crate) slstm: slstm::SlstmPipelines,
}

/// dv columns per workgroup of mlstm_step.wgsl (TILE_V).
const STEP_TILE_V: usize = 16;

/// Workgroup shapes of the main kernels (a tuning knob: the best shape depends on the adapter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelShapes {
    /// Invocations per weight row in gemv.wgsl (8, 16, 32, 64, 128 or 256; 256 / lanes rows per
    /// workgroup).
    pub gemv_lanes: u32,
    /// Decode runs the head norm and output gate inside the out-projection GEMV
    /// (gemv_head_norm.wgsl) where the shapes and the adapter allow it; off: the two kernels.
    pub fused_head_norm: bool,
}

impl Default for KernelShapes {
    fn default() -> Self {
        KernelShapes {
            gemv_lanes: 64,
            fused_head_norm: true,
        }
    }
}

impl KernelShapes {
    pub fn validate(&self) -> Result<()> {
        if ![8, 16, 32, 64, 128, 256].contains(&self.gemv_lanes) {
            return Err(Error::Input(format!(
                "gemv lanes must be 8, 16, 32, 64, 128 or 256, got {}",
                self.gemv_lanes
            )));
        }
        Ok(())
    }
}

/// Largest chunk the chunkwise kernels' workgroup memory is laid out for.
pub const MAX_CHUNK: usize = 64;

/// Workgroup memory gemm_coop.wgsl declares (two 128 x 72 f16 staging tiles and 8 KiB of
/// epilogue scratch).
const COOP_GEMM_WORKGROUP_BYTES: u32 = 2 * 128 * 72 * 2 + 2048 * 4;

/// Whether gemm_coop.wgsl can run: 16x16 f16 cooperative matrices, f16 shaders, subgroups of
/// exactly 32 invocations (the kernel's 256 invocations are 8 subgroups with fixed tile roles),
/// and 44 KiB of workgroup memory.
pub fn coop_gemm_supported(caps: &crate::gpu::Caps) -> bool {
    caps.coop_16x16_f16
        && caps.f16
        && caps.subgroup
        && caps.subgroup_min_size == 32
        && caps.subgroup_max_size == 32
        && caps.max_workgroup_storage >= COOP_GEMM_WORKGROUP_BYTES
}

/// Inputs gemv_head_norm.wgsl stages (its KMAX) and the workgroup memory it declares (the staged
/// input, 1024 row partials, per-head mean and scale).
const GEMV_HEAD_NORM_MAX_INPUTS: usize = 4096;
const GEMV_HEAD_NORM_WORKGROUP_BYTES: u32 = (GEMV_HEAD_NORM_MAX_INPUTS as u32 + 1024 + 2 * 256) * 4;
/// Rows per workgroup of gemv_head_norm.wgsl (ROWS).
const GEMV_HEAD_NORM_ROWS: usize = 16;

/// Workgroup memory mlstm_chunk_state_coop.wgsl declares (two 64 x 72 f16 staging tiles, a
/// 64 x 68 f32 product tile, the chunk's n sums, the gates).
const COOP_CHUNK_STATE_WORKGROUP_BYTES: u32 = 2 * 64 * 72 * 2 + 64 * 68 * 4 + 64 * 4 + 64 * 4 + 16;
/// Workgroup memory mlstm_chunk_out_coop.wgsl declares (three 64 x 72 f16 staging tiles, a
/// 64 x 68 f32 score tile, four 64-entry and two 256-entry f32 arrays).
const COOP_CHUNK_OUT_WORKGROUP_BYTES: u32 = 3 * 64 * 72 * 2 + 64 * 68 * 4 + 4 * 64 * 4 + 2 * 256 * 4;

/// Whether the matrix-unit chunkwise kernels can run: what `gemm_coop` needs (16x16 f16
/// cooperative matrices, f16 shaders, subgroups of exactly 32) and their workgroup memory.
pub fn coop_chunk_supported(caps: &crate::gpu::Caps) -> bool {
    coop_gemm_supported(caps)
        && caps.max_workgroup_storage >= COOP_CHUNK_STATE_WORKGROUP_BYTES.max(COOP_CHUNK_OUT_WORKGROUP_BYTES)
}

impl Ops {
    /// Whether the chunkwise mLSTM phases run on the matrix units
    /// ([`mlstm_chunk_state_coop`], [`mlstm_chunk_out_coop`]).
    pub fn uses_coop_chunk(&self) -> bool {
        self.chunk_state_coop.is_some() && self.chunk_out_coop.is_some()
    }

    /// Whether prefill GEMMs run on the matrix units.
    pub fn uses_coop_gemm(&self) -> bool {
        self.gemm_coop.is_some()
    }

    pub fn new(kernels: &Kernels, dtype: WeightDtype) -> Result<Self> {
        Self::with_shapes(kernels, dtype, KernelShapes::default())
    }

    pub fn with_shapes(kernels: &Kernels, dtype: WeightDtype, shapes: KernelShapes) -> Result<Self> {
        shapes.validate()?;
        let w = [("WEIGHT_F16", ConstValue::Bool(dtype.is_f16()))];
        let lanes = shapes.gemv_lanes;
        let gemv = |mode: u32| {
            kernels.pipeline(
                "gemv",
                "main",
                &[
                    w[0].clone(),
                    ("X_MODE", ConstValue::U32(mode)),
                    ("LANES", ConstValue::U32(lanes)),
                    ("ROWS", ConstValue::U32(256 / lanes)),
                ],
            )
        };
        Ok(Ops {
            embed: kernels.pipeline("embed", "main", &w)?,
            rms_norm: kernels.pipeline("rms_norm", "main", &[])?,
            gemm: kernels.pipeline("gemm", "main", &w)?,
            gemv: gemv(0)?,
            gemv_norm: gemv(1)?,
            gemv_swiglu: gemv(2)?,
            gemv_head_norm: if shapes.fused_head_norm
                && kernels.caps().max_workgroup_storage >= GEMV_HEAD_NORM_WORKGROUP_BYTES
            {
                Some(kernels.pipeline("gemv_head_norm", "main", &w)?)
            } else {
                None
            },
            gemv_rows: (256 / lanes) as usize,
            gemm_coop: if dtype.is_f16() && coop_gemm_supported(kernels.caps()) {
                Some(kernels.pipeline("gemm_coop", "main", &[])?)
            } else {
                None
            },
            gates: kernels.pipeline("mlstm_gates", "main", &[])?,
            chunk_state: kernels.pipeline("mlstm_chunk_state", "main", &[])?,
            chunk_out: kernels.pipeline("mlstm_chunk_out", "main", &[])?,
            chunk_state_coop: if dtype.is_f16() && coop_chunk_supported(kernels.caps()) {
                Some(kernels.pipeline("mlstm_chunk_state_coop", "main", &[])?)
            } else {
                None
            },
            chunk_out_coop: if dtype.is_f16() && coop_chunk_supported(kernels.caps()) {
                Some(kernels.pipeline("mlstm_chunk_out_coop", "main", &[])?)
            } else {
                None
            },
            step: kernels.pipeline("mlstm_step", "main", &[])?,
            head_norm_gate: kernels.pipeline("head_norm_gate", "main", &[])?,
            swiglu: kernels.pipeline("swiglu", "main", &[])?,
            argmax: kernels.pipeline("argmax", "main", &[])?,
            fill_random: kernels.pipeline("fill_random", "main", &w)?,
            sample: kernels.pipeline("sample", "main", &[])?,
            v1: v1::V1Pipelines::new(kernels)?,
            mlstm_v1: mlstm_v1::MlstmV1Pipelines::new(kernels)?,
            slstm: slstm::SlstmPipelines::new(kernels)?,
        })
    }
}

fn u(x: usize) -> u32 {
    x as u32
}

fn groups(n: usize, per: usize) -> u32 {
    n.div_ceil(per) as u32
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EmbedParams {
    tokens: u32,
    dim: u32,
    kp: u32,
    row0: u32,
    rows: u32,
    ids_offset: u32,
    _pad: [u32; 2],
}

/// out[t, :] = table[ids[ids_offset + t], :] for t < tokens.
pub fn embed(
    pb: &mut PlanBuilder,
    ops: &Ops,
    ids: &Slice,
    ids_offset: usize,
    tokens: usize,
    table: &GpuMatrix,
    out: &Slice,
) -> Result<()> {
    for (i, part) in table.parts.iter().enumerate() {
        let p = EmbedParams {
            tokens: u(tokens),
            dim: u(table.cols),
            kp: u(table.kp),
            row0: u(part.row0),
            rows: u(part.rows),
            ids_offset: u(ids_offset),
            _pad: [0; 2],
        };
        pb.dispatch(
            "embed",
            &ops.embed,
            &p,
            &[ids.clone(), table.part_slice(i), out.clone()],
            [groups(table.cols, 512), u(tokens), 1],
        )?;
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RmsNormParams {
    rows: u32,
    dim: u32,
    x_stride: u32,
    x_offset: u32,
    y_stride: u32,
    y_offset: u32,
    eps: f32,
    _pad: u32,
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

/// y = x / sqrt(mean(x^2) + eps) * weight, per row.
pub fn rms_norm(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &Rows,
    weight: &Slice,
    dim: usize,
    eps: f32,
    rows: usize,
    y: &Rows,
) -> Result<()> {
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
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GemmParams {
    tokens: u32,
    n: u32,
    k: u32,
    kp: u32,
    x_stride: u32,
    x_offset: u32,
    y_stride: u32,
    y_offset: u32,
    accumulate: u32,
    soft_cap: f32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GemvParams {
    n: u32,
    k: u32,
    kp: u32,
    x_offset: u32,
    y_offset: u32,
    accumulate: u32,
    soft_cap: f32,
    eps: f32,
}

/// How a matmul writes its result.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue {
    /// Add into the output (residual connection) instead of overwriting it.
    pub accumulate: bool,
    /// Apply cap * tanh(v / cap) when > 0.
    pub soft_cap: f32,
}

/// y[t, :w.rows] (+)= x[t, :w.cols] W^T for t < tokens. One token uses the GEMV kernel.
pub fn matmul(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &Rows,
    tokens: usize,
    w: &GpuMatrix,
    y: &Rows,
    epi: Epilogue,
) -> Result<()> {
    for (i, part) in w.parts.iter().enumerate() {
        if tokens == 1 {
            gemv_part(pb, ops.gemv_rows, &ops.gemv, "gemv", x, &x.buf, w, i, y, epi, 0.0)?;
            continue;
        }
        // The matrix-unit GEMM where the adapter has one (128 x 128 tiles), else the tiled one.
        let (label, pipeline, tile) = match &ops.gemm_coop {
            Some(coop) => ("gemm_coop", coop, 128),
            None => ("gemm", &ops.gemm, 64),
        };
        let p = GemmParams {
            tokens: u(tokens),
            n: u(part.rows),
            k: u(w.cols),
            kp: u(w.kp),
            x_stride: u(x.stride),
            x_offset: u(x.offset),
            y_stride: u(y.stride),
            y_offset: u(y.offset + part.row0),
            accumulate: epi.accumulate as u32,
            soft_cap: epi.soft_cap,
            // gemm_coop: whether y's binding starts 16-byte aligned (its direct fragment stores
            // need aligned rows); the tiled kernel ignores it.
            _pad: [y.buf.offset.is_multiple_of(16) as u32, 0],
        };
        let bufs = [x.buf.clone(), w.part_slice(i), y.buf.clone()];
        // gemm_coop walks token tiles first (neighbouring workgroups share weight tiles).
        let grid = if ops.gemm_coop.is_some() {
            [groups(tokens, tile), groups(part.rows, tile), 1]
        } else {
            [groups(part.rows, tile), groups(tokens, tile), 1]
        };
        pb.dispatch(label, pipeline, &p, &bufs, grid)?;
        let io = 4.0 * (tokens * (w.cols + 2 * part.rows)) as f64;
        pb.cost(part.buf.len() as f64 + io, 2.0 * (tokens * part.rows * w.cols) as f64);
    }
    Ok(())
}

/// One GEMV dispatch over part `i` of `w`; `aux` is the transform's extra input (any buffer when
/// the variant has none: the binding exists in every variant).
fn gemv_part(
    pb: &mut PlanBuilder,
    rows_per_group: usize,
    pipeline: &wgpu::ComputePipeline,
    label: &'static str,
    x: &Rows,
    aux: &Slice,
    w: &GpuMatrix,
    i: usize,
    y: &Rows,
    epi: Epilogue,
    eps: f32,
) -> Result<()> {
    let part = &w.parts[i];
    let p = GemvParams {
        n: u(part.rows),
        k: u(w.cols),
        kp: u(w.kp),
        x_offset: u(x.offset),
        y_offset: u(y.offset + part.row0),
        accumulate: epi.accumulate as u32,
        soft_cap: epi.soft_cap,
        eps,
    };
    let bufs = [x.buf.clone(), w.part_slice(i), y.buf.clone(), aux.clone()];
    pb.dispatch(label, pipeline, &p, &bufs, [groups(part.rows, rows_per_group), 1, 1])?;
    pb.cost(
        part.buf.len() as f64 + 4.0 * (w.cols + 2 * part.rows) as f64,
        2.0 * (part.rows * w.cols) as f64,
    );
    Ok(())
}

/// y (+)= W (RMSNorm(x) * norm) for one token: the norm is computed inside the GEMV.
pub fn gemv_rms_norm(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &Rows,
    norm: &Slice,
    eps: f32,
    w: &GpuMatrix,
    y: &Rows,
    epi: Epilogue,
) -> Result<()> {
    for i in 0..w.parts.len() {
        gemv_part(
            pb,
            ops.gemv_rows,
            &ops.gemv_norm,
            "gemv+norm",
            x,
            norm,
            w,
            i,
            y,
            epi,
            eps,
        )?;
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GemvHeadNormParams {
    n: u32,
    k: u32,
    kp: u32,
    x_offset: u32,
    y_offset: u32,
    accumulate: u32,
    soft_cap: f32,
    eps: f32,
    gate_offset: u32,
    head_dim: u32,
    _pad: [u32; 2],
}

/// Whether [`gemv_head_norm_gate`] can run for `num_heads` heads of `head_dim` inputs and
/// weights whose rows are `kp` wide: the adapter has the kernel, the staged input fits, each
/// invocation's run of `width / 256` (at least 1) inputs stays within one head, heads are a
/// multiple of 4 wide and there are at most 256 of them.
pub fn gemv_head_norm_fits(ops: &Ops, num_heads: usize, head_dim: usize, kp: usize) -> bool {
    let width = num_heads * head_dim;
    let per = (width / 256).max(1);
    ops.gemv_head_norm.is_some()
        && kp <= GEMV_HEAD_NORM_MAX_INPUTS
        && (1..=256).contains(&num_heads)
        && head_dim.is_multiple_of(4)
        && (width <= 256 || width.is_multiple_of(256))
        && head_dim.is_multiple_of(per)
}

/// y (+)= W (HeadNorm(h) * norm * sigmoid(o)) for one token: xLSTM Large's per-head LayerNorm
/// and output gate inside the out-projection GEMV (one dispatch instead of two). `h` is the mLSTM
/// output row (`w.cols = num_heads * head_dim` values), `gate` the output-gate pre-activations,
/// `norm` the head-norm weight. Requires [`gemv_head_norm_fits`].
#[allow(clippy::too_many_arguments)]
pub fn gemv_head_norm_gate(
    pb: &mut PlanBuilder,
    ops: &Ops,
    h: &Rows,
    head_dim: usize,
    norm: &Slice,
    gate: &Rows,
    eps: f32,
    w: &GpuMatrix,
    y: &Rows,
    epi: Epilogue,
) -> Result<()> {
    let heads = w.cols / head_dim.max(1);
    let pipeline = match &ops.gemv_head_norm {
        Some(p) if heads * head_dim == w.cols && gemv_head_norm_fits(ops, heads, head_dim, w.kp) => p,
        _ => {
            return Err(Error::Gpu(format!(
                "fused head norm: {} inputs in heads of {head_dim} do not fit the kernel on this adapter",
                w.cols
            )))
        }
    };
    for (i, part) in w.parts.iter().enumerate() {
        let p = GemvHeadNormParams {
            n: u(part.rows),
            k: u(w.cols),
            kp: u(w.kp),
            x_offset: u(h.offset),
            y_offset: u(y.offset + part.row0),
            accumulate: epi.accumulate as u32,
            soft_cap: epi.soft_cap,
            eps,
            gate_offset: u(gate.offset),
            head_dim: u(head_dim),
            _pad: [0; 2],
        };
        let bufs = [
            h.buf.clone(),
            w.part_slice(i),
            y.buf.clone(),
            norm.clone(),
            gate.buf.clone(),
        ];
        pb.dispatch(
            "gemv+head_norm",
            pipeline,
            &p,
            &bufs,
            [groups(part.rows, GEMV_HEAD_NORM_ROWS), 1, 1],
        )?;
        pb.cost(
            part.buf.len() as f64 + 4.0 * (3 * w.cols + 2 * part.rows) as f64,
            2.0 * (part.rows * w.cols) as f64,
        );
    }
    Ok(())
}

/// y (+)= W (silu(u[..k]) * u[k..2k]) for one token, u the fused [gate | up] row (k = w.cols).
pub fn gemv_swiglu(pb: &mut PlanBuilder, ops: &Ops, u_in: &Rows, w: &GpuMatrix, y: &Rows, epi: Epilogue) -> Result<()> {
    for i in 0..w.parts.len() {
        gemv_part(
            pb,
            ops.gemv_rows,
            &ops.gemv_swiglu,
            "gemv+swiglu",
            u_in,
            &u_in.buf,
            w,
            i,
            y,
            epi,
            0.0,
        )?;
    }
    Ok(())
}

/// Column layout of the fused q|k|v|o|i|f projection output, and the cell's dimensions.
#[derive(Clone, Copy, Debug)]
pub struct CellLayout {
    pub num_heads: usize,
    pub dqk: usize,
    pub dv: usize,
    pub proj_stride: usize,
    pub q_col: usize,
    pub k_col: usize,
    pub v_col: usize,
    pub o_col: usize,
    pub i_col: usize,
    pub f_col: usize,
    /// Soft cap `cap·tanh(x / cap)` of the input and forget gate pre-activations (xLSTM Large:
    /// 15); `<= 0` means no cap (the original xLSTM's mLSTM).
    pub soft_cap: f32,
    pub eps: f32,
}

impl CellLayout {
    /// The xLSTM Large layout: [q (NH*dqk) | k | v (NH*dv) | o | i (NH) | f (NH)].
    pub fn fused(num_heads: usize, dqk: usize, dv: usize, soft_cap: f32, eps: f32) -> Self {
        let qk = num_heads * dqk;
        let v = num_heads * dv;
        CellLayout {
            num_heads,
            dqk,
            dv,
            proj_stride: 2 * qk + 2 * v + 2 * num_heads,
            q_col: 0,
            k_col: qk,
            v_col: 2 * qk,
            o_col: 2 * qk + v,
            i_col: 2 * qk + 2 * v,
            f_col: 2 * qk + 2 * v + num_heads,
            soft_cap,
            eps,
        }
    }
    fn scale(&self) -> f32 {
        1.0 / (self.dqk as f32).sqrt()
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GatesParams {
    tokens: u32,
    chunk: u32,
    num_heads: u32,
    proj_stride: u32,
    i_col: u32,
    f_col: u32,
    soft_cap: f32,
    _pad: u32,
}

/// Soft-capped input gates and per-chunk cumulative log forget gates, [num_heads, tokens] each
/// (no cap when `l.soft_cap <= 0`).
pub fn mlstm_gates(
    pb: &mut PlanBuilder,
    ops: &Ops,
    l: &CellLayout,
    proj: &Slice,
    bias: &Slice,
    tokens: usize,
    chunk: usize,
    gi: &Slice,
    gb: &Slice,
) -> Result<()> {
    check_chunk(chunk)?;
    let p = GatesParams {
        tokens: u(tokens),
        chunk: u(chunk),
        num_heads: u(l.num_heads),
        proj_stride: u(l.proj_stride),
        i_col: u(l.i_col),
        f_col: u(l.f_col),
        soft_cap: l.soft_cap,
        _pad: 0,
    };
    pb.dispatch(
        "mlstm_gates",
        &ops.gates,
        &p,
        &[proj.clone(), bias.clone(), gi.clone(), gb.clone()],
        [groups(tokens, chunk), u(l.num_heads), 1],
    )
}

fn check_chunk(chunk: usize) -> Result<()> {
    if chunk == 0 || chunk > MAX_CHUNK {
        return Err(Error::Input(format!(
            "chunk size must be between 1 and {MAX_CHUNK}, got {chunk}"
        )));
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ChunkStateParams {
    tokens: u32,
    chunk: u32,
    c_begin: u32,
    c_end: u32,
    head0: u32,
    num_heads: u32,
    dqk: u32,
    dv: u32,
    proj_stride: u32,
    k_col: u32,
    v_col: u32,
    _pad: u32,
}

/// Buffers holding the state before every chunk: C [chunks+1, NH, dqk, dv], n [.., NH, dqk], m [.., NH].
pub struct Boundaries {
    pub c: Slice,
    pub n: Slice,
    pub m: Slice,
}

/// What both chunkwise phases of one segment read: the cell layout, the fused projections, the
/// gates from [`mlstm_gates`], the chunk-boundary states, and the segment's shape.
pub struct ChunkInputs<'a> {
    pub l: &'a CellLayout,
    pub proj: &'a Slice,
    pub gi: &'a Slice,
    pub gb: &'a Slice,
    pub b: &'a Boundaries,
    pub tokens: usize,
    pub chunk: usize,
}

/// Phase 1 for heads [head0, head0 + heads) and chunks [c_begin, c_end).
pub fn mlstm_chunk_state(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &ChunkInputs,
    chunks: (usize, usize),
    heads: (usize, usize),
) -> Result<()> {
    chunk_state_with(pb, ("mlstm_chunk_state", &ops.chunk_state), x, chunks, heads)
}

/// [`mlstm_chunk_state`] with the chunk's (K ⊙ ā)^T V on the matrix units (f16 operands, f32
/// accumulation and state): same buffers, layout and grid. Only where
/// [`Ops::uses_coop_chunk`]; an error elsewhere.
pub fn mlstm_chunk_state_coop(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &ChunkInputs,
    chunks: (usize, usize),
    heads: (usize, usize),
) -> Result<()> {
    let pipeline = coop_pipeline(&ops.chunk_state_coop, "mlstm_chunk_state_coop")?;
    check_chunk_range(x, chunks, heads)?;
    chunk_state_with(pb, ("mlstm_chunk_state_coop", pipeline), x, chunks, heads)
}

fn coop_pipeline<'a>(p: &'a Option<wgpu::ComputePipeline>, name: &str) -> Result<&'a wgpu::ComputePipeline> {
    p.as_ref().ok_or_else(|| Error::Kernel {
        kernel: name.into(),
        message: "needs f16 weights and 16x16 f16 cooperative matrices with subgroups of 32".into(),
    })
}

/// A chunk range and head band inside the segment (the matrix-unit kernels read their first
/// chunk's rows before the loop, so an empty or out-of-range tile must not reach them).
fn check_chunk_range(x: &ChunkInputs, chunks: (usize, usize), heads: (usize, usize)) -> Result<()> {
    let (l, tokens, chunk) = (x.l, x.tokens, x.chunk);
    check_chunk(chunk)?;
    if chunks.0 >= chunks.1 || chunks.1 > tokens.div_ceil(chunk) || heads.1 == 0 || heads.0 + heads.1 > l.num_heads {
        return Err(Error::Input(format!(
            "chunk tile {chunks:?} / head band {heads:?} outside {tokens} tokens in chunks of {chunk}, {} heads",
            l.num_heads
        )));
    }
    Ok(())
}

fn chunk_state_with(
    pb: &mut PlanBuilder,
    (label, pipeline): (&'static str, &wgpu::ComputePipeline),
    x: &ChunkInputs,
    chunks: (usize, usize),
    heads: (usize, usize),
) -> Result<()> {
    let (l, tokens, chunk, b) = (x.l, x.tokens, x.chunk, x.b);
    check_chunk(chunk)?;
    let p = ChunkStateParams {
        tokens: u(tokens),
        chunk: u(chunk),
        c_begin: u(chunks.0),
        c_end: u(chunks.1),
        head0: u(heads.0),
        num_heads: u(l.num_heads),
        dqk: u(l.dqk),
        dv: u(l.dv),
        proj_stride: u(l.proj_stride),
        k_col: u(l.k_col),
        v_col: u(l.v_col),
        _pad: 0,
    };
    let bufs = [
        x.proj.clone(),
        x.gi.clone(),
        x.gb.clone(),
        b.c.clone(),
        b.n.clone(),
        b.m.clone(),
    ];
    pb.dispatch(
        label,
        pipeline,
        &p,
        &bufs,
        [groups(l.dqk, 64), groups(l.dv, 64), u(heads.1)],
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ChunkOutParams {
    tokens: u32,
    chunk: u32,
    c_begin: u32,
    head0: u32,
    num_heads: u32,
    dqk: u32,
    dv: u32,
    proj_stride: u32,
    q_col: u32,
    k_col: u32,
    v_col: u32,
    out_stride: u32,
    scale: f32,
    eps: f32,
    _pad: [u32; 2],
}

/// Phase 2 for heads [head0, head0 + heads) and chunks [c_begin, c_end): h [tokens, NH*dv].
pub fn mlstm_chunk_out(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &ChunkInputs,
    chunks: (usize, usize),
    heads: (usize, usize),
    h: &Slice,
) -> Result<()> {
    chunk_out_with(pb, ("mlstm_chunk_out", &ops.chunk_out), x, chunks, heads, h)
}

/// [`mlstm_chunk_out`] with Q^ K^T, (S ⊙ D) V and Q^ C_prev on the matrix units (f16 operands,
/// f32 accumulation, stabiliser and normaliser in f32): same buffers, layout and grid. Only
/// where [`Ops::uses_coop_chunk`]; an error elsewhere.
pub fn mlstm_chunk_out_coop(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &ChunkInputs,
    chunks: (usize, usize),
    heads: (usize, usize),
    h: &Slice,
) -> Result<()> {
    let pipeline = coop_pipeline(&ops.chunk_out_coop, "mlstm_chunk_out_coop")?;
    check_chunk_range(x, chunks, heads)?;
    chunk_out_with(pb, ("mlstm_chunk_out_coop", pipeline), x, chunks, heads, h)
}

fn chunk_out_with(
    pb: &mut PlanBuilder,
    (label, pipeline): (&'static str, &wgpu::ComputePipeline),
    x: &ChunkInputs,
    chunks: (usize, usize),
    heads: (usize, usize),
    h: &Slice,
) -> Result<()> {
    let (l, tokens, chunk, b) = (x.l, x.tokens, x.chunk, x.b);
    check_chunk(chunk)?;
    let p = ChunkOutParams {
        tokens: u(tokens),
        chunk: u(chunk),
        c_begin: u(chunks.0),
        head0: u(heads.0),
        num_heads: u(l.num_heads),
        dqk: u(l.dqk),
        dv: u(l.dv),
        proj_stride: u(l.proj_stride),
        q_col: u(l.q_col),
        k_col: u(l.k_col),
        v_col: u(l.v_col),
        out_stride: u(l.num_heads * l.dv),
        scale: l.scale(),
        eps: l.eps,
        _pad: [0; 2],
    };
    let bufs = [
        x.proj.clone(),
        x.gi.clone(),
        x.gb.clone(),
        b.c.clone(),
        b.n.clone(),
        b.m.clone(),
        h.clone(),
    ];
    pb.dispatch(
        label,
        pipeline,
        &p,
        &bufs,
        [groups(l.dv, 64), u(chunks.1 - chunks.0), u(heads.1)],
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct StepParams {
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

/// Recurrent state of one mLSTM layer: C [NH, dqk, dv], n [2, NH, dqk], m [2, NH] (n and m
/// double-buffered, selected by the session's parity).
pub struct CellStateBuffers {
    pub c: Slice,
    pub n: Slice,
    pub m: Slice,
}

/// One recurrent step for the token in row `row` of `proj`; h written at h_offset.
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct HeadNormParams {
    tokens: u32,
    num_heads: u32,
    dv: u32,
    proj_stride: u32,
    o_col: u32,
    eps: f32,
    _pad: [u32; 2],
}

/// Per-head LayerNorm of h times sigmoid of the output gate: y [tokens, NH*dv].
pub fn head_norm_gate(
    pb: &mut PlanBuilder,
    ops: &Ops,
    l: &CellLayout,
    h: &Slice,
    weight: &Slice,
    proj: &Slice,
    tokens: usize,
    eps: f32,
    y: &Slice,
) -> Result<()> {
    let p = HeadNormParams {
        tokens: u(tokens),
        num_heads: u(l.num_heads),
        dv: u(l.dv),
        proj_stride: u(l.proj_stride),
        o_col: u(l.o_col),
        eps,
        _pad: [0; 2],
    };
    pb.dispatch(
        "head_norm_gate",
        &ops.head_norm_gate,
        &p,
        &[h.clone(), weight.clone(), proj.clone(), y.clone()],
        [u(l.num_heads), u(tokens), 1],
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SwigluParams {
    tokens: u32,
    ffn: u32,
    _pad: [u32; 2],
}

/// y[t, f] = silu(u[t, f]) * u[t, ffn + f].
pub fn swiglu(pb: &mut PlanBuilder, ops: &Ops, u_in: &Slice, tokens: usize, ffn: usize, y: &Slice) -> Result<()> {
    let p = SwigluParams {
        tokens: u(tokens),
        ffn: u(ffn),
        _pad: [0; 2],
    };
    pb.dispatch(
        "swiglu",
        &ops.swiglu,
        &p,
        &[u_in.clone(), y.clone()],
        [groups(ffn, 256), u(tokens), 1],
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ArgmaxParams {
    vocab: u32,
    first: u32,
    second: u32,
    stride: u32,
}

/// The id `argmax` and `sample` choose for a row holding a NaN or an infinity: no choice is
/// meaningful, and the host turns it into [`Error::Numeric`]. It is outside every vocabulary, so
/// the embedding kernel skips it when a decode batch feeds it back.
pub const NON_FINITE_ID: u32 = u32::MAX;

/// out[first + r] (and out[second + r] if given) = argmax of logits row r, for r < rows.
/// A row holding a NaN or an infinity gets [`NON_FINITE_ID`].
pub fn argmax(
    pb: &mut PlanBuilder,
    ops: &Ops,
    logits: &Slice,
    rows: usize,
    vocab: usize,
    out: &Slice,
    first: usize,
    second: Option<usize>,
) -> Result<()> {
    argmax_prefix(pb, ops, logits, rows, vocab, vocab, out, first, second)
}

/// Like [`argmax`] over only the first `count` entries of rows `stride` apart.
pub fn argmax_prefix(
    pb: &mut PlanBuilder,
    ops: &Ops,
    logits: &Slice,
    rows: usize,
    stride: usize,
    count: usize,
    out: &Slice,
    first: usize,
    second: Option<usize>,
) -> Result<()> {
    if count == 0 || count > stride {
        return Err(Error::Input(format!("argmax over {count} of {stride} logits")));
    }
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
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct FillParams {
    words: u32,
    seed: u32,
    scale: f32,
    kp: u32,
    cols: u32,
    first_element: u32,
    _pad: [u32; 2],
}

/// Fills every part of `w` with uniform values in [-scale, scale] (zero padding columns).
pub fn fill_random(pb: &mut PlanBuilder, ops: &Ops, w: &GpuMatrix, seed: u32, scale: f32) -> Result<()> {
    let per_word = if w.dtype.is_f16() { 2 } else { 1 };
    for (i, part) in w.parts.iter().enumerate() {
        let words = part.rows * w.kp / per_word;
        let p = FillParams {
            words: u(words),
            seed,
            scale,
            kp: u(w.kp),
            cols: u(w.cols),
            first_element: u(part.row0 * w.kp),
            _pad: [0; 2],
        };
        let wg = words.div_ceil(256);
        let grid = [wg.min(65535) as u32, wg.div_ceil(65535) as u32, 1];
        pb.dispatch("fill_random", &ops.fill_random, &p, &[w.part_slice(i)], grid)?;
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SampleParams {
    vocab: u32,
    row_offset: u32,
    top_k: u32,
    seed: u32,
    temperature: f32,
    top_p: f32,
    first: u32,
    second: u32,
}

/// Samples one token on the GPU from the first `count` logits starting at `row_offset`
/// (temperature > 0, top-k, top-p) and writes it to out[first] (and out[second]); `counter[0]`
/// is the draw counter, incremented by every call.
pub fn sample(
    pb: &mut PlanBuilder,
    ops: &Ops,
    logits: &Slice,
    row_offset: usize,
    count: usize,
    cfg: &crate::sample::SamplerConfig,
    counter: &Slice,
    out: &Slice,
    first: usize,
    second: Option<usize>,
) -> Result<()> {
    cfg.validate()?;
    if cfg.is_greedy() {
        return Err(Error::Input(
            "GPU sampling needs a temperature > 0 (greedy uses argmax)".into(),
        ));
    }
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
    )
}
