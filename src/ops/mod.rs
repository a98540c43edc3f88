//! Kernel launchers, one module per kernel family. Each launcher takes a [`PlanBuilder`] and
//! appends the dispatches of one operation, with the parameter block laid out exactly as the WGSL
//! `Params` struct (checked against the WGSL by `layout_tests`). Shapes are checked here, so a
//! wrong call fails on the host instead of reading out of bounds on the GPU.
//!
//! Families (module: WGSL files under `wgsl/`):
//! - [`matmul`] in `matmul/gemm`, `matmul/gemm_coop`, `matmul/gemv`, `matmul/gemv_head_norm`
//! - [`mlstm_chunk`] in `mlstm_chunk/mlstm_gates`, `mlstm_chunk/mlstm_chunk_{state,out}[_coop]`
//! - [`mlstm_step`] in `mlstm_step/mlstm_step`
//! - [`norms`] in `norms/rms_norm`, `norms/head_norm_gate` (and `norms/layer_norm`, launched by [`v1`])
//! - [`elementwise`] in `elementwise/embed`, `elementwise/swiglu`, `elementwise/fill_random`
//! - [`sampling`] in `sampling/argmax`, `sampling/sample`
//! - [`slstm`] in `slstm/slstm_seq`, `slstm/slstm_step`
//! - [`v1`], [`mlstm_v1`] in the original xLSTM's kernels in `v1/`
//!
//! Every item is re-exported here, so `crate::ops::X` names it whatever family it belongs to.

use crate::error::{Error, Result};
use crate::gpu::WeightDtype;
use crate::gpu::{ConstValue, Kernels, Slice};

/// One member of a kernel's parameter block as the layout test sees it: name, byte offset and
/// scalar type (`u32` / `f32`).
#[cfg(test)]
pub(crate) type ParamsField = (&'static str, usize, &'static str);

/// Declares the host mirror of a WGSL `Params` struct: `#[repr(C)]`, `Pod`, one 32-bit scalar per
/// WGSL member, in the same order and under the same names. `for [...]` names the kernels whose
/// `p` block has this layout; `layout_tests` reads those structs through naga and compares names,
/// offsets, types and size, so the two cannot drift apart silently.
macro_rules! params {
    (struct $name:ident for [$($kernel:literal),+ $(,)?] { $($field:ident: $ty:ty),* $(,)? }) => {
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($field: $ty),*
        }

        #[cfg(test)]
        impl $name {
            pub(crate) const KERNELS: &'static [&'static str] = &[$($kernel),+];
            pub(crate) const FIELDS: &'static [$crate::ops::ParamsField] =
                &[$((stringify!($field), std::mem::offset_of!($name, $field), stringify!($ty))),*];
        }
    };
}

pub mod elementwise;
pub mod matmul;
pub mod mlstm_chunk;
pub mod mlstm_step;
pub mod mlstm_v1;
pub mod norms;
pub mod sampling;
pub mod slstm;
pub mod v1;

#[cfg(test)]
mod layout_tests;

pub use elementwise::{embed, fill_random, swiglu};
pub use matmul::{
    coop_gemm_supported, gemv_head_norm_fits, gemv_head_norm_gate, gemv_rms_norm, gemv_swiglu, matmul, Epilogue,
};
pub use mlstm_chunk::{
    coop_chunk_supported, mlstm_chunk_out, mlstm_chunk_out_coop, mlstm_chunk_state, mlstm_chunk_state_coop,
    mlstm_gates, Boundaries, CellLayout, ChunkInputs, MAX_CHUNK,
};
pub use mlstm_step::{mlstm_step, CellStateBuffers};
pub use norms::{head_norm_gate, rms_norm, Rows};
pub use sampling::{argmax, argmax_prefix, sample, NON_FINITE_ID};

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
                && kernels.caps().max_workgroup_storage >= matmul::GEMV_HEAD_NORM_WORKGROUP_BYTES
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

/// f32 (or u32) elements a slice binds.
pub(crate) fn elems(s: &Slice) -> usize {
    (s.size / 4) as usize
}

/// `n` elements fit in `s` (and are addressable with u32 indices). The one length check every
/// launcher uses, so a kernel (above all one compiled without runtime checks) never sees a
/// binding shorter than its parameters say.
pub(crate) fn check_len(what: &str, s: &Slice, n: usize) -> Result<()> {
    if n > elems(s) || n > u32::MAX as usize {
        return Err(Error::Input(format!(
            "{what}: needs {n} values, the buffer holds {}",
            elems(s)
        )));
    }
    Ok(())
}

/// `rows` rows of `width` values of `r` lie inside its binding.
pub(crate) fn check_rows(what: &str, r: &Rows, rows: usize, width: usize) -> Result<()> {
    check_strided(what, &r.buf, r.offset, r.stride, rows, width)
}

/// `rows` rows of `width` values starting at `offset`, `stride` apart, lie inside `s`.
pub(crate) fn check_strided(
    what: &str,
    s: &Slice,
    offset: usize,
    stride: usize,
    rows: usize,
    width: usize,
) -> Result<()> {
    if rows == 0 || width == 0 {
        return Ok(());
    }
    let end = (rows - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(offset))
        .and_then(|v| v.checked_add(width));
    match end {
        Some(end) if end <= elems(s) && end <= u32::MAX as usize => Ok(()),
        _ => Err(Error::Input(format!(
            "{what}: {rows} rows of {width} at offset {offset} stride {stride} do not fit the buffer ({} values)",
            elems(s)
        ))),
    }
}

/// Like [`check_rows`], and the rows do not overlap (an output).
pub(crate) fn check_out_rows(what: &str, r: &Rows, rows: usize, width: usize) -> Result<()> {
    if rows > 1 && r.stride < width {
        return Err(Error::Input(format!(
            "{what}: output rows of {width} with stride {} overlap",
            r.stride
        )));
    }
    check_rows(what, r, rows, width)
}
