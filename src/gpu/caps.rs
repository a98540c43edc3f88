//! What a device can do: the capability record every other part of the crate consults, the
//! features the library asks for (and `XLSTM_DISABLE_FEATURES` masks), and the limits the kernels
//! need. Read from what a device was created with, never from what its adapter could offer.

use super::device::GpuOptions;
use crate::error::{Error, Result};
use std::fmt;

/// What the device can do, recorded once at creation.
#[derive(Clone, Debug)]
pub struct Caps {
    pub adapter_name: String,
    pub backend: String,
    pub driver: String,
    pub device_type: String,
    pub f16: bool,
    pub subgroup: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub timestamp: bool,
    pub timestamp_inside_passes: bool,
    pub pipeline_cache: bool,
    pub immediates: bool,
    pub cooperative_matrix: bool,
    /// The adapter offers 16x16x16 cooperative matrices with f16 inputs and f32 accumulators
    /// (NVIDIA and AMD through Vulkan; Apple GPUs offer only 8x8).
    pub coop_16x16_f16: bool,
    /// The adapter offers 8x8x8 cooperative matrices with f16 inputs and f32 accumulators
    /// (Apple GPUs' simdgroup matrices through Metal, M1 and later). The kernel tests cannot run
    /// these here, so they are used only after a self-check on the GPU (`ops::coop_check`).
    pub coop_8x8_f16: bool,
    /// Packed 4 x 8-bit integer dot products run as one instruction (Vulkan and DX12 drivers
    /// expose them on NVIDIA, AMD and Intel GPUs; Metal has none, so naga emulates them there
    /// and the float path is faster). The quantized decode GEMVs use them (`int-dot` masks it).
    pub int_dot: bool,
    /// Largest range one storage binding may cover: tensors above it are split.
    pub max_storage_binding: u64,
    pub max_buffer_size: u64,
    pub max_workgroup_storage: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_storage_buffers_per_stage: u32,
    pub min_storage_offset_alignment: u32,
    pub min_uniform_offset_alignment: u32,
    /// Kernels read their parameter block from a read-only storage buffer instead of a uniform
    /// buffer. Set on CPU adapters (Mesa's lavapipe): for shaders whose branch conditions read
    /// uniform-buffer values, lavapipe may compile a copy of the shader with those values inlined
    /// at every dispatch, and Mesa releases before 23.1 never free these copies (several MiB of
    /// host memory per decoded token). Storage reads are never inlined.
    pub params_in_storage: bool,
    /// Features the adapter offers that were masked by request.
    pub disabled: Vec<String>,
}

impl Caps {
    /// Whether `name` (one of the names `XLSTM_DISABLE_FEATURES` accepts) was masked by request
    /// on an adapter that offers it.
    pub fn is_disabled(&self, name: &str) -> bool {
        self.disabled.iter().any(|n| n == name)
    }

    /// Largest buffer we may bind in one storage binding and also allocate.
    pub fn max_binding(&self) -> u64 {
        // Round down to 256 bytes so split points stay aligned for every offset rule.
        self.max_storage_binding.min(self.max_buffer_size) & !255
    }
}

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(
            f,
            "adapter        {} ({}, {})",
            self.adapter_name, self.backend, self.device_type
        )?;
        writeln!(f, "driver         {}", self.driver)?;
        writeln!(f, "shader f16     {}", yes(self.f16))?;
        writeln!(
            f,
            "subgroups      {} (size {}..{})",
            yes(self.subgroup),
            self.subgroup_min_size,
            self.subgroup_max_size
        )?;
        writeln!(
            f,
            "timestamps     {} (inside passes: {})",
            yes(self.timestamp),
            yes(self.timestamp_inside_passes)
        )?;
        writeln!(f, "pipeline cache {}", yes(self.pipeline_cache))?;
        writeln!(f, "immediates     {}", yes(self.immediates))?;
        writeln!(
            f,
            "coop matrix    {} (16x16x16 f16->f32: {}, 8x8x8 f16->f32: {})",
            yes(self.cooperative_matrix),
            yes(self.coop_16x16_f16),
            yes(self.coop_8x8_f16)
        )?;
        writeln!(f, "integer dot    {}", yes(self.int_dot))?;
        writeln!(f, "max storage binding    {} bytes", self.max_storage_binding)?;
        writeln!(f, "max buffer size        {} bytes", self.max_buffer_size)?;
        writeln!(f, "max workgroup storage  {} bytes", self.max_workgroup_storage)?;
        writeln!(f, "max invocations/wg     {}", self.max_invocations_per_workgroup)?;
        writeln!(f, "max storage buffers    {}", self.max_storage_buffers_per_stage)?;
        writeln!(
            f,
            "kernel parameters      {}",
            if self.params_in_storage {
                "storage buffer"
            } else {
                "uniform buffer"
            }
        )?;
        write!(
            f,
            "disabled by request    {}",
            if self.disabled.is_empty() {
                "none".to_string()
            } else {
                self.disabled.join(",")
            }
        )
    }
}

