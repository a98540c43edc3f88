//! The chunkwise mLSTM cell of prefill: the gates (`wgsl/mlstm_chunk/mlstm_gates.wgsl`), phase 1
//! (`mlstm_chunk_state.wgsl`, matrix units: `mlstm_chunk_state_coop.wgsl`) and phase 2
//! (`mlstm_chunk_out.wgsl`, `mlstm_chunk_out_coop.wgsl`), all in `wgsl/mlstm_chunk/`.
//!
//! Reference: `xlstm_reference::mlstm::chunkwise`; tests: `tests/kernels/mlstm_chunk.rs`.

use super::{check_len, check_strided, groups, u, Ops};
use crate::error::{Error, Result};
use crate::gpu::{LazyPipeline, PlanBuilder, Slice};
use std::ops::Range;

/// Largest chunk the chunkwise kernels take (tiled and matrix-unit alike): phase 2 cuts a chunk
/// into blocks of 64 rows and walks the causal 64-position key blocks, phase 1 keeps one gate
/// per invocation of its 256 and walks the chunk in slices. Their workgroup memory does not
/// depend on the chunk size.
pub const MAX_CHUNK: usize = 256;

/// Workgroup memory mlstm_chunk_state_coop.wgsl declares (two 64 x 72 f16 staging tiles, a
/// 64 x 68 f32 product tile, the chunk's n sums, the gates of up to 256 positions).
const COOP_CHUNK_STATE_WORKGROUP_BYTES: u32 = 2 * 64 * 72 * 2 + 64 * 68 * 4 + 64 * 4 + 256 * 4 + 16;
/// Workgroup memory mlstm_chunk_out_coop.wgsl declares (three 64 x 72 f16 staging tiles, a
/// 64 x 68 f32 score tile, four 64-entry and two 256-entry f32 arrays).
const COOP_CHUNK_OUT_WORKGROUP_BYTES: u32 = 3 * 64 * 72 * 2 + 64 * 68 * 4 + 4 * 64 * 4 + 2 * 256 * 4;

/// Whether the matrix-unit chunkwise kernels can run with `frag` x `frag` fragments: what
/// `gemm_coop` needs (the fragments, f16 shaders, subgroups of exactly 32) and their workgroup
/// memory.
pub fn coop_chunk_supported(caps: &crate::gpu::Caps, frag: u32) -> bool {
    super::coop_gemm_supported(caps, frag)
        && caps.max_workgroup_storage >= COOP_CHUNK_STATE_WORKGROUP_BYTES.max(COOP_CHUNK_OUT_WORKGROUP_BYTES)
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
    pub(crate) fn scale(&self) -> f32 {
        1.0 / (self.dqk as f32).sqrt()
    }
}

params! {
    struct GatesParams for ["mlstm_gates"] {
        tokens: u32,
        chunk: u32,
        num_heads: u32,
        proj_stride: u32,
        i_col: u32,
        f_col: u32,
        soft_cap: f32,
        _pad: u32,
    }
}

/// What [`mlstm_gates`] reads and writes: `tokens` rows of `proj` (gate columns per `l`), the
/// gate biases [2, NH], the chunk size, and the outputs `gi`, `gb` [NH, tokens].
#[derive(Clone, Copy)]
pub struct MlstmGates<'a> {
    pub l: &'a CellLayout,
    pub proj: &'a Slice,
    pub bias: &'a Slice,
    pub tokens: usize,
    pub chunk: usize,
    pub gi: &'a Slice,
    pub gb: &'a Slice,
}

/// Soft-capped input gates and per-chunk cumulative log forget gates, [num_heads, tokens] each
/// (no cap when `l.soft_cap <= 0`).
pub fn mlstm_gates(pb: &mut PlanBuilder, ops: &Ops, a: &MlstmGates) -> Result<()> {
    let MlstmGates {
        l,
        proj,
        bias,
        tokens,
        chunk,
        gi,
        gb,
    } = *a;
    check_chunk(chunk)?;
    let nh = l.num_heads;
    let cols = l.i_col.max(l.f_col).saturating_add(nh);
    check_strided("mlstm_gates proj", proj, 0, l.proj_stride, tokens, cols)?;
    check_len("mlstm_gates bias", bias, nh.saturating_mul(2))?;
    check_len("mlstm_gates gi", gi, nh.saturating_mul(tokens))?;
    check_len("mlstm_gates gb", gb, nh.saturating_mul(tokens))?;
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
    )?;
    // Two gate pre-activations in, two gate values out per head and token.
    pb.cost(16.0 * (tokens * nh) as f64, 8.0 * (tokens * nh) as f64);
    Ok(())
}

