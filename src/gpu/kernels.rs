//! Kernels: the WGSL sources in `wgsl/`, their specialisation, and a cache of compiled pipelines.
//!
//! Specialisation is deliberately plain: a kernel (its file followed by the library files it
//! names) is complete, valid WGSL with defaults such as `const WEIGHT_FORMAT: u32 = 1u;`, and a
//! variant rewrites the value of named `const` declarations. Every kernel therefore validates on
//! its own, and the tests validate every variant the host can produce.

use super::device::Gpu;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One kernel: its name (what [`Kernels::pipeline`] is asked for), its file under `wgsl/` (the
/// folder is the kernel family, whose host module is `crate::ops::<family>`), the shared
/// library files appended to it (`matmul/weight_formats.wgsl`: how every weight kernel reads
/// each storage format; `matmul/gemv_rows.wgsl`: the GEMVs' inner step), and the text
/// compiled: the file, then the libraries.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    pub name: &'static str,
    pub file: &'static str,
    pub libraries: &'static [&'static str],
    pub text: &'static str,
}

/// Names a kernel and embeds `wgsl/<file>` (and each `wgsl/<library>` after it); each path is
/// written once, so the table cannot disagree with what is compiled.
macro_rules! wgsl {
    ($name:literal, $file:literal $(+ $library:literal)*) => {
        KernelSource {
            name: $name,
            file: $file,
            libraries: &[$($library),*],
            text: concat!(
                include_str!(concat!("../../wgsl/", $file))
                $(, "\n", include_str!(concat!("../../wgsl/", $library)))*
            ),
        }
    };
}

/// Every kernel shipped with the crate.
pub const SOURCES: &[KernelSource] = &[
    wgsl!("embed", "elementwise/embed.wgsl" + "matmul/weight_formats.wgsl"),
    wgsl!("rms_norm", "norms/rms_norm.wgsl"),
    wgsl!(
        "gemm",
        "matmul/gemm.wgsl" + "matmul/weight_formats.wgsl" + "matmul/gemm_store.wgsl"
    ),
    wgsl!(
        "gemm_8x8",
        "matmul/gemm_8x8.wgsl" + "matmul/weight_formats.wgsl" + "matmul/gemm_store.wgsl"
    ),
    wgsl!("gemm_coop", "matmul/gemm_coop.wgsl" + "matmul/weight_formats.wgsl"),
    wgsl!("dequant_f16", "matmul/dequant_f16.wgsl" + "matmul/weight_formats.wgsl"),
    wgsl!(
        "gemv",
        "matmul/gemv.wgsl" + "matmul/weight_formats.wgsl" + "matmul/gemv_rows.wgsl" + "matmul/gemv_reduce_shared.wgsl"
    ),
    wgsl!(
        "gemv_subgroup",
        "matmul/gemv.wgsl"
            + "matmul/weight_formats.wgsl"
            + "matmul/gemv_rows.wgsl"
            + "matmul/gemv_reduce_subgroup.wgsl"
    ),
    wgsl!(
        "gemv_head_norm",
        "matmul/gemv_head_norm.wgsl" + "matmul/weight_formats.wgsl" + "matmul/gemv_rows.wgsl"
    ),
    wgsl!("mlstm_gates", "mlstm_chunk/mlstm_gates.wgsl"),
    wgsl!("mlstm_chunk_state", "mlstm_chunk/mlstm_chunk_state.wgsl"),
    wgsl!("mlstm_chunk_out", "mlstm_chunk/mlstm_chunk_out.wgsl"),
    wgsl!("mlstm_chunk_state_coop", "mlstm_chunk/mlstm_chunk_state_coop.wgsl"),
    wgsl!("mlstm_chunk_out_coop", "mlstm_chunk/mlstm_chunk_out_coop.wgsl"),
    wgsl!("mlstm_step", "mlstm_step/mlstm_step.wgsl"),
    wgsl!("mlstm_v1_gates", "v1/mlstm_v1_gates.wgsl"),
    wgsl!("head_norm_gate", "norms/head_norm_gate.wgsl"),
    wgsl!("swiglu", "elementwise/swiglu.wgsl"),
    wgsl!("argmax", "sampling/argmax.wgsl"),
    wgsl!("fill_random", "elementwise/fill_random.wgsl"),
    wgsl!("sample", "sampling/sample.wgsl"),
    wgsl!("slstm_seq", "slstm/slstm_seq.wgsl"),
    wgsl!("layer_norm", "norms/layer_norm.wgsl"),
    wgsl!("conv_silu", "v1/conv_silu.wgsl"),
    wgsl!("headwise", "v1/headwise.wgsl"),
    wgsl!("gated_act", "v1/gated_act.wgsl"),
    wgsl!("bias_add", "v1/bias_add.wgsl"),
    wgsl!("slstm_step", "slstm/slstm_step.wgsl"),
];

