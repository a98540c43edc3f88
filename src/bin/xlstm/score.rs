//! `xlstm score`: the logits of every position of a token-id prompt, and optionally a greedy
//! continuation through the decode step path, streamed to a safetensors file (the machine
//! interface for numerics: the reference comparisons read it).

use crate::cli::{check_state_output, count_in, load_state, save_state, GpuArgs, RunArgs, MAX_NEW_TOKENS};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use xlstm_wgpu::files;
use xlstm_wgpu::sample::argmax;
use xlstm_wgpu::telemetry::{signals, Estimate, MemArgs, Watchdog};
use xlstm_wgpu::{Error, Logits, Result, Session};

#[derive(clap::Args)]
pub struct ScoreArgs {
    /// Model directory, or Hugging Face Hub id ORG/NAME[@REVISION] (see `xlstm generate --help`).
    #[arg(long)]
    model: PathBuf,
    /// JSON array of token ids, used as given (no BOS added).
    #[arg(long)]
    input_ids: PathBuf,
    /// Output safetensors: `logits` F32 [T, V]; with --generate N also `generated` I64 [N] and
    /// `generated_logits` F32 [N, V].
    #[arg(long)]
    out: PathBuf,
    /// Greedy tokens to generate through the decode step path (at most 1048576).
    #[arg(long, default_value_t = 0, value_parser = count_in(0, MAX_NEW_TOKENS))]
    generate: usize,
    /// Start from the recurrent state in this file (written by --save-state with the same model
    /// and --dtype) instead of the zero state: the prompt continues that sequence.
    #[arg(long)]
    load_state: Option<PathBuf>,
    /// Write the recurrent state after the prompt (before any --generate tokens) to this file
    /// (safetensors), to continue from it later with --load-state.
    #[arg(long)]
    save_state: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(flatten)]
    mem: MemArgs,
}

pub fn score(mut a: ScoreArgs) -> Result<()> {
    files::check_output_path(&a.out)?;
    check_state_output(a.save_state.as_deref(), &[("--out", &a.out)])?;
    let ids = read_ids(&a.input_ids)?;
    if ids.is_empty() {
        return Err(Error::Input(format!("{}: the prompt is empty", a.input_ids.display())));
    }
    a.model = xlstm_wgpu::hub::resolve_model(&a.model)?;
    // telemetry: watchdog and pre-load estimate; SIGINT/SIGTERM stop the run at a safe point and
    // remove the partial output.
    let wd = Watchdog::start_interruptible(a.mem.resolve()?, "score", &a.model.display().to_string())?;
    let progress = wd.progress();
    let gpu = a.gpu.open()?;
    wd.set_gpu(&gpu);
    // Tuned defaults for this adapter and model shape (flags win).
    a.run.resolve_dtype(Some(&a.model))?;
    let tuned = a
        .run
        .apply_tune_cache(&gpu, crate::tune::store::ModelShape::of_dir(&a.model).ok().as_ref());
    // The output streams to disk as it is produced, so the host holds the prompt's logits once
    // (counted by the estimate) and one decode row at a time.
    if let Ok(est) = Estimate::for_dir(&a.model, a.run.dtype, &a.run.session_options()?, ids.len(), true) {
        wd.check_fits(&est)?;
    }
    // Progress on stderr from here on: loading (kernel compiles), prefill and decode tokens.
    progress.set_phase("loading");
    let mut reporter = crate::progress::Reporter::start("score", progress.clone());
    let model = a.run.load(gpu, &a.model, false)?;
    wd.attach(&model);
    wd.check_now()?;
    progress.set_total(Some((ids.len() + a.generate) as u64));
    progress.set_phase("prefill");
    // end telemetry
    let v = model.vocab_size();
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
        return Err(Error::Input(format!(
            "token id {bad} is out of range for a vocabulary of {v}"
        )));
    }
    let (t, n) = (ids.len(), a.generate);
    // Data order: logits, generated_logits (rows as they come), generated (known at the end).
    let mut tensors = vec![OutTensor {
        name: "logits",
        dtype: "F32",
        shape: vec![t, v],
        bytes: tensor_bytes(&[t, v], 4)?,
    }];
    if n > 0 {
        tensors.push(OutTensor {
            name: "generated_logits",
            dtype: "F32",
            shape: vec![n, v],
            bytes: tensor_bytes(&[n, v], 4)?,
        });
        tensors.push(OutTensor {
            name: "generated",
            dtype: "I64",
            shape: vec![n],
            bytes: tensor_bytes(&[n], 8)?,
        });
    }
    let mut meta = BTreeMap::new();
    meta.insert("dtype".to_string(), model.dtype().name().to_string());
    let params = a.run.params()?;
    meta.insert("prefill".to_string(), params.prefill.name().to_string());
    meta.insert("chunk_size".to_string(), params.chunk_size.to_string());
    if let Some(t) = &tuned {
        meta.insert("tuned_from_cache".to_string(), t.clone());
    }
    let header = safetensors_header(&tensors, &meta)?;

    let mut session = Session::new(&model, a.run.session_options()?)?;
    if let Some(p) = &a.load_state {
        load_state(&mut session, p)?;
    }
    // A segment at a time (as `prefill` runs them anyway), so the progress counts tokens.
    let piece = a.run.session_options()?.max_segment_tokens.max(1);
    let mut logits = Vec::with_capacity(t * v);
    for part in ids.chunks(piece) {
        logits.extend(session.prefill(part, Logits::All)?);
        progress.add_tokens(part.len() as u64);
    }
    if let Some(p) = &a.save_state {
        save_state(&session, p)?;
    }
    progress.set_phase("writing");
    let mut out = files::AtomicFile::create(&a.out, files::Visibility::Shared)?;
    // An immediate exit (a second signal) skips destructors: the partial file is removed then.
    let _remove_partial = signals::remove_on_exit(out.temp_path());
    out.write_all(&header).map_err(|e| Error::io(&a.out, e))?;
    write_checked(&mut out, bytemuck::cast_slice(&logits), &wd, &a.out)?;
    let mut row = logits[(t - 1) * v..].to_vec();
    drop(logits);
    let mut generated: Vec<i64> = Vec::with_capacity(n);
    if n > 0 {
        progress.set_phase("decode");
        for i in 0..n {
            progress.add_tokens(1);
            let next = argmax(&row) as u32;
            generated.push(next as i64);
            out.write_all(bytemuck::cast_slice(&row))
                .map_err(|e| Error::io(&a.out, e))?;
            if i + 1 < n {
                row = session.step(next)?;
            }
        }
        progress.set_phase("writing");
        let ids_bytes: Vec<u8> = generated.iter().flat_map(|x| x.to_le_bytes()).collect();
        write_checked(&mut out, &ids_bytes, &wd, &a.out)?;
    }
    wd.check_now()?;
    out.commit()?;
    reporter.finish();
    // The summary: score prints nothing else, and only says where tuned defaults applied.
    if let Some(t) = tuned {
        eprintln!("xlstm: tuned (cache): {t}");
    }
    Ok(())
}

