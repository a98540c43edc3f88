//! Every WGSL kernel, in every variant the host can produce, parses, validates, and translates to
//! SPIR-V and to Metal Shading Language with naga. There is no Apple hardware in CI: the MSL
//! translation is the Metal gate.

use xlstm_wgpu::gpu::kernels::{params_in_storage, ConstValue, SOURCES};

/// Validates `text` and translates it; returns the MSL.
fn check(name: &str, text: &str) -> String {
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
    naga::back::msl::write_string(&module, &info, &options, &pipeline)
        .unwrap_or_else(|e| panic!("{name}: MSL: {e}"))
        .0
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
    let mut registered: Vec<String> = SOURCES
        .iter()
        .flat_map(|k| std::iter::once(k.file).chain(k.libraries.iter().copied()))
        .map(String::from)
        .collect();
    registered.sort();
    registered.dedup();
    assert_eq!(
        on_disk, registered,
        "every file under wgsl/ must be registered in gpu::kernels::SOURCES"
    );

    for k in SOURCES {
        check(k.name, k.text);
    }
    // What the host really compiles, from the constructors that compile it
    // (`ops::variants`), in both parameter address spaces (`Caps::params_in_storage`).
    let variants = xlstm_wgpu::ops::variants();
    for k in SOURCES {
        assert!(
            variants.iter().any(|v| v.kernel == k.name),
            "{}: shipped but never compiled by the host",
            k.name
        );
    }
    let mut eights = 0;
    for v in &variants {
        let name = format!("{}:{} {:?}", v.kernel, v.entry, v.consts);
        let text = v.source().unwrap_or_else(|e| panic!("{name}: {e}"));
        let msl = check(&name, &text);
        let storage = params_in_storage(&v.kernel, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
        check(&format!("{name} (params in storage)"), &storage);
        // Metal has only 8x8 simdgroup matrices: the 8x8 instances must use nothing else.
        let frag = v.consts.iter().find(|(n, _)| n == "FRAG").map(|(_, c)| c.clone());
        if frag == Some(ConstValue::U32(8)) {
            let simdgroup_types: Vec<&str> = msl
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| {
                    ["simdgroup_half", "simdgroup_float", "simdgroup_bfloat"]
                        .iter()
                        .any(|t| w.starts_with(t))
                })
                .collect();
            assert!(
                !simdgroup_types.is_empty(),
                "{name}: the 8x8 instance uses no simdgroup matrix"
            );
            assert!(
                simdgroup_types.iter().all(|w| w.ends_with("8x8")),
                "{name}: the 8x8 instance's MSL uses {simdgroup_types:?}"
            );
            eights += 1;
        }
    }
    // gemm_coop over f16, q8 and q4 weights, and both chunkwise kernels.
    assert!(eights >= 5, "only {eights} 8x8 instances among the variants");
}
