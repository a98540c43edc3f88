//! `xlstm quantize`: writes a checkpoint whose weight matrices are stored in q8 or q4, so
//! loading it copies them to the GPU as they are instead of quantizing at every load. The format
//! is in ARCHITECTURE.md ("Quantized checkpoints on disk"); `model::quantized` says which
//! matrices are quantized, `model::weights::encode_tensor` encodes them exactly as a load would.
//!
//! The output is written into a hidden temporary directory next to `--out` and renamed at the
//! end (`files::AtomicDir`; a SIGINT or SIGTERM removes it before exiting); model.safetensors streams one tensor at a time, each encoded on all
//! cores when the writer asks for its bytes.

use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xlstm_wgpu::error::{Error, Result};
use xlstm_wgpu::files::AtomicDir;
use xlstm_wgpu::model::checkpoint::{Checkpoint, TensorEntry};
use xlstm_wgpu::model::quantized::{quantized_matrices, Quantization, CONFIG_FIELD};
use xlstm_wgpu::model::weights::encode_tensor;
use xlstm_wgpu::model::WeightDtype;
use xlstm_wgpu::telemetry::signals;

#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// Checkpoint directory to read (config.json, safetensors, tokenizer.json), or Hugging Face
    /// Hub id ORG/NAME[@REVISION] (see `xlstm generate --help`).
    #[arg(long)]
    model: PathBuf,
    /// Directory to write; it must not exist or be empty.
    #[arg(long)]
    out: PathBuf,
    /// The format: q8 or q4 (under q4 the embedding and lm_head are q8).
    #[arg(long, value_enum)]
    dtype: WeightDtype,
}

/// Seconds between progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

pub fn quantize(mut a: QuantizeArgs) -> Result<()> {
    let q = Quantization::new(a.dtype)?;
    a.model = xlstm_wgpu::hub::resolve_model(&a.model)?;
    let mut json = xlstm_wgpu::model::read_config_json(&a.model)?;
    if json.get(CONFIG_FIELD).is_some() {
        return Err(Error::Input(format!(
            "{} is already a quantized checkpoint (config.json has `{CONFIG_FIELD}`)",
            a.model.display()
        )));
    }
    let ckpt = Checkpoint::open(&a.model)?;
    if ckpt.quantization().is_some() {
        return Err(Error::Input(format!(
            "{} already holds quantized tensors",
            a.model.display()
        )));
    }
    let plan: HashMap<String, WeightDtype> = quantized_matrices(&json, &ckpt, a.dtype)?.into_iter().collect();
    if let Some(missing) = plan.keys().find(|n| !ckpt.contains(n)) {
        return Err(Error::Checkpoint(format!("missing tensor `{missing}`")));
    }
    let out = AtomicDir::create(&a.out)?;
    // SIGINT/SIGTERM exit at once, removing the temporary directory first.
    signals::install()?;
    let tmp = out.path().to_path_buf();
    let _remove_on_signal = signals::on_exit(move || {
        let _ = std::fs::remove_dir_all(&tmp);
    });

    // config.json with the quantization field; every other field as it was.
    json.as_object_mut()
        .ok_or_else(|| Error::Config("config.json is not a JSON object".into()))?
        .insert(CONFIG_FIELD.to_string(), q.config_value());
    let text = serde_json::to_string_pretty(&json).map_err(|e| Error::Config(e.to_string()))? + "\n";
    let config = out.path().join("config.json");
    std::fs::write(&config, text).map_err(|e| Error::io(&config, e))?;
    copy_other_files(&a.model, out.path())?;

    // The tensors, each quantized one as its values and its scales.
    let ctx = Writer {
        ckpt: &ckpt,
        error: RefCell::new(None),
        progress: RefCell::new(Progress {
            total: 0,
            done: 0,
            bytes: 0,
            last: Instant::now(),
        }),
    };
    let mut names: Vec<&String> = ckpt.names().collect();
    names.sort();
    let mut tensors = Vec::new();
    for name in names {
        let entry = ckpt.tensor(name).expect("listed by the checkpoint");
        match plan.get(name) {
            Some(&format) => {
                let [rows, cols] = entry.shape[..] else {
                    return Err(Error::Checkpoint(format!(
                        "tensor `{name}` has shape {:?}, expected a matrix [rows, cols]",
                        entry.shape
                    )));
                };
                let (vb, sb) = format.row_layout(format.padded_cols(cols));
                let groups = sb / if format == WeightDtype::Q4 { 4 } else { 2 };
                let scales_shape = if format == WeightDtype::Q4 {
                    vec![rows, groups, 2]
                } else {
                    vec![rows, groups]
                };
                tensors.push((
                    name.clone(),
                    ctx.part(entry, Part::Values(format), Dtype::U8, vec![rows, vb]),
                ));
                tensors.push((
                    format!("{name}.scales"),
                    ctx.part(entry, Part::Scales(format), Dtype::F16, scales_shape),
                ));
            }
            None => tensors.push((
                name.clone(),
                ctx.part(entry, Part::Copy, entry.dtype, entry.shape.clone()),
            )),
        }
    }
    ctx.progress.borrow_mut().total = tensors.len();
    eprintln!(
        "xlstm quantize: {} -> {} ({}: {} matrices quantized, {} tensors to write)",
        a.model.display(),
        a.out.display(),
        a.dtype.name(),
        plan.len(),
        tensors.len()
    );
    let file = out.path().join("model.safetensors");
    let written = safetensors::serialize_to_file(tensors, Some(q.metadata()), &file);
    if let Some(e) = ctx.error.into_inner() {
        return Err(e);
    }
    written.map_err(|e| Error::Checkpoint(format!("writing {}: {e}", file.display())))?;
    // The result must load: the pairs of values and scales, and config.json against them.
    let written = Checkpoint::open(out.path())?;
    if Quantization::of_checkpoint(&json, &written)? != Some(q) {
        return Err(Error::Checkpoint(
            "the written checkpoint does not declare its quantization".into(),
        ));
    }
    drop(written);
    let bytes = ctx.progress.borrow().bytes;
    out.commit()?;
    eprintln!(
        "xlstm quantize: wrote {} ({:.1} MiB of tensors)",
        a.out.display(),
        bytes as f64 / (1u64 << 20) as f64
    );
    Ok(())
}