/// Which kernels keep naga's runtime checks (bounds clamping of every index, loop bounding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelChecks {
    /// Every kernel checked: the most defensive mode, for debugging kernels (`--checked-kernels`).
    All,
    /// The kernels in [`TRUSTED`] compile without checks, every other kernel with them.
    #[default]
    ExceptTrusted,
    /// No kernel checked (`--unchecked-kernels`).
    None,
}

/// Kernels compiled without runtime checks by default. Each one guards every global access
/// against the shapes in its parameters, indexes workgroup memory only within bounds fixed at
/// compile time, and is tested against its plain-Rust reference on awkward shapes in the default
/// mode; and each is where the checks cost the most (on an H100 they took the matrix-unit GEMM
/// from 204 to 123 TFLOP/s and `mlstm_step` from 3.2 to 4.8 ms per 8 decode steps:
/// BENCHMARKS.md). Buffers are sized by the host from the same shapes the parameters carry.
pub const TRUSTED: &[&str] = &[
    "gemm_coop",
    "gemv",
    "gemv_subgroup",
    "gemv_head_norm",
    "mlstm_step",
    "argmax",
];

impl KernelChecks {
    /// Whether `kernel` keeps naga's runtime checks under this policy.
    pub fn checks(self, kernel: &str) -> bool {
        match self {
            KernelChecks::All => true,
            KernelChecks::ExceptTrusted => !TRUSTED.contains(&kernel),
            KernelChecks::None => false,
        }
    }
}

/// The WGSL source of a kernel family.
pub fn source(name: &str) -> Result<&'static str> {
    SOURCES
        .iter()
        .find(|k| k.name == name)
        .map(|k| k.text)
        .ok_or_else(|| Error::Kernel {
            kernel: name.into(),
            message: "no such kernel".into(),
        })
}

/// One pipeline the host can ask for: kernel, entry point and specialisation (see
/// `crate::ops::variants`).
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub kernel: String,
    pub entry: String,
    pub consts: Vec<(String, ConstValue)>,
}

impl Variant {
    /// The specialised WGSL source of this variant.
    pub fn source(&self) -> Result<String> {
        let consts: Vec<(&str, ConstValue)> = self.consts.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        specialize(&self.kernel, source(&self.kernel)?, &consts)
    }
}

/// A value for a specialisable `const`, or the type of a specialisable `alias`.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstValue {
    U32(u32),
    Bool(bool),
    /// A WGSL type for `alias NAME = T;` (the matrix-unit kernels' fragment types).
    Type(&'static str),
}

impl ConstValue {
    fn wgsl(&self) -> String {
        match self {
            ConstValue::U32(v) => format!("{v}u"),
            ConstValue::Bool(b) => b.to_string(),
            ConstValue::Type(t) => t.to_string(),
        }
    }
}

