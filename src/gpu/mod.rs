//! Everything that talks to wgpu: the device, the buffer pool, kernels and plans.

pub mod caps;
pub mod device;
pub mod kernels;
pub mod matrix;
pub mod pool;
pub mod quant;
pub mod readback;
pub mod scheduler;

pub use device::{Caps, Gpu, GpuOptions};
pub use kernels::{ConstValue, KernelChecks, Kernels, LazyPipeline};
pub use matrix::{GpuMatrix, WeightDtype};
pub use pool::{BufferPool, Category, GpuBuffer, PoolStats};
pub use scheduler::{
    timestamps_usable, Cost, KernelTime, Plan, PlanBuilder, Profile, ProfileClock, Slice, SubmitBudget,
};
