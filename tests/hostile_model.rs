//! Hostile model directories and stored settings: config.json sizes out of range or disagreeing
//! with the checkpoint, non-finite weights (every source dtype, both device dtypes), weights that
//! make the logits non-finite at run time, a FIFO or an out-of-range entry as tuned.json, and a
//! seeded fuzz loop over mutated configs and safetensors headers of both shipped models. Every
//! case must end in a one-line error through the real loader (no panic, abort or hang).

mod common;

use rand::{Rng, SeedableRng};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xlstm_wgpu::{Error, LoadOptions, Logits, Model, SamplerConfig, Session, SessionOptions, WeightDtype};

const LARGE: &str = "xlstm-large-mini";
const V1: &str = "xlstm-v1-mini";

fn shipped(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

/// A copy of a shipped model in a temporary directory (removed on drop).
struct ModelCopy {
    tmp: tempfile::TempDir,
}

impl ModelCopy {
    fn of(name: &str) -> ModelCopy {
        let tmp = tempfile::tempdir().expect("temp dir");
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::copy(shipped(name).join(f), tmp.path().join(f)).expect("copy model file");
        }
        ModelCopy { tmp }
    }
    fn dir(&self) -> &Path {
        self.tmp.path()
    }
    fn config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir().join("config.json")).unwrap()).unwrap()
    }
    /// Replaces config.json (a new file: a loaded model may still map the old one).
    fn write_config_bytes(&self, bytes: &[u8]) {
        let path = self.dir().join("config.json");
        let _ = std::fs::remove_file(&path);
        std::fs::write(path, bytes).unwrap();
    }
    fn write_config(&self, json: &Value) {
        self.write_config_bytes(&serde_json::to_vec_pretty(json).unwrap());
    }
    fn write_checkpoint(&self, bytes: &[u8]) {
        let path = self.dir().join("model.safetensors");
        let _ = std::fs::remove_file(&path);
        std::fs::write(path, bytes).unwrap();
    }
}

fn load(dir: &Path, dtype: WeightDtype) -> xlstm_wgpu::Result<Model> {
    Model::load(
        common::gpu(),
        dir,
        &LoadOptions {
            dtype: Some(dtype),
            tokenizer: false,
            ..Default::default()
        },
    )
}

/// The load's error, checked to be one line; panics if it loaded.
fn load_error(dir: &Path, dtype: WeightDtype, what: &str) -> Error {
    match load(dir, dtype) {
        Ok(_) => panic!("{what}: loaded"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "{what}: error is not one line: {text}");
            e
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tensors as f32, rewritten in any source dtype
// ---------------------------------------------------------------------------------------------

type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn read_tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data: Vec<f32> = match view.dtype() {
                Dtype::F16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => panic!("shipped tensor `{name}` is {other:?}"),
            };
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

fn encode(data: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => data
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => data
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        other => panic!("no encoding for {other:?}"),
    }
}

fn serialize(tensors: &Tensors, dtype: Dtype) -> Vec<u8> {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, data))| (name.clone(), shape.clone(), encode(data, dtype)))
        .collect();
    let views = encoded
        .iter()
        .map(|(name, shape, bytes)| (name.clone(), TensorView::new(dtype, shape.clone(), bytes).unwrap()));
    safetensors::serialize(views, None).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Config sizes (audit: num_blocks 1e9 aborted, 2^62 panicked)
// ---------------------------------------------------------------------------------------------

#[test]
fn huge_num_blocks_is_a_config_error_for_both_families() {
    for name in [LARGE, V1] {
        let m = ModelCopy::of(name);
        for blocks in [
            json!(1_000_000_000u64),
            json!(1u64 << 62),
            json!(u64::MAX),
            json!(1e308),
        ] {
            let mut cfg = m.config();
            cfg["num_blocks"] = blocks.clone();
            if name == LARGE {
                cfg["num_hidden_layers"] = blocks.clone();
            } else {
                cfg.as_object_mut().unwrap().remove("_block_map");
            }
            m.write_config(&cfg);
            let e = load_error(m.dir(), WeightDtype::F16, &format!("{name} num_blocks {blocks}"));
            assert!(matches!(e, Error::Config(_)), "{name} num_blocks {blocks}: {e}");
        }
    }
}

