//! The recurrent state as a file (prompt caching, stateful use): a [`SavedState`] written as
//! safetensors, every state tensor in f32 under `state.{i}` (the order of
//! [`SavedState::tensors`]), with metadata naming the format version, the model family and shape,
//! the weight dtype and the position. A state only continues the model that made it, so reading
//! checks all of these against the model it is meant for and refuses any mismatch in one line.

use crate::error::{Error, Result};
use crate::files;
use crate::model::Model;
use crate::session::SavedState;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// Bumped whenever the layout of the file or of the state tensors changes: an old file is then
/// refused instead of being misread.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// The `format` metadata value: tells a state file apart from other safetensors files.
const FORMAT_NAME: &str = "xlstm-wgpu-state";

/// Room for the safetensors header on top of the tensor data when capping a read (the header
/// holds one short entry per tensor and a few metadata strings).
const HEADER_SLACK: u64 = 1 << 20;

/// A description of everything about the model that the state's meaning depends on: the family,
/// the config (widths, heads, blocks, block kinds, vocabulary, numerics) and the state layout.
fn model_description(model: &Model, lens: &[usize]) -> String {
    let cfg = match (model.large_config(), model.v1_config()) {
        (Some(c), _) => format!("{c:?}"),
        (None, Some(c)) => format!("{c:?}"),
        (None, None) => String::new(),
    };
    format!("{:?} {cfg} state={lens:?}", model.family())
}

/// A short summary for error messages (the full description is long).
fn model_summary(model: &Model) -> String {
    format!(
        "{:?} model, {} blocks, vocabulary {}, {} weights",
        model.family(),
        model.num_blocks(),
        model.vocab_size(),
        model.dtype().name()
    )
}

/// FNV-1a (64 bit): stable across builds and platforms, unlike std's hasher.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The element count of every state tensor of `model`, in `SavedState::tensors` order.
fn state_lens(model: &Model) -> Result<Vec<usize>> {
    // A zero state of the model is the one source of its layout; for the sizes that matter
    // (megabytes) allocating it briefly is cheaper than keeping a second copy of the layout rules.
    let state = model.inner.new_state()?;
    Ok(state.tensors().iter().map(|t| t.len).collect())
}

/// The shape of every state tensor, from the model's config in the order of
/// [`SavedState::tensors`]: xLSTM Large blocks C [NH, DHQK, DHV], n [NH, DHQK], m [NH];
/// original-xLSTM mLSTM blocks the conv window [KS, I] then C [NH, DH, DH], n [NH, DH], m [NH];
/// sLSTM blocks the conv window [KS, E] (with a conv) then (y, c, n, m) [4, E]. Any tensor whose
/// element count the config does not explain is stored flat ([len]) rather than mislabelled.
fn state_shapes(model: &Model, lens: &[usize]) -> Vec<Vec<usize>> {
    use crate::model::v1_config::BlockKind;
    let mut want: Vec<Vec<usize>> = Vec::new();
    if let Some(c) = model.large_config() {
        let (nh, dqk, dv) = (c.num_heads, c.head_dim_qk(), c.head_dim_v());
        for _ in 0..c.num_blocks {
            want.extend([vec![nh, dqk, dv], vec![nh, dqk], vec![nh]]);
        }
    } else if let Some(c) = model.v1_config() {
        for kind in &c.blocks {
            match (kind, &c.mlstm, &c.slstm) {
                (BlockKind::Mlstm, Some(m), _) => {
                    let (nh, dh) = (m.num_heads, m.head_dim());
                    want.extend([
                        vec![m.conv1d_kernel_size, m.inner_dim],
                        vec![nh, dh, dh],
                        vec![nh, dh],
                        vec![nh],
                    ]);
                }
                (BlockKind::Slstm, _, Some(sl)) => {
                    if sl.conv1d_kernel_size > 0 {
                        want.push(vec![sl.conv1d_kernel_size, c.embedding_dim]);
                    }
                    want.push(vec![4, c.embedding_dim]);
                }
                _ => {}
            }
        }
    }
    let explained = want.len() == lens.len();
    lens.iter()
        .enumerate()
        .map(|(i, &n)| match want.get(i) {
            Some(s) if explained && s.iter().product::<usize>() == n => s.clone(),
            _ => vec![n],
        })
        .collect()
}