/// Rewrites `const NAME: T = value;` declarations, and `alias NAME = T;` for type values. Fails
/// if a name is not declared, so a typo cannot silently run the default.
pub fn specialize(kernel: &str, src: &str, consts: &[(&str, ConstValue)]) -> Result<String> {
    let mut out = src.to_string();
    for (name, value) in consts {
        let (decl, what) = match value {
            ConstValue::Type(_) => (format!("alias {name} ="), "alias"),
            _ => (format!("const {name}:"), "const"),
        };
        let start = out.find(&decl).ok_or_else(|| Error::Kernel {
            kernel: kernel.into(),
            message: format!("no `{what} {name}` to specialise"),
        })?;
        let eq = out[start..].find('=').map(|i| start + i);
        let semi = out[start..].find(';').map(|i| start + i);
        match (eq, semi) {
            (Some(eq), Some(semi)) if eq < semi => {
                out.replace_range(eq + 1..semi, &format!(" {}", value.wgsl()));
            }
            _ => {
                return Err(Error::Kernel {
                    kernel: kernel.into(),
                    message: format!("malformed `{what} {name}` declaration"),
                })
            }
        }
    }
    Ok(out)
}

/// How every kernel declares its parameter block (binding 0).
const PARAMS_UNIFORM: &str = "@group(0) @binding(0) var<uniform> p: Params;";

/// Rewrites the parameter block of a kernel from the uniform to the read-only storage address
/// space (see [`Caps::params_in_storage`](super::device::Caps::params_in_storage)). Every
/// `Params` struct holds only 32-bit scalars, so both address spaces lay it out identically.
pub fn params_in_storage(kernel: &str, src: &str) -> Result<String> {
    if !src.contains(PARAMS_UNIFORM) {
        return Err(Error::Kernel {
            kernel: kernel.into(),
            message: format!("no `{PARAMS_UNIFORM}` declaration to move to storage"),
        });
    }
    Ok(src.replace(PARAMS_UNIFORM, "@group(0) @binding(0) var<storage, read> p: Params;"))
}

/// One pipeline compilation, reported to the [`CompileObserver`] when it starts and when it ends.
#[derive(Clone, Debug)]
pub struct CompileEvent<'a> {
    pub kernel: &'a str,
    pub entry: &'a str,
    /// Pipelines this process has compiled so far (this one included once `finished`).
    pub compiled: usize,
    pub finished: bool,
}

