//! Matrix products over weights in any format (`wgsl/matmul/weight_formats.wgsl`): the tiled GEMMs
//! (`wgsl/matmul/gemm.wgsl`, and `gemm_8x8.wgsl` for long segments), the matrix-unit GEMM (`wgsl/matmul/gemm_coop.wgsl`, over quantized
//! weights of long segments after `wgsl/matmul/dequant_f16.wgsl`), the one-token GEMV with its
//! fused input transforms (`wgsl/matmul/gemv.wgsl`: plain, RMSNorm, SwiGLU) and the GEMV with the
//! head norm and output gate fused in (`wgsl/matmul/gemv_head_norm.wgsl`), both four rows at a
//! time (`wgsl/matmul/gemv_rows.wgsl`).
//!
//! Reference: `xlstm_reference::ops::matmul_t` (with `rms_norm`, `swiglu`, `head_layer_norm`
//! for the fused inputs) over `xlstm_reference::quant`'s decoding of the stored weights; tests:
//! `tests/kernels/matmul.rs`, `tests/quant.rs`.

use super::{check_len, check_out_rows, check_rows, check_weights, groups, u, Norm, Ops, Rows};
use crate::error::{Error, Result};
use crate::gpu::kernels::ConstValue;
use crate::gpu::GpuMatrix;
use crate::gpu::{LazyPipeline, PlanBuilder, Slice};

/// Workgroup memory gemm_coop.wgsl declares (two 128 x 72 f16 staging tiles and 8 KiB of
/// epilogue scratch).
const COOP_GEMM_WORKGROUP_BYTES: u32 = 2 * 128 * 72 * 2 + 2048 * 4;

/// Fragment edges of the matrix-unit kernels (gemm_coop and the chunkwise `_coop` kernels, one
/// source each): 16, the instance the kernel tests run (NVIDIA and AMD through Vulkan), and 8,
/// Apple's simdgroup matrices through Metal, used only after the self-check on the user's GPU
/// (`ops::coop_check`).
pub const COOP_FRAGMENTS: [u32; 2] = [16, 8];

