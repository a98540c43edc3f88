//! Loading weight matrices from a checkpoint into the GPU's format (`gpu::matrix`, `gpu::quant`):
//! rows converted (or quantized) on all cores a staging buffer at a time, non-finite and
//! out-of-range values refused. The matrices of a quantized checkpoint (`model::quantized`) are
//! uploaded as stored, without re-quantizing.

use super::checkpoint::{Checkpoint, TensorEntry};
use crate::error::{Error, Result};
use crate::gpu::matrix::{flush, rows_per_part, write_padded, PartLayout};
pub use crate::gpu::matrix::{GpuMatrix, WeightDtype, WeightPart};
use crate::gpu::quant::{encode_row, EncodedMatrix};
use crate::gpu::{BufferPool, Category, Gpu, GpuBuffer};

/// Bytes staged on the host before they are flushed to the GPU.
const STAGING_BYTES: usize = 32 << 20;

/// Uploads the row-wise concatenation of `sources` (each [rows_i, cols]) as one matrix in
/// `dtype`, quantizing on the way for the quantized formats. Sources stored quantized (a
/// quantized checkpoint) are copied as they are; they must be in `dtype`, and in a quantized
/// checkpoint every matrix of a quantized `dtype` must be stored quantized.
pub fn upload_matrix(
    gpu: &Gpu,
    pool: &BufferPool,
    ckpt: &Checkpoint,
    sources: &[&TensorEntry],
    cols: usize,
    dtype: WeightDtype,
    label: &str,
) -> Result<GpuMatrix> {
    let rows: usize = sources.iter().map(|e| e.shape[0]).sum();
    let kp = dtype.padded_cols(cols);
    let max_rows = rows_per_part(gpu, dtype, kp, label)?;
    let (vb, sb) = dtype.row_layout(kp);
    // Rows across sources in order.
    let src_rows: Vec<(&TensorEntry, usize)> = sources
        .iter()
        .flat_map(|e| (0..e.shape[0]).map(move |r| (*e, r)))
        .collect();
    if src_rows.len() != rows {
        return Err(Error::Checkpoint(format!("{label}: fewer rows than expected")));
    }
    let stored = check_stored(ckpt, sources, kp, dtype)?;
    // A multiple of 8 rows, so every batch but a part's last starts its scales on a whole word.
    let batch_rows = (STAGING_BYTES / (vb + sb)).max(8).next_multiple_of(8);
    let mut values: Vec<u8> = Vec::new();
    let mut scales: Vec<u8> = Vec::new();
    let mut parts = Vec::new();
    let mut row0 = 0;
    while row0 < rows {
        let n = max_rows.min(rows - row0);
        let layout = PartLayout::new(dtype, kp, n);
        let buf = pool.storage(layout.bytes(), Category::Weights, label)?;
        // Convert a staging buffer's worth of rows at a time, on all cores, then hand it over.
        for b0 in (0..n).step_by(batch_rows) {
            let b = batch_rows.min(n - b0);
            values.resize(b * vb, 0);
            scales.resize(b * sb, 0);
            let batch = &src_rows[row0 + b0..row0 + b0 + b];
            if stored {
                copy_stored(ckpt, batch, vb, sb, &mut values, &mut scales);
            } else {
                convert_rows(ckpt, batch, cols, kp, dtype, &mut values, &mut scales)?;
            }
            write_padded(gpu, &buf, layout.values_at(b0), &mut values);
            write_padded(gpu, &buf, layout.scales_at(b0), &mut scales);
            flush(gpu)?;
        }
        parts.push(WeightPart { buf, row0, rows: n });
        row0 += n;
    }
    for e in sources {
        ckpt.release(e);
    }
    Ok(GpuMatrix {
        parts,
        rows,
        cols,
        kp,
        dtype,
    })
}

/// Whether the sources are stored quantized (and so are uploaded as stored), after checking
/// that they are all in `dtype` with rows of `kp` elements, and that a quantized checkpoint
/// stores every matrix of a quantized format quantized.
fn check_stored(ckpt: &Checkpoint, sources: &[&TensorEntry], kp: usize, dtype: WeightDtype) -> Result<bool> {
    let quantized_ckpt = ckpt.quantization().is_some() && dtype.is_quantized();
    if !quantized_ckpt && sources.iter().all(|e| e.quant.is_none()) {
        return Ok(false);
    }
    for e in sources {
        match &e.quant {
            None => {
                return Err(Error::Checkpoint(format!(
                    "tensor `{}` is not quantized, but this quantized checkpoint must hold it in {}",
                    e.name,
                    dtype.name()
                )))
            }
            Some(q) if q.format != dtype => {
                return Err(Error::Checkpoint(format!(
                    "tensor `{}` is stored as {}, but a model of this format holds it in {}",
                    e.name,
                    q.format.name(),
                    dtype.name()
                )))
            }
            Some(q) => {
                let (vb, sb) = dtype.row_layout(kp);
                let scale_bytes = ckpt.scale_bytes(e).map_or(0, <[u8]>::len);
                if e.shape[1] != vb || q.groups * crate::gpu::quant::GROUP != kp || scale_bytes != e.shape[0] * sb {
                    return Err(Error::Checkpoint(format!(
                        "tensor `{}` ({}) has rows of {} value bytes and {} groups; this matrix needs {vb} bytes and {} groups",
                        e.name,
                        q.format.name(),
                        e.shape[1],
                        q.groups,
                        kp / crate::gpu::quant::GROUP
                    )));
                }
            }
        }
    }
    Ok(true)
}

