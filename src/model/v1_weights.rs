//! The weights of one block of the ORIGINAL xLSTM (`xlstm.xLSTMLMModel`: v1 mLSTM and sLSTM blocks)
//! read from an opened checkpoint into host f32 tensors, in one canonical layout whatever the
//! checkpoint's sLSTM backend. The GPU loader (`model::v1`) uploads a block at a time from these,
//! and the plain-Rust reference (`xlstm_reference::v1`) computes with them, so both read the same
//! tensors the same way.
//!
//! NOTE the checkpoint's sLSTM module names are swapped: `xlstm.fgate` makes the INPUT gate and
//! `xlstm.igate` the FORGET gate; [`SlstmBlockWeights`] names fields by role.

use super::checkpoint::Checkpoint;
use super::v1_config::{BlockKind, SlstmBackend, V1Config};
use crate::error::{Error, Result};

/// The name prefix of block `i`'s tensors is `{BLOCK_PREFIX}{i}.`.
pub const BLOCK_PREFIX: &str = "xlstm_block_stack.blocks.";

/// Weights of one v1 mLSTM block (`xlstm_block_stack.blocks.{i}.*`). `E` embedding, `I` inner
/// width, `NH` heads, `bs` the q/k/v block size, `KS` the conv width. Norm weights are stored as
/// in the checkpoint, i.e. as the OFFSET `w` of the effective scale `1 + w`.
#[derive(Clone, Debug, PartialEq)]
pub struct MlstmBlockWeights {
    /// `xlstm_norm.weight` (offset `w`; scale `1 + w`), `[E]`.
    pub norm: Vec<f32>,
    /// `xlstm.proj_up.weight` `[2I, E]` (first I rows: mLSTM branch, last I: z / output gate).
    pub proj_up: Vec<f32>,
    /// `xlstm.proj_up.bias` `[2I]` (only with `bias = true`).
    pub proj_up_bias: Option<Vec<f32>>,
    /// `xlstm.conv1d.conv.weight` `[I, 1, KS]` stored as `[I, KS]` (tap `KS−1` multiplies the newest input).
    pub conv_weight: Vec<f32>,
    /// `xlstm.conv1d.conv.bias` `[I]`.
    pub conv_bias: Vec<f32>,
    /// `xlstm.{q,k,v}_proj.weight` `[I/bs, bs, bs]`: `y[b·bs+o] = Σ_d x[b·bs+d] · W[b, o, d]`.
    pub q_proj: Vec<f32>,
    pub k_proj: Vec<f32>,
    pub v_proj: Vec<f32>,
    /// `xlstm.{q,k,v}_proj.bias` `[I]` (only with `bias = true`).
    pub q_bias: Option<Vec<f32>>,
    pub k_bias: Option<Vec<f32>>,
    pub v_bias: Option<Vec<f32>>,
    /// `xlstm.mlstm_cell.igate.weight` `[NH, 3I]` over `[q; k; v]`, and `.bias` `[NH]`.
    pub igate_weight: Vec<f32>,
    pub igate_bias: Vec<f32>,
    /// `xlstm.mlstm_cell.fgate.weight` `[NH, 3I]`, `.bias` `[NH]`.
    pub fgate_weight: Vec<f32>,
    pub fgate_bias: Vec<f32>,
    /// `xlstm.mlstm_cell.outnorm.weight` (offset `w`; scale `1 + w`), `[I]`.
    pub outnorm: Vec<f32>,
    /// `xlstm.learnable_skip` `[I]`.
    pub learnable_skip: Vec<f32>,
    /// `xlstm.proj_down.weight` `[E, I]`, optional `.bias` `[E]`.
    pub proj_down: Vec<f32>,
    pub proj_down_bias: Option<Vec<f32>>,
}