/// Called for every pipeline compilation of the process, so a front end can show progress where
/// compiling is slow (software GL takes minutes). The library itself prints nothing.
pub type CompileObserver = Arc<dyn Fn(&CompileEvent<'_>) + Send + Sync>;

static COMPILE_OBSERVER: std::sync::RwLock<Option<CompileObserver>> = std::sync::RwLock::new(None);
static COMPILED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Wall-clock time during which at least one pipeline was being created (shader translation
/// and the driver's compile, or its cache lookup). Pipelines compile on several threads at once,
/// so this is the time a cold start waits, not the sum of the compiles.
struct CompileClock {
    in_flight: usize,
    since: Option<Instant>,
    total: Duration,
}

static COMPILE_CLOCK: Mutex<CompileClock> = Mutex::new(CompileClock {
    in_flight: 0,
    since: None,
    total: Duration::ZERO,
});

fn compile_clock() -> std::sync::MutexGuard<'static, CompileClock> {
    COMPILE_CLOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pipelines this process has compiled, and the wall-clock time during which at least one was
/// compiling (compiles on several threads overlap and count once): what a cold start costs
/// where there is no pipeline cache (Metal in wgpu, or a first run).
pub fn compile_totals() -> (usize, Duration) {
    let clock = compile_clock();
    let running = clock.since.map_or(Duration::ZERO, |t| t.elapsed());
    (
        COMPILED.load(std::sync::atomic::Ordering::Relaxed),
        clock.total + running,
    )
}

/// One finished pipeline compilation: `kernel:entry`, the seconds wgpu took to translate the
/// WGSL (naga, `create_shader_module`) and the seconds the pipeline's creation took (the
/// driver's compile, or its pipeline-cache lookup).
#[derive(Clone, Debug, PartialEq)]
pub struct CompileTime {
    pub pipeline: String,
    pub translate_seconds: f64,
    pub create_seconds: f64,
}

static COMPILE_TIMES: Mutex<Vec<CompileTime>> = Mutex::new(Vec::new());

/// Every pipeline compilation this process finished, in the order they finished: where a cold
/// start's time goes.
pub fn compile_times() -> Vec<CompileTime> {
    COMPILE_TIMES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Installs (or with `None` removes) the process's compile observer; returns the previous one.
/// Compiles run on several threads at once, so the observer is called from all of them.
pub fn set_compile_observer(observer: Option<CompileObserver>) -> Option<CompileObserver> {
    let mut o = COMPILE_OBSERVER.write().unwrap_or_else(|p| p.into_inner());
    std::mem::replace(&mut *o, observer)
}

fn report_compile(kernel: &str, entry: &str, finished: bool) {
    let compiled = {
        let mut clock = compile_clock();
        if finished {
            clock.in_flight = clock.in_flight.saturating_sub(1);
            if clock.in_flight == 0 {
                if let Some(t) = clock.since.take() {
                    clock.total += t.elapsed();
                }
            }
            COMPILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
        } else {
            if clock.in_flight == 0 {
                clock.since = Some(Instant::now());
            }
            clock.in_flight += 1;
            COMPILED.load(std::sync::atomic::Ordering::Relaxed)
        }
    };
    let observer = COMPILE_OBSERVER.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(o) = observer {
        o(&CompileEvent {
            kernel,
            entry,
            compiled,
            finished,
        });
    }
}

/// Compiled pipelines keyed by kernel, entry point and specialisation. A cheap handle: clones
/// share one cache, and every [`LazyPipeline`] holds one, so the kernels live as long as any
/// pipeline that may still be compiled from them. When the last handle goes, the driver's
/// pipeline cache is written to disk if anything was compiled since it was last written.
#[derive(Clone)]
pub struct Kernels {
    inner: Arc<KernelsInner>,
}

/// One compiled pipeline slot: a second caller asking for a pipeline being compiled waits for
/// that compile instead of starting its own.
type Slot = Arc<Mutex<Option<wgpu::ComputePipeline>>>;

struct KernelsInner {
    gpu: Arc<Gpu>,
    /// By kernel, entry point and specialisation: `kernel:entry` and the pipeline's slot.
    cache: Mutex<HashMap<String, (String, Slot)>>,
    checks: KernelChecks,
    /// The driver's pipeline cache, persisted between runs (Vulkan only).
    disk: Option<DiskCache>,
    /// A pipeline was created since the disk cache was last written.
    unsaved: std::sync::atomic::AtomicBool,
    /// Which matrix-unit kernels this device uses, settled at the first request
    /// ([`Kernels::matrix_units`]).
    units: OnceLock<crate::ops::MatrixUnits>,
}

impl Drop for KernelsInner {
    fn drop(&mut self) {
        self.save_cache();
    }
}

/// A driver pipeline cache backed by a file in the user's cache directory, so a warm start
/// compiles no kernel.
struct DiskCache {
    cache: wgpu::PipelineCache,
    path: std::path::PathBuf,
}

/// Where compiled pipelines are kept: `XLSTM_CACHE_DIR`, else the platform cache directory.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    if let Some(d) = std::env::var_os("XLSTM_CACHE_DIR") {
        return Some(d.into());
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(std::path::PathBuf::from(d).join("xlstm-wgpu"));
    }
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"))?;
    let home = std::path::PathBuf::from(home);
    if cfg!(target_os = "macos") {
        Some(home.join("Library/Caches/xlstm-wgpu"))
    } else {
        Some(home.join(".cache/xlstm-wgpu"))
    }
}

/// A driver pipeline cache larger than this is not read (they are a few MiB).
const CACHE_READ: crate::files::ReadRules = crate::files::ReadRules {
    max_bytes: 512 << 20,
    same_owner: true,
};

fn open_disk_cache(gpu: &Gpu) -> Option<DiskCache> {
    if !gpu.caps.pipeline_cache {
        return None;
    }
    let key = wgpu::util::pipeline_cache_key(gpu.adapter_info())?;
    let path = cache_dir()?.join(key);
    // The driver parses this data: take it only from a private directory, only a regular file
    // of ours, and of a sane size.
    let data = crate::files::check_private_dir(crate::files::parent_dir(&path))
        .ok()
        .and_then(|()| crate::files::read_regular(&path, CACHE_READ).ok());
    // SAFETY: the data was written by `PipelineCache::get_data` for an adapter with the same
    // cache key; `fallback: true` makes the driver start empty if it rejects the data.
    let cache = unsafe {
        gpu.device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
            label: Some("xlstm pipelines"),
            data: data.as_deref(),
            fallback: true,
        })
    };
    Some(DiskCache { cache, path })
}

