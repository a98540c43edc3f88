//! The plan of one pass of the original xLSTM over a segment (a prompt segment, or one decode
//! step): embedding, the mLSTM and sLSTM blocks, post norm and lm_head (data flow: `super`).

use super::*;
use crate::ops::slstm::{self, SlstmMode};
use crate::ops::v1::{self as v1ops, NormOut};
use crate::ops::{mlstm_v1, Epilogue, Rows};

fn add_bias(pb: &mut PlanBuilder, ops: &Ops, y: &Rows, bias: &Option<GpuBuffer>, t: usize, width: usize) -> Result<()> {
    match bias {
        Some(b) => v1ops::bias_add(pb, ops, y, &Slice::all(b), t, width),
        None => Ok(()),
    }
}

/// The original xLSTM as one forward pass sees it: the compiled kernels, the configuration and
/// the weights on the GPU.
#[derive(Clone, Copy)]
pub struct V1Net<'a> {
    pub ops: &'a Ops,
    pub cfg: &'a V1Config,
    pub w: &'a Weights,
}

/// Appends one forward pass over `ws.tokens` tokens (ids in `ws.ids` at `ids_offset`): embedding,
/// every block, post norm and lm_head for the last `ws.logit_rows` tokens. `pass` says how the
/// mLSTM cells run: a prompt segment by the prefill schedule, or one decode step (a one-token
/// workspace; the matrix products of one row run the GEMV kernel). `parity` is the mLSTM states'
/// n/m parity before the segment; returns the parity after it.
pub fn record_forward(
    pb: &mut PlanBuilder,
    net: &V1Net,
    state: &[BlockState],
    ws: &Workspace,
    ids_offset: usize,
    parity: u32,
    pass: CellPass,
) -> Result<u32> {
    let V1Net { ops, cfg, w } = *net;
    let t = ws.tokens;
    if let Some(staging) = &ws.weight_staging {
        pb.stage_weights_in(Slice::all(staging));
    }
    let d = Dims::of(cfg, w);
    let e = d.e;
    let eps = V1_NORM_EPS as f32;
    let s = |b: &GpuBuffer| Slice::all(b);
    let x = Rows::new(&s(&ws.x), e);
    let xn = Rows::new(&s(&ws.xn), e);
    let residual = Epilogue {
        accumulate: true,
        soft_cap: 0.0,
    };
    let mut parity_out = parity;

    ops::embed(pb, ops, &s(&ws.ids), ids_offset, t, &w.embedding, &s(&ws.x))?;
    for (block, st) in w.blocks.iter().zip(state) {
        match (block, st) {
            (Block::Mlstm(b), BlockState::Mlstm { conv, cell }) => {
                let i = d.i;
                let layout = d.cell_layout();
                let up = Rows::new(&s(&ws.up), 2 * i);
                let xc = Rows::new(&s(&ws.xc), i);
                let proj = Rows::new(&s(&ws.proj), layout.proj_stride);
                let h = Rows::new(&s(&ws.h), i);
                let hg = Rows::new(&s(&ws.hg), i);
                let m = cfg.mlstm_layer()?;
                v1ops::layer_norm(
                    pb,
                    ops,
                    &x,
                    t,
                    &v1ops::LayerNorm {
                        weight: Some(&s(&b.norm)),
                        width: e,
                        groups: 1,
                        eps,
                    },
                    &xn,
                    NormOut::Write,
                )?;
                ops::matmul(pb, ops, &xn, t, &b.proj_up, &up, Epilogue::default())?;
                add_bias(pb, ops, &up, &b.proj_up_bias, t, 2 * i)?;
                v1ops::conv_silu(
                    pb,
                    ops,
                    &up,
                    t,
                    &v1ops::Conv {
                        width: i,
                        ks: m.conv1d_kernel_size,
                        weight: &s(&b.conv_weight),
                        bias: &s(&b.conv_bias),
                        state: &s(conv),
                    },
                    &xc,
                )?;
                let qkv_bias = b.qkv_bias.as_ref().map(s);
                v1ops::headwise(
                    pb,
                    ops,
                    &xc,
                    &up,
                    t,
                    &v1ops::Headwise {
                        split: 2,
                        groups: 3,
                        width: i,
                        bs: m.qkv_proj_blocksize,
                        w: &s(&b.qkv),
                        bias: qkv_bias.as_ref(),
                    },
                    &proj,
                )?;
                mlstm_v1::gates(
                    pb,
                    ops,
                    &mlstm_v1::Gates {
                        w: &s(&b.gates),
                        proj: &s(&ws.proj),
                        tokens: t,
                        rows: 2 * d.nh,
                        k: 3 * i,
                        stride: layout.proj_stride,
                        gate_col: layout.i_col,
                    },
                )?;
                let scratch = CellScratch {
                    tokens: t,
                    proj: &ws.proj,
                    cell: &ws.cell,
                    h: &ws.h,
                };
                let cell = Cell {
                    l: &layout,
                    gate_bias: &s(&b.gate_bias),
                    state: cell,
                };
                parity_out = record_cell(pb, ops, &cell, &scratch, parity, pass)?;
                let gate = NormOut::MlstmGate {
                    skip: &s(&b.skip),
                    xc: &xc,
                    z: &up.col(i),
                };
                v1ops::layer_norm(
                    pb,
                    ops,
                    &h,
                    t,
                    &v1ops::LayerNorm {
                        weight: Some(&s(&b.outnorm)),
                        width: i,
                        groups: d.nh,
                        eps,
                    },
                    &hg,
                    gate,
                )?;
                ops::matmul(pb, ops, &hg, t, &b.proj_down, &x, residual)?;
                add_bias(pb, ops, &x, &b.proj_down_bias, t, e)?;
            }
            (Block::Slstm(b), BlockState::Slstm { conv, state, scratch }) => {
                let l = cfg.slstm_layer()?;
                v1ops::layer_norm(
                    pb,
                    ops,
                    &x,
                    t,
                    &v1ops::LayerNorm {
                        weight: Some(&s(&b.norm)),
                        width: e,
                        groups: 1,
                        eps,
                    },
                    &xn,
                    NormOut::Write,
                )?;
                let xc = Rows::new(&s(&ws.xc), e);
                let gate_in = match (&b.conv, conv) {
                    (Some((cw, cb)), Some(cs)) => {
                        v1ops::conv_silu(
                            pb,
                            ops,
                            &xn,
                            t,
                            &v1ops::Conv {
                                width: e,
                                ks: l.conv1d_kernel_size,
                                weight: &s(cw),
                                bias: &s(cb),
                                state: &s(cs),
                            },
                            &xc,
                        )?;
                        &xc
                    }
                    _ => &xn,
                };
                let wx = Rows::new(&s(&ws.wx), 4 * e);
                v1ops::headwise(
                    pb,
                    ops,
                    gate_in,
                    &xn,
                    t,
                    &v1ops::Headwise {
                        split: 2,
                        groups: 4,
                        width: e,
                        bs: l.head_dim,
                        w: &s(&b.gates),
                        bias: None,
                    },
                    &wx,
                )?;
                slstm::slstm(
                    pb,
                    ops,
                    &slstm::Slstm {
                        wx: &s(&ws.wx),
                        bias: &s(&b.bias),
                        r: &s(&b.recurrent),
                        state: &s(state),
                        scratch: &s(scratch),
                        h: &s(&ws.h),
                        tokens: t,
                        num_heads: l.num_heads,
                        head_dim: l.head_dim,
                        mode: SlstmMode::Auto,
                    },
                )?;
                let h = Rows::new(&s(&ws.h), e);
                v1ops::layer_norm(
                    pb,
                    ops,
                    &h,
                    t,
                    &v1ops::LayerNorm {
                        weight: Some(&s(&b.group_norm)),
                        width: e,
                        groups: l.num_heads,
                        eps,
                    },
                    &x,
                    NormOut::Accumulate,
                )?;
                if let Some(f) = &b.ffn {
                    let up = Rows::new(&s(&ws.up), 2 * f.dim);
                    let hid = Rows::new(&s(&ws.hg), f.dim);
                    v1ops::layer_norm(
                        pb,
                        ops,
                        &x,
                        t,
                        &v1ops::LayerNorm {
                            weight: Some(&s(&f.norm)),
                            width: e,
                            groups: 1,
                            eps,
                        },
                        &xn,
                        NormOut::Write,
                    )?;
                    ops::matmul(pb, ops, &xn, t, &f.proj_up, &up, Epilogue::default())?;
                    add_bias(pb, ops, &up, &f.proj_up_bias, t, 2 * f.dim)?;
                    v1ops::gated_act(pb, ops, w.act, &up, t, f.dim, &hid)?;
                    ops::matmul(pb, ops, &hid, t, &f.proj_down, &x, residual)?;
                    add_bias(pb, ops, &x, &f.proj_down_bias, t, e)?;
                }
            }
            _ => return Err(Error::Gpu("v1 state blocks do not match the model's blocks".into())),
        }
    }
    if ws.logit_rows > 0 {
        let rows = ws.logit_rows;
        let last = x.from_row(t - rows);
        let logits = Rows::new(&s(&ws.logits), d.v);
        let head = w.lm_head.as_ref().unwrap_or(&w.embedding);
        match &w.post_norm {
            Some(norm) => {
                v1ops::layer_norm(
                    pb,
                    ops,
                    &last,
                    rows,
                    &v1ops::LayerNorm {
                        weight: Some(&s(norm)),
                        width: e,
                        groups: 1,
                        eps,
                    },
                    &xn,
                    NormOut::Write,
                )?;
                ops::matmul(pb, ops, &xn, rows, head, &logits, Epilogue::default())?;
            }
            None => ops::matmul(pb, ops, &last, rows, head, &logits, Epilogue::default())?,
        }
    }
    Ok(parity_out)
}