/// Names accepted in `XLSTM_DISABLE_FEATURES` and `GpuOptions::disable`.
pub(crate) const FEATURE_NAMES: &[&str] = &[
    "f16",
    "subgroup",
    "timestamp",
    "pipeline-cache",
    "immediates",
    "coop-matrix",
    // Not a wgpu feature: the quantized GEMVs' integer dot products (`Caps::int_dot`).
    "int-dot",
    // Not wgpu features: the matrix units for the prefill GEMMs only, or for the chunkwise mLSTM
    // phases only (the other family keeps them), to see what each contributes in speed and error.
    "coop-gemm",
    "coop-chunk",
];

/// Whether the backend runs WGSL's packed integer dot products natively where the GPU has them.
fn native_int_dot(backend: wgpu::Backend) -> bool {
    matches!(backend, wgpu::Backend::Vulkan | wgpu::Backend::Dx12)
}

pub(crate) fn feature_bits(name: &str) -> wgpu::Features {
    use wgpu::Features as F;
    match name {
        "f16" => F::SHADER_F16,
        "subgroup" => F::SUBGROUP | F::SUBGROUP_BARRIER,
        "timestamp" => F::TIMESTAMP_QUERY | F::TIMESTAMP_QUERY_INSIDE_ENCODERS | F::TIMESTAMP_QUERY_INSIDE_PASSES,
        "pipeline-cache" => F::PIPELINE_CACHE,
        "immediates" => F::IMMEDIATES,
        "coop-matrix" => F::EXPERIMENTAL_COOPERATIVE_MATRIX,
        _ => F::empty(),
    }
}

/// Every feature some kernel path can use.
pub(crate) fn wanted_features() -> wgpu::Features {
    FEATURE_NAMES
        .iter()
        .fold(wgpu::Features::empty(), |acc, name| acc | feature_bits(name))
}

/// `GpuOptions::disable` plus `XLSTM_DISABLE_FEATURES`, each name checked.
pub(crate) fn disable_list(opts: &GpuOptions) -> Result<Vec<String>> {
    let mut disable: Vec<String> = opts.disable.clone();
    if let Ok(list) = std::env::var("XLSTM_DISABLE_FEATURES") {
        disable.extend(list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
    }
    if let Some(name) = disable.iter().find(|n| !FEATURE_NAMES.contains(&n.as_str())) {
        return Err(Error::Input(format!(
            "unknown feature `{name}` in XLSTM_DISABLE_FEATURES (known: {})",
            FEATURE_NAMES.join(", ")
        )));
    }
    Ok(disable)
}

pub(crate) fn masked_features(disable: &[String]) -> wgpu::Features {
    disable
        .iter()
        .fold(wgpu::Features::empty(), |acc, name| acc | feature_bits(name))
}

/// Storage buffers one portable kernel binds at most (mlstm_chunk_out: the fused projections,
/// two gate rows, the C, n and m states and the output); the parameter block adds one more only
/// where the device allows more than 8 (see [`Caps::params_in_storage`]).
pub const REQUIRED_STORAGE_BUFFERS_PER_STAGE: u32 = 7;
/// Invocations of the largest workgroup the kernels declare (`@workgroup_size(256)`).
pub const REQUIRED_INVOCATIONS_PER_WORKGROUP: u32 = 256;
/// Workgroup memory of the hungriest kernel without a fallback (mlstm_chunk_out: a 512 x vec4
/// staging tile, a 64 x 16 x vec4 score tile and three 64-entry arrays). The matrix-unit kernels
/// and gemv_head_norm need more and are skipped where the device has less.
pub const REQUIRED_WORKGROUP_STORAGE: u32 = 512 * 16 + 64 * 16 * 16 + 3 * 64 * 4;

/// Refuses a device whose limits are below what the portable kernels declare: without this the
/// failure would surface only when the first pipeline is compiled, as a validation message.
pub(crate) fn check_required_limits(l: &wgpu::Limits, adapter: &str) -> Result<()> {
    let need: [(&str, u64, u64); 5] = [
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage as u64,
            REQUIRED_STORAGE_BUFFERS_PER_STAGE as u64,
        ),
        (
            "max_uniform_buffers_per_shader_stage",
            l.max_uniform_buffers_per_shader_stage as u64,
            1,
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup as u64,
            REQUIRED_INVOCATIONS_PER_WORKGROUP as u64,
        ),
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x as u64,
            REQUIRED_INVOCATIONS_PER_WORKGROUP as u64,
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size as u64,
            REQUIRED_WORKGROUP_STORAGE as u64,
        ),
    ];
    let short: Vec<String> = need
        .iter()
        .filter(|(_, have, want)| have < want)
        .map(|(name, have, want)| format!("{name} is {have}, the kernels need {want}"))
        .collect();
    if short.is_empty() {
        return Ok(());
    }
    Err(Error::Limit(format!(
        "the device on {adapter} was created with limits too small for the kernels ({}); create it with Gpu::recommended_limits(&adapter)",
        short.join("; ")
    )))
}

