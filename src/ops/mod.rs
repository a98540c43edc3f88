//! Kernel launchers, one module per kernel family. Each launcher takes a [`PlanBuilder`] and
//! appends the dispatches of one operation, with the parameter block laid out exactly as the WGSL
//! `Params` struct (checked against the WGSL by `layout_tests`). Shapes are checked here, so a
//! wrong call fails on the host instead of reading out of bounds on the GPU.
//!
//! Families (module: WGSL files under `wgsl/`):
//! - [`matmul`](mod@matmul) in `matmul/gemm`, `matmul/gemm_coop`, `matmul/gemv`, `matmul/gemv_head_norm`
//! - [`mlstm_chunk`] in `mlstm_chunk/mlstm_gates`, `mlstm_chunk/mlstm_chunk_{state,out}[_coop]`
//! - [`mlstm_step`](mod@mlstm_step) in `mlstm_step/mlstm_step`
//! - [`norms`] in `norms/rms_norm`, `norms/head_norm_gate` (and `norms/layer_norm`, launched by [`v1`])
//! - [`elementwise`] in `elementwise/embed`, `elementwise/swiglu`, `elementwise/fill_random`
//! - [`sampling`] in `sampling/argmax`, `sampling/sample`
//! - [`slstm`] in `slstm/slstm_seq`, `slstm/slstm_step`
//! - [`v1`], [`mlstm_v1`] in the original xLSTM's kernels in `v1/`
//!
//! Every item is re-exported here, so `crate::ops::X` names it whatever family it belongs to.

use crate::error::{Error, Result};
use crate::gpu::WeightDtype;
use crate::gpu::{ConstValue, Kernels, LazyPipeline, Slice};

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

pub mod coop_check;
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

pub use coop_check::{MatrixUnits, SelfCheck, SelfCheckMode};
pub use elementwise::{embed, fill_random, swiglu};
use matmul::coop_fragment;
pub use matmul::{
    coop_gemm_supported, coop_offered, gemv_head_norm_fits, gemv_head_norm_gate, gemv_rms_norm, gemv_swiglu, matmul,
    Epilogue, HeadNormInput, COOP_FRAGMENTS, GEMM_8X8_MIN_TOKENS, STAGED_MIN_TOKENS, WEIGHT_STAGING_BYTES,
};
pub use mlstm_chunk::{
    coop_chunk_supported, mlstm_chunk_out, mlstm_chunk_out_coop, mlstm_chunk_state, mlstm_chunk_state_coop,
    mlstm_gates, Boundaries, CellLayout, ChunkInputs, MlstmGates, MAX_CHUNK,
};
pub use mlstm_step::{mlstm_step, CellStateBuffers, MlstmStep};
pub use norms::{head_norm_gate, rms_norm, HeadNormGate, Norm, Rows};
pub use sampling::{argmax, argmax_prefix, sample, TokenOut, NON_FINITE_ID};

/// The pipelines that read weight matrices, compiled for one storage format.
pub(crate) struct WeightKernels<P> {
    pub(crate) dtype: WeightDtype,
    embed: P,
    /// The tiled GEMMs (no matrix units): 64 x 64 tiles, and 128 x 128 with 8 x 8 outputs an
    /// invocation for long segments (`matmul::GEMM_8X8_MIN_TOKENS`).
    gemm: P,
    gemm_8x8: P,
    /// The matrix-unit GEMM, where the adapter offers it and the format is not f32.
    gemm_coop: Option<P>,
    /// The one-token GEMVs (gemv.wgsl: plain, RMSNorm, SwiGLU input) and how they are shaped.
    gemv: GemvPipelines<P>,
    gemv_norm: GemvPipelines<P>,
    gemv_swiglu: GemvPipelines<P>,
    gemv_shape: GemvShape,
    /// The out-projection GEMV with the head norm and output gate fused (where the adapter has
    /// the workgroup memory for its staged input).
    gemv_head_norm: Option<P>,
    /// Rows per workgroup of `gemv_head_norm` (its ROWS).
    gemv_head_norm_rows: u32,
    fill_random: P,
    /// Expands a quantized part to f16 rows for `gemm_coop_f16` (quantized formats on
    /// adapters with the matrix-unit GEMM).
    dequant_f16: Option<P>,
}

