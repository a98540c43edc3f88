//! Reading safetensors checkpoints: a single `model.safetensors`, shards listed in
//! `model.safetensors.index.json`, or the xlstm package's `model_0.safetensors`, `model_1...`.
//! Files are memory-mapped and headers validated up front; tensor data is converted to the GPU
//! format a row range at a time, so host memory does not grow with model size.
//!
//! A quantized checkpoint (`model::quantized`) stores a matrix `NAME` as U8 value bytes with its
//! F16 group scales in `NAME.scales`; opening pairs the two into one [`TensorEntry`] whose
//! [`quant`](TensorEntry::quant) says the format, after checking that their shapes fit together.

use super::quantized::Quantization;
use crate::error::{Error, Result};
use crate::gpu::quant::GROUP;
use crate::gpu::WeightDtype;
use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where one tensor lives.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    /// The tensor's name in the checkpoint (errors name it).
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    file: usize,
    /// Byte range inside the memory-mapped file.
    start: usize,
    end: usize,
    /// For a quantized matrix (U8 values, `shape` `[rows, value bytes per row]`): its format and
    /// where its scales (`NAME.scales`) lie.
    pub quant: Option<QuantizedEntry>,
}

/// The group scales of a quantized matrix.
#[derive(Clone, Debug)]
pub struct QuantizedEntry {
    /// q8 (scales `[rows, groups]`) or q4 (scales `[rows, groups, 2]`).
    pub format: WeightDtype,
    /// Quantization groups per row: the row stride is `32 * groups` elements.
    pub groups: usize,
    file: usize,
    start: usize,
    end: usize,
}

impl TensorEntry {
    /// The stored format of a quantized matrix (`None` for a float tensor).
    pub fn quantized_format(&self) -> Option<WeightDtype> {
        self.quant.as_ref().map(|q| q.format)
    }
}

/// An opened checkpoint directory.
pub struct Checkpoint {
    files: Vec<(PathBuf, Mmap)>,
    tensors: HashMap<String, TensorEntry>,
    quantization: Option<Quantization>,
}

/// Element types a tensor can be converted from.
fn element_size(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F32 => Some(4),
        Dtype::F16 | Dtype::BF16 => Some(2),
        _ => None,
    }
}

/// A safetensors parse error in words that say what is wrong with the file.
fn describe(e: &SafeTensorError, file_len: usize) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => {
            format!("not a safetensors file: {file_len} bytes, too short for the 8-byte header length")
        }
        SafeTensorError::HeaderTooLarge => {
            "not a safetensors file (the header length prefix is implausibly large)".into()
        }
        SafeTensorError::InvalidHeaderLength => {
            format!("truncated inside the header (the header length prefix exceeds the file size of {file_len} bytes)")
        }
        SafeTensorError::InvalidHeader(_)
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization(_) => format!("not a safetensors file ({e})"),
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "truncated or corrupt: the file size ({file_len} bytes) does not match the tensor data its header describes"
        ),
        _ => e.to_string(),
    }
}

