//! The chat example used as a person would: its self-test mode opens the real window (on a virtual
//! X display through xvfb-run), generates greedily on the window's own device, renders the text
//! and saves the window as PNG. The PNG must show something (not one flat colour) and the ids the
//! window reports must equal the library's greedy output for the same prompt.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xlstm_wgpu::{Gpu, GpuOptions, LoadOptions, Model, Sampler, SamplerConfig, Session, SessionOptions};

const PROMPT: &str = "It is a truth";
const TOKENS: usize = 24;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-large-mini")
}

/// What the example does, through the library on its own device.
fn library_greedy() -> Vec<u32> {
    let gpu = Arc::new(Gpu::new(&GpuOptions::default()).expect("a GPU adapter (run ci/setup)"));
    let model = Model::load(gpu, &model_dir(), &LoadOptions::default()).unwrap();
    let tok = model.tokenizer().unwrap();
    let mut prompt = vec![model.bos_token_id().unwrap_or(0)];
    prompt.extend(tok.encode(PROMPT).unwrap());
    let eos: Vec<u32> = model.eos_token_id().into_iter().collect();
    let mut session = Session::new(&model, SessionOptions::default()).unwrap();
    let mut sampler = Sampler::new(SamplerConfig::default()).unwrap();
    session
        .generate(&prompt, TOKENS, &mut sampler, &eos, &mut |_| Ok(true))
        .unwrap()
        .generated
}

/// The example's binary in this test's profile, built if `cargo test` did not build it (it does
/// unless the run names test targets only).
fn chat_binary() -> PathBuf {
    // Built once for both tests of this binary.
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(build_chat).clone()
}

fn build_chat() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/chat_window-<hash> -> target/<profile>/examples/chat
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = profile_dir
        .join("examples")
        .join(format!("chat{}", std::env::consts::EXE_SUFFIX));
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--example", "chat"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build.status().expect("running cargo build --example chat");
    assert!(status.success(), "cargo build --example chat failed");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

/// Fails with the fix when the virtual display is missing, instead of passing silently.
fn require_xvfb() {
    let xvfb = Command::new("xvfb-run")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        xvfb.is_ok(),
        "xvfb-run not found: the chat window test opens a real window on a virtual display; run ci/setup (it installs xvfb and xauth)"
    );
}

/// Runs the example's self-test on `model` in a real window under xvfb-run: (exit status, stdout,
/// stderr). The screenshot goes to `png`.
fn run_chat(bin: &Path, model: &Path, png: &Path, runtime_dir: &Path) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1024x768x24"])
        .arg(bin)
        .arg("--model")
        .arg(model)
        .args([
            "--prompt",
            PROMPT,
            "--exit-after-tokens",
            &TOKENS.to_string(),
            "--screenshot",
        ])
        .arg(png)
        .env(
            "WGPU_BACKEND",
            std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "vulkan".into()),
        )
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting xvfb-run");
    // Loading, compiling and generating on lavapipe takes well under this; a hung window must
    // fail the test, not the CI job's timeout.
    let deadline = Instant::now() + Duration::from_secs(600);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the chat window did not exit within 600 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status, text(&out.stdout), text(&out.stderr))
}

#[test]
fn chat_window_streams_the_greedy_tokens_and_renders_them() {
    require_xvfb();
    let bin = chat_binary();
    let out_dir = tempfile::tempdir().unwrap();
    let png_path = out_dir.path().join("chat.png");
    let (status, stdout, stderr) = run_chat(&bin, &model_dir(), &png_path, out_dir.path());
    assert!(
        status.success(),
        "chat exited with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line on stdout:\n{stdout}\nstderr:\n{stderr}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    let ids: Vec<u32> = json["ids"]
        .as_array()
        .expect("ids array")
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        ids,
        library_greedy(),
        "the window's tokens differ from the library's greedy output"
    );

    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).expect("the PNG"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    assert!(
        frame.width >= 400 && frame.height >= 300,
        "{}x{}",
        frame.width,
        frame.height
    );
    let px = frame.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> = buf[..frame.buffer_size()].chunks(px).collect();
    // Antialiased text on a panel with widgets: far more than a blank or single-colour frame.
    assert!(
        colours.len() >= 16,
        "the screenshot looks blank: {} distinct colours",
        colours.len()
    );
}

/// A corrupt checkpoint is an error shown in the window (and a failing exit), never a panic.
#[test]
fn chat_window_shows_a_corrupt_model_as_an_error() {
    require_xvfb();
    let bin = chat_binary();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model_dir().join(f), model.join(f)).unwrap();
    }
    let weights = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    std::fs::write(model.join("model.safetensors"), &weights[..weights.len().min(1000)]).unwrap();
    let png_path = dir.path().join("error.png");
    let (status, stdout, stderr) = run_chat(&bin, &model, &png_path, dir.path());
    assert_eq!(status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("invalid checkpoint"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(png_path.exists(), "the window with the error was not saved");
}