#[test]
fn a_block_count_the_checkpoint_lacks_names_both_numbers() {
    for name in [LARGE, V1] {
        let m = ModelCopy::of(name);
        let mut cfg = m.config();
        cfg["num_blocks"] = json!(6);
        if name == LARGE {
            cfg["num_hidden_layers"] = json!(6);
        } else {
            cfg["_block_map"] = json!("0,1,0,0,0,0");
        }
        m.write_config(&cfg);
        let e = load_error(m.dir(), WeightDtype::F16, name);
        let text = e.to_string();
        assert!(
            matches!(e, Error::Checkpoint(_)) && text.contains("num_blocks 6") && text.contains("holds 4 blocks"),
            "{name}: {text}"
        );
    }
}

#[test]
fn every_size_field_out_of_range_is_a_config_error() {
    let huge = [
        json!(1u64 << 40),
        json!(u64::MAX),
        json!(-1),
        json!(1e300),
        json!("64"),
        json!([4]),
    ];
    let large_fields: &[&[&str]] = &[
        &["embedding_dim"],
        &["num_heads"],
        &["vocab_size"],
        &["qk_dim_factor"],
        &["v_dim_factor"],
        &["ffn_proj_factor"],
        &["ffn_round_up_to_multiple_of"],
        &["chunk_size"],
        &["bos_token_id"],
        &["eos_token_id"],
    ];
    let v1_fields: &[&[&str]] = &[
        &["embedding_dim"],
        &["vocab_size"],
        &["context_length"],
        &["mlstm_block", "mlstm", "num_heads"],
        &["mlstm_block", "mlstm", "proj_factor"],
        &["mlstm_block", "mlstm", "conv1d_kernel_size"],
        &["mlstm_block", "mlstm", "qkv_proj_blocksize"],
        &["mlstm_block", "mlstm", "round_proj_up_to_multiple_of"],
        &["slstm_block", "slstm", "num_heads"],
        &["slstm_block", "slstm", "conv1d_kernel_size"],
        &["slstm_block", "feedforward", "proj_factor"],
        &["slstm_block", "feedforward", "round_proj_up_to_multiple_of"],
        &["slstm_at"],
        &["bos_token_id"],
    ];
    for (name, fields) in [(LARGE, large_fields), (V1, v1_fields)] {
        let m = ModelCopy::of(name);
        let base = m.config();
        for path in fields {
            for value in &huge {
                // `-1` means "unset" for a few v1 fields (as in the package); those load.
                let unset_ok = name == V1 && *value == json!(-1) && path == &["context_length"];
                let mut cfg = base.clone();
                let mut slot = &mut cfg;
                for key in *path {
                    slot = &mut slot[*key];
                }
                *slot = value.clone();
                m.write_config(&cfg);
                let what = format!("{name} {} = {value}", path.join("."));
                let result = load(m.dir(), WeightDtype::F16);
                if unset_ok {
                    assert!(result.is_ok(), "{what}: {:?}", result.err());
                    continue;
                }
                match result {
                    Ok(_) => panic!("{what}: loaded"),
                    Err(e) => {
                        let text = e.to_string();
                        assert!(!text.contains('\n'), "{what}: {text}");
                        assert!(matches!(e, Error::Config(_) | Error::Checkpoint(_)), "{what}: {text}");
                    }
                }
            }
        }
    }
}