/// The gated feed-forward of an sLSTM block, width `F` (taken from the weight shapes).
#[derive(Clone, Debug, PartialEq)]
pub struct FfnWeights {
    /// `F`.
    pub dim: usize,
    /// `ffn_norm.weight` (offset `w`; scale `1 + w`), `[E]`.
    pub norm: Vec<f32>,
    /// `ffn.proj_up.weight` `[2F, E]` (first F rows: gate pre-activation, last F: up).
    pub proj_up: Vec<f32>,
    pub proj_up_bias: Option<Vec<f32>>,
    /// `ffn.proj_down.weight` `[E, F]`.
    pub proj_down: Vec<f32>,
    pub proj_down_bias: Option<Vec<f32>>,
}

/// Weights of one sLSTM block, in one canonical layout whatever the checkpoint's backend.
#[derive(Clone, Debug, PartialEq)]
pub struct SlstmBlockWeights {
    /// `xlstm_norm.weight` (offset `w`; scale `1 + w`), `[E]`.
    pub norm: Vec<f32>,
    /// `xlstm.conv1d.conv.weight` as `[E, KS]` and `.bias` `[E]`; `None` when `conv1d_kernel_size = 0`.
    pub conv: Option<(Vec<f32>, Vec<f32>)>,
    /// Input-gate projection `[NH, DH, DH]` — the checkpoint's `xlstm.fgate.weight` (sic).
    pub w_input: Vec<f32>,
    /// Forget-gate projection `[NH, DH, DH]` — the checkpoint's `xlstm.igate.weight` (sic).
    pub w_forget: Vec<f32>,
    /// `xlstm.zgate.weight` `[NH, DH, DH]` (applied to the un-convolved input).
    pub w_z: Vec<f32>,
    /// `xlstm.ogate.weight` `[NH, DH, DH]` (applied to the un-convolved input).
    pub w_o: Vec<f32>,
    /// Recurrent kernel in the vanilla layout `[NH, 4·DH, DH]`: gate `g`, output unit `j`, input
    /// unit `d` of head `h` at `[h, g·DH + j, d]`; gates ordered (i, f, z, o).
    pub recurrent: Vec<f32>,
    /// Gate biases in the vanilla layout `[4, NH, DH]` (gate-major, gates i, f, z, o).
    pub bias: Vec<f32>,
    /// `xlstm.group_norm.weight` (offset `w`; scale `1 + w`), `[E]` (zeros when `group_norm_weight = false`).
    pub group_norm: Vec<f32>,
    /// The block's feed-forward (`None` when the config's `feedforward` is null).
    pub ffn: Option<FfnWeights>,
}

/// One block's weights.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockWeights {
    Mlstm(MlstmBlockWeights),
    Slstm(SlstmBlockWeights),
}

/// Reads tensors of one block, naming them by their suffix.
struct BlockReader<'a> {
    ckpt: &'a Checkpoint,
    prefix: String,
    /// Read the projection matrices (`proj_up`, `proj_down` of the mLSTM layer and the FFN);
    /// otherwise they are left empty (the GPU loader uploads them from the checkpoint itself).
    matrices: bool,
}

impl BlockReader<'_> {
    fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
    fn get(&self, suffix: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.ckpt.tensor_f32(&self.name(suffix), shape)
    }
    fn get_if(&self, on: bool, suffix: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
        if on {
            self.get(suffix, shape).map(Some)
        } else {
            Ok(None)
        }
    }
    /// A projection matrix: read, or left empty when the caller uploads them itself (after the
    /// shape check).
    fn matrix(&self, suffix: &str, shape: &[usize]) -> Result<Vec<f32>> {
        if self.matrices {
            self.get(suffix, shape)
        } else {
            self.ckpt.entry(&self.name(suffix), shape).map(|_| Vec::new())
        }
    }
    fn shape(&self, suffix: &str) -> Result<&[usize]> {
        self.ckpt
            .shape(&self.name(suffix))
            .ok_or_else(|| Error::Checkpoint(format!("missing tensor `{}`", self.name(suffix))))
    }
}