impl Kernels {
    /// Kernels under the default check policy ([`KernelChecks::ExceptTrusted`]).
    pub fn new(gpu: Arc<Gpu>) -> Self {
        Self::with_checks(gpu, KernelChecks::default())
    }

    /// Compiles every kernel without naga's runtime bounds checks and loop bounding. Every
    /// kernel guards its own global accesses against the shapes in its parameters, and the host
    /// sizes every buffer from the same shapes; the checks cost up to 40% of the matrix-unit
    /// GEMM's throughput, less elsewhere.
    pub fn new_unchecked(gpu: Arc<Gpu>) -> Self {
        Self::with_checks(gpu, KernelChecks::None)
    }

    pub fn with_checks(gpu: Arc<Gpu>, checks: KernelChecks) -> Self {
        let disk = open_disk_cache(&gpu);
        Kernels {
            inner: Arc::new(KernelsInner {
                gpu,
                cache: Mutex::new(HashMap::new()),
                checks,
                disk,
                unsaved: std::sync::atomic::AtomicBool::new(false),
                units: OnceLock::new(),
            }),
        }
    }

    /// Writes the driver's pipeline cache to disk (atomically; failures only cost a slower next
    /// start, so they are ignored). Also done when the last handle to these kernels goes.
    pub fn save_cache(&self) {
        self.inner.save_cache();
    }

    pub fn caps(&self) -> &super::device::Caps {
        &self.inner.gpu.caps
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.inner.gpu
    }

    /// Which matrix-unit kernels the pipelines built on these kernels use: the 16x16 instance
    /// where the adapter offers it, the 8x8 one only after it passed its self-check on this GPU
    /// (run here the first time, then remembered per adapter and driver: `ops::coop_check`), or
    /// none. An error only for an invalid `XLSTM_SELF_CHECK`.
    pub fn matrix_units(&self) -> Result<&crate::ops::MatrixUnits> {
        let mode = crate::ops::SelfCheckMode::from_env()?;
        Ok(self
            .inner
            .units
            .get_or_init(|| crate::ops::coop_check::decide(self, mode)))
    }

    /// The pipelines compiled so far, as `kernel:entry` (once per specialisation), sorted.
    pub fn compiled(&self) -> Vec<String> {
        let cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = cache
            .values()
            // A slot locked by a compile in progress holds no pipeline yet.
            .filter(|(_, slot)| match slot.try_lock() {
                Ok(p) => p.is_some(),
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().is_some(),
                Err(std::sync::TryLockError::WouldBlock) => false,
            })
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// The pipeline for `kernel`'s `entry` with the given constants, compiled now if it is not
    /// compiled yet.
    pub fn pipeline(&self, kernel: &str, entry: &str, consts: &[(&str, ConstValue)]) -> Result<wgpu::ComputePipeline> {
        self.inner.pipeline(kernel, entry, consts)
    }

    /// The pipeline for `kernel`'s `entry` with the given constants, compiled the first time
    /// it is needed ([`LazyPipeline::get`]). Nothing is checked or compiled here: an error in
    /// the kernel or its specialisation surfaces at that first use.
    pub fn lazy(&self, kernel: &str, entry: &str, consts: &[(&str, ConstValue)]) -> LazyPipeline {
        LazyPipeline {
            inner: Arc::new(LazyInner {
                kernels: self.clone(),
                variant: Variant {
                    kernel: kernel.to_string(),
                    entry: entry.to_string(),
                    consts: consts.iter().map(|(n, v)| (n.to_string(), v.clone())).collect(),
                },
                compiled: OnceLock::new(),
            }),
        }
    }
}

impl KernelsInner {
    fn save_cache(&self) {
        let Some(disk) = &self.disk else { return };
        if !self.unsaved.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let Some(data) = disk.cache.get_data() else { return };
        if crate::files::ensure_private_dir(crate::files::parent_dir(&disk.path)).is_err() {
            return;
        }
        let _ = crate::files::write_atomic(&disk.path, &data, crate::files::Visibility::Private);
    }