fn read_ids(path: &Path) -> Result<Vec<u32>> {
    let text = xlstm_wgpu::files::read_input(path, 1 << 30).map_err(|e| Error::io(path, e))?;
    let ids: Vec<i64> = serde_json::from_slice(&text)
        .map_err(|e| Error::Input(format!("{}: expected a JSON array of token ids ({e})", path.display())))?;
    ids.into_iter()
        .map(|i| u32::try_from(i).map_err(|_| Error::Input(format!("token id {i} is out of range"))))
        .collect()
}

/// One tensor of the score output: its name, safetensors dtype name, shape and bytes.
struct OutTensor {
    name: &'static str,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: u64,
}

/// The safetensors header (length prefix and JSON, padded to 8 bytes) of tensors stored in the
/// given order, back to back: computable from the shapes alone, so the data can follow as it is
/// produced instead of being assembled in memory first.
fn safetensors_header(tensors: &[OutTensor], meta: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(meta));
    let mut offset = 0u64;
    for t in tensors {
        let end = offset
            .checked_add(t.bytes)
            .ok_or_else(|| Error::Input("the output is too large".into()))?;
        header.insert(
            t.name.into(),
            serde_json::json!({ "dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| Error::Input(format!("building the output: {e}")))?;
    // The data starts 8-byte aligned, as safetensors writers do.
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    Ok(out)
}

/// Bytes of `n` values of `size` bytes each, refusing sizes that overflow.
fn tensor_bytes(n: &[usize], size: usize) -> Result<u64> {
    n.iter()
        .try_fold(size as u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| Error::Input("the output is too large".into()))
}

/// Writes `data` in pieces, checking the watchdog between them: the hard memory limit and a
/// stop (xltop, a signal) apply while a large output is written too.
fn write_checked(out: &mut files::AtomicFile, data: &[u8], wd: &Watchdog, path: &Path) -> Result<()> {
    const PIECE: usize = 16 << 20;
    for piece in data.chunks(PIECE) {
        out.write_all(piece).map_err(|e| Error::io(path, e))?;
        wd.check_now()?;
    }
    Ok(())
}