/// Copies the source directory's other regular files (tokenizer.json, README, ...): everything
/// but config.json (rewritten) and the safetensors files and their index.
fn copy_other_files(src: &Path, dst: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| Error::io(src, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(src, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if text == "config.json" || text.ends_with(".safetensors") || text.ends_with(".safetensors.index.json") {
            continue;
        }
        let path = entry.path();
        // Regular files only (following links): no FIFO can hang the copy.
        if !std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.is_file() {
            eprintln!("xlstm quantize: not copying {} (not a regular file)", path.display());
            continue;
        }
        std::fs::copy(&path, dst.join(&name)).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// What one tensor of the output is made of.
#[derive(Clone, Copy)]
enum Part {
    /// The source tensor's bytes.
    Copy,
    /// The encoded values of a quantized matrix.
    Values(WeightDtype),
    /// Its group scales.
    Scales(WeightDtype),
}

/// The state the tensors being written share: the source, the first error (the writer's
/// `View::data` cannot return one; once set, every tensor writes nothing) and the progress.
struct Writer<'a> {
    ckpt: &'a Checkpoint,
    error: RefCell<Option<Error>>,
    progress: RefCell<Progress>,
}

struct Progress {
    total: usize,
    done: usize,
    bytes: u64,
    last: Instant,
}

impl<'a> Writer<'a> {
    fn part(&'a self, entry: &'a TensorEntry, part: Part, dtype: Dtype, shape: Vec<usize>) -> OutTensor<'a> {
        let elements: usize = shape.iter().product();
        let len = match part {
            Part::Copy => self.ckpt.bytes(entry).len(),
            Part::Values(_) => elements,
            Part::Scales(_) => 2 * elements,
        };
        OutTensor {
            writer: self,
            entry,
            part,
            dtype,
            shape,
            len,
        }
    }

    /// The bytes of one output tensor, or an error.
    fn bytes(&self, t: &OutTensor) -> Result<Vec<u8>> {
        let bytes = match t.part {
            Part::Copy => self.ckpt.bytes(t.entry).to_vec(),
            Part::Values(f) => encode_tensor(self.ckpt, t.entry, f)?.values,
            Part::Scales(f) => encode_tensor(self.ckpt, t.entry, f)?.scales,
        };
        self.ckpt.release(t.entry);
        if bytes.len() != t.len {
            return Err(Error::Checkpoint(format!(
                "tensor `{}`: {} bytes encoded, {} expected",
                t.entry.name,
                bytes.len(),
                t.len
            )));
        }
        Ok(bytes)
    }

    fn report(&self, bytes: usize) {
        let mut p = self.progress.borrow_mut();
        p.bytes += bytes as u64;
        p.done += 1;
        if p.last.elapsed() >= PROGRESS_EVERY {
            p.last = Instant::now();
            eprintln!(
                "xlstm quantize: {}/{} tensors, {:.1} MiB written",
                p.done,
                p.total,
                p.bytes as f64 / (1u64 << 20) as f64
            );
        }
    }
}

/// One tensor of the output file, encoded when the writer asks for its bytes.
struct OutTensor<'a> {
    writer: &'a Writer<'a>,
    entry: &'a TensorEntry,
    part: Part,
    dtype: Dtype,
    shape: Vec<usize>,
    len: usize,
}

impl View for OutTensor<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let w = self.writer;
        if w.error.borrow().is_some() {
            return Cow::Owned(Vec::new());
        }
        match w.bytes(self) {
            Ok(bytes) => {
                w.report(bytes.len());
                Cow::Owned(bytes)
            }
            Err(e) => {
                *w.error.borrow_mut() = Some(e);
                Cow::Owned(Vec::new())
            }
        }
    }
    fn data_len(&self) -> usize {
        self.len
    }
}
