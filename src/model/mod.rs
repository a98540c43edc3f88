//! Model definitions: configuration, checkpoint reading, and the GPU model graph.

pub mod checkpoint;
pub mod config;
pub mod forward;
pub mod large;
pub mod mlstm_cell;
pub mod quantized;
pub mod schedule;
pub mod state;
pub mod v1;
pub mod v1_config;
pub mod v1_weights;
pub mod weights;

use crate::error::{Error, Result};
use crate::gpu::{BufferPool, Gpu, KernelChecks, Kernels, PoolStats};
use crate::ops::Ops;
use crate::tokenizer::Tokenizer;
use checkpoint::Checkpoint;
use config::LargeConfig;
use large::LargeWeights;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use v1_config::{Family, V1Config};
pub use weights::WeightDtype;

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Weight format on the GPU; `None` picks the checkpoint's own for a quantized checkpoint
    /// (`model::quantized`), else f16. A quantized checkpoint loads only in its own format.
    pub dtype: Option<WeightDtype>,
    /// Load tokenizer.json when present (needed for text in and out, not for token ids).
    pub tokenizer: bool,
    /// Which kernels keep naga's runtime bounds checks (see `gpu::KernelChecks`).
    pub kernel_checks: KernelChecks,
    /// Workgroup shapes of the main kernels.
    pub kernel_shapes: crate::ops::KernelShapes,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: None,
            tokenizer: true,
            kernel_checks: KernelChecks::default(),
            kernel_shapes: crate::ops::KernelShapes::default(),
        }
    }
}

/// A checked configuration of either family, before its weights are loaded.
enum Config {
    Large(LargeConfig),
    V1(V1Config),
}

/// The model family with its configuration and GPU weights.
/// The sizes of one segment's buffers: `tokens` tokens in chunks of `chunk`, `logit_rows` rows of
/// logits (all tokens, or just the last), an id buffer of at least `ids_len` entries (decode keeps
/// the ids of several steps there).
#[derive(Clone, Copy, Debug)]
pub struct SegmentShape {
    pub tokens: usize,
    pub chunk: usize,
    pub logit_rows: usize,
    pub ids_len: usize,
}

pub(crate) enum Arch {
    Large { cfg: LargeConfig, weights: LargeWeights },
    V1 { cfg: V1Config, weights: v1::Weights },
}

