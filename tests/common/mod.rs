//! Shared test helpers: one GPU device per test binary.
#![allow(dead_code)]

pub mod compare;
pub mod generate_run;
pub mod score;
pub mod strided;

use std::sync::{Arc, OnceLock};
use xlstm_wgpu::{Gpu, GpuOptions};

/// The adapter the tests run on (lavapipe in CI; set WGPU_BACKEND=vulkan).
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| Arc::new(Gpu::new(&GpuOptions::default()).expect("a GPU adapter (install mesa-vulkan-drivers)")))
        .clone()
}

/// Path of a file under tests/fixtures.
pub fn fixture(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(rel)
}