/// The specialisation of a matrix-unit kernel for `frag` x `frag` fragments: the kernel's FRAG
/// and its three fragment type aliases, set together.
pub(crate) fn coop_fragment(frag: u32) -> [(&'static str, ConstValue); 4] {
    let eight = frag == 8;
    let t = |at16: &'static str, at8: &'static str| ConstValue::Type(if eight { at8 } else { at16 });
    [
        ("FRAG", ConstValue::U32(frag)),
        ("FragA", t("coop_mat16x16<f16, A>", "coop_mat8x8<f16, A>")),
        ("FragB", t("coop_mat16x16<f16, B>", "coop_mat8x8<f16, B>")),
        ("FragC", t("coop_mat16x16<f32, C>", "coop_mat8x8<f32, C>")),
    ]
}

/// The tile edge of gemm_coop.wgsl: 8 x 8 fragments (128 at 16x16, 64 at 8x8).
fn coop_tile(ops: &Ops) -> usize {
    8 * ops.coop_fragment().unwrap_or(16) as usize
}

/// Whether the adapter offers `frag`^3 cooperative matrices with f16 inputs, f32 accumulators.
pub fn coop_offered(caps: &crate::gpu::Caps, frag: u32) -> bool {
    match frag {
        16 => caps.coop_16x16_f16,
        8 => caps.coop_8x8_f16,
        _ => false,
    }
}

/// Whether compute subgroups have exactly 32 invocations, as the matrix-unit kernels' fixed tile
/// roles need (256 invocations = 8 subgroups): a fixed size of 32, or Metal, where every Apple
/// GPU runs compute simdgroups of 32 but wgpu reports 4..64 for every device (the self-check
/// on the GPU would catch another width).
fn subgroups_of_32(caps: &crate::gpu::Caps) -> bool {
    caps.subgroup
        && ((caps.subgroup_min_size == 32 && caps.subgroup_max_size == 32)
            || (caps.backend == "Metal" && (caps.subgroup_min_size..=caps.subgroup_max_size).contains(&32)))
}

/// Whether gemm_coop.wgsl can run with `frag` x `frag` fragments: the adapter offers them, f16
/// shaders, subgroups of 32, and 44 KiB of workgroup memory.
pub fn coop_gemm_supported(caps: &crate::gpu::Caps, frag: u32) -> bool {
    coop_offered(caps, frag)
        && caps.f16
        && subgroups_of_32(caps)
        && caps.max_workgroup_storage >= COOP_GEMM_WORKGROUP_BYTES
}

/// Inputs gemv_head_norm.wgsl stages (its KMAX) and the workgroup memory it declares (the staged
/// input, 1024 row partials, per-head mean and scale).
const GEMV_HEAD_NORM_MAX_INPUTS: usize = 4096;
pub(super) const GEMV_HEAD_NORM_WORKGROUP_BYTES: u32 = (GEMV_HEAD_NORM_MAX_INPUTS as u32 + 1024 + 2 * 256) * 4;

params! {
    struct GemmParams for ["gemm", "gemm_8x8", "gemm_coop"] {
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
        y_aligned: u32,
        _pad1: u32,
    }
}

params! {
    struct GemvParams for ["gemv", "gemv_subgroup"] {
        n: u32,
        k: u32,
        kp: u32,
        x_offset: u32,
        y_offset: u32,
        accumulate: u32,
        soft_cap: f32,
        eps: f32,
    }
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
    check_rows("matmul x", x, tokens, w.cols)?;
    check_out_rows("matmul y", y, tokens, w.rows)?;
    check_weights("matmul", w)?;
    let wk = ops.weight_kernels(w.dtype)?;
    let staged = staged_gemm(pb, ops, w, tokens);
    for (i, part) in w.parts.iter().enumerate() {
        if tokens == 1 {
            let v = GemvVariant {
                shape: &wk.gemv_shape,
                pipelines: &wk.gemv,
                label: "gemv",
            };
            gemv_part(
                pb,
                &v,
                &GemvInput {
                    x,
                    aux: &x.buf,
                    eps: 0.0,
                },
                w,
                i,
                y,
                epi,
            )?;
            continue;
        }
        if let Some(staged) = &staged {
            staged_part(pb, staged, x, tokens, w, i, y, epi)?;
            continue;
        }
        // The matrix-unit GEMM where the adapter has one, else a tiled one.
        let (label, pipeline, tile) = match &wk.gemm_coop {
            Some(coop) => ("gemm_coop", coop, coop_tile(ops)),
            None if tokens >= GEMM_8X8_MIN_TOKENS => ("gemm_8x8", &wk.gemm_8x8, 128),
            None => ("gemm", &wk.gemm, 64),
        };
        let p = gemm_params(x, tokens, w, part.rows, y, part.row0, epi);
        let bufs = [x.buf.clone(), w.part_slice(i), y.buf.clone()];
        // gemm_coop walks token tiles first (neighbouring workgroups share weight tiles).
        let grid = if wk.gemm_coop.is_some() {
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

/// The parameters of a GEMM over `rows` rows of `w` whose outputs start at column `col` of y.
fn gemm_params(x: &Rows, tokens: usize, w: &GpuMatrix, rows: usize, y: &Rows, col: usize, epi: Epilogue) -> GemmParams {
    GemmParams {
        tokens: u(tokens),
        n: u(rows),
        k: u(w.cols),
        kp: u(w.kp),
        x_stride: u(x.stride),
        x_offset: u(x.offset),
        y_stride: u(y.stride),
        y_offset: u(y.offset + col),
        accumulate: epi.accumulate as u32,
        soft_cap: epi.soft_cap,
        // gemm_coop: whether y's binding starts 16-byte aligned (its direct fragment stores
        // need aligned rows); the tiled kernel ignores it.
        y_aligned: y.buf.offset.is_multiple_of(16) as u32,
        _pad1: 0,
    }
}

/// Segments at least this long run the tiled GEMM with 128 x 128 tiles and 8 x 8 outputs an
/// invocation (`gemm_8x8.wgsl`) where there are no matrix units; shorter ones the 64 x 64 tiles,
/// which waste less of a partial tile.
pub const GEMM_8X8_MIN_TOKENS: usize = 128;

/// Segments at least this long multiply quantized weights expanded to f16 rows first
/// (`dequant_f16.wgsl`, then the f16 matrix-unit GEMM): the expansion reads the weights once
/// and writes 2 bytes a weight, while gemm_coop dequantizing in its staging does the work again
/// for every 128-token tile.
pub const STAGED_MIN_TOKENS: usize = 512;

/// The smallest weight staging buffer: a model's is sized for its largest block matrix (one
/// band per GEMM), at least this; larger matrices (an lm_head over every token) are expanded a
/// band of 128-row tiles at a time.
pub const WEIGHT_STAGING_BYTES: usize = 64 << 20;

/// How a long GEMM over quantized weights runs staged: the expansion and f16 GEMM pipelines,
/// the staging buffer and the rows it holds (whole 128-row tiles).
struct Staged<'a> {
    dequant: &'a LazyPipeline,
    gemm: &'a LazyPipeline,
    staging: Slice,
    band: usize,
    /// gemm_coop's tile edge.
    tile: usize,
}

/// The staged path, where it applies: quantized weights, a long segment, the adapter's
/// matrix-unit GEMM, and a staging buffer that holds at least one 128-row tile band of `w`.
fn staged_gemm<'a>(pb: &PlanBuilder, ops: &'a Ops, w: &GpuMatrix, tokens: usize) -> Option<Staged<'a>> {
    let staging = pb.weight_staging()?;
    let dequant = ops.weight_kernels(w.dtype).ok()?.dequant_f16.as_ref()?;
    let gemm = ops.gemm_coop_f16.as_ref()?;
    let band = staging.size as usize / (w.kp * 2) / 128 * 128;
    (tokens >= STAGED_MIN_TOKENS && band > 0).then(|| Staged {
        dequant,
        gemm,
        staging: staging.clone(),
        band,
        tile: coop_tile(ops),
    })
}

params! {
    struct DequantParams for ["dequant_f16"] {
        n: u32,
        kp: u32,
        row0: u32,
        rows: u32,
    }
}

/// Part `i` of quantized `w` through the staging buffer: each band of rows is expanded to f16
/// rows, then multiplied on the matrix units.
#[allow(clippy::too_many_arguments)]
fn staged_part(
    pb: &mut PlanBuilder,
    st: &Staged,
    x: &Rows,
    tokens: usize,
    w: &GpuMatrix,
    i: usize,
    y: &Rows,
    epi: Epilogue,
) -> Result<()> {
    let part = &w.parts[i];
    for r0 in (0..part.rows).step_by(st.band) {
        let rows = st.band.min(part.rows - r0);
        let f16_bytes = (rows * w.kp * 2) as u64;
        let staged = Slice {
            size: f16_bytes,
            ..st.staging.clone()
        };
        let p = DequantParams {
            n: u(part.rows),
            kp: u(w.kp),
            row0: u(r0),
            rows: u(rows),
        };
        let words = rows * w.kp / 8;
        let wg = words.div_ceil(256);
        let grid = [wg.min(65535) as u32, wg.div_ceil(65535) as u32, 1];
        pb.dispatch("dequant_f16", st.dequant, &p, &[staged.clone(), w.part_slice(i)], grid)?;
        let layout = w.part_layout(i);
        pb.cost((rows * (layout.values + layout.scales)) as f64 + f16_bytes as f64, 0.0);
        let p = gemm_params(x, tokens, w, rows, y, part.row0 + r0, epi);
        let grid = [groups(tokens, st.tile), groups(rows, st.tile), 1];
        pb.dispatch("gemm_coop", st.gemm, &p, &[x.buf.clone(), staged, y.buf.clone()], grid)?;
        let io = 4.0 * (tokens * (w.cols + 2 * rows)) as f64;
        pb.cost(f16_bytes as f64 + io, 2.0 * (tokens * rows * w.cols) as f64);
    }
    Ok(())
}

/// One of gemv.wgsl's input transforms (plain, RMSNorm, SwiGLU) as compiled.
struct GemvVariant<'a> {
    shape: &'a super::GemvShape,
    pipelines: &'a super::GemvPipelines<LazyPipeline>,
    label: &'static str,
}