fn load_mlstm(cfg: &V1Config, r: &BlockReader) -> Result<MlstmBlockWeights> {
    let m = cfg.mlstm_layer()?;
    let (e, i, nh, bs, ks) = (
        cfg.embedding_dim,
        m.inner_dim,
        m.num_heads,
        m.qkv_proj_blocksize,
        m.conv1d_kernel_size,
    );
    let b = cfg.bias;
    Ok(MlstmBlockWeights {
        norm: r.get("xlstm_norm.weight", &[e])?,
        proj_up: r.matrix("xlstm.proj_up.weight", &[2 * i, e])?,
        proj_up_bias: r.get_if(b, "xlstm.proj_up.bias", &[2 * i])?,
        conv_weight: r.get("xlstm.conv1d.conv.weight", &[i, 1, ks])?,
        conv_bias: r.get("xlstm.conv1d.conv.bias", &[i])?,
        q_proj: r.get("xlstm.q_proj.weight", &[i / bs, bs, bs])?,
        k_proj: r.get("xlstm.k_proj.weight", &[i / bs, bs, bs])?,
        v_proj: r.get("xlstm.v_proj.weight", &[i / bs, bs, bs])?,
        q_bias: r.get_if(b, "xlstm.q_proj.bias", &[i])?,
        k_bias: r.get_if(b, "xlstm.k_proj.bias", &[i])?,
        v_bias: r.get_if(b, "xlstm.v_proj.bias", &[i])?,
        igate_weight: r.get("xlstm.mlstm_cell.igate.weight", &[nh, 3 * i])?,
        igate_bias: r.get("xlstm.mlstm_cell.igate.bias", &[nh])?,
        fgate_weight: r.get("xlstm.mlstm_cell.fgate.weight", &[nh, 3 * i])?,
        fgate_bias: r.get("xlstm.mlstm_cell.fgate.bias", &[nh])?,
        outnorm: r.get("xlstm.mlstm_cell.outnorm.weight", &[i])?,
        learnable_skip: r.get("xlstm.learnable_skip", &[i])?,
        proj_down: r.matrix("xlstm.proj_down.weight", &[e, i])?,
        proj_down_bias: r.get_if(b, "xlstm.proj_down.bias", &[e])?,
    })
}