/// gemv.wgsl compiled for one input transform: `any` takes rows of any width; `streamed`
/// (quantized formats) holds the variants whose lane groups multiply several row groups in turn,
/// for rows of at most one block a lane ([`GemvShape::streamed_kp`]), fewest row groups first.
pub(crate) struct GemvPipelines<P> {
    any: P,
    streamed: Vec<(u32, P)>,
}

/// The pipelines for a model loaded with one `--dtype`: the weight kernels for every matrix
/// format it holds (`WeightDtype::formats`), everything else once. Each compiles the first time
/// a plan dispatches it ([`LazyPipeline`]), so a model compiles only the kernels its paths use.
pub struct Ops<P = LazyPipeline> {
    /// One entry per format, the `--dtype`'s own first.
    weights: Vec<WeightKernels<P>>,
    /// The f16 matrix-unit GEMM over quantized weights expanded to f16 rows (`dequant_f16`),
    /// for long segments (`matmul::STAGED_MIN_TOKENS`).
    gemm_coop_f16: Option<P>,
    rms_norm: P,
    gates: P,
    chunk_state: P,
    chunk_out: P,
    /// The chunkwise kernels on the matrix units, where the adapter offers them and the
    /// `--dtype` is not f32 (the same condition as `gemm_coop`).
    chunk_state_coop: Option<P>,
    chunk_out_coop: Option<P>,
    /// The fragment edge of the matrix-unit kernels above, where there are any.
    fragment: Option<u32>,
    step: P,
    head_norm_gate: P,
    swiglu: P,
    argmax: P,
    sample: P,
    /// Original-xLSTM kernels (norms, conv, headwise projections, gated FFN).
    pub(crate) v1: v1::V1Pipelines<P>,
    /// The v1 mLSTM gate projection.
    pub(crate) mlstm_v1: mlstm_v1::MlstmV1Pipelines<P>,
    /// sLSTM recurrence kernels.
    pub(crate) slstm: slstm::SlstmPipelines<P>,
}

/// Workgroup shapes of the main kernels (a tuning knob: the best shape depends on the adapter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelShapes {
    /// Invocations per weight row in gemv.wgsl (8, 16, 32, 64, 128 or 256; each lane group
    /// multiplies eight rows).
    pub gemv_lanes: u32,
    /// Decode runs the head norm and output gate inside the out-projection GEMV
    /// (gemv_head_norm.wgsl) where the shapes and the adapter allow it; off: the two kernels.
    pub fused_head_norm: bool,
    /// Rows per workgroup of the fused head-norm GEMV (4, 8, 16 or 32: more workgroups for the
    /// 4,096-row out-projection against more staging of its input, which every workgroup does).
    pub head_norm_rows: u32,
}

/// The `ROWS` values gemv_head_norm.wgsl supports.
pub const HEAD_NORM_ROWS: [u32; 4] = [4, 8, 16, 32];

/// The `LANES` values gemv.wgsl supports.
pub const GEMV_LANES: [u32; 6] = [8, 16, 32, 64, 128, 256];

impl Default for KernelShapes {
    fn default() -> Self {
        KernelShapes {
            gemv_lanes: 128,
            fused_head_norm: true,
            head_norm_rows: 16,
        }
    }
}

impl KernelShapes {
    pub fn validate(&self) -> Result<()> {
        if !GEMV_LANES.contains(&self.gemv_lanes) {
            return Err(Error::Input(format!(
                "gemv lanes must be 8, 16, 32, 64, 128 or 256, got {}",
                self.gemv_lanes
            )));
        }
        if !HEAD_NORM_ROWS.contains(&self.head_norm_rows) {
            return Err(Error::Input(format!(
                "head-norm rows must be 4, 8, 16 or 32, got {}",
                self.head_norm_rows
            )));
        }
        Ok(())
    }
}