impl Checkpoint {
    /// Opens every safetensors file of the checkpoint in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "model directory {} does not exist",
                dir.display()
            )));
        }
        let index = dir.join("model.safetensors.index.json");
        let names: Vec<PathBuf> = if index.is_file() {
            let text = crate::files::read_input(&index, 64 << 20).map_err(|e| Error::io(&index, e))?;
            let json: serde_json::Value =
                serde_json::from_slice(&text).map_err(|e| Error::Checkpoint(format!("{}: {e}", index.display())))?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::Checkpoint(format!("{}: no `weight_map` object", index.display())))?;
            let mut files: Vec<String> = map
                .values()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| Error::Checkpoint(format!("{}: file names must be strings", index.display())))
                })
                .collect::<Result<_>>()?;
            files.sort();
            files.dedup();
            for f in &files {
                if f.contains('/') || f.contains('\\') || f.contains("..") {
                    return Err(Error::Checkpoint(format!("{}: bad shard name `{f}`", index.display())));
                }
                if !dir.join(f).is_file() {
                    return Err(Error::Checkpoint(format!(
                        "{} lists shard `{f}`, which is not in {}",
                        index.display(),
                        dir.display()
                    )));
                }
            }
            files.into_iter().map(|f| dir.join(f)).collect()
        } else if dir.join("model.safetensors").is_file() {
            vec![dir.join("model.safetensors")]
        } else {
            let mut shards = Vec::new();
            while dir.join(format!("model_{}.safetensors", shards.len())).is_file() {
                shards.push(dir.join(format!("model_{}.safetensors", shards.len())));
            }
            if shards.is_empty() {
                return Err(Error::Checkpoint(format!(
                    "no model.safetensors, model.safetensors.index.json or model_0.safetensors in {}",
                    dir.display()
                )));
            }
            shards
        };

        let mut files = Vec::new();
        let mut tensors = HashMap::new();
        // Each file's declared quantization, if any.
        let mut declared: Vec<Option<Quantization>> = Vec::new();
        for (fi, path) in names.iter().enumerate() {
            // Non-blocking and type-checked: a FIFO swapped in after the listing cannot hang the load.
            let (file, _) =
                crate::files::open_regular(path, crate::files::Links::Follow).map_err(|e| Error::io(path, e))?;
            // SAFETY: the file is only read; if another process truncates it while mapped, reads
            // may fault, which is the documented risk of memory-mapping model files.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            // Full validation: header JSON, offsets within the file, no overlaps, exact length.
            let st = SafeTensors::deserialize(&mmap)
                .map_err(|e| Error::Checkpoint(format!("{}: {}", path.display(), describe(&e, mmap.len()))))?;
            let (_, meta) = SafeTensors::read_metadata(&mmap)
                .map_err(|e| Error::Checkpoint(format!("{}: {}", path.display(), describe(&e, mmap.len()))))?;
            declared.push(
                Quantization::from_metadata(meta.metadata().as_ref())
                    .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?,
            );
            let base = mmap.as_ptr() as usize;
            for (name, view) in st.tensors() {
                let start = view.data().as_ptr() as usize - base;
                let entry = TensorEntry {
                    name: name.clone(),
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    file: fi,
                    start,
                    end: start + view.data().len(),
                    quant: None,
                };
                if tensors.insert(name.clone(), entry).is_some() {
                    return Err(Error::Checkpoint(format!(
                        "tensor `{name}` appears in more than one file"
                    )));
                }
            }
            files.push((path.clone(), mmap));
        }
        let quantization = pair_quantized(&mut tensors, &names, &declared)?;
        Ok(Checkpoint {
            files,
            tensors,
            quantization,
        })
    }

    /// The quantization the files declare in their metadata (`model::quantized`), when they
    /// hold quantized matrices.
    pub fn quantization(&self) -> Option<Quantization> {
        self.quantization
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// Looks up a tensor, checking its shape and that its dtype is one we convert from.
    pub fn entry(&self, name: &str, shape: &[usize]) -> Result<&TensorEntry> {
        let e = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::Checkpoint(format!("missing tensor `{name}`")))?;
        if let Some(q) = &e.quant {
            return check_quantized_shape(e, q, shape).map(|()| e);
        }
        if e.shape != shape {
            return Err(Error::Checkpoint(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                e.shape
            )));
        }
        if element_size(e.dtype).is_none() {
            return Err(Error::Checkpoint(format!(
                "tensor `{name}` has dtype {:?}; only F32, F16 and BF16 are supported",
                e.dtype
            )));
        }
        Ok(e)
    }

    /// A tensor's entry, if present (unchecked: [`entry`](Self::entry) checks shape and dtype).
    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// The shape of a tensor, if present (as stored: `[rows, value bytes per row]` for a
    /// quantized matrix).
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.shape.as_slice())
    }

    /// How many numbered blocks the checkpoint holds under `prefix` (tensors named
    /// `{prefix}{i}.…`): one more than the largest index present, 0 when there is none.
    pub fn block_count(&self, prefix: &str) -> usize {
        self.tensors
            .keys()
            .filter_map(|name| name.strip_prefix(prefix)?.split('.').next()?.parse::<usize>().ok())
            .map(|i| i.saturating_add(1))
            .max()
            .unwrap_or(0)
    }

    /// Checks the config's block count against the blocks the checkpoint holds under `prefix`,
    /// before anything is sized from the config's number.
    pub fn check_block_count(&self, prefix: &str, configured: usize) -> Result<()> {
        let stored = self.block_count(prefix);
        if stored != configured {
            return Err(Error::Checkpoint(format!(
                "config.json gives num_blocks {configured}, but the checkpoint holds {stored} blocks (`{prefix}N.*`)"
            )));
        }
        Ok(())
    }

    /// Converts elements [first, first + count) of a tensor to f32, appending to `out`. A NaN or
    /// infinite value is an error naming the tensor: such weights would make every logit NaN.
    pub fn read_f32_into(&self, e: &TensorEntry, first: usize, count: usize, out: &mut Vec<f32>) -> Result<()> {
        if let Some(q) = &e.quant {
            return Err(Error::Checkpoint(format!(
                "tensor `{}` is stored quantized ({}), where this model holds a float tensor",
                e.name,
                q.format.name()
            )));
        }
        let size = element_size(e.dtype).unwrap_or(4);
        let end = (e.start + (first + count) * size).min(e.end);
        let bytes = &self.files[e.file].1[(e.start + first * size).min(end)..end];
        let before = out.len();
        match e.dtype {
            Dtype::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Dtype::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            Dtype::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            _ => {}
        }
        // The conversion is already a pass over every value; checking them here is what makes it
        // impossible to load a non-finite weight by any path.
        if let Some(at) = out[before..].iter().position(|v| !v.is_finite()) {
            return Err(Error::Checkpoint(format!(
                "tensor `{}` holds a non-finite value ({}) at element {}",
                e.name,
                out[before + at],
                first + at
            )));
        }
        Ok(())
    }

    /// A whole tensor as f32 (for small tensors: norms, biases; and for the CPU reference).
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let e = self.entry(name, shape)?;
        let count: usize = e.shape.iter().product();
        let mut out = Vec::with_capacity(count);
        self.read_f32_into(e, 0, count, &mut out)?;
        Ok(out)
    }

    /// Drops a tensor's pages from this process's resident set once it has been uploaded, so host
    /// memory stays flat while a large checkpoint streams to the GPU (mapped file pages that were
    /// read otherwise count as resident until the whole model is loaded). Only a hint: the data
    /// is still readable afterwards (it is faulted in again from the file).
    pub fn release(&self, e: &TensorEntry) {
        #[cfg(unix)]
        {
            // Round out to 64 KiB, a multiple of every page size in use; touching neighbouring
            // pages is harmless for a read-only file mapping.
            const ALIGN: usize = 64 << 10;
            let mmap = &self.files[e.file].1;
            let start = e.start & !(ALIGN - 1);
            let end = e.end.next_multiple_of(ALIGN).min(mmap.len());
            if end > start {
                // SAFETY: the mapping is private and read-only and no reference into this range
                // is alive here; MADV_DONTNEED only discards the pages, later reads refault them
                // from the file.
                let _ = unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
            }
        }
        #[cfg(not(unix))]
        let _ = e;
    }

    /// A tensor's stored bytes (for a quantized matrix, its value bytes).
    pub fn bytes(&self, e: &TensorEntry) -> &[u8] {
        &self.files[e.file].1[e.start..e.end]
    }

    /// A quantized matrix's scale bytes (`None` for a float tensor).
    pub fn scale_bytes(&self, e: &TensorEntry) -> Option<&[u8]> {
        e.quant.as_ref().map(|q| &self.files[q.file].1[q.start..q.end])
    }

    /// Whether tensor `name` is there and holds a `[rows, cols]` matrix (stored quantized or not)
    /// or, for other shapes, has exactly `shape`.
    pub fn has_shape(&self, name: &str, shape: &[usize]) -> bool {
        self.entry(name, shape).is_ok()
    }

    /// The files this checkpoint was read from.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }
}