/// A GEMV's input row; `aux` is the transform's extra input (any buffer when the variant has
/// none: the binding exists in every variant) and `eps` the RMSNorm's.
struct GemvInput<'a> {
    x: &'a Rows,
    aux: &'a Slice,
    eps: f32,
}

/// One GEMV dispatch over part `i` of `w`.
fn gemv_part(
    pb: &mut PlanBuilder,
    v: &GemvVariant,
    input: &GemvInput,
    w: &GpuMatrix,
    i: usize,
    y: &Rows,
    epi: Epilogue,
) -> Result<()> {
    let GemvInput { x, aux, eps } = *input;
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
    let (pipeline, row_groups) = v.pipelines.pick(v.shape, w.kp, part.rows);
    pb.dispatch(
        v.label,
        pipeline,
        &p,
        &bufs,
        [groups(part.rows, v.shape.rows(row_groups)), 1, 1],
    )?;
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
    norm: Norm,
    w: &GpuMatrix,
    y: &Rows,
    epi: Epilogue,
) -> Result<()> {
    check_rows("gemv+norm x", x, 1, w.cols)?;
    check_len("gemv+norm weight", norm.weight, w.cols)?;
    check_out_rows("gemv+norm y", y, 1, w.rows)?;
    check_weights("gemv+norm", w)?;
    let wk = ops.weight_kernels(w.dtype)?;
    let v = GemvVariant {
        shape: &wk.gemv_shape,
        pipelines: &wk.gemv_norm,
        label: "gemv+norm",
    };
    let input = GemvInput {
        x,
        aux: norm.weight,
        eps: norm.eps,
    };
    for i in 0..w.parts.len() {
        gemv_part(pb, &v, &input, w, i, y, epi)?;
    }
    Ok(())
}

