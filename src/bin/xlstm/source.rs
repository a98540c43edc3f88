//! Where the model of `xlstm bench` and `xlstm tune` comes from: a checkpoint directory, or a
//! preset shape (see [`crate::bench::preset`]) with random weights generated on the GPU. Both
//! commands label, look up, estimate and load it the same way, so the choice lives here once.

use crate::bench::preset;
use crate::tune::store::ModelShape;
use std::path::PathBuf;
use std::sync::Arc;
use xlstm_wgpu::error::Result;
use xlstm_wgpu::gpu::Gpu;
use xlstm_wgpu::model::{LoadOptions, Model, WeightDtype};
use xlstm_wgpu::session::SessionOptions;
use xlstm_wgpu::telemetry::Estimate;

/// A checkpoint or a preset shape.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// A checkpoint directory.
    Dir(PathBuf),
    /// A preset shape of `xlstm bench` with random weights generated on the GPU.
    Preset(String),
}

impl ModelSource {
    /// A label for reports and the status record: the directory, or `preset NAME`.
    pub fn label(&self) -> String {
        match self {
            ModelSource::Dir(d) => d.display().to_string(),
            ModelSource::Preset(p) => format!("preset {p}"),
        }
    }

    /// The checkpoint directory (`None` for a preset).
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            ModelSource::Dir(d) => Some(d),
            ModelSource::Preset(_) => None,
        }
    }

    /// The model's shape, read without loading it.
    pub fn shape(&self) -> Result<ModelShape> {
        match self {
            ModelSource::Dir(d) => ModelShape::of_dir(d),
            ModelSource::Preset(p) => Ok(ModelShape::large(&preset(p)?)),
        }
    }

    /// The memory a run of up to `tokens` prompt tokens needs, when it can be told before
    /// loading (`None` for a checkpoint whose files cannot be read, or an unknown preset: the
    /// load then reports what is wrong).
    pub fn estimate(&self, dtype: WeightDtype, session: &SessionOptions, tokens: usize) -> Option<Estimate> {
        match self {
            ModelSource::Dir(d) => Estimate::for_dir(d, dtype, session, tokens, false).ok(),
            ModelSource::Preset(p) => preset(p)
                .ok()
                .map(|cfg| Estimate::for_config(&cfg, dtype, session, tokens, false)),
        }
    }

    /// Loads the checkpoint, or makes the preset's random weights (seed 1) on `gpu`.
    pub fn load(&self, gpu: Arc<Gpu>, opts: &LoadOptions) -> Result<Model> {
        match self {
            ModelSource::Dir(d) => Model::load(gpu, d, opts),
            ModelSource::Preset(name) => Model::random(gpu, preset(name)?, opts, 1),
        }
    }
}
