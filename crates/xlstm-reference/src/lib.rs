//! Plain-Rust f32 CPU reference of every xLSTM op and of the whole forward pass of both model
//! families (xLSTM Large and the original xLSTM).
//!
//! This is the oracle the WGSL kernels are tested against, so it favours clarity and accuracy over
//! speed: values are stored as f32 (like the GPU buffers) but every reduction — dot products, norm
//! statistics, gate cumulative sums and the mLSTM stabiliser arithmetic — is accumulated in f64, so
//! the reference's own rounding error is far below any tolerance a kernel test would use.
//!
//! It is a dev-only workspace crate (xlstm-wgpu's tests use it as a dev-dependency),
//! so the library's GPU path cannot depend on it. It uses the library only for what a model IS —
//! configs, checkpoint reading, the v1 block loader, the error type and the shared RNG — so both
//! read a model the same way. Functions panic on inconsistent shapes: they are a test oracle.
//!
//! Layouts are token-major and row-major throughout; `nn.Linear` weights are `[out, in]` and
//! `y = x W^T`, exactly as stored in the checkpoint (see `shared/reference/xlstm.md` §1.3).

pub mod large;
pub mod mlstm;
pub mod ops;
pub mod quant;
pub mod slstm;
pub mod v1;
