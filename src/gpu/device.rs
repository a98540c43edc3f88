//! The GPU context: adapter choice, feature and limit negotiation, and the capability record
//! every other part of the crate consults. Features are requested only where the adapter offers
//! them, and `XLSTM_DISABLE_FEATURES` masks offered ones so tests can force the portable paths.
//!
//! An application that already renders with wgpu can hand its own device to the library
//! ([`Gpu::from_wgpu`]); it should create that device with [`Gpu::recommended_features`] and
//! [`Gpu::recommended_limits`] so the fast kernel paths can run. Capabilities are then read from
//! what the device was created with, never from what the adapter could have offered.

use super::caps::{caps_of, check_required_limits, disable_list, masked_features, wanted_features};
pub use super::caps::{
    Caps, REQUIRED_INVOCATIONS_PER_WORKGROUP, REQUIRED_STORAGE_BUFFERS_PER_STAGE, REQUIRED_WORKGROUP_STORAGE,
};
use crate::error::{Error, Result};

/// How to pick and configure the adapter.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Comma list of backends (`vulkan`, `metal`, `dx12`, `gl`); `None` reads `WGPU_BACKEND`,
    /// then falls back to every backend compiled in.
    pub backend: Option<String>,
    /// Index into the adapter list (`xlstm info` prints it); `None` picks a high-performance one.
    pub adapter_index: Option<usize>,
    /// Features to leave off even if offered (`f16`, `subgroup`, `timestamp`, `pipeline-cache`,
    /// `immediates`, `coop-matrix`). Merged with `XLSTM_DISABLE_FEATURES`.
    pub disable: Vec<String>,
    /// Use at most this many bytes per storage binding even if the adapter allows more (tests use
    /// it to exercise split weights and short prefill segments on small models).
    pub binding_limit: Option<u64>,
}

/// One wgpu device and queue plus what they can do. Cheap to share behind an `Arc`.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub caps: Caps,
    pub(crate) adapter_info: wgpu::AdapterInfo,
}

/// A short description of one adapter, for `xlstm info`.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
}

/// The backends to search, in order: the ones requested (`--backend`, else `WGPU_BACKEND`) as one
/// group; by default the native APIs (Vulkan, Metal, DX12) first and GL only when none of them
/// offers an adapter, so a machine with a Vulkan driver never initialises EGL.
fn backend_groups(opts: &GpuOptions) -> Vec<wgpu::Backends> {
    // A list naming no backend is refused by `Gpu::new`; listing adapters searches as by default.
    match requested_backends(opts).unwrap_or(None) {
        Some(b) => vec![b],
        None => vec![wgpu::Backends::PRIMARY, wgpu::Backends::SECONDARY],
    }
}

/// The backends asked for by `--backend`, else by `WGPU_BACKEND` (an empty variable counts as
/// unset); `None` when neither asks. A list that names no backend is an error, not an empty search.
fn requested_backends(opts: &GpuOptions) -> Result<Option<wgpu::Backends>> {
    let (list, from) = match &opts.backend {
        Some(list) => (list.clone(), "--backend"),
        None => match std::env::var("WGPU_BACKEND") {
            Ok(v) if !v.trim().is_empty() => (v, "WGPU_BACKEND"),
            _ => return Ok(None),
        },
    };
    let backends = wgpu::Backends::from_comma_list(&list);
    if backends.is_empty() {
        return Err(Error::Input(format!(
            "{from} `{list}` names no backend (one or more of vulkan, metal, dx12, gl)"
        )));
    }
    Ok(Some(backends))
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    #[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
    if backends.contains(wgpu::Backends::VULKAN) {
        quiet_device_select_layer();
    }
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Mesa's device-select Vulkan layer (installed with every Mesa Vulkan driver) looks for the
/// Wayland compositor's GPU while the adapters are enumerated, and where no compositor can be
/// reached (`XDG_RUNTIME_DIR` unset: ssh sessions, containers, CI) libwayland prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` twice, which reads as a
/// failure. Only in that case, and only when the user has not configured the layer, it is
/// turned off for this process (`NODEVICE_SELECT=1`, the layer's own switch): without a
/// compositor it has no display GPU to prefer, and adapters are still picked by type.
#[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
fn quiet_device_select_layer() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let absolute = |var: &str| std::env::var_os(var).is_some_and(|v| std::path::Path::new(&v).is_absolute());
        let configured = [
            "NODEVICE_SELECT",
            "MESA_VK_DEVICE_SELECT",
            "MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
        // libwayland finds the compositor at an absolute WAYLAND_DISPLAY or under XDG_RUNTIME_DIR.
        let wayland_reachable = absolute("WAYLAND_DISPLAY") || absolute("XDG_RUNTIME_DIR");
        if !configured && !wayland_reachable {
            // Set once, before the first Vulkan instance of the process loads the layer.
            std::env::set_var("NODEVICE_SELECT", "1");
        }
    });
}