impl<P> Ops<P> {
    /// The weight kernels for matrices stored as `dtype`; an error for a format this model's
    /// pipelines were not compiled for.
    pub(crate) fn weight_kernels(&self, dtype: WeightDtype) -> Result<&WeightKernels<P>> {
        self.weights.iter().find(|k| k.dtype == dtype).ok_or_else(|| {
            Error::Input(format!(
                "a {} matrix, but the kernels were compiled for {}",
                dtype.name(),
                self.weights
                    .iter()
                    .map(|k| k.dtype.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// Whether the chunkwise mLSTM phases run on the matrix units
    /// ([`mlstm_chunk_state_coop`], [`mlstm_chunk_out_coop`]).
    pub fn uses_coop_chunk(&self) -> bool {
        self.chunk_state_coop.is_some() && self.chunk_out_coop.is_some()
    }

    /// Whether long segments expand quantized weights to f16 rows before the matrix-unit GEMM
    /// (and so want a weight staging buffer: `PlanBuilder::stage_weights_in`).
    pub fn stages_quantized_weights(&self) -> bool {
        self.gemm_coop_f16.is_some()
    }

    /// Whether prefill GEMMs of the `--dtype`'s own format run on the matrix units.
    pub fn uses_coop_gemm(&self) -> bool {
        self.weights[0].gemm_coop.is_some()
    }

    /// The fragment edge of the matrix-unit kernels these pipelines use (16 or 8), if any.
    pub fn coop_fragment(&self) -> Option<u32> {
        self.fragment
    }
}

impl Ops {
    pub fn new(kernels: &Kernels, dtype: WeightDtype) -> Result<Self> {
        Self::with_shapes(kernels, dtype, KernelShapes::default())
    }

    /// The pipelines for `dtype` on this adapter, none compiled yet (each compiles at its first
    /// use; a kernel error surfaces there). The matrix-unit kernels are those
    /// [`Kernels::matrix_units`] settled on (which may run their self-check on the GPU first).
    pub fn with_shapes(kernels: &Kernels, dtype: WeightDtype, shapes: KernelShapes) -> Result<Self> {
        let fragment = kernels.matrix_units()?.fragment;
        Self::with_fragment(kernels, dtype, shapes, fragment)
    }

    /// [`Ops::with_shapes`] with the matrix-unit kernels at fragment edge `fragment` where the
    /// adapter can run them, none for `None` (the self-check builds both sides this way).
    pub(crate) fn with_fragment(
        kernels: &Kernels,
        dtype: WeightDtype,
        shapes: KernelShapes,
        fragment: Option<u32>,
    ) -> Result<Self> {
        let lazy = |k: &str, e: &str, c: &[(&str, ConstValue)]| Ok(kernels.lazy(k, e, c));
        Ops::build(&lazy, dtype, shapes, Support::of(kernels.caps(), fragment))
    }
}

/// Makes one pipeline: `Kernels::lazy` on a device, or [`variants`] recording what the
/// host asks for. Every family builds its pipelines through one, so the variant list is the
/// host's own code run without a device.
pub(crate) trait Compile<P>: Fn(&str, &str, &[(&str, ConstValue)]) -> Result<P> {}
impl<P, F: Fn(&str, &str, &[(&str, ConstValue)]) -> Result<P>> Compile<P> for F {}

/// The optional kernels the adapter can run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Support {
    /// The fragment edge of the matrix-unit GEMM and chunkwise kernels, where they run.
    coop_gemm: Option<u32>,
    coop_chunk: Option<u32>,
    gemv_head_norm: bool,
    /// Native packed integer dot products (`Caps::int_dot`).
    int_dot: bool,
    /// The subgroup size where the adapter has subgroups of one fixed size.
    subgroup_size: Option<u32>,
}

/// How gemv.wgsl is compiled: `wg` invocations in lane groups of `lanes`, each multiplying
/// eight rows; `prefetch`: each lane loads its next blocks before multiplying the current ones;
/// `subgroup`: lane groups are whole subgroups and reduce by subgroup operations
/// (gemv_reduce_subgroup.wgsl), else through workgroup memory (gemv_reduce_shared.wgsl).
/// `int_dot`: q8/q4 inputs are rounded to int8 and multiplied by packed integer dot products
/// (gemv_rows.wgsl's INT_DOT).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemvShape {
    wg: u32,
    lanes: u32,
    prefetch: bool,
    subgroup: Option<u32>,
    int_dot: bool,
    block_elems: u32,
}

/// Row groups of the streamed GEMV variants (gemv.wgsl's GROUPS).
const GEMV_STREAM_GROUPS: [u32; 2] = [4, 8];
/// A streamed variant of G row groups runs on parts of at least G times this many rows (fewer
/// would leave too few workgroups to fill the GPU). On the H200 in q4 (BENCHMARKS.md,
/// 2026-12-03 "integer dot products"): 12,304 rows best at 4 groups (1.58 TB/s against 1.03 at
/// one, 1.21 at eight), 21,888 rows at 8 (1.92 against 1.67 at four).
const GEMV_STREAM_ROWS_PER_GROUP: usize = 2048;

/// Rows each lane group of gemv.wgsl multiplies (its RPL).
const GEMV_ROWS_PER_LANE: u32 = 8;

impl GemvShape {
    /// The shape for weights stored as `format`. Measured on the H200 (BENCHMARKS.md,
    /// 2026-12-03 GEMV shapes): eight rows per lane group against four took q4 decode from 173
    /// to 206 tok/s at 128 lanes; quantized formats run best in workgroups of 128 invocations
    /// (more workgroups resident: q8 239 against 222), the float formats in 256 with the next
    /// blocks prefetched (f16 199 against 191); subgroup sums against workgroup-memory ones
    /// q4 206 against 184.
    fn of(shapes: KernelShapes, format: WeightDtype, support: Support) -> Self {
        let lanes = shapes.gemv_lanes;
        let base = if format.is_quantized() { 128 } else { 256 };
        GemvShape {
            wg: base.max(lanes),
            lanes,
            prefetch: !format.is_quantized(),
            subgroup: support.subgroup_size.filter(|s| lanes.is_multiple_of(*s)),
            int_dot: format.is_quantized() && support.int_dot,
            block_elems: format.block_elems(),
        }
    }

    /// Rows per workgroup of a variant with `groups` row groups.
    pub(crate) fn rows(&self, groups: u32) -> usize {
        (self.wg / self.lanes * GEMV_ROWS_PER_LANE * groups) as usize
    }

    /// The widest rows (padded columns) the streamed variants take: one block a lane.
    pub(crate) fn streamed_kp(&self) -> usize {
        (self.lanes * self.block_elems) as usize
    }
}

impl<P> GemvPipelines<P> {
    /// The pipeline for a part of `rows` rows of `kp` padded columns, and its row groups.
    pub(crate) fn pick(&self, shape: &GemvShape, kp: usize, rows: usize) -> (&P, u32) {
        if kp <= shape.streamed_kp() {
            if let Some((g, p)) = self
                .streamed
                .iter()
                .rev()
                .find(|(g, _)| rows >= *g as usize * GEMV_STREAM_ROWS_PER_GROUP)
            {
                return (p, *g);
            }
        }
        (&self.any, 1)
    }
}

impl Support {
    /// What `caps` can run, with the matrix-unit kernels at `fragment` (see
    /// [`Kernels::matrix_units`]).
    fn of(caps: &crate::gpu::Caps, fragment: Option<u32>) -> Self {
        Support {
            coop_gemm: fragment.filter(|&f| coop_gemm_supported(caps, f) && !caps.is_disabled("coop-gemm")),
            coop_chunk: fragment.filter(|&f| coop_chunk_supported(caps, f) && !caps.is_disabled("coop-chunk")),
            gemv_head_norm: caps.max_workgroup_storage >= matmul::GEMV_HEAD_NORM_WORKGROUP_BYTES,
            int_dot: caps.int_dot,
            subgroup_size: (caps.subgroup && caps.subgroup_min_size == caps.subgroup_max_size)
                .then_some(caps.subgroup_min_size),
        }
    }
    /// An adapter with every optional kernel (the variant list covers them all, for each
    /// fragment edge in turn).
    const ALL: Support = Support {
        coop_gemm: Some(16),
        coop_chunk: Some(16),
        gemv_head_norm: true,
        int_dot: true,
        subgroup_size: None,
    };
}

impl<P> Ops<P> {
    fn build(c: &impl Compile<P>, dtype: WeightDtype, shapes: KernelShapes, support: Support) -> Result<Self> {
        shapes.validate()?;
        let weight_kernels = |format: WeightDtype| -> Result<WeightKernels<P>> {
            let f = ("WEIGHT_FORMAT", ConstValue::U32(format.wgsl_format()));
            let shape = GemvShape::of(shapes, format, support);
            let int_dot = ("INT_DOT", ConstValue::U32(shape.int_dot as u32));
            let gemv_groups = |mode: u32, groups: u32| {
                let mut consts = vec![
                    f.clone(),
                    ("X_MODE", ConstValue::U32(mode)),
                    ("WG", ConstValue::U32(shape.wg)),
                    ("LANES", ConstValue::U32(shape.lanes)),
                    ("RPL", ConstValue::U32(GEMV_ROWS_PER_LANE)),
                    ("GROUPS", ConstValue::U32(groups)),
                    ("PREFETCH", ConstValue::U32(shape.prefetch as u32)),
                    int_dot.clone(),
                ];
                match shape.subgroup {
                    Some(size) => {
                        consts.push(("SG", ConstValue::U32(size)));
                        c("gemv_subgroup", "main", &consts)
                    }
                    None => c("gemv", "main", &consts),
                }
            };
            let gemv = |mode: u32| -> Result<GemvPipelines<P>> {
                let streamed = if format.is_quantized() {
                    GEMV_STREAM_GROUPS
                        .iter()
                        .map(|&g| Ok((g, gemv_groups(mode, g)?)))
                        .collect::<Result<_>>()?
                } else {
                    Vec::new()
                };
                Ok(GemvPipelines {
                    any: gemv_groups(mode, 1)?,
                    streamed,
                })
            };
            let w = std::slice::from_ref(&f);
            Ok(WeightKernels {
                dtype: format,
                embed: c("embed", "main", w)?,
                gemm: c("gemm", "main", w)?,
                gemm_8x8: c("gemm_8x8", "main", w)?,
                gemm_coop: match support.coop_gemm {
                    Some(frag) if format != WeightDtype::F32 => Some(c(
                        "gemm_coop",
                        "main",
                        &[&[f.clone()][..], &coop_fragment(frag)].concat(),
                    )?),
                    _ => None,
                },
                gemv: gemv(0)?,
                gemv_shape: shape,
                gemv_norm: gemv(1)?,
                gemv_swiglu: gemv(2)?,
                gemv_head_norm: if shapes.fused_head_norm && support.gemv_head_norm {
                    let rows = ("ROWS", ConstValue::U32(shapes.head_norm_rows));
                    Some(c("gemv_head_norm", "main", &[f.clone(), int_dot.clone(), rows])?)
                } else {
                    None
                },
                gemv_head_norm_rows: shapes.head_norm_rows,
                fill_random: c("fill_random", "main", w)?,
                dequant_f16: if format.is_quantized() && support.coop_gemm.is_some() {
                    Some(c("dequant_f16", "main", w)?)
                } else {
                    None
                },
            })
        };
        // f32 keeps every product in f32; the other formats accept f16 activations on the
        // matrix units.
        let coop_chunk = support.coop_chunk.filter(|_| dtype != WeightDtype::F32);
        Ok(Ops {
            fragment: support.coop_gemm.or(coop_chunk).filter(|_| dtype != WeightDtype::F32),
            weights: dtype
                .formats()
                .iter()
                .map(|f| weight_kernels(*f))
                .collect::<Result<_>>()?,
            gemm_coop_f16: match support.coop_gemm {
                Some(frag) if dtype.is_quantized() => {
                    let f16 = ("WEIGHT_FORMAT", ConstValue::U32(WeightDtype::F16.wgsl_format()));
                    Some(c("gemm_coop", "main", &[&[f16][..], &coop_fragment(frag)].concat())?)
                }
                _ => None,
            },
            rms_norm: c("rms_norm", "main", &[])?,
            gates: c("mlstm_gates", "main", &[])?,
            chunk_state: c("mlstm_chunk_state", "main", &[])?,
            chunk_out: c("mlstm_chunk_out", "main", &[])?,
            chunk_state_coop: match coop_chunk {
                Some(frag) => Some(c("mlstm_chunk_state_coop", "main", &coop_fragment(frag))?),
                None => None,
            },
            chunk_out_coop: match coop_chunk {
                Some(frag) => Some(c("mlstm_chunk_out_coop", "main", &coop_fragment(frag))?),
                None => None,
            },
            step: c("mlstm_step", "main", &[])?,
            head_norm_gate: c("head_norm_gate", "main", &[])?,
            swiglu: c("swiglu", "main", &[])?,
            argmax: c("argmax", "main", &[])?,
            sample: c("sample", "main", &[])?,
            v1: v1::V1Pipelines::build(c)?,
            mlstm_v1: mlstm_v1::MlstmV1Pipelines::build(c)?,
            slstm: slstm::SlstmPipelines::build(c)?,
        })
    }
}

/// Every (kernel, entry point, specialisation) the host can compile, on any adapter, for every
/// weight format and every valid [`KernelShapes`]: produced by the same constructors that
/// compile the pipelines, so `tests/wgsl_validate.rs` checks exactly what can run.
pub fn variants() -> Vec<crate::gpu::kernels::Variant> {
    use crate::gpu::kernels::Variant;
    let seen = std::cell::RefCell::new(Vec::<Variant>::new());
    let record = |k: &str, e: &str, c: &[(&str, ConstValue)]| -> Result<()> {
        let v = Variant {
            kernel: k.to_string(),
            entry: e.to_string(),
            consts: c.iter().map(|(n, v)| (n.to_string(), v.clone())).collect(),
        };
        let mut seen = seen.borrow_mut();
        if !seen.contains(&v) {
            seen.push(v);
        }
        Ok(())
    };
    for dtype in [WeightDtype::F32, WeightDtype::F16, WeightDtype::Q8, WeightDtype::Q4] {
        for gemv_lanes in GEMV_LANES {
            for (fused_head_norm, head_norm_rows) in [(false, 16), (true, 4), (true, 8), (true, 16), (true, 32)] {
                // Lane groups reduced in workgroup memory, and by subgroup operations for each
                // subgroup size an adapter can have.
                for subgroup_size in [None, Some(8), Some(16), Some(32), Some(64), Some(128)] {
                    for int_dot in [false, true] {
                        let shapes = KernelShapes {
                            gemv_lanes,
                            fused_head_norm,
                            head_norm_rows,
                        };
                        for frag in COOP_FRAGMENTS {
                            let support = Support {
                                subgroup_size,
                                int_dot,
                                coop_gemm: Some(frag),
                                coop_chunk: Some(frag),
                                ..Support::ALL
                            };
                            // Recording cannot fail and the shapes are valid by construction.
                            let _ = Ops::build(&record, dtype, shapes, support);
                        }
                    }
                }
            }
        }
    }
    seen.into_inner()
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

/// Every part of `w` holds its `rows` rows of `kp` elements (what the kernels read of it) and
/// lies inside the matrix's rows; the GEMV kernels and gemm_coop run without runtime checks
/// (`gpu::kernels::TRUSTED`), so a short weight buffer must fail here
/// (the other weight kernels check the same way).
pub(crate) fn check_weights(what: &str, w: &crate::gpu::GpuMatrix) -> Result<()> {
    for (i, part) in w.parts.iter().enumerate() {
        if part.row0.saturating_add(part.rows) > w.rows {
            return Err(Error::Input(format!(
                "{what}: weight part {i} holds rows {}..{} of a {}-row matrix",
                part.row0,
                part.row0.saturating_add(part.rows),
                w.rows
            )));
        }
        if w.kp != w.dtype.padded_cols(w.cols) {
            return Err(Error::Input(format!(
                "{what}: row stride {} for {} columns in {}",
                w.kp,
                w.cols,
                w.dtype.name()
            )));
        }
        let bytes = w.part_layout(i).bytes() as usize;
        check_len(&format!("{what} weight part {i}"), &w.part_slice(i), bytes.div_ceil(4))?;
    }
    Ok(())
}
