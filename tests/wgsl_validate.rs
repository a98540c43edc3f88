//! Every WGSL kernel, in every variant the host can produce, parses, validates, and translates to
//! SPIR-V and to Metal Shading Language with naga. There is no Apple hardware in CI: the MSL
//! translation is the Metal gate.

use xlstm_wgpu::gpu::kernels::{specialize, ConstValue, SOURCES};

/// The specialisations the host uses for each kernel (the default source is always checked too).
fn variants(name: &str) -> Vec<Vec<(&'static str, ConstValue)>> {
    match name {
        "gemv" => {
            let mut v = Vec::new();
            for f16 in [false, true] {
                for mode in [0, 1, 2] {
                    v.push(vec![
                        ("WEIGHT_F16", ConstValue::Bool(f16)),
                        ("X_MODE", ConstValue::U32(mode)),
                    ]);
                }
            }
            for lanes in [8u32, 16, 32, 128, 256] {
                v.push(vec![
                    ("LANES", ConstValue::U32(lanes)),
                    ("ROWS", ConstValue::U32(256 / lanes)),
                ]);
            }
            v
        }
        "embed" | "gemm" | "fill_random" | "gemv_head_norm" => vec![vec![("WEIGHT_F16", ConstValue::Bool(true))]],
        "rms_norm" => vec![vec![("WG", ConstValue::U32(64))]],
        "layer_norm" => (0..3u32).map(|m| vec![("MODE", ConstValue::U32(m))]).collect(),
        "gated_act" => (0..6u32).map(|a| vec![("ACT", ConstValue::U32(a))]).collect(),
        "slstm_step" => [8u32, 32]
            .iter()
            .map(|&l| vec![("LANES", ConstValue::U32(l))])
            .collect(),
        _ => vec![],
    }
}

fn check(name: &str, text: &str) {
    let module =
        naga::front::wgsl::parse_str(text).unwrap_or_else(|e| panic!("{name}: parse: {}", e.emit_to_string(text)));
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: validate: {}", e.emit_to_string(text)));
    naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
        .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));
    let options = naga::back::msl::Options {
        lang_version: (2, 4),
        ..Default::default()
    };
    let pipeline = naga::back::msl::PipelineOptions::default();
    naga::back::msl::write_string(&module, &info, &options, &pipeline).unwrap_or_else(|e| panic!("{name}: MSL: {e}"));
}

/// Every `.wgsl` file under `dir`, as paths relative to `root` with `/` separators.
fn wgsl_files(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            wgsl_files(root, &path, out);
        } else if path.extension().is_some_and(|x| x == "wgsl") {
            let rel = path.strip_prefix(root).unwrap();
            let parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            out.push(parts.join("/"));
        }
    }
}

#[test]
fn every_kernel_validates_and_translates_to_spirv_and_msl() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wgsl");
    let mut on_disk = Vec::new();
    wgsl_files(&dir, &dir, &mut on_disk);
    on_disk.sort();
    let mut registered: Vec<String> = SOURCES.iter().map(|k| k.file.to_string()).collect();
    registered.sort();
    assert_eq!(
        on_disk, registered,
        "every file under wgsl/ must be registered in gpu::kernels::SOURCES"
    );

    for k in SOURCES {
        let (name, src) = (k.name, k.text);
        check(name, src);
        for consts in variants(name) {
            let text = specialize(name, src, &consts).unwrap();
            check(&format!("{name} {consts:?}"), &text);
        }
    }
}
