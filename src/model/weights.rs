//! Loading weight matrices from a checkpoint into the GPU's format (`gpu::matrix`): rows converted
//! on all cores a staging buffer at a time, non-finite and out-of-range values refused.

use super::checkpoint::{Checkpoint, TensorEntry};
use crate::error::{Error, Result};
use crate::gpu::matrix::{flush, to_f16};
pub use crate::gpu::matrix::{GpuMatrix, WeightDtype, WeightPart};
use crate::gpu::{BufferPool, Category, Gpu, GpuBuffer};

/// Bytes staged on the host before they are flushed to the GPU.
const STAGING_BYTES: usize = 32 << 20;

/// Uploads the row-wise concatenation of `sources` (each [rows_i, cols]) as one matrix.
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
    let kp = cols.next_multiple_of(8);
    let row_bytes = kp * dtype.bytes();
    let max_rows = (gpu.caps.max_binding() as usize / row_bytes).max(1);
    if row_bytes as u64 > gpu.caps.max_binding() {
        return Err(Error::Limit(format!(
            "{label}: one row of {row_bytes} bytes exceeds the storage binding limit"
        )));
    }
    // Rows across sources in order.
    let src_rows: Vec<(&TensorEntry, usize)> = sources
        .iter()
        .flat_map(|e| (0..e.shape[0]).map(move |r| (*e, r)))
        .collect();
    if src_rows.len() != rows {
        return Err(Error::Checkpoint(format!("{label}: fewer rows than expected")));
    }
    let batch_rows = (STAGING_BYTES / row_bytes).max(1);
    let mut staged: Vec<u8> = Vec::new();
    let mut parts = Vec::new();
    let mut row0 = 0;
    while row0 < rows {
        let n = max_rows.min(rows - row0);
        let buf = pool.storage((n * row_bytes) as u64, Category::Weights, label)?;
        // Convert a staging buffer's worth of rows at a time, on all cores, then hand it over.
        for b0 in (0..n).step_by(batch_rows) {
            let b = batch_rows.min(n - b0);
            staged.resize(b * row_bytes, 0);
            convert_rows(ckpt, &src_rows[row0 + b0..row0 + b0 + b], cols, kp, dtype, &mut staged)?;
            gpu.queue.write_buffer(buf.raw(), (b0 * row_bytes) as u64, &staged);
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

/// Converts rows to the GPU format (zero padded to `kp`) into `out`, splitting the rows across
/// the machine's cores: BF16/F32 to f16 conversion is the CPU cost of loading a checkpoint.
/// Refuses non-finite values, and for f16 storage values beyond the f16 range, naming the tensor.
fn convert_rows(
    ckpt: &Checkpoint,
    rows: &[(&TensorEntry, usize)],
    cols: usize,
    kp: usize,
    dtype: WeightDtype,
    out: &mut [u8],
) -> Result<()> {
    let row_bytes = kp * dtype.bytes();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let per = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = rows
            .chunks(per)
            .zip(out.chunks_mut(per * row_bytes))
            .map(|(rows, out)| {
                scope.spawn(move || -> Result<()> {
                    let mut row_f32 = Vec::with_capacity(kp);
                    for (&(entry, r), dst) in rows.iter().zip(out.chunks_exact_mut(row_bytes)) {
                        row_f32.clear();
                        ckpt.read_f32_into(entry, r * cols, cols, &mut row_f32)?;
                        row_f32.resize(kp, 0.0);
                        match dtype {
                            WeightDtype::F32 => dst.copy_from_slice(bytemuck::cast_slice(&row_f32)),
                            WeightDtype::F16 => {
                                for (c, (v, d)) in row_f32.iter().zip(dst.chunks_exact_mut(2)).enumerate() {
                                    d.copy_from_slice(&to_f16(*v, &entry.name, r * cols + c)?.to_le_bytes());
                                }
                            }
                        }
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
