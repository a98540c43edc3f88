//! The mLSTM cell both model families share, on the GPU: its recurrent state, its scratch over a
//! segment, and the plan of one segment through it (the step kernel token by token, or the two
//! chunkwise phases under the prefill schedule). Reference: reference/xlstm.md §2.

use super::schedule::{PrefillSchedule, PrefillStrategy};
use super::state::StateTensor;
use crate::error::Result;
use crate::gpu::{BufferPool, Category, GpuBuffer, PlanBuilder, Slice};
use crate::ops::{self, Boundaries, CellLayout, CellStateBuffers, Ops};
use std::ops::Range;

/// The recurrent state of one mLSTM cell on the GPU.
pub struct CellState {
    pub c: GpuBuffer,
    pub n: GpuBuffer,
    pub m: GpuBuffer,
}

impl CellState {
    /// The state of an mLSTM cell of `nh` heads with key width `dqk` and value width `dv`
    /// (n and m are double-buffered by parity for the step kernel).
    pub fn with_dims(pool: &BufferPool, nh: usize, dqk: usize, dv: usize) -> Result<Self> {
        Ok(CellState {
            c: pool.storage((nh * dqk * dv * 4) as u64, Category::State, "state C")?,
            n: pool.storage((2 * nh * dqk * 4) as u64, Category::State, "state n")?,
            m: pool.storage((2 * nh * 4) as u64, Category::State, "state m")?,
        })
    }
    /// C, then n and m (each double-buffered by parity), in save order.
    pub fn tensors(&self) -> Vec<StateTensor<'_>> {
        vec![
            StateTensor::whole(&self.c),
            StateTensor::halves(&self.n),
            StateTensor::halves(&self.m),
        ]
    }
    pub fn buffers(&self) -> CellStateBuffers {
        CellStateBuffers {
            c: Slice::all(&self.c),
            n: Slice::all(&self.n),
            m: Slice::all(&self.m),
        }
    }
}

/// The mLSTM cell's scratch over a segment: input gates and chunk-local cumulative log forget
/// gates [NH, tokens], and the chunk-boundary states C, n, m (slot 0 = the state before the
/// segment).
pub struct CellBuffers {
    pub gi: GpuBuffer,
    pub gb: GpuBuffer,
    pub bc: GpuBuffer,
    pub bn: GpuBuffer,
    pub bm: GpuBuffer,
}

impl CellBuffers {
    pub fn new(pool: &BufferPool, nh: usize, dqk: usize, dv: usize, tokens: usize, chunk: usize) -> Result<Self> {
        let f = |n: usize| (n.max(1) * 4) as u64;
        let boundaries = tokens.div_ceil(chunk.max(1)) + 1;
        let a = Category::Activations;
        Ok(CellBuffers {
            gi: pool.storage(f(nh * tokens), a, "gates i")?,
            gb: pool.storage(f(nh * tokens), a, "gates b")?,
            bc: pool.storage(f(boundaries * nh * dqk * dv), a, "boundary C")?,
            bn: pool.storage(f(boundaries * nh * dqk), a, "boundary n")?,
            bm: pool.storage(f(boundaries * nh), a, "boundary m")?,
        })
    }
}

/// The buffers an mLSTM cell reads and writes over a segment: the projections (`proj`, laid out
/// as the cell layout says), the gate scratch, the chunk-boundary states and the output `h`.
pub struct CellScratch<'a> {
    pub tokens: usize,
    pub proj: &'a GpuBuffer,
    pub cell: &'a CellBuffers,
    pub h: &'a GpuBuffer,
}

/// How a pass runs the cell: a prompt segment under the prefill schedule, or one decode step.
#[derive(Clone, Copy, Debug)]
pub enum CellPass<'a> {
    Prefill(&'a PrefillSchedule),
    /// One token (the segment's only row) through the step kernel.
    Step,
}

/// One layer's mLSTM cell as a pass sees it: its column layout, its gate biases [2, NH] and its
/// recurrent state.
pub struct Cell<'a> {
    pub l: &'a CellLayout,
    pub gate_bias: &'a Slice,
    pub state: &'a CellState,
}

