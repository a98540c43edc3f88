//! The plan of a prompt segment through xLSTM Large, T tokens at once:
//! embed → per block: RMSNorm → fused projection GEMM [T, 2qk+2v+2NH] → mLSTM cell (chunkwise or
//! step by step, by the schedule) → per-head LayerNorm · sigmoid(o) → out_proj GEMM added into the
//! residual → RMSNorm → gate|up GEMM → SwiGLU → down GEMM added into the residual → final RMSNorm →
//! lm_head GEMM with the logit soft cap over the last `logit_rows` tokens.

use super::{cell_scratch, LargeNet, Workspace, RESIDUAL};
use crate::error::Result;
use crate::gpu::{GpuBuffer, PlanBuilder, Slice};
use crate::model::mlstm_cell::{record_cell, Cell, CellPass, CellState};
use crate::model::schedule::PrefillSchedule;
use crate::ops::{self, Epilogue, Rows};

impl LargeNet<'_> {
    /// Appends the forward pass over the `ws.tokens` prompt tokens in `ws.ids`. `parity` is the
    /// state's n/m parity before the segment; returns the parity after it.
    pub fn record_prefill(
        &self,
        pb: &mut PlanBuilder,
        state: &[CellState],
        ws: &Workspace,
        parity: u32,
        sched: &PrefillSchedule,
    ) -> Result<u32> {
        let (ops, cfg, w) = (self.ops, self.cfg, self.w);
        let t = ws.tokens;
        let e = cfg.embedding_dim;
        let eps = cfg.norm_eps;
        let layout = self.cell_layout();
        let s = |b: &GpuBuffer| Slice::all(b);
        let x = Rows::new(&s(&ws.x), e);
        let xn = Rows::new(&s(&ws.xn), e);
        let proj = Rows::new(&s(&ws.proj), layout.proj_stride);
        let hn = Rows::new(&s(&ws.hn), cfg.v_dim());
        let ffn_u = Rows::new(&s(&ws.ffn_u), 2 * cfg.ffn_dim);
        let ffn_a = Rows::new(&s(&ws.ffn_a), cfg.ffn_dim);
        let mut parity_out = parity;
        if let Some(staging) = &ws.weight_staging {
            pb.stage_weights_in(s(staging));
        }

        ops::embed(pb, ops, &s(&ws.ids), 0, t, &w.embedding, &s(&ws.x))?;
        for (block, st) in w.blocks.iter().zip(state) {
            ops::rms_norm(
                pb,
                ops,
                &x,
                ops::Norm {
                    weight: &s(&block.norm_mlstm),
                    eps,
                },
                e,
                t,
                &xn,
            )?;
            ops::matmul(pb, ops, &xn, t, &block.proj, &proj, Epilogue::default())?;
            let scratch = cell_scratch(ws);
            let cell = Cell {
                l: &layout,
                gate_bias: &s(&block.gate_bias),
                state: st,
            };
            parity_out = record_cell(pb, ops, &cell, &scratch, parity, CellPass::Prefill(sched))?;
            ops::head_norm_gate(
                pb,
                ops,
                &ops::HeadNormGate {
                    l: &layout,
                    h: &s(&ws.h),
                    norm: ops::Norm {
                        weight: &s(&block.head_norm),
                        eps,
                    },
                    proj: &s(&ws.proj),
                    tokens: t,
                    y: &s(&ws.hn),
                },
            )?;
            ops::matmul(pb, ops, &hn, t, &block.out_proj, &x, RESIDUAL)?;
            ops::rms_norm(
                pb,
                ops,
                &x,
                ops::Norm {
                    weight: &s(&block.norm_ffn),
                    eps,
                },
                e,
                t,
                &xn,
            )?;
            ops::matmul(pb, ops, &xn, t, &block.ffn_up, &ffn_u, Epilogue::default())?;
            ops::swiglu(pb, ops, &s(&ws.ffn_u), t, cfg.ffn_dim, &s(&ws.ffn_a))?;
            ops::matmul(pb, ops, &ffn_a, t, &block.ffn_down, &x, RESIDUAL)?;
        }
        self.record_lm_head(pb, ws, &x, &xn)?;
        Ok(parity_out)
    }

    /// Final RMSNorm and lm_head over the last `ws.logit_rows` rows of `x`.
    fn record_lm_head(&self, pb: &mut PlanBuilder, ws: &Workspace, x: &Rows, xn: &Rows) -> Result<()> {
        let (ops, cfg, w) = (self.ops, self.cfg, self.w);
        let rows = ws.logit_rows;
        if rows == 0 {
            return Ok(());
        }
        let last = x.from_row(ws.tokens - rows);
        let cap = Epilogue {
            accumulate: false,
            soft_cap: cfg.output_logit_soft_cap,
        };
        let logits = Rows::new(&Slice::all(&ws.logits), cfg.vocab_size);
        match &w.out_norm {
            // One row (the usual prompt: logits of its last token only): the norm runs inside
            // the GEMV, as in decode.
            Some(norm) if rows == 1 => ops::gemv_rms_norm(
                pb,
                ops,
                &last,
                ops::Norm {
                    weight: &Slice::all(norm),
                    eps: cfg.norm_eps,
                },
                &w.lm_head,
                &logits,
                cap,
            ),
            Some(norm) => {
                let e = cfg.embedding_dim;
                ops::rms_norm(
                    pb,
                    ops,
                    &last,
                    ops::Norm {
                        weight: &Slice::all(norm),
                        eps: cfg.norm_eps,
                    },
                    e,
                    rows,
                    xn,
                )?;
                ops::matmul(pb, ops, xn, rows, &w.lm_head, &logits, cap)
            }
            None => ops::matmul(pb, ops, &last, rows, &w.lm_head, &logits, cap),
        }
    }
}