#[test]
fn huge_num_blocks_in_the_cli_is_a_one_line_error_not_an_abort() {
    let m = ModelCopy::of(LARGE);
    let mut cfg = m.config();
    cfg["num_blocks"] = json!(1_000_000_000u64);
    cfg["num_hidden_layers"] = json!(1_000_000_000u64);
    m.write_config(&cfg);
    let out = xlstm(
        &[
            "generate",
            "--model",
            m.dir().to_str().unwrap(),
            "--max-new-tokens",
            "1",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("num_blocks"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Non-finite weights at load (audit: NaN weights gave all-NaN logits and exit 0)
// ---------------------------------------------------------------------------------------------

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    // A large matrix (converted row by row) and a small vector (read whole) of each family.
    let cases = [
        (LARGE, "lm_head.weight"),
        (LARGE, "backbone.blocks.2.norm_ffn.weight"),
        (V1, "xlstm_block_stack.blocks.0.xlstm.proj_up.weight"),
        (V1, "xlstm_block_stack.blocks.1.xlstm.slstm_cell._recurrent_kernel_"),
    ];
    for (name, tensor) in cases {
        let m = ModelCopy::of(name);
        let clean = read_tensors(&m.dir().join("model.safetensors"));
        assert!(clean.contains_key(tensor), "{name} has no `{tensor}`");
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut tensors = clean.clone();
            let data = &mut tensors.get_mut(tensor).unwrap().1;
            let at = data.len() / 2 + 1;
            data[at] = bad;
            for source in [Dtype::F32, Dtype::F16, Dtype::BF16] {
                m.write_checkpoint(&serialize(&tensors, source));
                for device in [WeightDtype::F16, WeightDtype::F32] {
                    let what = format!("{name} {tensor} = {bad} as {source:?} on {device:?}");
                    let e = load_error(m.dir(), device, &what);
                    let text = e.to_string();
                    assert!(
                        matches!(e, Error::Checkpoint(_)) && text.contains(tensor) && text.contains("non-finite"),
                        "{what}: {text}"
                    );
                }
            }
        }
    }
}

#[test]
fn values_beyond_the_f16_range_are_refused_for_f16_weights_only() {
    for (name, tensor) in [
        (LARGE, "backbone.blocks.1.mlstm_layer.out_proj.weight"),
        (V1, "xlstm_block_stack.blocks.0.xlstm.proj_down.weight"),
    ] {
        let m = ModelCopy::of(name);
        let mut tensors = read_tensors(&m.dir().join("model.safetensors"));
        tensors.get_mut(tensor).unwrap().1[3] = 1.0e5;
        for source in [Dtype::F32, Dtype::BF16] {
            m.write_checkpoint(&serialize(&tensors, source));
            let what = format!("{name} {tensor} = 1e5 as {source:?}");
            let text = load_error(m.dir(), WeightDtype::F16, &what).to_string();
            assert!(text.contains(tensor) && text.contains("f16 range"), "{what}: {text}");
            assert!(load(m.dir(), WeightDtype::F32).is_ok(), "{what}: f32 weights must load");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Non-finite logits at run time
// ---------------------------------------------------------------------------------------------

/// A model whose weights are finite but whose logits for token 5 are not: lm_head row 5 is
/// 3e38 everywhere, so the products with the normalised hidden state overflow to +-inf and
/// their sum is NaN or infinite. Loads with f32 weights only (beyond the f16 range).
fn overflowing_model(name: &str) -> (ModelCopy, Model) {
    let m = ModelCopy::of(name);
    let mut tensors = read_tensors(&m.dir().join("model.safetensors"));
    let (shape, data) = tensors.get_mut("lm_head.weight").unwrap();
    let e = shape[1];
    data[5 * e..6 * e].fill(3.0e38);
    m.write_checkpoint(&serialize(&tensors, Dtype::F32));
    let model = load(m.dir(), WeightDtype::F32).expect("finite weights load");
    (m, model)
}

fn assert_numeric(result: xlstm_wgpu::Result<impl std::fmt::Debug>, what: &str) {
    match result {
        Err(Error::Numeric(text)) => assert!(text.contains("non-finite logits"), "{what}: {text}"),
        other => panic!("{what}: expected a numeric error, got {other:?}"),
    }
}

#[test]
fn non_finite_logits_stop_prefill_step_greedy_and_sampled_decoding() {
    let sampled = SamplerConfig {
        temperature: 0.9,
        top_k: 0,
        top_p: 1.0,
        seed: 7,
    };
    for name in [LARGE, V1] {
        let (_copy, model) = overflowing_model(name);
        let session = || Session::new(&model, SessionOptions::default()).unwrap();
        let prompt = [1u32, 17, 300, 42];
        assert_numeric(
            session().prefill(&prompt, Logits::Last),
            &format!("{name} prefill last"),
        );
        assert_numeric(session().prefill(&prompt, Logits::All), &format!("{name} prefill all"));
        assert_numeric(session().step(3), &format!("{name} step"));
        // The decode paths keep their logits on the GPU: the kernels mark the step.
        let mut s = session();
        s.prefill(&prompt, Logits::None).unwrap();
        assert_numeric(s.step_greedy(3, 4), &format!("{name} greedy batch"));
        let mut s = session();
        s.prefill(&prompt, Logits::None).unwrap();
        assert_numeric(s.step_sampled(3, 4, &sampled), &format!("{name} sampled batch"));
    }
}

#[test]
fn non_finite_logits_make_generate_fail_in_the_cli() {
    let (m, model) = overflowing_model(V1);
    drop(model);
    let out = xlstm(
        &[
            "generate",
            "--model",
            m.dir().to_str().unwrap(),
            "--dtype",
            "f32",
            "--max-new-tokens",
            "4",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("non-finite logits"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

/// Runs `xlstm` with `args` and extra environment, killing it after 120 s (a hang fails).
fn xlstm(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xlstm"));
    cmd.args(args)
        .env(
            "WGPU_BACKEND",
            std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "vulkan".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn xlstm");
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "xlstm {args:?} hung; stderr: {}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

#[test]
fn a_budget_beyond_what_a_duration_holds_is_a_usage_error() {
    let model = shipped(LARGE);
    for budget in ["1e308", "inf", "NaN", "-5", "0"] {
        let flag = format!("--budget-seconds={budget}");
        let out = xlstm(&["tune", "--model", model.to_str().unwrap(), &flag], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A flag value out of range is clap's usage error (exit code 2).
        assert_eq!(out.status.code(), Some(2), "--budget-seconds {budget}: {stderr}");
        assert!(
            stderr.contains("--budget-seconds"),
            "--budget-seconds {budget}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "--budget-seconds {budget}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// tuned.json (audit: a FIFO hung every generate; an out-of-range entry failed every run)
// ---------------------------------------------------------------------------------------------

/// `xlstm generate` of one token from the shipped xLSTM Large model with this cache directory.
fn generate_with_cache(cache: &Path) -> std::process::Output {
    let model = shipped(LARGE);
    xlstm(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--max-new-tokens",
            "2",
            "--prompt",
            "It is",
        ],
        &[("XLSTM_CACHE_DIR", cache)],
    )
}

fn assert_ignored_with_one_warning(out: &std::process::Output, file: &Path, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: generate failed: {stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("warning: tuned settings ignored"))
        .collect();
    assert_eq!(warnings.len(), 1, "{what}: {stderr}");
    assert!(warnings[0].contains(&file.display().to_string()), "{what}: {stderr}");
}

#[cfg(unix)]
#[test]
fn a_fifo_as_tuned_json_is_ignored_with_a_warning_instead_of_hanging() {
    let cache = tempfile::tempdir().unwrap();
    let fifo = cache.path().join("tuned.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let out = generate_with_cache(cache.path());
    assert_ignored_with_one_warning(&out, &fifo, "fifo");
}

#[test]
fn an_out_of_range_tuned_entry_is_ignored_with_a_warning() {
    // The tuner lives in the binary: a one-trial tune run (every decode knob pinned, so it is
    // short) writes a real entry for this adapter and model, then its chunk size is put out of
    // range.
    let cache = tempfile::tempdir().unwrap();
    let file = cache.path().join("tuned.json");
    let model = shipped(LARGE);
    let runs = cache.path().join("runs");
    let out = xlstm(
        &[
            "tune",
            "--model",
            model.to_str().unwrap(),
            "--target",
            "decode",
            "--trials",
            "1",
            "--repeats",
            "1",
            "--decode-tokens",
            "1",
            "--check-tokens",
            "2",
            "--decode-batch",
            "1",
            "--gemv-lanes",
            "64",
            "--submit-dispatches",
            "512",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--json",
        ],
        &[("XLSTM_CACHE_DIR", cache.path())],
    );
    assert!(out.status.success(), "tune: {}", String::from_utf8_lossy(&out.stderr));
    let mut store: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    store["entries"][0]["settings"]["chunk_size"] = json!(300);
    std::fs::write(&file, serde_json::to_vec(&store).unwrap()).unwrap();
    let out = generate_with_cache(cache.path());
    assert_ignored_with_one_warning(&out, &file, "chunk_size 300");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chunk_size 300"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_tuned_json_of_another_user_is_ignored_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let file = cache.path().join("tuned.json");
    std::fs::write(&file, br#"{"version": 1, "entries": []}"#).unwrap();
    if xlstm_wgpu::files::current_uid() == 0 {
        std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    } else {
        // Without a second uid the equivalent refusal is an unreadable file.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let out = generate_with_cache(cache.path());
    assert_ignored_with_one_warning(&out, &file, "other owner");
}

// ---------------------------------------------------------------------------------------------
// Seeded fuzz loop over both shipped models
// ---------------------------------------------------------------------------------------------

/// Cases per family (each a fresh mutation of the shipped files).
const FUZZ_CASES: usize = 300;

/// Values that break a config field: huge, negative, zero, fractional, wrong types.
fn hostile_value(rng: &mut rand::rngs::StdRng) -> Value {
    let pool = [
        json!(1_000_000_000u64),
        json!(1u64 << 62),
        json!(u64::MAX),
        json!(-1),
        json!(i64::MIN),
        json!(0),
        json!(1),
        json!(3),
        json!(0.5),
        json!(1e308),
        json!(-1e308),
        json!("x"),
        json!(""),
        json!([]),
        json!([1, 2]),
        json!({}),
        json!(true),
        Value::Null,
    ];
    pool[rng.random_range(0..pool.len())].clone()
}

/// Every path to a value in `v` (object keys only: the configs hold no meaningful arrays).
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            prefix.push(k.clone());
            out.push(prefix.clone());
            paths(child, prefix, out);
            prefix.pop();
        }
    }
}

/// The paths of `base` the library reads: setting one to a string changes what it parses to.
/// Mutations aim at these (most fields of a dumped config are ignored by the loader).
fn live_paths(base: &Value) -> Vec<Vec<String>> {
    let shipped = parsed_config(&serde_json::to_vec(base).unwrap());
    let mut all = Vec::new();
    paths(base, &mut Vec::new(), &mut all);
    all.into_iter()
        .filter(|path| {
            let mut cfg = base.clone();
            let mut slot = &mut cfg;
            for key in path {
                slot = &mut slot[key.as_str()];
            }
            *slot = json!("not a value");
            parsed_config(&serde_json::to_vec(&cfg).unwrap()) != shipped
        })
        .collect()
}

fn mutate_config(rng: &mut rand::rngs::StdRng, base: &Value, live: &[Vec<String>]) -> Vec<u8> {
    let text = serde_json::to_vec_pretty(base).unwrap();
    match rng.random_range(0..10) {
        // Truncated text.
        0 => text[..rng.random_range(0..text.len())].to_vec(),
        // A byte replaced.
        1 => {
            let mut t = text.clone();
            let at = rng.random_range(0..t.len());
            t[at] = rng.random();
            t
        }
        // One field the loader reads set to a huge number (the sizes the audit found).
        2..=5 => {
            let mut cfg = base.clone();
            let path = &live[rng.random_range(0..live.len())];
            let mut slot = &mut cfg;
            for key in path {
                slot = &mut slot[key.as_str()];
            }
            let huge = [
                json!(1_000_000_000u64),
                json!(1u64 << 62),
                json!(u64::MAX),
                json!(1e308),
            ];
            *slot = huge[rng.random_range(0..huge.len())].clone();
            serde_json::to_vec(&cfg).unwrap()
        }
        // One to three fields set to hostile values or removed.
        _ => {
            let mut cfg = base.clone();
            for _ in 0..rng.random_range(1..=3) {
                let path = &live[rng.random_range(0..live.len())];
                let (last, parents) = path.split_last().unwrap();
                // An earlier mutation may have replaced a parent: then there is nothing to change.
                let mut slot = Some(&mut cfg);
                for key in parents {
                    slot = slot.and_then(|v| v.get_mut(key.as_str()));
                }
                if let Some(Value::Object(map)) = slot {
                    if rng.random_range(0..6) == 0 {
                        map.remove(last);
                    } else {
                        map.insert(last.clone(), hostile_value(rng));
                    }
                }
            }
            serde_json::to_vec(&cfg).unwrap()
        }
    }
}

/// The header JSON and the data of a safetensors file.
fn split_safetensors(bytes: &[u8]) -> (Value, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), &bytes[8 + n..])
}

fn join_safetensors(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn mutate_checkpoint(rng: &mut rand::rngs::StdRng, base: &[u8]) -> Vec<u8> {
    let (mut header, data) = split_safetensors(base);
    let names: Vec<String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let name = names[rng.random_range(0..names.len())].clone();
    let other = names[rng.random_range(0..names.len())].clone();
    let offsets = |h: &Value, n: &str| -> (u64, u64) {
        let o = &h[n]["data_offsets"];
        (o[0].as_u64().unwrap(), o[1].as_u64().unwrap())
    };
    let (start, end) = offsets(&header, &name);
    let len = data.len() as u64;
    match rng.random_range(0..12) {
        0 => {
            let dtypes = ["F32", "F16", "BF16", "I8", "U8", "F64", "BOOL", "I64", "F8_E4M3", "X"];
            header[&name]["dtype"] = json!(dtypes[rng.random_range(0..dtypes.len())]);
        }
        1 => {
            let shapes = [
                json!([]),
                json!([0]),
                json!([1u64 << 40]),
                json!([1u64 << 62, 4]),
                json!([u64::MAX, u64::MAX]),
                json!([-1]),
                json!(["a"]),
                json!([0, 1u64 << 40]),
            ];
            header[&name]["shape"] = shapes[rng.random_range(0..shapes.len())].clone();
        }
        2 => {
            // Offsets: past the end, reversed, empty, huge, shifted, another tensor's (aliasing),
            // overlapping the next one.
            let (os, oe) = offsets(&header, &other);
            let choices = [
                json!([0, len * 2]),
                json!([end, start]),
                json!([start, start]),
                json!([u64::MAX - 1, u64::MAX]),
                json!([start + 1, end + 1]),
                json!([os, oe]),
                json!([start, (end + 64).min(len)]),
            ];
            header[&name]["data_offsets"] = choices[rng.random_range(0..choices.len())].clone();
        }
        3 => {
            header.as_object_mut().unwrap().remove(&name);
        }
        4 => {
            let renamed = [
                "backbone.blocks.100000000000.norm_ffn.weight",
                "backbone.blocks.18446744073709551615.x",
                "xlstm_block_stack.blocks.99.xlstm_norm.weight",
                "",
            ];
            let entry = header.as_object_mut().unwrap().remove(&name).unwrap();
            header[renamed[rng.random_range(0..renamed.len())]] = entry;
        }
        5 => header[&name] = hostile_value(rng),
        6 => header["__metadata__"] = hostile_value(rng),
        // Raw bytes: the length prefix, truncation, a flipped header byte, trailing garbage.
        7 => {
            let mut out = base.to_vec();
            let prefix: u64 = match rng.random_range(0..4) {
                0 => rng.random(),
                1 => 0,
                2 => base.len() as u64,
                _ => u64::from_le_bytes(base[..8].try_into().unwrap()) - 1,
            };
            out[..8].copy_from_slice(&prefix.to_le_bytes());
            return out;
        }
        8 => return base[..rng.random_range(0..base.len())].to_vec(),
        9 => {
            let mut out = base.to_vec();
            let n = u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
            let at = rng.random_range(8..8 + n);
            out[at] = rng.random();
            return out;
        }
        10 => {
            let mut out = base.to_vec();
            out.extend_from_slice(&[0u8; 24]);
            return out;
        }
        // A NaN or an infinity in the data (F16 bits).
        _ => {
            let mut out = data.to_vec();
            let elements = ((end - start) / 2) as usize;
            if elements > 0 {
                let at = start as usize + 2 * rng.random_range(0..elements);
                let bits: u16 = [0x7e00, 0x7c00, 0xfc00][rng.random_range(0..3)];
                out[at..at + 2].copy_from_slice(&bits.to_le_bytes());
            }
            return join_safetensors(&header, &out);
        }
    }
    join_safetensors(&header, data)
}

/// config.json as the library parses it (either family), if it parses.
fn parsed_config(bytes: &[u8]) -> Option<String> {
    use xlstm_wgpu::model::config::LargeConfig;
    use xlstm_wgpu::model::v1_config::{detect_family, Family, V1Config};
    let json: Value = serde_json::from_slice(bytes).ok()?;
    match detect_family(&json) {
        Family::Large => LargeConfig::from_json(&json).ok().map(|c| format!("{c:?}")),
        Family::V1 => V1Config::from_json(&json).ok().map(|c| format!("{c:?}")),
    }
}

/// The parsed configuration of a loaded model.
fn shape_of(model: &Model) -> String {
    format!("{:?} {:?}", model.large_config(), model.v1_config())
}

/// One family's fuzz cases; returns how many loaded and how many of those were run.
fn fuzz_family(name: &str, seed: u64) -> (usize, usize) {
    let m = ModelCopy::of(name);
    let base_config = m.config();
    let base_checkpoint = std::fs::read(m.dir().join("model.safetensors")).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let shipped_shape = shape_of(&load(m.dir(), WeightDtype::F16).unwrap());
    let shipped_config = parsed_config(&serde_json::to_vec(&base_config).unwrap()).unwrap();
    let live = live_paths(&base_config);
    assert!(live.len() >= 8, "{name}: only {} config fields are read", live.len());
    let (mut loaded, mut ran) = (0, 0);
    for case in 0..FUZZ_CASES {
        let config_case = rng.random_range(0..2) == 0;
        if config_case {
            let mutated = mutate_config(&mut rng, &base_config, &live);
            // A mutation of fields the parser ignores loads the shipped model again: skip it.
            if parsed_config(&mutated).is_some_and(|c| c == shipped_config) {
                continue;
            }
            m.write_config_bytes(&mutated);
        } else {
            m.write_checkpoint(&mutate_checkpoint(&mut rng, &base_checkpoint));
        }
        let dtype = [WeightDtype::F16, WeightDtype::F32][rng.random_range(0..2)];
        let what = format!(
            "{name} case {case} ({})",
            if config_case { "config" } else { "checkpoint" }
        );
        let result = load(m.dir(), dtype);
        // Restored as new files: a loaded model keeps its own mapping of the mutated one.
        if config_case {
            m.write_config(&base_config);
        } else {
            m.write_checkpoint(&base_checkpoint);
        }
        match result {
            Err(e) => {
                let text = e.to_string();
                assert!(!text.contains('\n') && !text.is_empty(), "{what}: {text:?}");
            }
            Ok(model) => {
                loaded += 1;
                // A mutation the loader accepts must also run (or fail cleanly). One that only
                // touched fields the loader ignores gives the shipped model: nothing new to run.
                if shape_of(&model) == shipped_shape {
                    continue;
                }
                ran += 1;
                let run = Session::new(&model, SessionOptions::default())
                    .and_then(|mut s| s.prefill(&[0, 1, 2], Logits::Last).map(|_| s))
                    .and_then(|mut s| s.step_greedy(3, 2));
                if let Err(e) = run {
                    assert!(!e.to_string().contains('\n'), "{what}: {e}");
                }
            }
        }
    }
    (loaded, ran)
}

#[test]
fn fuzzed_configs_and_safetensors_headers_give_one_line_errors() {
    // On a thread so a hang fails the test instead of stalling it; a panic there ends the
    // thread without sending, which fails the test too.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let loaded = [fuzz_family(LARGE, 0x5eed_0001), fuzz_family(V1, 0x5eed_0002)];
        let _ = tx.send(loaded);
    });
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(counts) => eprintln!("fuzz: {FUZZ_CASES} cases per family; (loaded, run) for large, v1: {counts:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("the fuzz loop hung"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the fuzz loop panicked (see above)"),
    }
}
