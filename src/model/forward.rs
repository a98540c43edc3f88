//! One interface over the model families for sessions: the recurrent state, the activation
//! workspace of a segment, and the plan of a forward pass, each dispatched to xLSTM Large
//! (`large`) or the original xLSTM (`v1`).

use super::config::LargeConfig;
use super::large::{self, LargeNet, LargeWeights};
use super::mlstm_cell::CellPass;
use super::schedule::PrefillSchedule;
use super::state::StateTensor;
use super::{v1, vocab_size_of, Arch, ModelInner, SegmentShape};
use crate::error::{Error, Result};
use crate::gpu::{GpuBuffer, GpuMatrix, LazyPipeline, PlanBuilder, Slice};
use crate::ops;

/// The recurrent state of every block of one sequence.
pub enum State {
    Large(Vec<super::mlstm_cell::CellState>),
    V1(Vec<v1::BlockState>),
}

impl State {
    /// Every buffer of the state (a reset zeroes them all).
    pub fn buffers(&self) -> Vec<&GpuBuffer> {
        match self {
            State::Large(blocks) => blocks.iter().flat_map(|b| [&b.c, &b.n, &b.m]).collect(),
            State::V1(blocks) => blocks.iter().flat_map(|b| b.buffers()).collect(),
        }
    }
    /// The tensors a saved state holds, in order.
    pub fn tensors(&self) -> Vec<StateTensor<'_>> {
        match self {
            State::Large(blocks) => blocks.iter().flat_map(|b| b.tensors()).collect(),
            State::V1(blocks) => blocks.iter().flat_map(|b| b.tensors()).collect(),
        }
    }
    pub fn bytes(&self) -> u64 {
        self.buffers().iter().map(|b| b.len()).sum()
    }
}

/// The activation buffers of one segment.
pub enum Workspace {
    Large(large::Workspace),
    V1(v1::Workspace),
}

impl Workspace {
    pub fn ids(&self) -> &GpuBuffer {
        match self {
            Workspace::Large(w) => &w.ids,
            Workspace::V1(w) => &w.ids,
        }
    }
    pub fn logits(&self) -> &GpuBuffer {
        match self {
            Workspace::Large(w) => &w.logits,
            Workspace::V1(w) => &w.logits,
        }
    }
}

impl ModelInner {
    /// A zero state for one sequence (buffers allocated; zeroing is the session's reset).
    pub(crate) fn new_state(&self) -> Result<State> {
        Ok(match &self.arch {
            Arch::Large { cfg, .. } => State::Large(
                (0..cfg.num_blocks)
                    .map(|_| {
                        super::mlstm_cell::CellState::with_dims(
                            &self.pool,
                            cfg.num_heads,
                            cfg.head_dim_qk(),
                            cfg.head_dim_v(),
                        )
                    })
                    .collect::<Result<_>>()?,
            ),
            Arch::V1 { cfg, .. } => State::V1(
                cfg.blocks
                    .iter()
                    .map(|&kind| v1::BlockState::new(&self.pool, cfg, kind))
                    .collect::<Result<_>>()?,
            ),
        })
    }

    /// Buffers for a segment of `tokens` tokens producing `logit_rows` rows of logits, with an id
    /// buffer of at least `ids_len` entries.
    pub(crate) fn workspace(
        &self,
        tokens: usize,
        chunk: usize,
        logit_rows: usize,
        ids_len: usize,
    ) -> Result<Workspace> {
        // Long segments over quantized weights expand them to f16 rows here first (ops::matmul).
        let staging = if tokens >= ops::STAGED_MIN_TOKENS && self.ops.stages_quantized_weights() {
            Some(self.pool.storage(
                self.weight_staging_bytes() as u64,
                crate::gpu::Category::Scratch,
                "weight staging",
            )?)
        } else {
            None
        };
        let shape = SegmentShape {
            tokens,
            chunk,
            logit_rows,
            ids_len,
        };
        Ok(match &self.arch {
            Arch::Large { cfg, .. } => Workspace::Large(large::Workspace::new(&self.pool, cfg, &shape, staging)?),
            Arch::V1 { cfg, weights } => Workspace::V1(v1::Workspace::new(&self.pool, cfg, weights, &shape, staging)?),
        })
    }

    /// The weight staging buffer's size: the largest block matrix as f16 rows (so each is one
    /// GEMM), at least `ops::WEIGHT_STAGING_BYTES` and at most one storage binding (the lm_head
    /// and larger matrices go through in bands of rows).
    fn weight_staging_bytes(&self) -> usize {
        let matrices: Vec<&GpuMatrix> = match &self.arch {
            Arch::Large { weights, .. } => weights
                .blocks
                .iter()
                .flat_map(|b| [&b.proj, &b.out_proj, &b.ffn_up, &b.ffn_down])
                .collect(),
            Arch::V1 { weights, .. } => weights.block_matrices(),
        };
        let largest = matrices
            .iter()
            .flat_map(|m| m.parts.iter().map(|p| p.rows * m.kp * 2))
            .max()
            .unwrap_or(0);
        let binding = self.gpu.caps.max_binding() as usize;
        largest.max(ops::WEIGHT_STAGING_BYTES).min(binding)
    }

