//! Weight matrices on the GPU, the operand type of the matrix kernels. A matrix is stored row-major
//! with each row padded to a multiple of 8 elements (so kernels read 8 weights per load), as f32 or
//! as f16 packed two to a u32 (which every adapter can unpack, with or without the SHADER_F16
//! feature). Matrices larger than one storage binding may cover are split into row parts; kernels
//! are dispatched once per part. Loading from a checkpoint is `model::weights`.

use super::{BufferPool, Category, Gpu, GpuBuffer, Slice};
use crate::error::{Error, Result};

/// Storage format of weight matrices on the GPU (`--dtype`; named `f32` / `f16` on the command
/// line and in stored files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    F32,
    F16,
}

impl WeightDtype {
    pub fn bytes(self) -> usize {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::F16 => 2,
        }
    }
    pub fn is_f16(self) -> bool {
        self == WeightDtype::F16
    }
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::F16 => "f16",
        }
    }
}

/// Rows [row0, row0 + rows) of a matrix, in one buffer.
pub struct WeightPart {
    pub buf: GpuBuffer,
    pub row0: usize,
    pub rows: usize,
}

/// A row-major weight matrix [rows, cols] on the GPU (nn.Linear layout: y = x W^T).
pub struct GpuMatrix {
    pub parts: Vec<WeightPart>,
    pub rows: usize,
    pub cols: usize,
    /// Row stride in elements: cols rounded up to a multiple of 8.
    pub kp: usize,
    pub dtype: WeightDtype,
}

impl GpuMatrix {
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buf.len()).sum()
    }
    pub fn part_slice(&self, i: usize) -> Slice {
        Slice::all(&self.parts[i].buf)
    }

    /// Uploads a row-major `[rows, cols]` f32 matrix held in memory (tests, synthetic weights),
    /// split into parts by the storage binding limit exactly like `model::weights::upload_matrix`.
    pub fn from_f32(
        gpu: &Gpu,
        pool: &BufferPool,
        data: &[f32],
        rows: usize,
        cols: usize,
        dtype: WeightDtype,
        label: &str,
    ) -> Result<GpuMatrix> {
        Self::from_f32_split(gpu, pool, data, rows, cols, dtype, label, None)
    }

    /// [`from_f32`](Self::from_f32) with at most `max_rows_per_part` rows per part (if given), so
    /// tests can exercise multi-part matrices without huge tensors.
    #[allow(clippy::too_many_arguments)]
    pub fn from_f32_split(
        gpu: &Gpu,
        pool: &BufferPool,
        data: &[f32],
        rows: usize,
        cols: usize,
        dtype: WeightDtype,
        label: &str,
        max_rows_per_part: Option<usize>,
    ) -> Result<GpuMatrix> {
        if data.len() != rows * cols {
            return Err(Error::Input(format!(
                "{label}: {} values are not [{rows}, {cols}]",
                data.len()
            )));
        }
        let kp = cols.next_multiple_of(8);
        let row_bytes = kp * dtype.bytes();
        if row_bytes as u64 > gpu.caps.max_binding() {
            return Err(Error::Limit(format!(
                "{label}: one row of {row_bytes} bytes exceeds the storage binding limit"
            )));
        }
        let mut max_rows = (gpu.caps.max_binding() as usize / row_bytes).max(1);
        if let Some(m) = max_rows_per_part {
            max_rows = max_rows.min(m.max(1));
        }
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = max_rows.min(rows - row0);
            let buf = pool.storage((n * row_bytes) as u64, Category::Weights, label)?;
            let mut staged: Vec<u8> = Vec::with_capacity(n * row_bytes);
            for r in row0..row0 + n {
                let row = &data[r * cols..][..cols];
                match dtype {
                    WeightDtype::F32 => {
                        staged.extend_from_slice(bytemuck::cast_slice(row));
                        staged.resize(staged.len() + (kp - cols) * 4, 0);
                    }
                    WeightDtype::F16 => {
                        for (c, v) in row.iter().enumerate() {
                            staged.extend_from_slice(&to_f16(*v, label, r * cols + c)?.to_le_bytes());
                        }
                        staged.resize(staged.len() + (kp - cols) * 2, 0);
                    }
                }
            }
            if !staged.is_empty() {
                gpu.queue.write_buffer(buf.raw(), 0, &staged);
            }
            parts.push(WeightPart { buf, row0, rows: n });
            row0 += n;
        }
        flush(gpu)?;
        Ok(GpuMatrix {
            parts,
            rows,
            cols,
            kp,
            dtype,
        })
    }
}

impl GpuMatrix {
    /// Allocates a matrix's parts without contents (the caller fills them on the GPU).
    pub fn allocate(
        gpu: &Gpu,
        pool: &BufferPool,
        rows: usize,
        cols: usize,
        dtype: WeightDtype,
        label: &str,
    ) -> Result<GpuMatrix> {
        let kp = cols.next_multiple_of(8);
        let row_bytes = kp * dtype.bytes();
        if row_bytes as u64 > gpu.caps.max_binding() {
            return Err(Error::Limit(format!(
                "{label}: one row of {row_bytes} bytes exceeds the storage binding limit"
            )));
        }
        let max_rows = (gpu.caps.max_binding() as usize / row_bytes).max(1);
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = max_rows.min(rows - row0);
            let buf = pool.storage((n * row_bytes) as u64, Category::Weights, label)?;
            parts.push(WeightPart { buf, row0, rows: n });
            row0 += n;
        }
        Ok(GpuMatrix {
            parts,
            rows,
            cols,
            kp,
            dtype,
        })
    }
}

/// `v` as f16. A finite value beyond the f16 range (|v| > 65504) would become infinite on the
/// GPU, so it is refused (such a checkpoint loads with f32 weights).
pub(crate) fn to_f16(v: f32, tensor: &str, element: usize) -> Result<half::f16> {
    let h = half::f16::from_f32(v);
    if h.is_infinite() && v.is_finite() {
        return Err(Error::Checkpoint(format!(
            "tensor `{tensor}` holds {v} at element {element}, beyond the f16 range (±65504); load it with f32 weights"
        )));
    }
    Ok(h)
}

/// Submits pending uploads and waits, so the driver's staging memory is released.
pub(crate) fn flush(gpu: &Gpu) -> Result<()> {
    gpu.queue.submit([]);
    gpu.wait()
}