    fn pipeline(&self, kernel: &str, entry: &str, consts: &[(&str, ConstValue)]) -> Result<wgpu::ComputePipeline> {
        let key = format!("{kernel}:{entry}:{consts:?}");
        let slot = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| (format!("{kernel}:{entry}"), Slot::default()))
            .1
            .clone();
        // Held while compiling: another thread asking for the same pipeline waits for this one.
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = &*slot {
            return Ok(p.clone());
        }
        let pipeline = self.compile(kernel, entry, consts)?;
        *slot = Some(pipeline.clone());
        Ok(pipeline)
    }

    fn compile(&self, kernel: &str, entry: &str, consts: &[(&str, ConstValue)]) -> Result<wgpu::ComputePipeline> {
        let mut text = specialize(kernel, source(kernel)?, consts)?;
        if self.gpu.caps.params_in_storage {
            text = params_in_storage(kernel, &text)?;
        }
        report_compile(kernel, entry, false);
        let t0 = Instant::now();
        let device = &self.gpu.device;
        // Error scopes are per thread in wgpu, so concurrent compiles each see their own errors.
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(kernel),
            source: wgpu::ShaderSource::Wgsl(text.into()),
        };
        let module = if !self.checks.checks(kernel) {
            // SAFETY: see `new_unchecked` and `TRUSTED`: kernels guard their accesses and buffers
            // are sized by the host from the same shapes the parameters carry.
            unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        } else {
            device.create_shader_module(desc)
        };
        let t1 = Instant::now();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: self.disk.as_ref().map(|d| &d.cache),
        });
        let failed = pollster::block_on(scope.pop());
        COMPILE_TIMES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(CompileTime {
                pipeline: format!("{kernel}:{entry}"),
                translate_seconds: (t1 - t0).as_secs_f64(),
                create_seconds: t1.elapsed().as_secs_f64(),
            });
        self.unsaved.store(true, std::sync::atomic::Ordering::Relaxed);
        report_compile(kernel, entry, true);
        if let Some(e) = failed {
            return Err(Error::Kernel {
                kernel: format!("{kernel}:{entry}"),
                message: e.to_string(),
            });
        }
        Ok(pipeline)
    }
}

/// A pipeline compiled the first time it is needed: the variant it is, the kernels that compile
/// it, and the pipeline once compiled. Clones share the compiled pipeline. `Ops` holds these, so
/// a model compiles only the kernels its plans dispatch (and [`compile_concurrently`] those it
/// knows it will use, at load).
#[derive(Clone)]
pub struct LazyPipeline {
    inner: Arc<LazyInner>,
}

struct LazyInner {
    kernels: Kernels,
    variant: Variant,
    compiled: OnceLock<wgpu::ComputePipeline>,
}

impl std::fmt::Debug for LazyPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyPipeline")
            .field("variant", &self.inner.variant)
            .field("compiled", &self.is_compiled())
            .finish()
    }
}

impl LazyPipeline {
    /// The compiled pipeline, compiling it now if this is its first use (a compile error is
    /// the crate's [`Error::Kernel`]; a failed compile is tried again at the next use).
    pub fn get(&self) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.inner.compiled.get() {
            return Ok(p.clone());
        }
        let v = &self.inner.variant;
        let consts: Vec<(&str, ConstValue)> = v.consts.iter().map(|(n, c)| (n.as_str(), c.clone())).collect();
        let p = self.inner.kernels.pipeline(&v.kernel, &v.entry, &consts)?;
        Ok(self.inner.compiled.get_or_init(|| p).clone())
    }

    /// Whether [`get`](Self::get) has compiled this pipeline (through this handle or a clone).
    pub fn is_compiled(&self) -> bool {
        self.inner.compiled.get().is_some()
    }

    /// Which kernel, entry point and specialisation this is.
    pub fn variant(&self) -> &Variant {
        &self.inner.variant
    }

    /// Whether `self` and `other` are the same handle (or clones of it).
    pub fn same(&self, other: &LazyPipeline) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Compiles every pipeline of `pipelines` not compiled yet, on up to