fn check_chunk(chunk: usize) -> Result<()> {
    if chunk == 0 || chunk > MAX_CHUNK {
        return Err(Error::Input(format!(
            "chunk size must be between 1 and {MAX_CHUNK}, got {chunk}"
        )));
    }
    Ok(())
}

params! {
    struct ChunkStateParams for ["mlstm_chunk_state", "mlstm_chunk_state_coop"] {
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

/// Phase 1 for the chunks `chunks` and the heads `heads` of the segment.
pub fn mlstm_chunk_state(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &ChunkInputs,
    chunks: Range<usize>,
    heads: Range<usize>,
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
    chunks: Range<usize>,
    heads: Range<usize>,
) -> Result<()> {
    let pipeline = coop_pipeline(&ops.chunk_state_coop, "mlstm_chunk_state_coop")?;
    check_chunk_range(x, &chunks, &heads)?;
    chunk_state_with(pb, ("mlstm_chunk_state_coop", pipeline), x, chunks, heads)
}

fn coop_pipeline<'a>(p: &'a Option<LazyPipeline>, name: &str) -> Result<&'a LazyPipeline> {
    p.as_ref().ok_or_else(|| Error::Kernel {
        kernel: name.into(),
        message: "needs f16 weights and matrix units that passed their check (xlstm info), with subgroups of 32".into(),
    })
}

/// A chunk range and head band inside the segment (the matrix-unit kernels read their first
/// chunk's rows before the loop, so an empty or out-of-range tile must not reach them).
fn check_chunk_range(x: &ChunkInputs, chunks: &Range<usize>, heads: &Range<usize>) -> Result<()> {
    let (l, tokens, chunk) = (x.l, x.tokens, x.chunk);
    check_chunk(chunk)?;
    if chunks.is_empty() || chunks.end > tokens.div_ceil(chunk) || heads.is_empty() || heads.end > l.num_heads {
        return Err(Error::Input(format!(
            "chunk tile {chunks:?} / head band {heads:?} outside {tokens} tokens in chunks of {chunk}, {} heads",
            l.num_heads
        )));
    }
    Ok(())
}