fn load_slstm(cfg: &V1Config, r: &BlockReader) -> Result<SlstmBlockWeights> {
    let s = cfg.slstm_layer()?;
    let (e, nh, dh, ks) = (cfg.embedding_dim, s.num_heads, s.head_dim, s.conv1d_kernel_size);
    let conv = if ks > 0 {
        Some((
            r.get("xlstm.conv1d.conv.weight", &[e, 1, ks])?,
            r.get("xlstm.conv1d.conv.bias", &[e])?,
        ))
    } else {
        None
    };
    let head = [nh, dh, dh];
    // Recurrent kernel and bias: convert the cuda layout to the canonical (vanilla) one.
    let r_name = "xlstm.slstm_cell._recurrent_kernel_";
    let r_shape = r.shape(r_name)?.to_vec();
    let (vanilla_shape, cuda_shape) = ([nh, 4 * dh, dh], [nh, dh, 4 * dh]);
    let recurrent = match s.backend {
        SlstmBackend::Vanilla => {
            if r_shape == cuda_shape {
                return Err(Error::Checkpoint(format!(
                    "`{}` has the cuda layout {r_shape:?} but the config says backend \"vanilla\" \
                     (expected {vanilla_shape:?})",
                    r.name(r_name)
                )));
            }
            r.get(r_name, &vanilla_shape)?
        }
        SlstmBackend::Cuda => {
            if r_shape == vanilla_shape {
                return Err(Error::Checkpoint(format!(
                    "`{}` has the vanilla layout {r_shape:?} but the config says backend \"cuda\" \
                     (expected {cuda_shape:?})",
                    r.name(r_name)
                )));
            }
            let cuda = r.get(r_name, &cuda_shape)?;
            // R_vanilla[h, gj, d] = R_cuda[h, d, gj]
            let mut out = vec![0.0; cuda.len()];
            for h in 0..nh {
                for gj in 0..4 * dh {
                    for d in 0..dh {
                        out[(h * 4 * dh + gj) * dh + d] = cuda[(h * dh + d) * 4 * dh + gj];
                    }
                }
            }
            out
        }
    };
    let raw_bias = r.get("xlstm.slstm_cell._bias_", &[4 * e])?;
    let bias = match s.backend {
        SlstmBackend::Vanilla => raw_bias,
        SlstmBackend::Cuda => {
            // [head][gate][DH] -> [gate][head][DH]
            let mut out = vec![0.0; raw_bias.len()];
            for h in 0..nh {
                for g in 0..4 {
                    for j in 0..dh {
                        out[(g * nh + h) * dh + j] = raw_bias[(h * 4 + g) * dh + j];
                    }
                }
            }
            out
        }
    };
    let group_norm = if s.group_norm_weight {
        r.get("xlstm.group_norm.weight", &[e])?
    } else {
        vec![0.0; e]
    };
    let ffn = match &cfg.feedforward {
        None => None,
        Some(ff) => {
            let down_shape = r.shape("ffn.proj_down.weight")?.to_vec();
            if down_shape.len() != 2 || down_shape[0] != e || down_shape[1] == 0 {
                return Err(Error::Checkpoint(format!(
                    "`{}` has shape {down_shape:?}, expected [{e}, F]",
                    r.name("ffn.proj_down.weight")
                )));
            }
            // A quantized proj_down's rows are padded to whole groups; proj_up's row count
            // [2F, E] gives F exactly then (the shape checks below confirm both).
            let quantized = r.ckpt.quantization().is_some();
            let f = match r.ckpt.shape(&r.name("ffn.proj_up.weight")) {
                Some(&[up, _]) if quantized => up / 2,
                _ => down_shape[1],
            };
            Some(FfnWeights {
                dim: f,
                norm: r.get("ffn_norm.weight", &[e])?,
                proj_up: r.matrix("ffn.proj_up.weight", &[2 * f, e])?,
                proj_up_bias: r.get_if(ff.bias, "ffn.proj_up.bias", &[2 * f])?,
                proj_down: r.matrix("ffn.proj_down.weight", &[e, f])?,
                proj_down_bias: r.get_if(ff.bias, "ffn.proj_down.bias", &[e])?,
            })
        }
    };
    Ok(SlstmBlockWeights {
        norm: r.get("xlstm_norm.weight", &[e])?,
        conv,
        w_input: r.get("xlstm.fgate.weight", &head)?,
        w_forget: r.get("xlstm.igate.weight", &head)?,
        w_z: r.get("xlstm.zgate.weight", &head)?,
        w_o: r.get("xlstm.ogate.weight", &head)?,
        recurrent,
        bias,
        group_norm,
        ffn,
    })
}

/// Reads the weights of block `index` (its kind from `cfg`) from an opened checkpoint, converting
/// cuda-layout sLSTM tensors. Missing tensors and wrong shapes are `Error::Checkpoint`; an index
/// beyond the config's blocks, or a block kind without its layer config, is `Error::Config`.
pub fn load_block(cfg: &V1Config, ckpt: &Checkpoint, index: usize) -> Result<BlockWeights> {
    load_block_with(cfg, ckpt, index, true)
}

/// [`load_block`], reading the projection matrices only when `matrices` (otherwise their
/// fields are empty, their shapes checked: the GPU loader uploads them from the checkpoint,
/// stored quantized or not).
pub fn load_block_with(cfg: &V1Config, ckpt: &Checkpoint, index: usize, matrices: bool) -> Result<BlockWeights> {
    let kind = *cfg.blocks.get(index).ok_or_else(|| {
        Error::Config(format!(
            "block {index} requested from a config of {} blocks",
            cfg.blocks.len()
        ))
    })?;
    let reader = BlockReader {
        ckpt,
        prefix: format!("{BLOCK_PREFIX}{index}."),
        matrices,
    };
    Ok(match kind {
        BlockKind::Mlstm => BlockWeights::Mlstm(load_mlstm(cfg, &reader)?),
        BlockKind::Slstm => BlockWeights::Slstm(load_slstm(cfg, &reader)?),
    })
}