/// The mLSTM cell over the segment, by the pass (and for prefill the chosen strategy); h lands
/// in `ws.h`. Returns the state's n/m parity afterwards (the step kernel flips it every token).
pub fn record_cell(
    pb: &mut PlanBuilder,
    ops: &Ops,
    cell: &Cell,
    ws: &CellScratch,
    parity: u32,
    pass: CellPass,
) -> Result<u32> {
    let Cell {
        l,
        gate_bias,
        state: st,
    } = *cell;
    let sched = match pass {
        CellPass::Step => return record_steps(pb, ops, cell, ws, parity, 1),
        CellPass::Prefill(sched) if sched.strategy == PrefillStrategy::Recurrent => {
            return record_steps(pb, ops, cell, ws, parity, ws.tokens)
        }
        CellPass::Prefill(sched) => sched,
    };
    let t = ws.tokens;
    let s = |b: &GpuBuffer| Slice::all(b);
    let chunk = sched.chunk_size;
    let chunks = t.div_ceil(chunk);
    let (nh, dqk, dv) = (l.num_heads, l.dqk, l.dv);
    ops::mlstm_gates(
        pb,
        ops,
        &ops::MlstmGates {
            l,
            proj: &s(ws.proj),
            bias: gate_bias,
            tokens: t,
            chunk,
            gi: &s(&ws.cell.gi),
            gb: &s(&ws.cell.gb),
        },
    )?;
    // The state before chunk 0 is the session state (n and m of the current parity).
    let (cb, nb, mb) = ((nh * dqk * dv * 4) as u64, (nh * dqk * 4) as u64, (nh * 4) as u64);
    let cell = ws.cell;
    pb.copy(Slice::range(&st.c, 0, cb), Slice::range(&cell.bc, 0, cb));
    pb.copy(
        Slice::range(&st.n, parity as u64 * nb, nb),
        Slice::range(&cell.bn, 0, nb),
    );
    pb.copy(
        Slice::range(&st.m, parity as u64 * mb, mb),
        Slice::range(&cell.bm, 0, mb),
    );
    let b = Boundaries {
        c: s(&cell.bc),
        n: s(&cell.bn),
        m: s(&cell.bm),
    };
    let (band, tile) = match sched.strategy {
        PrefillStrategy::Fused => (nh, chunks),
        _ => (
            if sched.heads_per_band == 0 {
                nh
            } else {
                sched.heads_per_band.min(nh)
            },
            if sched.tile_chunks == 0 {
                chunks
            } else {
                sched.tile_chunks.min(chunks)
            },
        ),
    };
    // The scheduler's units: head bands x chunk tiles, band-major, so the phase-1 tiles of a band
    // run in order and carry the state through the boundary buffer.
    let units: Vec<(Range<usize>, Range<usize>)> = (0..nh)
        .step_by(band)
        .flat_map(|h0| {
            (0..chunks)
                .step_by(tile)
                .map(move |c0| (h0..(h0 + band).min(nh), c0..(c0 + tile).min(chunks)))
        })
        .collect();
    // `queued`: every head band of each phase in a command buffer of its own (recorded on
    // worker threads by `Plan::run_queued`).
    let queued = sched.strategy == PrefillStrategy::Queued;
    let (proj, gi, gb) = (s(ws.proj), s(&cell.gi), s(&cell.gb));
    let inputs = ops::ChunkInputs {
        l,
        proj: &proj,
        gi: &gi,
        gb: &gb,
        b: &b,
        tokens: t,
        chunk,
    };
    for phase in [1, 2] {
        for (heads, range) in units.iter().cloned() {
            if queued && range.start == 0 {
                pb.split();
            }
            // The matrix-unit variants wherever the prefill GEMMs use the matrix units (f16
            // weights on an adapter with 16x16 f16 cooperative matrices); same buffers and grid.
            match (phase, ops.uses_coop_chunk()) {
                (1, false) => ops::mlstm_chunk_state(pb, ops, &inputs, range, heads)?,
                (1, true) => ops::mlstm_chunk_state_coop(pb, ops, &inputs, range, heads)?,
                (_, false) => ops::mlstm_chunk_out(pb, ops, &inputs, range, heads, &s(ws.h))?,
                (_, true) => ops::mlstm_chunk_out_coop(pb, ops, &inputs, range, heads, &s(ws.h))?,
            }
        }
    }
    if queued {
        pb.split();
    }
    let last = chunks as u64;
    pb.copy(Slice::range(&cell.bc, last * cb, cb), Slice::range(&st.c, 0, cb));
    pb.copy(
        Slice::range(&cell.bn, last * nb, nb),
        Slice::range(&st.n, parity as u64 * nb, nb),
    );
    pb.copy(
        Slice::range(&cell.bm, last * mb, mb),
        Slice::range(&st.m, parity as u64 * mb, mb),
    );
    Ok(parity)
}

/// The step kernel over the first `tokens` rows of the segment, one dispatch per token.
fn record_steps(
    pb: &mut PlanBuilder,
    ops: &Ops,
    cell: &Cell,
    ws: &CellScratch,
    parity: u32,
    tokens: usize,
) -> Result<u32> {
    let Cell {
        l,
        gate_bias,
        state: st,
    } = *cell;
    let (proj, h) = (Slice::all(ws.proj), Slice::all(ws.h));
    let mut p = parity;
    for row in 0..tokens {
        ops::mlstm_step(
            pb,
            ops,
            &ops::MlstmStep {
                l,
                proj: &proj,
                bias: gate_bias,
                row,
                state: &st.buffers(),
                parity: p,
                h: &h,
                h_offset: row * l.num_heads * l.dv,
            },
        )?;
        p ^= 1;
    }
    Ok(p)
}
