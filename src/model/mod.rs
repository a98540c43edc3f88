//! Model definitions: configuration, checkpoint reading, and the GPU model graph.

pub mod checkpoint;
pub mod config;
pub mod large;
pub mod v1_config;
pub mod weights;

use crate::error::{Error, Result};
use crate::gpu::{BufferPool, Gpu, Kernels, PoolStats};
use crate::ops::Ops;
use crate::tokenizer::Tokenizer;
use checkpoint::Checkpoint;
use config::LargeConfig;
use large::LargeWeights;
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use weights::WeightDtype;

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Weight format on the GPU; `None` picks f16.
    pub dtype: Option<WeightDtype>,
    /// Load tokenizer.json when present (needed for text in and out, not for token ids).
    pub tokenizer: bool,
    /// Compile kernels without runtime bounds checks (see `Kernels::new_unchecked`).
    pub unchecked_kernels: bool,
    /// Workgroup shapes of the main kernels.
    pub kernel_shapes: crate::ops::KernelShapes,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: None,
            tokenizer: true,
            unchecked_kernels: false,
            kernel_shapes: crate::ops::KernelShapes::default(),
        }
    }
}

fn kernels_for(gpu: &Arc<Gpu>, unchecked: bool) -> Kernels {
    if unchecked {
        Kernels::new_unchecked(gpu.clone())
    } else {
        Kernels::new(gpu.clone())
    }
}

pub(crate) struct ModelInner {
    pub gpu: Arc<Gpu>,
    pub pool: BufferPool,
    pub ops: Ops,
    pub cfg: LargeConfig,
    pub weights: LargeWeights,
    pub dtype: WeightDtype,
    pub tokenizer: Option<Tokenizer>,
    pub dir: PathBuf,
}

/// A loaded model. Cheap to clone; sessions keep it alive.
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<ModelInner>,
}

impl Model {
    /// Loads the checkpoint in `dir` (config.json, safetensors, optional tokenizer.json).
    pub fn load(gpu: Arc<Gpu>, dir: &Path, opts: &LoadOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "model directory {} does not exist",
                dir.display()
            )));
        }
        let mut cfg = LargeConfig::from_dir(dir)?;
        let ckpt = Checkpoint::open(dir)?;
        if let Some(f) = large::ffn_dim_from_checkpoint(&ckpt) {
            cfg.ffn_dim = f;
        }
        let dtype = opts.dtype.unwrap_or(WeightDtype::F16);
        let tokenizer = if opts.tokenizer && dir.join("tokenizer.json").is_file() {
            Some(Tokenizer::from_dir(dir)?)
        } else {
            None
        };
        let pool = BufferPool::new(gpu.device.clone());
        let kernels = kernels_for(&gpu, opts.unchecked_kernels);
        let ops = Ops::with_shapes(&kernels, dtype, opts.kernel_shapes)?;
        kernels.save_cache();
        let weights = LargeWeights::load(&gpu, &pool, &ckpt, &cfg, dtype)?;
        Ok(Model {
            inner: Arc::new(ModelInner {
                gpu,
                pool,
                ops,
                cfg,
                weights,
                dtype,
                tokenizer,
                dir: dir.to_path_buf(),
            }),
        })
    }

    /// A model of the given shape with random weights generated on the GPU (benchmarks).
    /// `opts.tokenizer` is ignored (there is none); `opts.dtype` defaults to f16.
    pub fn random(gpu: Arc<Gpu>, cfg: LargeConfig, opts: &LoadOptions, seed: u32) -> Result<Self> {
        cfg.validate()?;
        let dtype = opts.dtype.unwrap_or(WeightDtype::F16);
        let pool = BufferPool::new(gpu.device.clone());
        let kernels = kernels_for(&gpu, opts.unchecked_kernels);
        let ops = Ops::with_shapes(&kernels, dtype, opts.kernel_shapes)?;
        kernels.save_cache();
        let weights = LargeWeights::random(&gpu, &pool, &ops, &cfg, dtype, seed)?;
        Ok(Model {
            inner: Arc::new(ModelInner {
                gpu,
                pool,
                ops,
                cfg,
                weights,
                dtype,
                tokenizer: None,
                dir: PathBuf::new(),
            }),
        })
    }

    pub fn config(&self) -> &LargeConfig {
        &self.inner.cfg
    }
    pub fn dtype(&self) -> WeightDtype {
        self.inner.dtype
    }
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.inner.tokenizer.as_ref()
    }
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.inner.gpu
    }
    pub fn pool(&self) -> &BufferPool {
        &self.inner.pool
    }
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
    pub fn vocab_size(&self) -> usize {
        self.inner.cfg.vocab_size
    }
}
