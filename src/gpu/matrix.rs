//! Weight matrices on the GPU, the operand type of the matrix kernels. A matrix is stored row-major
//! with each row padded to a multiple of 8 elements (so kernels read 8 weights per load), as f32 or
//! as f16 packed two to a u32 (which every adapter can unpack, with or without the SHADER_F16
//! feature). Matrices larger than one storage binding may cover are split into row parts; kernels
//! are dispatched once per part. Loading from a checkpoint is `model::weights`.

use super::{BufferPool, Category, Gpu, GpuBuffer, Slice};
use crate::error::{Error, Result};

/// Storage format of weight matrices on the GPU (`--dtype`; named `f32`, `f16`, `q8`, `q4` on the
/// command line and in stored files). The quantized formats (`gpu::quant`) group 32 consecutive
/// inputs of a row under one f16 scale (and, in q4, one f16 bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    F32,
    F16,
    /// int8, symmetric: w = d * q, q in [-127, 127], one f16 d per 32 inputs (8.5 bits a weight).
    Q8,
    /// 4-bit affine: w = d * q + b, q in [0, 15], f16 d and b per 32 inputs (5 bits a weight).
    Q4,
}

impl WeightDtype {
    pub fn is_f16(self) -> bool {
        self == WeightDtype::F16
    }
    pub fn is_quantized(self) -> bool {
        matches!(self, WeightDtype::Q8 | WeightDtype::Q4)
    }
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::F16 => "f16",
            WeightDtype::Q8 => "q8",
            WeightDtype::Q4 => "q4",
        }
    }
    /// The number the WGSL kernels know the format by (`WEIGHT_FORMAT` in
    /// `wgsl/matmul/weight_formats.wgsl`).
    pub fn wgsl_format(self) -> u32 {
        match self {
            WeightDtype::F32 => 0,
            WeightDtype::F16 => 1,
            WeightDtype::Q8 => 2,
            WeightDtype::Q4 => 3,
        }
    }
    /// Elements in one 16-byte block of a row (`block_elems()` in weight_formats.wgsl): what a
    /// weight kernel reads a load.
    pub fn block_elems(self) -> u32 {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::F16 => 8,
            WeightDtype::Q8 => 16,
            WeightDtype::Q4 => 32,
        }
    }
    /// Row stride in elements for `cols` inputs: 8 for the float formats (kernels read 8
    /// weights a load), a whole number of quantization groups for the quantized ones.
    pub fn padded_cols(self, cols: usize) -> usize {
        if self.is_quantized() {
            cols.next_multiple_of(super::quant::GROUP)
        } else {
            cols.next_multiple_of(8)
        }
    }
    /// Bytes one row of `kp` (padded) elements takes: its values, and for the quantized
    /// formats its group scales (stored after all the rows of a part: `gpu::quant`).
    pub fn row_bytes(self, kp: usize) -> usize {
        let (values, scales) = self.row_layout(kp);
        values + scales
    }
    /// (value bytes, scale bytes) of one row of `kp` elements.
    pub fn row_layout(self, kp: usize) -> (usize, usize) {
        let groups = kp / super::quant::GROUP;
        match self {
            WeightDtype::F32 => (4 * kp, 0),
            WeightDtype::F16 => (2 * kp, 0),
            WeightDtype::Q8 => (kp, 2 * groups),
            WeightDtype::Q4 => (kp / 2, 4 * groups),
        }
    }
    /// The format of the embedding table and the lm_head under this `--dtype`: q4 keeps them in
    /// q8 (the output projection is the most sensitive matrix; the embedding shares its size).
    pub fn head_format(self) -> WeightDtype {
        match self {
            WeightDtype::Q4 => WeightDtype::Q8,
            d => d,
        }
    }
    /// Every matrix format a model loaded with this `--dtype` holds (its kernels are compiled
    /// for each).
    pub fn formats(self) -> &'static [WeightDtype] {
        match self {
            WeightDtype::F32 => &[WeightDtype::F32],
            WeightDtype::F16 => &[WeightDtype::F16],
            WeightDtype::Q8 => &[WeightDtype::Q8],
            WeightDtype::Q4 => &[WeightDtype::Q4, WeightDtype::Q8],
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
    /// Row stride in elements: cols rounded up to a multiple of 8 (float formats) or of the
    /// quantization group (`WeightDtype::padded_cols`).
    pub kp: usize,
    pub dtype: WeightDtype,
}

/// Where the rows of one part lie in its buffer (`gpu::quant`): all the rows' values, then all
/// their group scales.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartLayout {
    pub rows: usize,
    /// Value bytes per row.
    pub values: usize,
    /// Scale bytes per row (0 for the float formats).
    pub scales: usize,
}

