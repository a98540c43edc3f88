//! The unit a session saves and restores: one state tensor of a block.

use crate::gpu::GpuBuffer;

/// One state tensor of a block: its buffer, its byte offset at n/m parity 0 and 1, and its length
/// in floats (what `save_state` copies out and `restore_state` writes back at parity 0).
pub struct StateTensor<'a> {
    pub buf: &'a GpuBuffer,
    pub offset: [u64; 2],
    pub len: usize,
}

impl<'a> StateTensor<'a> {
    /// A whole buffer, the same at both parities.
    pub fn whole(buf: &'a GpuBuffer) -> Self {
        StateTensor {
            buf,
            offset: [0, 0],
            len: (buf.len() / 4) as usize,
        }
    }
    /// A buffer holding two copies, one per parity.
    pub fn halves(buf: &'a GpuBuffer) -> Self {
        let half = buf.len() / 2;
        StateTensor {
            buf,
            offset: [0, half],
            len: (half / 4) as usize,
        }
    }
}