/// Copies stored quantized rows (checked by [`check_stored`]) into `values` and `scales`.
fn copy_stored(
    ckpt: &Checkpoint,
    rows: &[(&TensorEntry, usize)],
    vb: usize,
    sb: usize,
    values: &mut [u8],
    scales: &mut [u8],
) {
    for (i, &(e, r)) in rows.iter().enumerate() {
        values[i * vb..(i + 1) * vb].copy_from_slice(&ckpt.bytes(e)[r * vb..(r + 1) * vb]);
        if let Some(s) = ckpt.scale_bytes(e) {
            scales[i * sb..(i + 1) * sb].copy_from_slice(&s[r * sb..(r + 1) * sb]);
        }
    }
}

/// Encodes a float matrix tensor of the checkpoint (`[rows, cols]`) in `dtype` on the host, on
/// all cores, exactly as [`upload_matrix`] would on its way to the GPU (what `xlstm quantize`
/// writes).
pub fn encode_tensor(ckpt: &Checkpoint, entry: &TensorEntry, dtype: WeightDtype) -> Result<EncodedMatrix> {
    let [rows, cols] = entry.shape[..] else {
        return Err(Error::Checkpoint(format!(
            "tensor `{}` has shape {:?}, expected a matrix [rows, cols]",
            entry.name, entry.shape
        )));
    };
    let e = ckpt.entry(&entry.name, &[rows, cols])?;
    let kp = dtype.padded_cols(cols);
    let (vb, sb) = dtype.row_layout(kp);
    let src_rows: Vec<(&TensorEntry, usize)> = (0..rows).map(|r| (e, r)).collect();
    let mut values = vec![0u8; rows * vb];
    let mut scales = vec![0u8; rows * sb];
    convert_rows(ckpt, &src_rows, cols, kp, dtype, &mut values, &mut scales)?;
    Ok(EncodedMatrix {
        dtype,
        rows,
        cols,
        kp,
        values,
        scales,
    })
}

/// Converts rows to the GPU format (zero padded to `kp`) into `values` and `scales` (the
/// layout of `gpu::quant`), splitting the rows across the machine's cores: conversion and
/// quantization are the CPU cost of loading a checkpoint. Refuses non-finite values, and values
/// the format cannot hold, naming the tensor.
fn convert_rows(
    ckpt: &Checkpoint,
    rows: &[(&TensorEntry, usize)],
    cols: usize,
    kp: usize,
    dtype: WeightDtype,
    values: &mut [u8],
    scales: &mut [u8],
) -> Result<()> {
    let (vb, sb) = dtype.row_layout(kp);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let per = rows.len().div_ceil(threads).max(1);
    // Each worker's rows with their value and scale bytes (split by hand: a format without
    // scales has zero-length scale rows, which `chunks_mut` refuses).
    let mut jobs = Vec::new();
    let (mut values, mut scales) = (values, scales);
    for chunk in rows.chunks(per) {
        let (v, v_rest) = values.split_at_mut(chunk.len() * vb);
        let (s, s_rest) = scales.split_at_mut(chunk.len() * sb);
        jobs.push((chunk, v, s));
        (values, scales) = (v_rest, s_rest);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = jobs
            .into_iter()
            .map(|(rows, values, scales)| {
                scope.spawn(move || -> Result<()> {
                    let mut row_f32 = Vec::with_capacity(kp);
                    for (i, &(entry, r)) in rows.iter().enumerate() {
                        row_f32.clear();
                        ckpt.read_f32_into(entry, r * cols, cols, &mut row_f32)?;
                        row_f32.resize(kp, 0.0);
                        let (v, s) = (&mut values[i * vb..(i + 1) * vb], &mut scales[i * sb..(i + 1) * sb]);
                        encode_row(dtype, &row_f32, cols, v, s, &entry.name, r * cols)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(Error::Checkpoint("a weight conversion thread panicked".into())))
        })
    })
}

/// Uploads a small f32 vector (norm weights, biases) as its own buffer.
pub fn upload_f32(gpu: &Gpu, pool: &BufferPool, data: &[f32], category: Category, label: &str) -> Result<GpuBuffer> {
    let buf = pool.storage((data.len() * 4).max(4) as u64, category, label)?;
    if !data.is_empty() {
        gpu.queue.write_buffer(buf.raw(), 0, bytemuck::cast_slice(data));
    }
    Ok(buf)
}
