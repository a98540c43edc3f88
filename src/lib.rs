//! xlstm-wgpu: xLSTM language-model inference on any GPU through wgpu, every kernel in WGSL.

pub mod cpu;
pub mod error;
pub mod gpu;
pub mod model;

pub use error::{Error, Result};