fn chunk_state_with(
    pb: &mut PlanBuilder,
    (label, pipeline): (&'static str, &LazyPipeline),
    x: &ChunkInputs,
    chunks: Range<usize>,
    heads: Range<usize>,
) -> Result<()> {
    let (l, tokens, chunk, b) = (x.l, x.tokens, x.chunk, x.b);
    check_chunk(chunk)?;
    // Reads boundary c_begin, writes c_begin + 1 ..= c_end.
    check_chunk_lengths(
        "mlstm_chunk_state",
        x,
        &chunks,
        &heads,
        chunks.end.saturating_add(1),
        None,
    )?;
    let p = ChunkStateParams {
        tokens: u(tokens),
        chunk: u(chunk),
        c_begin: u(chunks.start),
        c_end: u(chunks.end),
        head0: u(heads.start),
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
        [groups(l.dqk, 64), groups(l.dv, 64), u(heads.len())],
    )?;
    // Per head: the tile's k and v rows and gates, and one C (with n, m) per boundary written
    // (plus the one read); per chunk C += k^T (v * decay).
    let t = tile_tokens(tokens, chunk, &chunks) as f64;
    let (nh, dqk, dv) = (heads.len() as f64, l.dqk as f64, l.dv as f64);
    let states = (chunks.len() + 1) as f64 * (dqk * dv + dqk + 1.0) * 4.0;
    pb.cost(nh * (t * (dqk + dv + 2.0) * 4.0 + states), nh * 2.0 * t * dqk * dv);
    Ok(())
}

/// Tokens the chunks `chunks` of a segment of `tokens` tokens cover.
fn tile_tokens(tokens: usize, chunk: usize, chunks: &Range<usize>) -> usize {
    (chunks.end * chunk).min(tokens).saturating_sub(chunks.start * chunk)
}

params! {
    struct ChunkOutParams for ["mlstm_chunk_out", "mlstm_chunk_out_coop"] {
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
        _pad0: u32,
        _pad1: u32,
    }
}

/// Phase 2 for the chunks `chunks` and the heads `heads` of the segment: h [tokens, NH*dv].
pub fn mlstm_chunk_out(
    pb: &mut PlanBuilder,
    ops: &Ops,
    x: &ChunkInputs,
    chunks: Range<usize>,
    heads: Range<usize>,
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
    chunks: Range<usize>,
    heads: Range<usize>,
    h: &Slice,
) -> Result<()> {
    let pipeline = coop_pipeline(&ops.chunk_out_coop, "mlstm_chunk_out_coop")?;
    check_chunk_range(x, &chunks, &heads)?;
    chunk_out_with(pb, ("mlstm_chunk_out_coop", pipeline), x, chunks, heads, h)
}

fn chunk_out_with(
    pb: &mut PlanBuilder,
    (label, pipeline): (&'static str, &LazyPipeline),
    x: &ChunkInputs,
    chunks: Range<usize>,
    heads: Range<usize>,
    h: &Slice,
) -> Result<()> {
    let (l, tokens, chunk, b) = (x.l, x.tokens, x.chunk, x.b);
    check_chunk(chunk)?;
    // Reads the boundary before each of its chunks, c_begin .. c_end.
    check_chunk_lengths("mlstm_chunk_out", x, &chunks, &heads, chunks.end, Some(h))?;
    let p = ChunkOutParams {
        tokens: u(tokens),
        chunk: u(chunk),
        c_begin: u(chunks.start),
        head0: u(heads.start),
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
        _pad0: 0,
        _pad1: 0,
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
        // One workgroup per 64-row block of every chunk.
        [groups(l.dv, 64), u(chunks.len() * chunk.div_ceil(64)), u(heads.len())],
    )?;
    // Per head and chunk: q, k, v rows and gates in, the boundary state C_prev in, h out; the
    // intra-chunk scores q k^T and their product with v, and q C_prev.
    let t = tile_tokens(tokens, chunk, &chunks) as f64;
    let (nh, dqk, dv, len) = (heads.len() as f64, l.dqk as f64, l.dv as f64, chunk as f64);
    let states = chunks.len() as f64 * (dqk * dv + dqk + 1.0) * 4.0;
    let bytes = nh * (t * (2.0 * dqk + 2.0 * dv + 2.0) * 4.0 + states);
    pb.cost(bytes, nh * 2.0 * t * (len * (dqk + dv) + dqk * dv));
    Ok(())
}

/// The bindings of a chunkwise phase hold what a tile of chunks `chunks` and heads `heads`
/// addresses: the segment's projection rows (q, k, v columns), the gates
/// [NH, tokens], `boundaries` states of the boundary buffers, and for phase 2 h [tokens, NH·dv].
/// An empty tile addresses nothing.
fn check_chunk_lengths(
    what: &str,
    x: &ChunkInputs,
    chunks: &Range<usize>,
    heads: &Range<usize>,
    boundaries: usize,
    h: Option<&Slice>,
) -> Result<()> {
    if chunks.is_empty() || heads.is_empty() {
        return Ok(());
    }
    let (l, tokens) = (x.l, x.tokens);
    let nh = l.num_heads;
    if heads.end > nh {
        return Err(Error::Input(format!("{what}: head band {heads:?} outside {nh} heads")));
    }
    let qk = nh.saturating_mul(l.dqk);
    let v = nh.saturating_mul(l.dv);
    let cols = [
        l.q_col.saturating_add(qk),
        l.k_col.saturating_add(qk),
        l.v_col.saturating_add(v),
    ];
    let cols = cols.into_iter().max().unwrap_or(0);
    check_strided(&format!("{what} proj"), x.proj, 0, l.proj_stride, tokens, cols)?;
    check_len(&format!("{what} gi"), x.gi, nh.saturating_mul(tokens))?;
    check_len(&format!("{what} gb"), x.gb, nh.saturating_mul(tokens))?;
    check_len(
        &format!("{what} C"),
        &x.b.c,
        boundaries.saturating_mul(qk).saturating_mul(l.dv),
    )?;
    check_len(&format!("{what} n"), &x.b.n, boundaries.saturating_mul(qk))?;
    check_len(&format!("{what} m"), &x.b.m, boundaries.saturating_mul(nh))?;
    match h {
        Some(h) => check_len(&format!("{what} h"), h, tokens.saturating_mul(v)),
        None => Ok(()),
    }
}
