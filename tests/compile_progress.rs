//! Compile progress: the library reports every pipeline compilation to the process's observer
//! (the CLI renders it on stderr, only on a terminal), and streamed text on stdout stays clean.

mod common;

use std::sync::{Arc, Mutex};
use xlstm_wgpu::gpu::kernels::{set_compile_observer, CompileEvent, Kernels};

#[test]
fn each_pipeline_compilation_is_reported_once_when_it_starts_and_ends() {
    let events: Arc<Mutex<Vec<(String, bool, usize)>>> = Arc::default();
    let seen = events.clone();
    set_compile_observer(Some(Arc::new(move |e: &CompileEvent<'_>| {
        seen.lock()
            .unwrap()
            .push((format!("{}:{}", e.kernel, e.entry), e.finished, e.compiled));
    })));
    let kernels = Kernels::new(common::gpu());
    kernels.pipeline("swiglu", "main", &[]).unwrap();
    // A cached pipeline compiles nothing and reports nothing.
    kernels.pipeline("swiglu", "main", &[]).unwrap();
    set_compile_observer(None);

    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    let ((start_name, start_done, before), (end_name, end_done, after)) = (&events[0], &events[1]);
    assert_eq!((start_name.as_str(), *start_done), ("swiglu:main", false));
    assert_eq!((end_name.as_str(), *end_done), ("swiglu:main", true));
    assert_eq!(*after, before + 1);
}

#[test]
fn generate_streams_only_text_to_stdout_when_not_on_a_terminal() {
    let prompt = "It is a truth";
    // A fresh pipeline cache, so the kernels really compile during this run.
    let cache = std::env::temp_dir().join(format!("xlstm-compile-progress-{}", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xlstm"))
        .args(["generate", "--max-new-tokens", "4", "--prompt", prompt])
        .env("XLSTM_CACHE_DIR", &cache)
        .output()
        .expect("running xlstm generate");
    let _ = std::fs::remove_dir_all(&cache);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with(prompt), "{stdout}");
    assert!(!stdout.contains('\r') && !stdout.contains('\x1b'), "{stdout:?}");
    assert!(
        !stderr.contains("compiling kernels") && !stderr.contains("first pass"),
        "{stderr}"
    );
}