pub(crate) struct ModelInner {
    pub gpu: Arc<Gpu>,
    pub pool: BufferPool,
    pub ops: Ops,
    pub arch: Arch,
    pub dtype: WeightDtype,
    pub tokenizer: Option<Tokenizer>,
    pub dir: PathBuf,
    /// The pipeline cache `ops` compiles through.
    pub kernels: Kernels,
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
        // Everything sized from config.json is checked, against its limits and against the
        // checkpoint's tensors, before anything is allocated from it.
        let json = read_config_json(dir)?;
        let ckpt = Checkpoint::open(dir)?;
        let config = match v1_config::detect_family(&json) {
            Family::Large => {
                let mut cfg = LargeConfig::from_json(&json)?;
                if let Some(f) = large::ffn_dim_from_checkpoint(&ckpt) {
                    cfg.ffn_dim = f;
                    cfg.validate()?;
                }
                ckpt.check_block_count("backbone.blocks.", cfg.num_blocks)?;
                Config::Large(cfg)
            }
            Family::V1 => {
                let cfg = V1Config::from_json(&json)?;
                ckpt.check_block_count("xlstm_block_stack.blocks.", cfg.num_blocks)?;
                Config::V1(cfg)
            }
        };
        let dtype =
            quantized::Quantization::resolve(opts.dtype, quantized::Quantization::of_checkpoint(&json, &ckpt)?)?;
        let tokenizer = if opts.tokenizer && dir.join("tokenizer.json").is_file() {
            Some(Tokenizer::from_dir(dir)?)
        } else {
            None
        };
        let pool = BufferPool::new(gpu.device.clone());
        // Nothing compiles here: `warm_up` compiles what this model's plans use, once the
        // weights they read exist.
        let kernels = Kernels::with_checks(gpu.clone(), opts.kernel_checks);
        let ops = Ops::with_shapes(&kernels, dtype, opts.kernel_shapes)?;
        let arch = match config {
            Config::Large(cfg) => {
                let weights = LargeWeights::load(&gpu, &pool, &ckpt, &cfg, dtype)?;
                Arch::Large { cfg, weights }
            }
            Config::V1(cfg) => {
                let weights = v1::Weights::load(&gpu, &pool, &ckpt, &cfg, dtype)?;
                Arch::V1 { cfg, weights }
            }
        };
        let inner = ModelInner {
            gpu,
            pool,
            ops,
            arch,
            dtype,
            tokenizer,
            dir: dir.to_path_buf(),
            kernels,
        };
        inner.warm_up()?;
        Ok(Model { inner: Arc::new(inner) })
    }

    /// A model of the given shape with random weights generated on the GPU (benchmarks).
    /// `opts.tokenizer` is ignored (there is none); `opts.dtype` defaults to f16.
    pub fn random(gpu: Arc<Gpu>, cfg: LargeConfig, opts: &LoadOptions, seed: u32) -> Result<Self> {
        cfg.validate()?;
        let dtype = opts.dtype.unwrap_or(WeightDtype::F16);
        let pool = BufferPool::new(gpu.device.clone());
        let kernels = Kernels::with_checks(gpu.clone(), opts.kernel_checks);
        let ops = Ops::with_shapes(&kernels, dtype, opts.kernel_shapes)?;
        let weights = LargeWeights::random(&gpu, &pool, &ops, &cfg, dtype, seed)?;
        let inner = ModelInner {
            gpu,
            pool,
            ops,
            arch: Arch::Large { cfg, weights },
            dtype,
            tokenizer: None,
            dir: PathBuf::new(),
            kernels,
        };
        inner.warm_up()?;
        Ok(Model { inner: Arc::new(inner) })
    }

    /// The pipelines compiled for this model so far, as `kernel:entry` (kernel names as in
    /// `gpu::kernels::SOURCES`; a kernel compiled in several specialisations is listed once
    /// for each), sorted.
    pub fn compiled_pipelines(&self) -> Vec<String> {
        self.inner.kernels.compiled()
    }

    /// The fragment edge of the matrix-unit kernels this model's prefill uses (16 or 8), `None`
    /// for the tiled kernels (no matrix units, `--dtype f32`, or a failed self-check:
    /// [`Kernels::matrix_units`]).
    pub fn matrix_units(&self) -> Option<u32> {
        self.inner.ops.coop_fragment()
    }

    pub fn family(&self) -> Family {
        match &self.inner.arch {
            Arch::Large { .. } => Family::Large,
            Arch::V1 { .. } => Family::V1,
        }
    }
    /// The xLSTM Large configuration (`None` for an original-xLSTM model).
    pub fn large_config(&self) -> Option<&LargeConfig> {
        match &self.inner.arch {
            Arch::Large { cfg, .. } => Some(cfg),
            Arch::V1 { .. } => None,
        }
    }
    /// The original-xLSTM configuration (`None` for an xLSTM Large model).
    pub fn v1_config(&self) -> Option<&V1Config> {
        match &self.inner.arch {
            Arch::V1 { cfg, .. } => Some(cfg),
            Arch::Large { .. } => None,
        }
    }
    /// The token to start a prompt with, where the config names one.
    pub fn bos_token_id(&self) -> Option<u32> {
        match &self.inner.arch {
            Arch::Large { cfg, .. } => cfg.bos_token_id,
            Arch::V1 { cfg, .. } => cfg.bos_token_id,
        }
    }
    /// The token that ends a generation, where the config names one.
    pub fn eos_token_id(&self) -> Option<u32> {
        match &self.inner.arch {
            Arch::Large { cfg, .. } => cfg.eos_token_id,
            Arch::V1 { cfg, .. } => cfg.eos_token_id,
        }
    }
    pub fn num_blocks(&self) -> usize {
        match &self.inner.arch {
            Arch::Large { cfg, .. } => cfg.num_blocks,
            Arch::V1 { cfg, .. } => cfg.num_blocks,
        }
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
        vocab_size_of(&self.inner.arch)
    }
}

fn vocab_size_of(arch: &Arch) -> usize {
    match arch {
        Arch::Large { cfg, .. } => cfg.vocab_size,
        Arch::V1 { cfg, .. } => cfg.vocab_size,
    }
}

/// Parses `dir/config.json` (to tell the model families apart, or to read a model's shape without
/// loading it): a regular file of at most 16 MiB.
pub fn read_config_json(dir: &Path) -> Result<serde_json::Value> {
    config::read_json(dir)
}
