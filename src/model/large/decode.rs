//! The plan of one decode step through xLSTM Large: a single token, every matrix product a GEMV
//! with the input transform fused in, five dispatches per block:
//! embed → per block: GEMV with RMSNorm → mLSTM step → GEMV with per-head LayerNorm · sigmoid(o),
//! added into the residual → GEMV with RMSNorm → GEMV with SwiGLU, added into the residual →
//! GEMV with the final RMSNorm and the logit soft cap → logits [V].

use super::{LargeBlock, LargeNet, Workspace, RESIDUAL};
use crate::error::Result;
use crate::gpu::{GpuBuffer, PlanBuilder, Slice};
use crate::model::mlstm_cell::CellState;
use crate::ops::{self, CellLayout, Epilogue, Norm, Rows};

impl LargeNet<'_> {
    /// Appends one step: the token id at `ws.ids[step]` in, its logits out in `ws.logits` (when
    /// `ws.logit_rows` is 1). Batched decode records several steps into one plan, each reading the
    /// id the previous one chose. `parity` is the state's n/m parity before the step; returns the
    /// parity after it (the step kernel flips it).
    pub fn record_decode_step(
        &self,
        pb: &mut PlanBuilder,
        state: &[CellState],
        ws: &Workspace,
        step: usize,
        parity: u32,
    ) -> Result<u32> {
        let (ops, cfg, w) = (self.ops, self.cfg, self.w);
        let eps = cfg.norm_eps;
        let layout = self.cell_layout();
        let s = |b: &GpuBuffer| Slice::all(b);
        let x = Rows::new(&s(&ws.x), cfg.embedding_dim);
        let proj = Rows::new(&s(&ws.proj), layout.proj_stride);
        let ffn_u = Rows::new(&s(&ws.ffn_u), 2 * cfg.ffn_dim);
        let h = s(&ws.h);
        let none = Epilogue::default();

        ops::embed(pb, ops, &s(&ws.ids), step, 1, &w.embedding, &s(&ws.x))?;
        for (block, st) in w.blocks.iter().zip(state) {
            let (norm_mlstm, norm_ffn, gate_bias) = (s(&block.norm_mlstm), s(&block.norm_ffn), s(&block.gate_bias));
            let cell = st.buffers();
            let step_in = ops::MlstmStep {
                l: &layout,
                proj: &proj.buf,
                bias: &gate_bias,
                row: 0,
                state: &cell,
                parity,
                h: &h,
                h_offset: 0,
            };

            ops::gemv_rms_norm(pb, ops, &x, Norm::new(&norm_mlstm, eps), &block.proj, &proj, none)?;
            ops::mlstm_step(pb, ops, &step_in)?;
            self.record_out_proj(pb, block, &layout, ws, &x)?;
            ops::gemv_rms_norm(pb, ops, &x, Norm::new(&norm_ffn, eps), &block.ffn_up, &ffn_u, none)?;
            ops::gemv_swiglu(pb, ops, &ffn_u, &block.ffn_down, &x, RESIDUAL)?;
        }
        if ws.logit_rows > 0 {
            let cap = Epilogue {
                accumulate: false,
                soft_cap: cfg.output_logit_soft_cap,
            };
            let logits = Rows::new(&s(&ws.logits), cfg.vocab_size);
            match &w.out_norm {
                Some(norm) => ops::gemv_rms_norm(pb, ops, &x, Norm::new(&s(norm), eps), &w.lm_head, &logits, cap)?,
                None => ops::matmul(pb, ops, &x, 1, &w.lm_head, &logits, cap)?,
            }
        }
        Ok(parity ^ 1)
    }

    /// x += out_proj(HeadNorm(h) · sigmoid(o)) for the step's row: inside the GEMV where the
    /// staged input fits the fused kernel on this adapter, else the head norm as its own dispatch.
    fn record_out_proj(
        &self,
        pb: &mut PlanBuilder,
        block: &LargeBlock,
        layout: &CellLayout,
        ws: &Workspace,
        x: &Rows,
    ) -> Result<()> {
        let (ops, cfg) = (self.ops, self.cfg);
        let s = |b: &GpuBuffer| Slice::all(b);
        if ops::gemv_head_norm_fits(ops, layout.num_heads, layout.dv, block.out_proj.kp) {
            let h = Rows::new(&s(&ws.h), cfg.v_dim());
            let gate = Rows::new(&s(&ws.proj), layout.proj_stride).col(layout.o_col);
            let norm = s(&block.head_norm);
            return ops::gemv_head_norm_gate(
                pb,
                ops,
                &ops::HeadNormInput {
                    h: &h,
                    head_dim: layout.dv,
                    norm: Norm::new(&norm, cfg.norm_eps),
                    gate: &gate,
                },
                &block.out_proj,
                x,
                RESIDUAL,
            );
        }
        let hn = Rows::new(&s(&ws.hn), cfg.v_dim());
        ops::head_norm_gate(
            pb,
            ops,
            &ops::HeadNormGate {
                l: layout,
                h: &s(&ws.h),
                norm: ops::Norm {
                    weight: &s(&block.head_norm),
                    eps: cfg.norm_eps,
                },
                proj: &s(&ws.proj),
                tokens: 1,
                y: &s(&ws.hn),
            },
        )?;
        ops::matmul(pb, ops, &hn, 1, &block.out_proj, x, RESIDUAL)
    }
}
