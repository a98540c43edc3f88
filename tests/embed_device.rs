//! Running on a device the application created (`Gpu::from_wgpu`), as an app that renders with
//! wgpu would: the capabilities come from what the device was created with, the greedy output
//! equals that of the library's own device, the pool never counts the app's buffers, and a
//! device created with too-small limits is refused with an error naming the limit.

use std::path::PathBuf;
use std::sync::Arc;
use xlstm_wgpu::{Gpu, GpuOptions, LoadOptions, Model, PoolStats, Sampler, SamplerConfig, Session, SessionOptions};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-large-mini")
}

/// The adapter an app would pick: the backends in WGPU_BACKEND (vulkan on lavapipe in CI).
fn app_adapter() -> wgpu::Adapter {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
        apply_limit_buckets: false,
    }))
    .expect("a GPU adapter (run ci/setup for lavapipe, set WGPU_BACKEND=vulkan)")
}

fn app_device(adapter: &wgpu::Adapter, features: wgpu::Features, limits: wgpu::Limits) -> (wgpu::Device, wgpu::Queue) {
    let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        // SAFETY: the crate validates its cooperative-matrix kernels against the adapter's
        // configurations; the token only opts in to the experimental API.
        unsafe { wgpu::ExperimentalFeatures::enabled() }
    } else {
        wgpu::ExperimentalFeatures::disabled()
    };
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("app"),
        required_features: features,
        required_limits: limits,
        experimental_features: experimental,
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .expect("creating the app's device")
}

/// The prompt as the chat example encodes it, then 24 greedy tokens; with the pool's accounting.
fn greedy(gpu: Arc<Gpu>) -> (Vec<u32>, PoolStats) {
    let model = Model::load(gpu, &model_dir(), &LoadOptions::default()).unwrap();
    let tok = model.tokenizer().unwrap();
    let mut prompt = vec![model.bos_token_id().unwrap_or(0)];
    prompt.extend(tok.encode("It is a truth").unwrap());
    let mut session = Session::new(&model, SessionOptions::default()).unwrap();
    let mut sampler = Sampler::new(SamplerConfig::default()).unwrap();
    let stats = session
        .generate(&prompt, 24, &mut sampler, &[], &mut |_| Ok(true))
        .unwrap();
    (stats.generated, model.pool_stats())
}

#[test]
fn adopted_device_generates_what_the_own_device_does() {
    let adapter = app_adapter();
    let features = Gpu::recommended_features(&adapter);
    let (device, queue) = app_device(&adapter, features, Gpu::recommended_limits(&adapter));
    assert_eq!(device.features(), features);
    // The app's own buffers, before and after the model's: never in the pool's accounting.
    let app_buffer = |size| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("app vertices"),
            size,
            usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let before = app_buffer(4 << 20);
    let adopted = Arc::new(Gpu::from_wgpu(&adapter, device.clone(), queue).unwrap());
    let own = Arc::new(Gpu::new(&GpuOptions::default()).unwrap());
    assert_eq!(
        adopted.caps.to_string(),
        own.caps.to_string(),
        "same adapter, same paths"
    );

    let (ids_adopted, pool_adopted) = greedy(adopted.clone());
    let after = app_buffer(8 << 20);
    let (ids_own, pool_own) = greedy(own);
    assert_eq!(ids_adopted.len(), 24);
    assert_eq!(ids_adopted, ids_own);
    assert_eq!(pool_adopted.live, pool_own.live);
    assert_eq!(pool_adopted.peak, pool_own.peak);
    drop((before, after));
}

#[test]
fn too_small_limits_are_an_error_not_a_panic() {
    let adapter = app_adapter();
    // What an app gets when it asks for nothing: wgpu's downlevel defaults (4 storage buffers
    // per stage, 16 KiB of workgroup memory).
    let (device, queue) = app_device(&adapter, wgpu::Features::empty(), wgpu::Limits::downlevel_defaults());
    let err = Gpu::from_wgpu(&adapter, device, queue).err().expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("max_storage_buffers_per_shader_stage is 4"), "{msg}");
    assert!(msg.contains("max_compute_workgroup_storage_size"), "{msg}");
    assert!(msg.contains("recommended_limits"), "{msg}");

    // The adopted device's own limits decide, not what the adapter could offer.
    let mut limits = Gpu::recommended_limits(&adapter);
    limits.max_compute_workgroup_storage_size = 16384;
    let (device, queue) = app_device(&adapter, wgpu::Features::empty(), limits);
    let msg = Gpu::from_wgpu(&adapter, device, queue)
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("max_compute_workgroup_storage_size is 16384"), "{msg}");
}

#[test]
fn features_the_device_lacks_are_not_used() {
    let adapter = app_adapter();
    let (device, queue) = app_device(&adapter, wgpu::Features::empty(), Gpu::recommended_limits(&adapter));
    let gpu = Gpu::from_wgpu(&adapter, device, queue).unwrap();
    assert!(!gpu.caps.f16 && !gpu.caps.subgroup && !gpu.caps.cooperative_matrix && !gpu.caps.timestamp);
    // And the portable paths still produce the same greedy tokens as the library's own device.
    let own = Arc::new(
        Gpu::new(&GpuOptions {
            disable: [
                "f16",
                "subgroup",
                "timestamp",
                "pipeline-cache",
                "immediates",
                "coop-matrix",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        })
        .unwrap(),
    );
    assert_eq!(greedy(Arc::new(gpu)).0, greedy(own).0);
}

/// The threading rules the docs state: a model is shared with worker threads, a session moves to
/// one, and a stop flag set from another thread ends generation at the next token.
#[test]
fn a_worker_generates_and_a_stop_flag_cancels_it() {
    fn shared<T: Send + Sync>() {}
    fn moved<T: Send>() {}
    shared::<Gpu>();
    shared::<Model>();
    moved::<Session>();

    let adapter = app_adapter();
    let (device, queue) = app_device(
        &adapter,
        Gpu::recommended_features(&adapter),
        Gpu::recommended_limits(&adapter),
    );
    let gpu = Arc::new(Gpu::from_wgpu(&adapter, device, queue).unwrap());
    let model = Model::load(gpu, &model_dir(), &LoadOptions::default()).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = {
        let (model, stop) = (model.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut session = Session::new(&model, SessionOptions::default()).unwrap();
            let flag = stop.clone();
            session.set_stop_hook(Some(Arc::new(move || {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    Err(xlstm_wgpu::Error::Stopped("test".into()))
                } else {
                    Ok(())
                }
            })));
            let mut sampler = Sampler::new(SamplerConfig::default()).unwrap();
            session.generate(&[0, 417], 10_000, &mut sampler, &[], &mut |id| {
                let _ = tx.send(id);
                Ok(true)
            })
        })
    };
    // The "UI": wait for a few tokens, then press Stop.
    for _ in 0..3 {
        rx.recv().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let result = worker.join().unwrap();
    assert!(
        matches!(result, Err(xlstm_wgpu::Error::Stopped(_))),
        "{:?}",
        result.map(|s| s.generated.len())
    );
    // At most one decode batch after the flag.
    assert!(rx.try_iter().count() < 3 + SessionOptions::default().decode_batch * 2);
}