/// `std::thread::available_parallelism()` threads at once (wgpu creates pipelines concurrently:
/// shader translation and the driver's compile run on the calling thread, and error scopes are
/// per thread). Compile errors are not reported here: a failed pipeline is compiled again, and
/// its error returned, at its first use.
pub fn compile_concurrently(pipelines: &[LazyPipeline]) {
    // One handle per variant: two handles of one variant would only wait for each other.
    let mut todo: Vec<&LazyPipeline> = Vec::new();
    for p in pipelines.iter().filter(|p| !p.is_compiled()) {
        if !todo.iter().any(|t| t.variant() == p.variant()) {
            todo.push(p);
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(todo.len());
    if threads <= 1 {
        for p in todo {
            let _ = p.get();
        }
        return;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(p) = todo.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                    let _ = p.get();
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The storage-buffer parameter block (CPU adapters) is a drop-in replacement: every kernel
    /// declares the uniform block the rewrite looks for, the rewritten kernel validates, and its
    /// `Params` holds only 32-bit scalars, whose layout both address spaces share.
    #[test]
    fn every_kernel_moves_its_params_to_storage_with_the_same_layout() {
        for k in SOURCES {
            let name = k.name;
            let text = params_in_storage(name, k.text).unwrap();
            let module = naga::front::wgsl::parse_str(&text)
                .unwrap_or_else(|e| panic!("{name}: parse: {}", e.emit_to_string(&text)));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{name}: validate: {}", e.emit_to_string(&text)));
            let (_, params) = module
                .global_variables
                .iter()
                .find(|(_, g)| g.name.as_deref() == Some("p"))
                .unwrap_or_else(|| panic!("{name}: no `p`"));
            assert_eq!(
                params.space,
                naga::AddressSpace::Storage {
                    access: naga::StorageAccess::LOAD
                },
                "{name}"
            );
            let naga::TypeInner::Struct { members, .. } = &module.types[params.ty].inner else {
                panic!("{name}: `p` is not a struct");
            };
            for m in members {
                assert!(
                    matches!(module.types[m.ty].inner, naga::TypeInner::Scalar(s) if s.width == 4),
                    "{name}: Params member {:?} is not a 32-bit scalar",
                    m.name
                );
            }
        }
        assert!(params_in_storage("k", "fn f() {}").is_err());
    }

    #[test]
    fn specialize_rewrites_named_consts_only() {
        let src = "const WG: u32 = 64u;\nconst F16: bool = false;\nfn f() {}";
        let out = specialize(
            "k",
            src,
            &[("WG", ConstValue::U32(128)), ("F16", ConstValue::Bool(true))],
        )
        .unwrap();
        assert!(out.contains("const WG: u32 = 128u;"));
        assert!(out.contains("const F16: bool = true;"));
        assert!(specialize("k", src, &[("NOPE", ConstValue::U32(1))]).is_err());
    }

    #[test]
    fn specialize_rewrites_aliases_with_types() {
        let src = "alias FragA = coop_mat16x16<f16, A>;\nconst FRAG: u32 = 16u;";
        let out = specialize(
            "k",
            src,
            &[
                ("FRAG", ConstValue::U32(8)),
                ("FragA", ConstValue::Type("coop_mat8x8<f16, A>")),
            ],
        )
        .unwrap();
        assert!(out.contains("alias FragA = coop_mat8x8<f16, A>;"));
        assert!(out.contains("const FRAG: u32 = 8u;"));
        // A type is not a value for a const, nor a value for an alias.
        assert!(specialize("k", src, &[("FRAG", ConstValue::Type("u32"))]).is_err());
        assert!(specialize("k", src, &[("FragA", ConstValue::U32(1))]).is_err());
    }
}
