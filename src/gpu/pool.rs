//! The buffer pool: every GPU allocation of the crate goes through here, so memory can be
//! accounted by category, reused across plans (size classes) and released on demand (`trim`).
//!
//! A [`GpuBuffer`] returns its storage to the pool when dropped. Anything that references a
//! buffer on the GPU (a bind group in a cached plan) keeps the `GpuBuffer` alive, so a buffer is
//! never recycled while a recorded dispatch can still use it.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a buffer is for; accounting is kept per category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    Weights,
    State,
    Activations,
    Scratch,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Weights,
        Category::State,
        Category::Activations,
        Category::Scratch,
    ];
    fn index(self) -> usize {
        self as usize
    }
    pub fn name(self) -> &'static str {
        match self {
            Category::Weights => "weights",
            Category::State => "state",
            Category::Activations => "activations",
            Category::Scratch => "scratch",
        }
    }
}

/// A snapshot of the pool's accounting, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes held by live buffers, per [`Category::ALL`] index.
    pub live: [u64; 4],
    /// Bytes of released buffers kept for reuse.
    pub pooled: u64,
    /// Highest live + pooled total seen.
    pub peak: u64,
    /// Buffers created since the pool was made (reuse does not count).
    pub created: u64,
}

impl PoolStats {
    pub fn live_total(&self) -> u64 {
        self.live.iter().sum()
    }
    pub fn live_of(&self, c: Category) -> u64 {
        self.live[c.index()]
    }
}

#[derive(Default)]
struct PoolState {
    free: HashMap<(u64, u32), Vec<wgpu::Buffer>>,
    stats: PoolStats,
}

struct PoolInner {
    device: wgpu::Device,
    state: Mutex<PoolState>,
}

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the counters inconsistent in a way that
        // matters more than losing the whole pool, so recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The allocator. Clone it freely: clones share one pool.
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<PoolInner>,
}

/// A pooled buffer. Dropping it returns the storage to the pool.
pub struct GpuBuffer {
    buffer: wgpu::Buffer,
    /// Bytes asked for; the allocation may be larger (its size class).
    len: u64,
    class: u64,
    usage: wgpu::BufferUsages,
    category: Category,
    pool: Arc<PoolInner>,
}

impl GpuBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }
    /// Bytes requested (the usable length).
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Bytes actually allocated (the size class), at least `len`.
    pub fn capacity(&self) -> u64 {
        self.class
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn category(&self) -> Category {
        self.category
    }
    /// A binding over the whole requested range.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: 0,
            size: std::num::NonZeroU64::new(self.len.max(4).next_multiple_of(4)),
        })
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        st.stats.live[self.category.index()] -= self.class;
        st.stats.pooled += self.class;
        st.free
            .entry((self.class, self.usage.bits()))
            .or_default()
            .push(self.buffer.clone());
    }
}

/// Rounds a request up to its size class: 256-byte granularity for small buffers, then quarter
/// steps between powers of two, so reuse works across slightly different sequence lengths while
/// waste stays under 25%.
fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256).next_multiple_of(256);
    if b <= 64 * 1024 {
        return b.next_power_of_two();
    }
    let p = b.next_power_of_two();
    let quarter = p / 8; // steps of p/8 between p/2 and p
    b.next_multiple_of(quarter)
}

impl BufferPool {
    pub fn new(device: wgpu::Device) -> Self {
        BufferPool {
            inner: Arc::new(PoolInner {
                device,
                state: Mutex::new(PoolState::default()),
            }),
        }
    }

    /// A storage buffer of at least `bytes` bytes (copyable both ways), reused when possible.
    /// Contents are unspecified: callers that need zeros must clear it.
    pub fn storage(&self, bytes: u64, category: Category, label: &str) -> Result<GpuBuffer> {
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        self.alloc(bytes, usage, category, label)
    }

    /// A uniform buffer for kernel parameters.
    pub fn uniform(&self, bytes: u64, label: &str) -> Result<GpuBuffer> {
        let usage = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        self.alloc(bytes, usage, Category::Scratch, label)
    }

    /// A buffer the CPU can map to read results back.
    pub fn readback(&self, bytes: u64, label: &str) -> Result<GpuBuffer> {
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        self.alloc(bytes, usage, Category::Scratch, label)
    }

    /// Allocates with explicit usage. Weights get exact sizes (they are never recycled into
    /// other shapes); everything else is rounded to its size class.
    pub fn alloc(&self, bytes: u64, usage: wgpu::BufferUsages, category: Category, label: &str) -> Result<GpuBuffer> {
        let class = if category == Category::Weights {
            bytes.max(16).next_multiple_of(256)
        } else {
            size_class(bytes)
        };
        let reused = {
            let mut st = self.inner.lock();
            let hit = st.free.get_mut(&(class, usage.bits())).and_then(|v| v.pop());
            if hit.is_some() {
                st.stats.pooled -= class;
                st.stats.live[category.index()] += class;
            }
            hit
        };
        let buffer = match reused {
            Some(b) => b,
            None => {
                let scope = self.inner.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
                let b = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: class,
                    usage,
                    mapped_at_creation: false,
                });
                if let Some(e) = pollster::block_on(scope.pop()) {
                    return Err(Error::Gpu(format!("allocating {class} bytes for {label}: {e}")));
                }
                let mut st = self.inner.lock();
                st.stats.created += 1;
                st.stats.live[category.index()] += class;
                b
            }
        };
        {
            let mut st = self.inner.lock();
            let total = st.stats.live_total() + st.stats.pooled;
            st.stats.peak = st.stats.peak.max(total);
        }
        Ok(GpuBuffer {
            buffer,
            len: bytes,
            class,
            usage,
            category,
            pool: self.inner.clone(),
        })
    }

    /// Releases every pooled (unused) buffer back to the driver. Returns the bytes released.
    pub fn trim(&self) -> u64 {
        // Take the free lists under the lock, destroy outside it: destroying can wait on the
        // driver, and other threads (the memory watchdog) must not stall on the pool meanwhile.
        let (released, free) = {
            let mut st = self.inner.lock();
            let released = st.stats.pooled;
            st.stats.pooled = 0;
            (released, std::mem::take(&mut st.free))
        };
        for b in free.into_values().flatten() {
            b.destroy();
        }
        released
    }

    /// Restarts peak tracking from the current total (to measure the peak of one phase).
    pub fn reset_peak(&self) {
        let mut st = self.inner.lock();
        st.stats.peak = st.stats.live_total() + st.stats.pooled;
    }

    pub fn stats(&self) -> PoolStats {
        self.inner.lock().stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_with_bounded_waste() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(300), 512);
        for b in [70_000u64, 1 << 20, 3_000_000, 150_000_000] {
            let c = size_class(b);
            assert!(c >= b && (c as f64) < b as f64 * 1.26, "{b} -> {c}");
        }
    }
}