/// Every adapter of the first backend group that offers any (see [`backend_groups`]), with the
/// instance that owns them.
async fn adapters(opts: &GpuOptions) -> (wgpu::Instance, Vec<wgpu::Adapter>) {
    let groups = backend_groups(opts);
    let last = groups.len() - 1;
    for (i, backends) in groups.into_iter().enumerate() {
        let inst = instance(backends);
        let found = inst.enumerate_adapters(backends).await;
        if !found.is_empty() || i == last {
            return (inst, found);
        }
    }
    unreachable!("backend_groups returns at least one group")
}

/// Lists the adapters the chosen backends expose.
pub fn list_adapters(opts: &GpuOptions) -> Vec<AdapterSummary> {
    let (_inst, adapters) = pollster::block_on(adapters(opts));
    adapters
        .iter()
        .enumerate()
        .map(|(index, a)| {
            let info = a.get_info();
            AdapterSummary {
                index,
                name: info.name,
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
            }
        })
        .collect()
}

impl Gpu {
    /// Picks an adapter and creates the device with every wanted feature the adapter offers.
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::new_async(opts))
    }

    pub async fn new_async(opts: &GpuOptions) -> Result<Self> {
        requested_backends(opts)?;
        let (inst, mut all) = adapters(opts).await;
        let adapter = match opts.adapter_index {
            Some(i) => {
                if i >= all.len() {
                    return Err(Error::Adapter(format!(
                        "adapter index {i} out of range: {} adapter(s) found",
                        all.len()
                    )));
                }
                all.swap_remove(i)
            }
            // The instance covers the backend group that offers adapters.
            None => {
                inst.request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    force_fallback_adapter: false,
                    compatible_surface: None,
                    apply_limit_buckets: false,
                })
                .await
                .map_err(|e| Error::Adapter(format!("no GPU adapter found ({e}); on a machine without a GPU install Mesa's lavapipe (mesa-vulkan-drivers) and set WGPU_BACKEND=vulkan")))?
            }
        };
        Self::from_adapter(adapter, opts).await
    }

    async fn from_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Self> {
        let info = adapter.get_info();
        let disable = disable_list(opts)?;
        let features = Self::recommended_features(&adapter) & !masked_features(&disable);
        let mut limits = Self::recommended_limits(&adapter);
        if !features.contains(wgpu::Features::IMMEDIATES) {
            limits.max_immediate_size = 0;
        }
        let coop = features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        let experimental = if coop {
            // SAFETY: cooperative matrices are only used by kernels that are validated against the
            // adapter's reported configurations; the token merely opts in to the experimental API.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("xlstm"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: experimental,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Adapter(format!("creating the device on {}: {e}", info.name)))?;
        device.on_uncaptured_error(std::sync::Arc::new(|e: wgpu::Error| {
            // Errors we can attribute are caught with error scopes; anything else is reported
            // here instead of aborting the process.
            eprintln!("xlstm: uncaptured GPU error: {e}");
        }));
        let caps = caps_of(&adapter, features, &limits, &disable, opts.binding_limit);
        Ok(Gpu {
            device,
            queue,
            caps,
            adapter_info: info,
        })
    }

    /// Adopts a device the application created (for example the one eframe's wgpu renderer
    /// made), so the model shares the app's GPU memory and queue instead of opening a second
    /// device. Every kernel path is chosen from the features and limits `device` was created with
    /// (`device.features()`, `device.limits()`); a device missing a limit the portable kernels
    /// need is refused with [`Error::Limit`] naming it. `XLSTM_DISABLE_FEATURES` masks features
    /// as for [`Gpu::new`]. The app's uncaptured-error handler is left in place, and the buffer
    /// pool only ever accounts for buffers the library allocates itself.
    ///
    /// Threading: `Gpu` and [`Model`](crate::Model) are `Send + Sync`, a
    /// [`Session`](crate::Session) is `Send`. Load and generate on a worker thread, never on the
    /// UI thread, and send tokens to the UI over a channel. Each submission is bounded by
    /// [`SessionOptions::submit`](crate::SessionOptions::submit), so the app's frames are queued
    /// between them on the shared queue, and a session's stop hook
    /// ([`Session::set_stop_hook`](crate::Session::set_stop_hook)) reading a flag the UI sets
    /// cancels generation at the next token. `examples/chat.rs` shows the whole pattern.
    pub fn from_wgpu(adapter: &wgpu::Adapter, device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        Self::from_wgpu_with(adapter, device, queue, &GpuOptions::default())
    }

    /// [`Gpu::from_wgpu`] with options: `disable` and `binding_limit` apply as for [`Gpu::new`];
    /// `backend` and `adapter_index` are ignored (the app chose the adapter).
    pub fn from_wgpu_with(
        adapter: &wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
        opts: &GpuOptions,
    ) -> Result<Self> {
        let info = adapter.get_info();
        let limits = device.limits();
        check_required_limits(&limits, &info.name)?;
        let disable = disable_list(opts)?;
        let features = device.features() & wanted_features() & !masked_features(&disable);
        let caps = caps_of(adapter, features, &limits, &disable, opts.binding_limit);
        Ok(Gpu {
            device,
            queue,
            caps,
            adapter_info: info,
        })
    }

    /// The features an application should request when it creates a device it will hand to
    /// [`Gpu::from_wgpu`]: every feature a fast kernel path uses that `adapter` offers (f16
    /// shaders, subgroups, timestamps, the pipeline cache, immediates, cooperative matrices).
    /// Cooperative matrices are experimental in wgpu: a device requesting them must also pass
    /// `wgpu::ExperimentalFeatures::enabled()`; leave them out to avoid that.
    pub fn recommended_features(adapter: &wgpu::Adapter) -> wgpu::Features {
        adapter.features() & wanted_features()
    }

    /// The limits an application should request for a device it will hand to
    /// [`Gpu::from_wgpu`]: wgpu's defaults, raised to what `adapter` offers wherever the kernels
    /// benefit (binding and buffer sizes: fewer weight splits, longer prefill segments;
    /// workgroup memory and size: the tiled and matrix-unit kernels; storage buffers per stage:
    /// parameter blocks in storage on CPU adapters), with the adapter's alignments. Merge them
    /// with the app's own needs (e.g. `max_texture_dimension_2d`) before requesting the device.
    pub fn recommended_limits(adapter: &wgpu::Adapter) -> wgpu::Limits {
        let al = adapter.limits();
        let mut limits = wgpu::Limits::defaults().using_alignment(al.clone());
        limits.max_storage_buffer_binding_size = al.max_storage_buffer_binding_size;
        limits.max_buffer_size = al.max_buffer_size;
        limits.max_compute_workgroup_storage_size = al.max_compute_workgroup_storage_size;
        limits.max_compute_invocations_per_workgroup = al.max_compute_invocations_per_workgroup;
        limits.max_compute_workgroup_size_x = al.max_compute_workgroup_size_x;
        limits.max_compute_workgroup_size_y = al.max_compute_workgroup_size_y;
        limits.max_compute_workgroup_size_z = al.max_compute_workgroup_size_z;
        limits.max_compute_workgroups_per_dimension = al.max_compute_workgroups_per_dimension;
        limits.max_storage_buffers_per_shader_stage = al.max_storage_buffers_per_shader_stage;
        if adapter.features().contains(wgpu::Features::IMMEDIATES) {
            limits.max_immediate_size = al.max_immediate_size.min(128);
        }
        limits
    }

    /// Waits until all submitted work is done; a lost device or timeout becomes an error.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))
    }

    /// The adapter as wgpu reports it.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.adapter_info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kernels that run only where the device has room for them (checked by ops before use).
    const OPTIONAL: &[&str] = &[
        "gemm_coop",
        "mlstm_chunk_state_coop",
        "mlstm_chunk_out_coop",
        "gemv_head_norm",
    ];

    /// (storage buffers, workgroup bytes) a kernel module declares, read through naga.
    fn declared(text: &str) -> (u32, u32) {
        let module = naga::front::wgsl::parse_str(text).expect("kernel parses");
        let (mut storage, mut workgroup) = (0, 0);
        for (_, var) in module.global_variables.iter() {
            match var.space {
                naga::AddressSpace::Storage { .. } => storage += 1,
                naga::AddressSpace::WorkGroup => workgroup += module.types[var.ty].inner.size(module.to_ctx()),
                _ => {}
            }
        }
        (storage, workgroup)
    }

    /// The required limits [`Gpu::from_wgpu`] checks are what the portable kernels declare.
    #[test]
    fn required_limits_match_the_kernels() {
        let (mut storage, mut workgroup) = (0, 0);
        for k in crate::gpu::kernels::SOURCES {
            if OPTIONAL.contains(&k.name) {
                continue;
            }
            let (s, w) = declared(k.text);
            storage = storage.max(s);
            workgroup = workgroup.max(w);
        }
        assert_eq!(storage, REQUIRED_STORAGE_BUFFERS_PER_STAGE);
        assert_eq!(workgroup, REQUIRED_WORKGROUP_STORAGE);
        for k in crate::gpu::kernels::SOURCES {
            let module = naga::front::wgsl::parse_str(k.text).expect("kernel parses");
            for ep in &module.entry_points {
                let size: u32 = ep.workgroup_size.iter().product();
                assert!(size <= REQUIRED_INVOCATIONS_PER_WORKGROUP, "{}: {size}", k.name);
                assert!(ep.workgroup_size[0] <= REQUIRED_INVOCATIONS_PER_WORKGROUP, "{}", k.name);
            }
        }
    }

    #[test]
    fn too_small_limits_are_named() {
        let mut l = wgpu::Limits::defaults();
        l.max_storage_buffers_per_shader_stage = 4;
        l.max_compute_workgroup_storage_size = 16384;
        let e = check_required_limits(&l, "test").unwrap_err().to_string();
        assert!(e.contains("max_storage_buffers_per_shader_stage is 4"), "{e}");
        assert!(e.contains("max_compute_workgroup_storage_size is 16384"), "{e}");
        let mut l = wgpu::Limits::defaults();
        l.max_compute_workgroup_storage_size = REQUIRED_WORKGROUP_STORAGE;
        assert!(check_required_limits(&l, "test").is_ok());
    }
}