/// Pairs every `NAME.scales` with its U8 tensor `NAME` into one quantized entry, checking their
/// dtypes and shapes (`model::quantized`), and the files' declared quantization; returns it.
fn pair_quantized(
    tensors: &mut HashMap<String, TensorEntry>,
    paths: &[PathBuf],
    declared: &[Option<Quantization>],
) -> Result<Option<Quantization>> {
    let bad = |m: String| Err(Error::Checkpoint(m));
    let scale_names: Vec<String> = tensors.keys().filter(|n| n.ends_with(".scales")).cloned().collect();
    for sname in scale_names {
        let name = &sname[..sname.len() - ".scales".len()];
        // The names were just read from the map itself.
        let Some(s) = tensors.remove(&sname) else { continue };
        let Some(v) = tensors.get_mut(name) else {
            return bad(format!("`{sname}` has no tensor `{name}` whose scales it would be"));
        };
        if let Some(f) = [v.file, s.file].into_iter().find(|&f| declared[f].is_none()) {
            return bad(format!(
                "{} holds the quantized tensor `{name}` but its metadata does not declare a quantization (`{}`)",
                paths[f].display(),
                super::quantized::META_FORMAT
            ));
        }
        if s.dtype != Dtype::F16 {
            return bad(format!(
                "`{sname}` has dtype {:?}; quantization scales are F16",
                s.dtype
            ));
        }
        if v.dtype != Dtype::U8 {
            return bad(format!(
                "`{name}` has dtype {:?} but has scales `{sname}`; quantized values are U8",
                v.dtype
            ));
        }
        let format = match s.shape.as_slice() {
            [_, _] => WeightDtype::Q8,
            [_, _, 2] => WeightDtype::Q4,
            other => {
                return bad(format!(
                    "`{sname}` has shape {other:?}; scales are [rows, groups] (q8) or [rows, groups, 2] (q4)"
                ))
            }
        };
        let (rows, groups) = (s.shape[0], s.shape[1]);
        if v.shape.len() != 2 || v.shape[0] != rows {
            return bad(format!(
                "`{name}` has shape {:?}, which does not match its scales `{sname}` {:?} (expected [{rows}, value bytes per row])",
                v.shape, s.shape
            ));
        }
        let kp = groups
            .checked_mul(GROUP)
            .ok_or_else(|| Error::Checkpoint(format!("`{sname}`: too many groups")))?;
        let want = format.row_layout(kp).0;
        if v.shape[1] != want {
            return bad(format!(
                "`{name}` holds {} bytes per row, but {groups} groups of {} weights take {want} (truncated or mispacked values?)",
                v.shape[1],
                format.name()
            ));
        }
        v.quant = Some(QuantizedEntry {
            format,
            groups,
            file: s.file,
            start: s.start,
            end: s.end,
        });
    }
    if let Some(v) = tensors.values().find(|e| e.dtype == Dtype::U8 && e.quant.is_none()) {
        return bad(format!(
            "`{}` is a U8 tensor without its scales `{}.scales`",
            v.name, v.name
        ));
    }
    // The declared quantization of the files that hold quantized tensors; all must agree.
    let mut found: Option<Quantization> = None;
    for e in tensors.values().filter(|e| e.quant.is_some()) {
        let q = declared[e.file];
        match (found, q) {
            (Some(a), Some(b)) if a != b => {
                return bad(format!(
                    "the checkpoint's files declare different quantizations ({} and {})",
                    a.format.name(),
                    b.format.name()
                ))
            }
            _ => found = found.or(q),
        }
    }
    Ok(found)
}

/// Checks that a quantized matrix holds a `[rows, cols]` matrix in its format.
fn check_quantized_shape(e: &TensorEntry, q: &QuantizedEntry, shape: &[usize]) -> Result<()> {
    let [rows, cols] = shape else {
        return Err(Error::Checkpoint(format!(
            "tensor `{}` is a quantized matrix, where this model holds a tensor of shape {shape:?}",
            e.name
        )));
    };
    let kp = q.format.padded_cols(*cols);
    if e.shape[0] != *rows || q.groups * GROUP != kp {
        return Err(Error::Checkpoint(format!(
            "tensor `{}` holds a {} matrix of {} rows of {} groups, expected [{rows}, {cols}] ({} groups a row)",
            e.name,
            q.format.name(),
            e.shape[0],
            q.groups,
            kp / GROUP
        )));
    }
    Ok(())
}