    /// The longest segment whose activations and chunk boundaries fit a binding of `cap` bytes.
    pub(crate) fn segment_limit(&self, cap: usize, chunk: usize) -> usize {
        let (row_bytes, state_bytes) = match &self.arch {
            Arch::Large { cfg, .. } => (
                large::max_row_bytes(cfg),
                cfg.num_heads * cfg.head_dim_qk() * cfg.head_dim_v() * 4,
            ),
            Arch::V1 { cfg, weights } => (v1::max_row_bytes(cfg, weights), v1::cell_state_bytes(cfg, weights)),
        };
        let by_rows = cap / row_bytes.max(1);
        // Without mLSTM blocks there are no chunk boundaries to hold.
        let by_boundaries = cap
            .checked_div(state_bytes)
            .map_or(usize::MAX, |n| n.saturating_sub(1) * chunk);
        by_rows.min(by_boundaries)
    }

    /// Appends the forward pass of a prompt segment (ids in the workspace); returns the n/m
    /// parity after it.
    pub(crate) fn record_prefill(
        &self,
        pb: &mut PlanBuilder,
        state: &State,
        ws: &Workspace,
        parity: u32,
        sched: &PrefillSchedule,
    ) -> Result<u32> {
        match (&self.arch, state, ws) {
            (Arch::Large { cfg, weights }, State::Large(st), Workspace::Large(ws)) => {
                self.large_net(cfg, weights).record_prefill(pb, st, ws, parity, sched)
            }
            (Arch::V1 { cfg, weights }, State::V1(st), Workspace::V1(ws)) => {
                let net = v1::V1Net {
                    ops: &self.ops,
                    cfg,
                    w: weights,
                };
                v1::record_forward(pb, &net, st, ws, 0, parity, CellPass::Prefill(sched))
            }
            _ => Err(mismatch()),
        }
    }

    /// Appends one decode step reading its token id at `ws.ids[step]`; returns the n/m parity
    /// after it.
    pub(crate) fn record_decode_step(
        &self,
        pb: &mut PlanBuilder,
        state: &State,
        ws: &Workspace,
        step: usize,
        parity: u32,
    ) -> Result<u32> {
        match (&self.arch, state, ws) {
            (Arch::Large { cfg, weights }, State::Large(st), Workspace::Large(ws)) => self
                .large_net(cfg, weights)
                .record_decode_step(pb, st, ws, step, parity),
            (Arch::V1 { cfg, weights }, State::V1(st), Workspace::V1(ws)) => {
                let net = v1::V1Net {
                    ops: &self.ops,
                    cfg,
                    w: weights,
                };
                v1::record_forward(pb, &net, st, ws, step, parity, CellPass::Step)
            }
            _ => Err(mismatch()),
        }
    }

    /// Compiles, several at once, the pipelines a model's first prompt and greedy decode
    /// dispatch on this adapter ([`warm_set`](Self::warm_set)), then writes the pipeline cache.
    /// A pipeline that fails to compile here is compiled again, and its error returned, at its
    /// first use.
    pub(crate) fn warm_up(&self) -> Result<()> {
        crate::gpu::kernels::compile_concurrently(&self.warm_set()?);
        self.kernels.save_cache();
        Ok(())
    }

    /// The pipelines of one decode step with its token chosen by argmax (as a session decodes
    /// greedily) and of a short and a long prompt segment under the default schedule: those
    /// plans are built and not finished, so the code that chooses the kernels at run time is
    /// what says which to compile. Other paths (sampling, other schedules, the staged
    /// quantized GEMM of very long segments) compile at their first use.
    pub(crate) fn warm_set(&self) -> Result<Vec<LazyPipeline>> {
        let state = self.new_state()?;
        let vocab = vocab_size_of(&self.arch);
        let mut found: Vec<LazyPipeline> = Vec::new();
        let mut add = |pb: &PlanBuilder| {
            for p in pb.pipelines() {
                if !found.iter().any(|f| f.same(&p)) {
                    found.push(p);
                }
            }
        };
        let ws = self.workspace(1, 1, 1, 2)?;
        let mut pb = PlanBuilder::new(self.gpu.clone());
        self.record_decode_step(&mut pb, &state, &ws, 0, 0)?;
        let ids = Slice::all(ws.ids());
        let out = ops::TokenOut {
            buf: &ids,
            first: 1,
            second: None,
        };
        ops::argmax_prefix(&mut pb, &self.ops, &Slice::all(ws.logits()), 1, vocab, vocab, &out)?;
        add(&pb);
        let sched = PrefillSchedule::default();
        let longest = self.segment_limit(self.gpu.caps.max_binding() as usize, sched.chunk_size);
        for tokens in WARM_PROMPTS {
            let tokens = tokens.min(longest);
            if tokens < 2 {
                continue;
            }
            let ws = self.workspace(tokens, sched.chunk_size, 1, tokens)?;
            let mut pb = PlanBuilder::new(self.gpu.clone());
            self.record_prefill(&mut pb, &state, &ws, 0, &sched)?;
            add(&pb);
        }
        Ok(found)
    }

    fn large_net<'a>(&'a self, cfg: &'a LargeConfig, w: &'a LargeWeights) -> LargeNet<'a> {
        LargeNet { ops: &self.ops, cfg, w }
    }
}

/// Prompt lengths whose plans pick the prefill kernels compiled at load: a short prompt, and
/// one long enough for the long-segment GEMM.
const WARM_PROMPTS: [usize; 2] = [16, ops::GEMM_8X8_MIN_TOKENS];

fn mismatch() -> Error {
    Error::Gpu("session state and workspace do not belong to this model".into())
}