fn metadata(model: &Model, lens: &[usize], position: usize) -> HashMap<String, String> {
    let desc = model_description(model, lens);
    HashMap::from([
        ("format".to_string(), FORMAT_NAME.to_string()),
        ("format_version".to_string(), STATE_FORMAT_VERSION.to_string()),
        ("family".to_string(), format!("{:?}", model.family()).to_lowercase()),
        ("dtype".to_string(), model.dtype().name().to_string()),
        ("model_hash".to_string(), format!("{:016x}", fnv1a(&desc))),
        ("model".to_string(), desc),
        ("position".to_string(), position.to_string()),
    ])
}

impl SavedState {
    /// Writes the state to `path` (safetensors; atomically: a reader sees the old file or the
    /// whole new one). `model` is the model whose session produced it.
    pub fn write(&self, path: &Path, model: &Model) -> Result<()> {
        let lens = state_lens(model)?;
        let fits = self.tensors.len() == lens.len() && self.tensors.iter().zip(&lens).all(|(t, &n)| t.len() == n);
        if !fits {
            return Err(Error::Input(format!(
                "{}: the state does not match the {}",
                path.display(),
                model_summary(model)
            )));
        }
        let bytes: Vec<Vec<u8>> = self
            .tensors
            .iter()
            .map(|t| t.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let shapes = state_shapes(model, &lens);
        let views = bytes
            .iter()
            .zip(shapes)
            .enumerate()
            .map(|(i, (b, shape))| {
                let view = TensorView::new(Dtype::F32, shape, b)
                    .map_err(|e| Error::Input(format!("{}: state tensor {i}: {e}", path.display())))?;
                Ok((format!("state.{i}"), view))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = safetensors::serialize(views, Some(metadata(model, &lens, self.position)))
            .map_err(|e| Error::Input(format!("{}: writing the state: {e}", path.display())))?;
        files::write_atomic(path, &out, files::Visibility::Private)
    }

    /// Reads a state written by [`SavedState::write`] for `model`. A file made by another model,
    /// shape, weight dtype or format version, or a truncated or corrupt one, is an error.
    pub fn read(path: &Path, model: &Model) -> Result<SavedState> {
        let lens = state_lens(model)?;
        let data_bytes: u64 = lens.iter().map(|&n| n as u64 * 4).sum();
        let bytes = files::read_input(path, data_bytes + HEADER_SLACK).map_err(|e| Error::io(path, e))?;
        let bad = |what: String| Error::Input(format!("{}: not a usable state file: {what}", path.display()));
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("{e} (truncated or corrupt)")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
        if get("format") != FORMAT_NAME {
            return Err(bad("it is not an xlstm-wgpu state (no `format` metadata)".into()));
        }
        if get("format_version") != STATE_FORMAT_VERSION.to_string() {
            return Err(bad(format!(
                "format version {} (this build reads version {STATE_FORMAT_VERSION})",
                get("format_version")
            )));
        }
        let family = format!("{:?}", model.family()).to_lowercase();
        if get("family") != family {
            return Err(bad(format!(
                "it was made by a {} model, not this {family} one",
                get("family")
            )));
        }
        if get("dtype") != model.dtype().name() {
            return Err(bad(format!(
                "it was made with {} weights, this model runs {} (load it with the same --dtype)",
                get("dtype"),
                model.dtype().name()
            )));
        }
        let want_hash = format!("{:016x}", fnv1a(&model_description(model, &lens)));
        if get("model_hash") != want_hash {
            return Err(bad(format!(
                "it was made by a model of another shape (this one: {})",
                model_summary(model)
            )));
        }
        let position: usize = get("position")
            .parse()
            .map_err(|_| bad(format!("bad position `{}`", get("position"))))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("{e} (truncated or corrupt)")))?;
        if st.len() != lens.len() {
            return Err(bad(format!(
                "{} tensors, the model's state has {}",
                st.len(),
                lens.len()
            )));
        }
        let shapes = state_shapes(model, &lens);
        let tensors = shapes
            .iter()
            .enumerate()
            .map(|(i, shape)| {
                let name = format!("state.{i}");
                let t = st.tensor(&name).map_err(|_| bad(format!("tensor {name} is missing")))?;
                if t.dtype() != Dtype::F32 || t.shape() != shape.as_slice() {
                    return Err(bad(format!(
                        "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                        t.dtype(),
                        t.shape()
                    )));
                }
                Ok(t.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<f32>>())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SavedState { position, tensors })
    }
}