params! {
    struct GemvHeadNormParams for ["gemv_head_norm"] {
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
        _pad0: u32,
        _pad1: u32,
    }
}

/// Whether [`gemv_head_norm_gate`] can run for `num_heads` heads of `head_dim` inputs and
/// weights whose rows are `kp` wide: the adapter has the kernel, the staged input fits, each
/// invocation's run of `width / 256` (at least 1) inputs stays within one head, heads are a
/// multiple of 4 wide and there are at most 256 of them.
pub fn gemv_head_norm_fits(ops: &Ops, num_heads: usize, head_dim: usize, kp: usize) -> bool {
    let width = num_heads * head_dim;
    let per = (width / 256).max(1);
    ops.weights[0].gemv_head_norm.is_some()
        && kp <= GEMV_HEAD_NORM_MAX_INPUTS
        && (1..=256).contains(&num_heads)
        && head_dim.is_multiple_of(4)
        && (width <= 256 || width.is_multiple_of(256))
        && head_dim.is_multiple_of(per)
}

/// The input of [`gemv_head_norm_gate`]: the mLSTM output row `h` in heads of `head_dim`, its
/// output-gate pre-activations `gate`, and the head norm's scale and epsilon.
#[derive(Clone, Copy)]
pub struct HeadNormInput<'a> {
    pub h: &'a Rows,
    pub head_dim: usize,
    pub norm: Norm<'a>,
    pub gate: &'a Rows,
}

/// y (+)= W (HeadNorm(h) * norm * sigmoid(o)) for one token: xLSTM Large's per-head LayerNorm
/// and output gate inside the out-projection GEMV (one dispatch instead of two). `h` is the mLSTM
/// output row (`w.cols = num_heads * head_dim` values), `gate` the output-gate pre-activations,
/// `norm` the head-norm weight. Requires [`gemv_head_norm_fits`].
pub fn gemv_head_norm_gate(
    pb: &mut PlanBuilder,
    ops: &Ops,
    input: &HeadNormInput,
    w: &GpuMatrix,
    y: &Rows,
    epi: Epilogue,
) -> Result<()> {
    let HeadNormInput {
        h,
        head_dim,
        norm: Norm { weight: norm, eps },
        gate,
    } = *input;
    let heads = w.cols / head_dim.max(1);
    let wk = ops.weight_kernels(w.dtype)?;
    let rows_per_workgroup = wk.gemv_head_norm_rows as usize;
    let pipeline = match &wk.gemv_head_norm {
        Some(p) if heads * head_dim == w.cols && gemv_head_norm_fits(ops, heads, head_dim, w.kp) => p,
        _ => {
            return Err(Error::Gpu(format!(
                "fused head norm: {} inputs in heads of {head_dim} do not fit the kernel on this adapter",
                w.cols
            )))
        }
    };
    check_rows("gemv+head_norm h", h, 1, w.cols)?;
    check_len("gemv+head_norm weight", norm, w.cols)?;
    check_rows("gemv+head_norm gate", gate, 1, w.cols)?;
    check_out_rows("gemv+head_norm y", y, 1, w.rows)?;
    check_weights("gemv+head_norm", w)?;
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
            _pad0: 0,
            _pad1: 0,
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
            [groups(part.rows, rows_per_workgroup), 1, 1],
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
    check_rows("gemv+swiglu x", u_in, 1, w.cols.saturating_mul(2))?;
    check_out_rows("gemv+swiglu y", y, 1, w.rows)?;
    check_weights("gemv+swiglu", w)?;
    let wk = ops.weight_kernels(w.dtype)?;
    let v = GemvVariant {
        shape: &wk.gemv_shape,
        pipelines: &wk.gemv_swiglu,
        label: "gemv+swiglu",
    };
    let input = GemvInput {
        x: u_in,
        aux: &u_in.buf,
        eps: 0.0,
    };
    for i in 0..w.parts.len() {
        gemv_part(pb, &v, &input, w, i, y, epi)?;
    }
    Ok(())
}