impl PartLayout {
    pub fn new(dtype: WeightDtype, kp: usize, rows: usize) -> Self {
        let (values, scales) = dtype.row_layout(kp);
        PartLayout { rows, values, scales }
    }
    /// The buffer size: rounded up to 16 bytes, so staged writes of any row range can be padded
    /// to whole words and kernels may read whole 16-byte vectors.
    pub fn bytes(&self) -> u64 {
        (self.rows * (self.values + self.scales)).next_multiple_of(16) as u64
    }
    /// Byte offset of row `r`'s values.
    pub fn values_at(&self, r: usize) -> u64 {
        (r * self.values) as u64
    }
    /// Byte offset of row `r`'s scales.
    pub fn scales_at(&self, r: usize) -> u64 {
        (self.rows * self.values + r * self.scales) as u64
    }
}

/// Rows per part for `dtype` rows of `kp` elements under the adapter's storage binding limit.
pub(crate) fn rows_per_part(gpu: &Gpu, dtype: WeightDtype, kp: usize, label: &str) -> Result<usize> {
    let row_bytes = dtype.row_bytes(kp);
    // 16 bytes of slack for the rounding of `PartLayout::bytes`.
    let limit = gpu.caps.max_binding().saturating_sub(16) as usize;
    if row_bytes > limit {
        return Err(Error::Limit(format!(
            "{label}: one row of {row_bytes} bytes exceeds the storage binding limit"
        )));
    }
    Ok((limit / row_bytes).max(1))
}

/// Writes `bytes` at `offset` of `buf`, padded with zeros to whole words (the queue copies in
/// units of 4 bytes; part buffers are sized for it).
pub(crate) fn write_padded(gpu: &Gpu, buf: &GpuBuffer, offset: u64, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    gpu.queue.write_buffer(buf.raw(), offset, bytes);
}

impl GpuMatrix {
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buf.len()).sum()
    }
    pub fn part_slice(&self, i: usize) -> Slice {
        Slice::all(&self.parts[i].buf)
    }
    /// The layout of part `i`.
    pub(crate) fn part_layout(&self, i: usize) -> PartLayout {
        PartLayout::new(self.dtype, self.kp, self.parts[i].rows)
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
        let encoded = super::quant::EncodedMatrix::encode(dtype, data, rows, cols, label)?;
        Self::from_encoded_split(gpu, pool, &encoded, label, max_rows_per_part)
    }

    /// Uploads a matrix encoded on the host ([`EncodedMatrix`](super::quant::EncodedMatrix)),
    /// at most `max_rows_per_part` rows per part if given.
    pub fn from_encoded_split(
        gpu: &Gpu,
        pool: &BufferPool,
        m: &super::quant::EncodedMatrix,
        label: &str,
        max_rows_per_part: Option<usize>,
    ) -> Result<GpuMatrix> {
        let mut max_rows = rows_per_part(gpu, m.dtype, m.kp, label)?;
        if let Some(limit) = max_rows_per_part {
            max_rows = max_rows.min(limit.max(1));
        }
        let (vb, sb) = m.dtype.row_layout(m.kp);
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < m.rows {
            let n = max_rows.min(m.rows - row0);
            let layout = PartLayout::new(m.dtype, m.kp, n);
            let buf = pool.storage(layout.bytes(), Category::Weights, label)?;
            write_padded(gpu, &buf, 0, &mut m.values[row0 * vb..(row0 + n) * vb].to_vec());
            write_padded(
                gpu,
                &buf,
                layout.scales_at(0),
                &mut m.scales[row0 * sb..(row0 + n) * sb].to_vec(),
            );
            parts.push(WeightPart { buf, row0, rows: n });
            row0 += n;
        }
        flush(gpu)?;
        Ok(GpuMatrix {
            parts,
            rows: m.rows,
            cols: m.cols,
            kp: m.kp,
            dtype: m.dtype,
        })
    }

    /// Allocates a matrix's parts without contents (the caller fills them on the GPU).
    pub fn allocate(
        gpu: &Gpu,
        pool: &BufferPool,
        rows: usize,
        cols: usize,
        dtype: WeightDtype,
        label: &str,
    ) -> Result<GpuMatrix> {
        let kp = dtype.padded_cols(cols);
        let max_rows = rows_per_part(gpu, dtype, kp, label)?;
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = max_rows.min(rows - row0);
            let buf = pool.storage(PartLayout::new(dtype, kp, n).bytes(), Category::Weights, label)?;
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
