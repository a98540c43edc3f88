//! Copying results from the GPU back to the CPU.

use super::device::Gpu;
use super::pool::{BufferPool, GpuBuffer};
use crate::error::{Error, Result};

/// Reads `bytes` bytes at `offset` of `src` into a Vec (waits for all submitted work).
pub fn read_bytes(gpu: &Gpu, pool: &BufferPool, src: &GpuBuffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
    let len = bytes.next_multiple_of(4);
    let staging = pool.readback(len, "readback")?;
    let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("readback"),
    });
    enc.copy_buffer_to_buffer(src.raw(), offset, staging.raw(), 0, Some(len));
    gpu.queue.submit([enc.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.raw().map_async(wgpu::MapMode::Read, 0..len, move |r| {
        let _ = tx.send(r);
    });
    gpu.wait()?;
    rx.recv()
        .map_err(|_| Error::Gpu("readback callback never ran".into()))?
        .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
    let data = {
        let view = staging
            .raw()
            .get_mapped_range(0..len)
            .map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e}")))?;
        view[..bytes as usize].to_vec()
    };
    staging.raw().unmap();
    Ok(data)
}

/// Reads `count` f32 values starting at element `first`.
pub fn read_f32(gpu: &Gpu, pool: &BufferPool, src: &GpuBuffer, first: u64, count: u64) -> Result<Vec<f32>> {
    let b = read_bytes(gpu, pool, src, first * 4, count * 4)?;
    Ok(bytemuck::pod_collect_to_vec(&b))
}

/// Reads `count` u32 values starting at element `first`.
pub fn read_u32(gpu: &Gpu, pool: &BufferPool, src: &GpuBuffer, first: u64, count: u64) -> Result<Vec<u32>> {
    let b = read_bytes(gpu, pool, src, first * 4, count * 4)?;
    Ok(bytemuck::pod_collect_to_vec(&b))
}