/// Whether the adapter offers `edge`^3 cooperative matrices with f16 inputs and f32 accumulators.
fn offers_f16_f32_fragment(adapter: &wgpu::Adapter, edge: u32) -> bool {
    adapter.cooperative_matrix_properties().iter().any(|c| {
        c.m_size == edge
            && c.n_size == edge
            && c.k_size == edge
            && c.ab_type == wgpu::CooperativeScalarType::F16
            && c.cr_type == wgpu::CooperativeScalarType::F32
    })
}

/// The capability record for a device created with `features` and `limits` on `adapter`.
pub(crate) fn caps_of(
    adapter: &wgpu::Adapter,
    features: wgpu::Features,
    limits: &wgpu::Limits,
    disable: &[String],
    binding_limit: Option<u64>,
) -> Caps {
    let info = adapter.get_info();
    let offered = adapter.features();
    let coop = features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
    let int_dot = native_int_dot(info.backend);
    let disabled = disable
        .iter()
        .filter(|n| {
            offered.intersects(feature_bits(n))
                || (n.as_str() == "int-dot" && int_dot)
                || (matches!(n.as_str(), "coop-gemm" | "coop-chunk")
                    && offered.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX))
        })
        .cloned()
        .collect();
    let has = |f: wgpu::Features| features.contains(f);
    Caps {
        adapter_name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
        device_type: format!("{:?}", info.device_type),
        f16: has(wgpu::Features::SHADER_F16),
        subgroup: has(wgpu::Features::SUBGROUP),
        subgroup_min_size: info.subgroup_min_size,
        subgroup_max_size: info.subgroup_max_size,
        timestamp: has(wgpu::Features::TIMESTAMP_QUERY),
        timestamp_inside_passes: has(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        pipeline_cache: has(wgpu::Features::PIPELINE_CACHE),
        // Immediates are only usable with room for them.
        immediates: has(wgpu::Features::IMMEDIATES) && limits.max_immediate_size > 0,
        cooperative_matrix: coop,
        coop_16x16_f16: coop && offers_f16_f32_fragment(adapter, 16),
        coop_8x8_f16: coop && offers_f16_f32_fragment(adapter, 8),
        int_dot: int_dot && !disable.iter().any(|n| n == "int-dot"),
        max_storage_binding: binding_limit.map_or(limits.max_storage_buffer_binding_size, |l| {
            l.min(limits.max_storage_buffer_binding_size)
        }),
        max_buffer_size: limits.max_buffer_size,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
        min_storage_offset_alignment: limits.min_storage_buffer_offset_alignment,
        min_uniform_offset_alignment: limits.min_uniform_buffer_offset_alignment,
        // One more storage binding per kernel: only where the limit leaves room for it.
        params_in_storage: info.device_type == wgpu::DeviceType::Cpu && limits.max_storage_buffers_per_shader_stage > 8,
        disabled,
    }
}
