//! The `xlstm` binary on bad input: every failure must be one clear line on stderr starting with
//! `xlstm: error:`, a non-zero exit code that is not a panic (101), and no output file (partial
//! or temporary) left behind. Plus one successful `score` run, to show the harness is sound.
//!
//! Run with `WGPU_BACKEND=vulkan cargo test --test cli` (lavapipe is enough: the models are tiny).

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_xlstm");

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(rel)
}

/// A scratch directory: `ids.json`, model copies, and an `out/` directory that must stay empty
/// whenever a command fails.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Scratch { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `text` as the token-id file and returns its path.
    fn ids(&self, text: &str) -> PathBuf {
        let p = self.path("ids.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Valid ids for every fixture.
    fn good_ids(&self) -> PathBuf {
        self.ids("[0, 5, 17, 42, 3, 9, 11]")
    }

    /// The output path (inside the existing, empty `out/` directory).
    fn out(&self) -> PathBuf {
        self.path("out").join("scores.safetensors")
    }

    /// Copies the checkpoint files (config, weights, index; not the case files) of a fixture into
    /// `model/` and returns that directory.
    fn model_copy(&self, name: &str) -> PathBuf {
        let dst = self.path("model");
        std::fs::create_dir_all(&dst).unwrap();
        for entry in std::fs::read_dir(fixture(name)).unwrap() {
            let entry = entry.unwrap();
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with("case_") {
                continue;
            }
            std::fs::copy(entry.path(), dst.join(&file)).unwrap();
        }
        dst
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running the xlstm binary")
}

fn score(model: &Path, ids: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "score".to_string(),
        "--model".into(),
        model.display().to_string(),
        "--input-ids".into(),
        ids.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&refs)
}

/// A command that must succeed; its stderr is the failure message.
fn assert_succeeded(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Asserts a clean failure: exit code 1-ish (not a panic, not a signal), exactly one non-empty
/// stderr line starting with `xlstm: error:` that contains every `needle`, and no output or
/// temporary output file.
fn assert_clean_failure(what: &str, o: &Output, out: &Path, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let ctx = format!("{what}: exit {:?}, stderr:\n{stderr}", o.status.code());
    assert!(!o.status.success(), "{ctx}\n(expected failure)");
    let code = o.status.code();
    assert!(code.is_some(), "{ctx}\n(killed by a signal)");
    assert_ne!(code, Some(101), "{ctx}\n(exit code 101 is a panic)");
    assert!(!stderr.contains("panicked"), "{ctx}\n(panic)");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{ctx}\n(expected exactly one line on stderr)");
    let line = lines[0];
    assert!(
        line.starts_with("xlstm: error: "),
        "{ctx}\n(expected an `xlstm: error:` line)"
    );
    for n in needles {
        assert!(line.contains(n), "{ctx}\n(expected the message to mention `{n}`)");
    }
    assert_no_output(what, out);
}

/// Asserts a usage error: exit code 2 and clap's message, `error: invalid value 'VALUE' for
/// '--FLAG ...'`, naming `flag` and `value` and holding every `needle`; no panic, nothing on
/// stdout.
fn assert_usage_error(what: &str, o: &Output, flag: &str, value: &str, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let ctx = format!(
        "{what}: exit {:?}, stderr:
{stderr}",
        o.status.code()
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{ctx}
(expected exit code 2, a usage error)"
    );
    assert!(
        !stderr.contains("panicked"),
        "{ctx}
(panic)"
    );
    assert!(
        o.stdout.is_empty(),
        "{ctx}
(stdout: {})",
        String::from_utf8_lossy(&o.stdout)
    );
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("error: invalid value '{value}' for '{flag}")),
        "{ctx}
(expected clap's `error: invalid value` line)"
    );
    for n in needles {
        assert!(
            stderr.contains(n),
            "{ctx}
(expected the message to mention `{n}`)"
        );
    }
}

/// The output file does not exist, and neither does a temporary `.NAME.tmp*` next to it.
fn assert_no_output(what: &str, out: &Path) {
    assert!(!out.exists(), "{what}: {} was left behind", out.display());
    assert_no_temp(what, out);
}

/// No temporary `.NAME.tmp*` next to `out`.
fn assert_no_temp(what: &str, out: &Path) {
    let dir = out.parent().unwrap();
    let name = out.file_name().unwrap().to_string_lossy();
    // Temporary outputs are `.NAME.<random>.tmp` (and were `.NAME.tmp<pid>` before).
    let tmp_prefix = format!(".{name}.");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let f = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !(f.starts_with(&tmp_prefix) && f.contains(".tmp")),
                "{what}: temporary file {f} was left behind"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-editable safetensors files.

struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn read_tensors(path: &Path) -> Vec<Tensor> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<Tensor> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| Tensor {
            name,
            dtype: v.dtype(),
            shape: v.shape().to_vec(),
            data: v.data().to_vec(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn write_tensors(path: &Path, tensors: &[Tensor]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Applies `edit` to the tensors of `dir/model.safetensors` and writes them back.
fn edit_tensors(dir: &Path, edit: impl FnOnce(&mut Vec<Tensor>)) {
    let file = dir.join("model.safetensors");
    let mut tensors = read_tensors(&file);
    edit(&mut tensors);
    write_tensors(&file, &tensors);
}

/// Rewrites `dir/config.json` through `edit`.
fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(json.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

/// Copies large_a, applies `edit` to its tensors, and writes them back.
fn edited_large_a(s: &Scratch, edit: impl FnOnce(&mut Vec<Tensor>)) -> PathBuf {
    let dir = s.model_copy("large_a");
    edit_tensors(&dir, edit);
    dir
}

fn tensor<'a>(tensors: &'a mut [Tensor], name: &str) -> &'a mut Tensor {
    tensors
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("fixture lacks {name}"))
}

/// Copies large_a and rewrites its config.json through `edit`.
fn edited_config(s: &Scratch, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> PathBuf {
    let dir = s.model_copy("large_a");
    edit_config(&dir, edit);
    dir
}

/// Runs `score` on `model` with valid ids and default flags and checks the failure.
fn check_model_failure(what: &str, s: &Scratch, model: &Path, needles: &[&str]) {
    let out = s.out();
    let o = score(model, &s.good_ids(), &out, &[]);
    assert_clean_failure(what, &o, &out, needles);
}

// ---------------------------------------------------------------------------------------------
// Model directory and config.json.

#[test]
fn missing_model_directory() {
    let s = Scratch::new();
    check_model_failure(
        "missing model dir",
        &s,
        &s.path("no_such_model"),
        &["no_such_model", "does not exist"],
    );
}

#[test]
fn model_directory_without_config() {
    let s = Scratch::new();
    let dir = s.model_copy("large_a");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    check_model_failure("no config.json", &s, &dir, &["config.json"]);
}

#[test]
fn config_not_json() {
    let s = Scratch::new();
    let dir = s.model_copy("large_a");
    std::fs::write(dir.join("config.json"), "embedding_dim = 64\nnum_heads = 2\n").unwrap();
    check_model_failure("config not JSON", &s, &dir, &["invalid config", "config.json"]);
}

#[test]
fn config_missing_num_heads() {
    let s = Scratch::new();
    let dir = edited_config(&s, |c| {
        c.remove("num_heads");
    });
    check_model_failure("config without num_heads", &s, &dir, &["invalid config", "num_heads"]);
}

#[test]
fn config_inconsistent_dims() {
    let s = Scratch::new();
    // qk_dim = 64 * 0.5 = 32, not divisible by 3 heads.
    let dir = edited_config(&s, |c| {
        c.insert("num_heads".into(), 3.into());
    });
    check_model_failure(
        "qk_dim % num_heads != 0",
        &s,
        &dir,
        &["invalid config", "divisible", "num_heads"],
    );
}

#[test]
fn config_unknown_weight_mode() {
    let s = Scratch::new();
    let dir = edited_config(&s, |c| {
        c.insert("weight_mode".into(), "quantised".into());
    });
    check_model_failure(
        "unknown weight_mode",
        &s,
        &dir,
        &["invalid config", "weight_mode", "quantised"],
    );
}

#[test]
fn config_absurd_sizes() {
    // Sizes that overflow usize arithmetic must give an error, not an overflow panic.
    for (key, value) in [
        ("embedding_dim", serde_json::json!(u64::MAX)),
        ("ffn_proj_factor", serde_json::json!(1e300)),
        ("qk_dim_factor", serde_json::json!(1e30)),
        ("vocab_size", serde_json::json!(u64::MAX)),
        ("num_heads", serde_json::json!(u64::MAX)),
        ("vocab_size", serde_json::json!(1e20)),
        ("num_heads", serde_json::json!(-2)),
    ] {
        let s = Scratch::new();
        let dir = edited_config(&s, |c| {
            c.insert(key.into(), value.clone());
        });
        check_model_failure(&format!("{key} = {value}"), &s, &dir, &["invalid"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoint files.

#[test]
fn no_safetensors_file() {
    let s = Scratch::new();
    let dir = s.model_copy("large_a");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    check_model_failure("no safetensors", &s, &dir, &["invalid checkpoint", "model.safetensors"]);
}

#[test]
fn truncated_in_data() {
    let s = Scratch::new();
    let dir = s.model_copy("large_a");
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    check_model_failure(
        "truncated in data",
        &s,
        &dir,
        &["invalid checkpoint", "model.safetensors", "truncated"],
    );
}

#[test]
fn truncated_in_header() {
    let s = Scratch::new();
    let dir = s.model_copy("large_a");
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    std::fs::write(&file, &bytes[..8 + n / 2]).unwrap();
    check_model_failure(
        "truncated in header",
        &s,
        &dir,
        &["invalid checkpoint", "model.safetensors", "truncated"],
    );
    // Shorter than the 8-byte length prefix.
    std::fs::write(&file, &bytes[..5]).unwrap();
    check_model_failure(
        "truncated in length prefix",
        &s,
        &dir,
        &["invalid checkpoint", "model.safetensors"],
    );
    // Empty file.
    std::fs::write(&file, b"").unwrap();
    check_model_failure("empty file", &s, &dir, &["invalid checkpoint", "model.safetensors"]);
}

#[test]
fn garbage_instead_of_safetensors() {
    let s = Scratch::new();
    let dir = s.model_copy("large_a");
    let file = dir.join("model.safetensors");
    // Text: the length prefix decodes to an absurd header size.
    std::fs::write(&file, "this is not a safetensors file, just some text\n".repeat(100)).unwrap();
    check_model_failure("garbage (text)", &s, &dir, &["invalid checkpoint", "model.safetensors"]);
    // Pseudo-random bytes.
    let mut x: u32 = 12345;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&file, &noise).unwrap();
    check_model_failure(
        "garbage (noise)",
        &s,
        &dir,
        &["invalid checkpoint", "model.safetensors"],
    );
    // A plausible length prefix followed by a header that is not JSON.
    let mut bad = 64u64.to_le_bytes().to_vec();
    bad.extend(std::iter::repeat_n(b'#', 64));
    std::fs::write(&file, &bad).unwrap();
    check_model_failure(
        "garbage (header not JSON)",
        &s,
        &dir,
        &["invalid checkpoint", "model.safetensors"],
    );
}

#[test]
fn missing_tensor() {
    let s = Scratch::new();
    let name = "backbone.blocks.1.mlstm_layer.v.weight";
    let dir = edited_large_a(&s, |t| t.retain(|t| t.name != name));
    check_model_failure(
        "missing tensor",
        &s,
        &dir,
        &["invalid checkpoint", "missing tensor", name],
    );
}

#[test]
fn missing_embedding_and_head() {
    let s = Scratch::new();
    let dir = edited_large_a(&s, |t| t.retain(|t| t.name != "backbone.embeddings.weight"));
    check_model_failure("missing embedding", &s, &dir, &["missing tensor", "embeddings.weight"]);
    let s = Scratch::new();
    let dir = edited_large_a(&s, |t| t.retain(|t| t.name != "lm_head.weight"));
    check_model_failure("missing lm_head", &s, &dir, &["missing tensor", "lm_head.weight"]);
}

#[test]
fn tensor_with_wrong_shape() {
    let s = Scratch::new();
    let name = "backbone.blocks.1.norm_ffn.weight";
    // [64] stored as [8, 8]: same bytes, wrong shape.
    let dir = edited_large_a(&s, |t| tensor(t, name).shape = vec![8, 8]);
    check_model_failure(
        "wrong shape",
        &s,
        &dir,
        &["invalid checkpoint", name, "shape", "[8, 8]", "[64]"],
    );

    // A weight matrix with its dimensions swapped.
    let s = Scratch::new();
    let name = "backbone.blocks.0.mlstm_layer.q.weight"; // [32, 64] -> [64, 32]
    let dir = edited_large_a(&s, |t| {
        let w = tensor(t, name);
        w.shape.reverse();
    });
    check_model_failure("transposed matrix", &s, &dir, &["invalid checkpoint", name, "shape"]);
}

#[test]
fn ffn_weight_with_scalar_shape() {
    // The FFN width is read from this tensor's shape; a 0-d tensor must not crash the loader.
    let s = Scratch::new();
    let name = "backbone.blocks.0.ffn.proj_up_gate.weight";
    let dir = edited_large_a(&s, |t| {
        let w = tensor(t, name);
        w.shape = vec![];
        w.data.truncate(4);
    });
    check_model_failure("0-d ffn weight", &s, &dir, &["invalid checkpoint", name, "shape"]);
}

#[test]
fn tensor_with_unsupported_dtype() {
    let s = Scratch::new();
    let name = "backbone.blocks.0.mlstm_layer.q.weight";
    // Same bytes reinterpreted as I32.
    let dir = edited_large_a(&s, |t| tensor(t, name).dtype = Dtype::I32);
    check_model_failure("I32 tensor", &s, &dir, &["invalid checkpoint", name, "I32"]);
}

#[test]
fn index_points_at_missing_shard() {
    let s = Scratch::new();
    let dir = s.model_copy("large_c");
    let shard = "model-00002-of-00002.safetensors";
    std::fs::remove_file(dir.join(shard)).unwrap();
    check_model_failure("missing shard", &s, &dir, &["invalid checkpoint", shard]);
}

#[test]
fn index_not_json() {
    let s = Scratch::new();
    let dir = s.model_copy("large_c");
    std::fs::write(dir.join("model.safetensors.index.json"), "{ weight_map: ").unwrap();
    check_model_failure(
        "index not JSON",
        &s,
        &dir,
        &["invalid checkpoint", "model.safetensors.index.json"],
    );
}

// ---------------------------------------------------------------------------------------------
// --input-ids.

fn check_ids_failure(what: &str, ids_text: Option<&str>, needles: &[&str]) {
    let s = Scratch::new();
    let ids = match ids_text {
        Some(t) => s.ids(t),
        None => s.path("no_such_ids.json"),
    };
    let out = s.out();
    let o = score(&fixture("large_a"), &ids, &out, &[]);
    assert_clean_failure(what, &o, &out, needles);
}

#[test]
fn input_ids_missing() {
    check_ids_failure("ids file missing", None, &["no_such_ids.json"]);
}

#[test]
fn input_ids_not_json() {
    check_ids_failure(
        "ids not JSON",
        Some("1 2 3"),
        &["invalid input", "ids.json", "JSON array"],
    );
    check_ids_failure("ids empty file", Some(""), &["invalid input", "ids.json", "JSON array"]);
}

#[test]
fn input_ids_not_integers() {
    for (text, what) in [
        ("[1, 2.5, 3]", "float id"),
        (r#"["a", "b"]"#, "string ids"),
        (r#"{"input_ids": [1, 2]}"#, "object"),
        ("[[1, 2], [3]]", "nested array"),
        ("7", "bare number"),
        ("[1, null]", "null id"),
    ] {
        check_ids_failure(what, Some(text), &["invalid input", "ids.json", "JSON array"]);
    }
}

#[test]
fn input_ids_empty() {
    check_ids_failure("empty ids", Some("[]"), &["invalid input", "empty"]);
}

#[test]
fn input_ids_negative() {
    check_ids_failure(
        "negative id",
        Some("[1, -3, 4]"),
        &["invalid input", "-3", "out of range"],
    );
}

#[test]
fn input_ids_beyond_vocab() {
    check_ids_failure(
        "id == vocab",
        Some("[1, 101, 4]"),
        &["invalid input", "101", "out of range", "vocabulary"],
    );
    check_ids_failure(
        "id >> vocab",
        Some("[1, 4294967296]"),
        &["invalid input", "4294967296", "out of range"],
    );
}

// ---------------------------------------------------------------------------------------------
// --out and flags.

#[test]
fn out_in_missing_directory() {
    let s = Scratch::new();
    let out = s.path("no_such_dir").join("scores.safetensors");
    let o = score(&fixture("large_a"), &s.good_ids(), &out, &[]);
    assert_clean_failure("--out in a missing dir", &o, &out, &["no_such_dir", "does not exist"]);
    assert!(!s.path("no_such_dir").exists());
}

#[test]
fn out_is_a_directory() {
    let s = Scratch::new();
    let out = s.path("out");
    let o = score(&fixture("large_a"), &s.good_ids(), &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && o.status.code() != Some(101) && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(
        stderr.trim().lines().count() == 1 && stderr.starts_with("xlstm: error: "),
        "{stderr}"
    );
    assert!(stderr.contains("is a directory"), "{stderr}");
    // The directory is untouched and no temporary file is left next to it.
    assert!(out.is_dir() && std::fs::read_dir(&out).unwrap().next().is_none());
    assert_no_temp("--out is a directory", &out);
}

/// Flags of `score` whose values are each valid but together bad input: one `xlstm: error:` line
/// (exit code 1), no output.
fn check_input_failure(what: &str, flags: &[&str], needles: &[&str]) {
    let s = Scratch::new();
    let out = s.out();
    let o = score(&fixture("large_a"), &s.good_ids(), &out, flags);
    assert_clean_failure(what, &o, &out, needles);
}

/// A bad flag value of `score` is a usage error (exit code 2) and writes nothing.
fn check_flag_failure(flag: &str, value: &str, needles: &[&str]) {
    let s = Scratch::new();
    let out = s.out();
    let o = score(&fixture("large_a"), &s.good_ids(), &out, &[flag, value]);
    assert_usage_error(&format!("{flag} {value}"), &o, flag, value, needles);
    assert_no_output(flag, &out);
}

#[test]
fn bad_dtype() {
    check_flag_failure("--dtype", "bf8", &["possible values: f32, f16"]);
}

#[test]
fn bad_prefill() {
    check_flag_failure("--prefill", "nonsense", &["possible values: scheduled"]);
}

#[test]
fn bad_chunk_size() {
    check_flag_failure("--chunk-size", "0", &["chunk_size 0 is outside 1..=256"]);
    check_flag_failure("--chunk-size", "257", &["chunk_size 257 is outside 1..=256"]);
}

/// Every value outside a flag's range or choices is a usage error like an unknown flag: clap's
/// `error: invalid value` message and exit code 2 (README: "2 bad command line"), before any
/// model is loaded. The values the issue listed, and the other constrained flags, on each
/// command that takes them.
#[test]
fn invalid_flag_values_exit_with_code_2() {
    let s = Scratch::new();
    let model = fixture("large_a").display().to_string();
    let ids = s.good_ids().display().to_string();
    let out = s.out().display().to_string();
    let score = ["score", "--model", &model, "--input-ids", &ids, "--out", &out];
    let generate = ["generate", "--model", &model];
    let bench = ["bench", "--preset", "tiny"];
    let tune = ["tune", "--preset", "tiny"];
    let perplexity = ["perplexity", "--model", &model, "--text", &ids];
    let cases: &[(&[&str], &str, &str, &str)] = &[
        // The issue's examples.
        (&score, "--mem-action", "explode", "unknown action `explode`"),
        (&score, "--prefill", "bogus", "possible values"),
        (&score, "--chunk-size", "300", "outside 1..=256"),
        (&score, "--gemv-lanes", "7", "gemv lanes must be"),
        (&score, "--mem-every", "5", "10..=60000"),
        (&generate, "--temperature", "-1", ">= 0"),
        // The other constrained flags.
        (&generate, "--top-p", "1.5", "(0, 1]"),
        (&generate, "--max-new-tokens", "1048577", "0..=1048576"),
        (&generate, "--mem-hard-pct", "150", "(0, 100]"),
        (&generate, "--mem-soft-mb", "0", "not in 1.."),
        (&generate, "--backend", "glide", "names no backend"),
        (&score, "--generate", "1048577", "0..=1048576"),
        (&score, "--decode-batch", "0", "decode_batch 0"),
        (&score, "--submit-dispatches", "0", "submit_dispatches 0"),
        (&score, "--record-threads", "1000", "record_threads 1000"),
        (&perplexity, "--dtype", "f8", "possible values"),
        (&bench, "--prefill-lens", "0", "not in 1..="),
        (&bench, "--repeats", "1001", "0..=1000"),
        (&bench, "--decode-tokens", "1048577", "0..=1048576"),
        (&bench[..1], "--preset", "huge", "possible values: 7b, 1b, small, tiny"),
        (&tune[..1], "--preset", "huge", "possible values: 7b, 1b, small, tiny"),
        (&tune, "--target", "speed", "possible values"),
        (&tune, "--mode", "annealing", "possible values"),
        (&tune, "--trials", "0", "not in 1..="),
        (&tune, "--seq", "0", "not in 1..="),
        (&tune, "--check-tokens", "1", "not in 2..="),
        (&tune, "--decode-tokens", "0", "not in 1..="),
        (&tune, "--population", "10001", "0..=10000"),
        (&tune, "--budget-seconds", "0", "positive number of seconds"),
        (&tune, "--check-tolerance", "NaN", ">= 0"),
    ];
    for (base, flag, value, needle) in cases {
        let mut args = base.to_vec();
        let joined = format!("{flag}={value}");
        // `--temperature=-1`: a negative value needs the `=` form.
        args.push(&joined);
        let o = output_within(
            {
                let mut c = Command::new(BIN);
                c.args(&args).env("XLSTM_CACHE_DIR", s.path("cache"));
                c
            },
            std::time::Duration::from_secs(30),
        );
        assert_usage_error(&format!("{} {flag} {value}", base[0]), &o, flag, value, &[needle]);
    }
    assert_no_output("bad flag values", &s.out());
}

// ---------------------------------------------------------------------------------------------
// Successes.

fn check_scores(out: &Path, t: usize, v: usize, n: usize) {
    let bytes = std::fs::read(out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let logits = st.tensor("logits").unwrap();
    assert_eq!(logits.dtype(), Dtype::F32);
    assert_eq!(logits.shape(), &[t, v]);
    let lf: Vec<f32> = logits
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert!(lf.iter().all(|x| x.is_finite()), "non-finite logits");
    if n == 0 {
        assert!(st.tensor("generated").is_err());
        return;
    }
    let gen = st.tensor("generated").unwrap();
    assert_eq!(gen.dtype(), Dtype::I64);
    assert_eq!(gen.shape(), &[n]);
    let ids: Vec<i64> = gen
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert!(ids.iter().all(|&i| (0..v as i64).contains(&i)), "generated ids {ids:?}");
    let gl = st.tensor("generated_logits").unwrap();
    assert_eq!(gl.dtype(), Dtype::F32);
    assert_eq!(gl.shape(), &[n, v]);
    let glf: Vec<f32> = gl
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    // generated_logits[0] is the last prompt row; generated[i] is the argmax of its row.
    assert_eq!(&glf[..v], &lf[(t - 1) * v..]);
    for (i, &id) in ids.iter().enumerate() {
        let row = &glf[i * v..(i + 1) * v];
        let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(row[id as usize], best, "generated[{i}] is not the argmax of its logits");
    }
}

#[test]
fn score_success_with_generate() {
    let s = Scratch::new();
    let out = s.out();
    let o = score(
        &fixture("large_a"),
        &s.good_ids(),
        &out,
        &["--generate", "2", "--dtype", "f32"],
    );
    assert_succeeded("score", &o);
    check_scores(&out, 7, 101, 2);
    // Only the output file, no temporary left over.
    let names: Vec<String> = std::fs::read_dir(s.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["scores.safetensors".to_string()]);
}

#[test]
fn heads_per_band_zero_is_valid() {
    let s = Scratch::new();
    let out = s.out();
    let o = score(
        &fixture("large_a"),
        &s.good_ids(),
        &out,
        &["--heads-per-band", "0", "--chunk-size", "4"],
    );
    assert_succeeded("score", &o);
    check_scores(&out, 7, 101, 0);
}

#[test]
fn score_sharded_checkpoint() {
    let s = Scratch::new();
    let out = s.out();
    let o = score(&fixture("large_c"), &s.good_ids(), &out, &["--generate", "1"]);
    assert_succeeded("score", &o);
    check_scores(&out, 7, 50, 1);
}

// ---------------------------------------------------------------------------------------------
// generate.

#[test]
fn generate_without_tokenizer() {
    let o = run(&[
        "generate",
        "--model",
        &fixture("large_a").display().to_string(),
        "--max-new-tokens",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let ctx = format!("exit {:?}, stderr:\n{stderr}", o.status.code());
    assert!(!o.status.success() && o.status.code() == Some(1), "{ctx}");
    assert!(!stderr.contains("panicked"), "{ctx}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{ctx}");
    assert!(lines[0].starts_with("xlstm: error: tokenizer:"), "{ctx}");
    assert!(lines[0].contains("tokenizer.json"), "{ctx}");
}

#[test]
fn generate_missing_model() {
    let s = Scratch::new();
    let o = run(&["generate", "--model", &s.path("nothing").display().to_string()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && o.status.code() == Some(1), "{stderr}");
    assert!(
        stderr.trim().lines().count() == 1 && stderr.starts_with("xlstm: error: "),
        "{stderr}"
    );
    assert!(stderr.contains("does not exist"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Original xLSTM (mLSTM + sLSTM blocks) checkpoints through the same commands.

/// Copies a v1 fixture, applies `edit` to its tensors and `edit_config` to its config.json.
fn edited_v1(
    s: &Scratch,
    name: &str,
    edit: impl FnOnce(&mut Vec<Tensor>),
    config: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> PathBuf {
    let dir = s.model_copy(name);
    edit_tensors(&dir, edit);
    edit_config(&dir, config);
    dir
}

#[test]
fn v1_score_success_with_generate() {
    let s = Scratch::new();
    let out = s.out();
    let o = score(
        &fixture("v1_a"),
        &s.good_ids(),
        &out,
        &["--generate", "3", "--dtype", "f32"],
    );
    assert_succeeded("score", &o);
    check_scores(&out, 7, 97, 3);
}

#[test]
fn v1_missing_tensor() {
    let s = Scratch::new();
    let name = "xlstm_block_stack.blocks.1.xlstm.slstm_cell._recurrent_kernel_";
    let dir = edited_v1(&s, "v1_a", |t| t.retain(|t| t.name != name), |_| {});
    check_model_failure("v1 missing tensor", &s, &dir, &["missing tensor", name]);
}

#[test]
fn v1_recurrent_kernel_in_the_other_layout() {
    // The weights are in the vanilla layout; the config claims the cuda backend.
    let s = Scratch::new();
    let dir = edited_v1(
        &s,
        "v1_a",
        |_| {},
        |c| {
            c["slstm_block"]["slstm"]["backend"] = "cuda".into();
        },
    );
    check_model_failure("v1 layout mismatch", &s, &dir, &["vanilla layout", "cuda"]);
}

#[test]
fn v1_unknown_block_kind() {
    let s = Scratch::new();
    let dir = edited_v1(
        &s,
        "v1_a",
        |_| {},
        |c| {
            c.insert("_block_map".into(), "0,2,0,1".into());
        },
    );
    check_model_failure("v1 unknown block kind", &s, &dir, &["unknown block kind"]);
}

#[test]
fn v1_inconsistent_dims() {
    // An embedding width the block configs do not have.
    let s = Scratch::new();
    let dir = edited_v1(
        &s,
        "v1_b",
        |_| {},
        |c| {
            c.insert("embedding_dim".into(), 40.into());
        },
    );
    check_model_failure("v1 embedding width", &s, &dir, &["differs from embedding_dim"]);
    // A vocabulary the weights do not have.
    let s = Scratch::new();
    let dir = edited_v1(
        &s,
        "v1_b",
        |_| {},
        |c| {
            c.insert("vocab_size".into(), 60.into());
        },
    );
    check_model_failure("v1 vocabulary", &s, &dir, &["token_embedding.weight"]);
    // Heads that do not divide the inner width.
    let s = Scratch::new();
    let dir = edited_v1(
        &s,
        "v1_b",
        |_| {},
        |c| {
            c["mlstm_block"]["mlstm"]["num_heads"] = 5.into();
        },
    );
    check_model_failure("v1 heads", &s, &dir, &["heads"]);
}

#[test]
fn v1_generate_with_the_shipped_model() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-v1-mini");
    let o = run(&[
        "generate",
        "--model",
        &model.display().to_string(),
        "--prompt",
        "Elizabeth",
        "--max-new-tokens",
        "6",
        "--dtype",
        "f32",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_succeeded("generate", &o);
    assert!(
        stdout.starts_with("Elizabeth") && stdout.len() > "Elizabeth".len(),
        "{stdout}"
    );
    // stdout holds the text alone (`> story.txt`); the summary line is on stderr.
    assert!(
        !stdout.contains("prompt tokens") && !stdout.contains("tok/s"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("prompt tokens "))
        .unwrap_or_default();
    assert!(summary.contains("decode") && summary.contains("tok/s"), "{stderr}");
}

/// `--prompt ""` generates from BOS alone when the model has one; without a BOS id the empty
/// prompt is refused with one line (exit code 1).
#[test]
fn generate_from_an_empty_prompt_starts_at_bos() {
    let mini = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-large-mini");
    let args = |m: &Path| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "generate",
            "--prompt",
            "",
            "--max-new-tokens",
            "4",
            "--ignore-eos",
            "--model",
        ])
        .arg(m);
        cmd
    };
    let o = output_within(args(&mini), std::time::Duration::from_secs(120));
    assert_succeeded("generate --prompt \"\"", &o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("prompt tokens 1 "), "{stderr}");
    assert!(stderr.contains("(4 tokens)"), "{stderr}");

    // The same model without a BOS id has nothing to start from.
    let s = Scratch::new();
    let dir = s.path("no-bos");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(&mini).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let config = dir.join("config.json");
    let mut c: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c.remove("bos_token_id");
    std::fs::write(&config, serde_json::to_vec(&c).unwrap()).unwrap();
    let o = output_within(args(&dir), std::time::Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("the prompt is empty"), "{stderr}");
}

/// `xlstm bench` on a checkpoint and on a preset: a JSON report with every field filled, and a
/// per-kernel profile whose prefill label says how much of a longer-than-one-segment prompt the
/// profiled pass covered.
#[test]
fn bench_reports_prefill_decode_and_a_profile() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-large-mini");
    let o = run(&[
        "bench",
        "--model",
        &model.display().to_string(),
        "--prefill-lens",
        "40,24",
        "--decode-tokens",
        "4",
        "--repeats",
        "1",
        "--segment",
        "32",
        "--profile",
        "--no-tune-cache",
        "--json",
    ]);
    assert_succeeded("bench", &o);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("bench --json prints JSON");
    let prefill = r["prefill"].as_array().expect("prefill rows");
    assert_eq!(prefill.len(), 2);
    for (row, len) in prefill.iter().zip([40, 24]) {
        assert_eq!(row["tokens"], len);
        assert!(row["tok_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["ttft_ms"].as_f64().unwrap() > 0.0, "{row}");
    }
    assert!(r["decode_tok_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["peak_pool_bytes"].as_u64().unwrap() >= r["weight_bytes"].as_u64().unwrap());
    // Which matrix-unit kernels prefill ran on, as `xlstm info` decides it.
    assert!(
        ["16x16", "8x8", "none"].contains(&r["matrix_units"].as_str().unwrap()),
        "{r}"
    );
    let kernels = r["kernels"].as_array().expect("kernel rows");
    let phases: std::collections::BTreeSet<&str> = kernels.iter().filter_map(|k| k["phase"].as_str()).collect();
    // The 40-token prompt runs as segments of at most 32 tokens; the profile covers the first.
    assert!(phases.contains("prefill 32/40"), "{phases:?}");
    assert!(phases.iter().any(|p| p.starts_with("decode x")), "{phases:?}");
    assert!(kernels.iter().all(|k| k["ms"].as_f64().unwrap() >= 0.0));
    // Rates come from the launchers' cost estimates: positive where one is recorded (the GEMMs
    // record theirs), null (`-` in the table) where none is, never a made-up 0.
    for k in kernels {
        for rate in ["gb_per_s", "tflop_per_s"] {
            assert!(k[rate].is_null() || k[rate].as_f64().unwrap() > 0.0, "{k}");
        }
    }
    let gemm = kernels.iter().find(|k| k["kernel"] == "gemm").expect("a gemm row");
    assert!(gemm["gb_per_s"].as_f64().unwrap() > 0.0 && gemm["tflop_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(r["profile_clock"], "timestamps", "{r}");
    // The load's pipeline compiles, counted and timed (a cold start's cost without a cache).
    assert!(r["kernel_compile"]["pipelines"].as_u64().unwrap() > 10, "{r}");
    assert!(r["kernel_compile"]["seconds"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["profile_note"].is_null(), "{r}");

    // Without timestamp queries (masked, as on an adapter that has none) every dispatch is timed
    // by its own submission, and the report says so, in the JSON and above the table.
    let args = [
        "bench",
        "--model",
        &model.display().to_string(),
        "--prefill-lens",
        "24",
        "--decode-tokens",
        "4",
        "--repeats",
        "1",
        "--profile",
        "--no-tune-cache",
    ];
    let masked = |json: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env("XLSTM_DISABLE_FEATURES", "timestamp");
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("running the xlstm binary")
    };
    let o = masked(true);
    assert_succeeded("bench --profile without timestamps", &o);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("bench --json prints JSON");
    assert_eq!(r["profile_clock"], "submissions", "{r}");
    assert!(
        r["profile_note"].as_str().unwrap().contains("no timestamp queries"),
        "{r}"
    );
    let kernels = r["kernels"].as_array().expect("kernel rows");
    assert!(kernels.iter().any(|k| k["phase"] == "prefill 24"), "{r}");
    assert!(kernels.iter().any(|k| k["kernel"] == "gemm"), "{r}");
    assert!(kernels.iter().all(|k| k["ms"].as_f64().unwrap() > 0.0), "{r}");
    let o = masked(false);
    assert_succeeded("bench --profile without timestamps", &o);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("note: per-kernel times are wall times of one dispatch per submission"),
        "{table}"
    );

    let o = run(&[
        "bench",
        "--preset",
        "tiny",
        "--prefill-lens",
        "16",
        "--decode-tokens",
        "2",
        "--repeats",
        "1",
        "--no-tune-cache",
        "--json",
    ]);
    assert_succeeded("bench --preset", &o);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("bench --json prints JSON");
    assert_eq!(r["model"], "preset tiny");
    assert!(r["kernels"].as_array().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Output paths another local user could have prepared: links, device nodes, FIFOs.

/// Runs `cmd` to completion, killing it after `limit` (a write that blocks on a FIFO must fail
/// the test, not hang it).
fn output_within(mut cmd: Command, limit: std::time::Duration) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the xlstm binary");
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?} (blocked?); stderr:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// `--out` naming a device node, a FIFO or a symbolic link is refused before any model work
/// (the model directory given does not even exist), in one line, and the node is left as it was.
#[cfg(unix)]
#[test]
fn score_out_that_is_a_device_fifo_or_link_is_refused_before_the_model_runs() {
    use std::os::unix::fs::FileTypeExt;
    let s = Scratch::new();
    let no_model = s.path("no_such_model");
    let fifo = s.path("out").join("fifo");
    mkfifo(&fifo);
    let victim = s.path("victim");
    std::fs::write(&victim, b"keep").unwrap();
    let link = s.path("out").join("link.safetensors");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for (out, kind) in [
        (PathBuf::from("/dev/full"), "a character device"),
        (fifo.clone(), "a FIFO"),
        (link.clone(), "a symbolic link"),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(["score", "--model"]).arg(&no_model);
        cmd.arg("--input-ids").arg(s.good_ids()).arg("--out").arg(&out);
        let o = output_within(cmd, std::time::Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}: {stderr}", out.display());
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("xlstm: error: invalid input: refusing to write"),
            "{stderr}"
        );
        assert!(stderr.contains(kind), "{stderr}");
        assert!(!stderr.contains("no_such_model"), "checked before the model: {stderr}");
        assert_no_temp(&out.display().to_string(), &out);
    }
    assert!(std::fs::metadata("/dev/full").unwrap().file_type().is_char_device());
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
}

/// Links planted at every name the old writer would have used for its temporary file
/// (`.NAME.tmp<pid>` for the next pids) are neither followed nor replaced: the output is written
/// next to them, and their target keeps its contents.
#[cfg(target_os = "linux")]
#[test]
fn score_ignores_links_planted_at_predictable_temp_names() {
    let s = Scratch::new();
    let out = s.out();
    let victim = s.path("victim");
    std::fs::write(&victim, b"root-only contents").unwrap();
    let last_pid: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let planted: Vec<PathBuf> = (last_pid + 1..last_pid + 200)
        .map(|pid| s.path("out").join(format!(".scores.safetensors.tmp{pid}")))
        .collect();
    for p in &planted {
        std::os::unix::fs::symlink(&victim, p).unwrap();
    }
    let o = score(&fixture("large_a"), &s.good_ids(), &out, &["--generate", "2"]);
    assert_succeeded("score", &o);
    check_scores(&out, 7, 101, 2);
    assert!(std::fs::symlink_metadata(&out).unwrap().file_type().is_file());
    assert_eq!(std::fs::read(&victim).unwrap(), b"root-only contents");
    for p in &planted {
        assert!(std::fs::symlink_metadata(p).unwrap().file_type().is_symlink());
    }
    // Nothing else was left: the output and the planted links only.
    let count = std::fs::read_dir(s.path("out")).unwrap().count();
    assert_eq!(count, planted.len() + 1);
}

/// `--mem-log` is written in place as the run goes; a link, FIFO or device at its path is refused
/// (the old `File::create` followed the link and blocked forever on the FIFO), and the node and a
/// link's target are untouched.
#[cfg(unix)]
#[test]
fn mem_log_refuses_links_fifos_and_devices() {
    let s = Scratch::new();
    let victim = s.path("victim");
    std::fs::write(&victim, b"keep").unwrap();
    let link = s.path("link.csv");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let fifo = s.path("fifo.csv");
    mkfifo(&fifo);
    for (log, kind) in [
        (link.clone(), "symbolic link"),
        (fifo.clone(), "FIFO"),
        (PathBuf::from("/dev/null"), "character device"),
    ] {
        let out = s.out();
        let mut cmd = Command::new(BIN);
        cmd.args(["score", "--model"]).arg(fixture("large_a"));
        cmd.arg("--input-ids").arg(s.good_ids()).arg("--out").arg(&out);
        cmd.arg("--mem-log").arg(&log);
        let o = output_within(cmd, std::time::Duration::from_secs(60));
        assert_clean_failure(&format!("--mem-log {}", log.display()), &o, &out, &[kind]);
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());

    // A regular file is truncated and rewritten.
    let log = s.path("mem.csv");
    std::fs::write(&log, "stale contents\n".repeat(100)).unwrap();
    let o = score(
        &fixture("large_a"),
        &s.good_ids(),
        &s.out(),
        &["--mem-log", &log.display().to_string()],
    );
    assert_succeeded("score --mem-log", &o);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("time,rss_mb,") && !text.contains("stale"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Sizes from user input.

/// Token counts that would overflow the size arithmetic (and once ran forever) are refused at
/// once, as usage errors naming the flag and the range.
#[test]
fn absurd_token_counts_are_refused_at_once() {
    let s = Scratch::new();
    let out = s.out();
    let huge = u64::MAX.to_string();
    let o = score(&fixture("large_a"), &s.good_ids(), &out, &["--generate", &huge]);
    assert_usage_error("--generate u64::MAX", &o, "--generate", &huge, &["0..=1048576"]);
    let o = score(&fixture("large_a"), &s.good_ids(), &out, &["--generate", "1048577"]);
    assert_usage_error("--generate 2^20 + 1", &o, "--generate", "1048577", &["0..=1048576"]);
    assert_no_output("--generate", &out);
    let mini = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-large-mini");
    let mut cmd = Command::new(BIN);
    cmd.args(["generate", "--model"]).arg(&mini);
    cmd.args(["--max-new-tokens", &huge]);
    let o = output_within(cmd, std::time::Duration::from_secs(60));
    assert_usage_error(
        "--max-new-tokens u64::MAX",
        &o,
        "--max-new-tokens",
        &huge,
        &["0..=1048576"],
    );
}

/// A soft memory limit above the hard one is refused (exit code 1, like other bad limit values),
/// naming both values and where each came from.
#[test]
fn soft_memory_limit_above_the_hard_limit_is_refused() {
    check_input_failure(
        "--mem-soft-mb 2000 --mem-hard-mb 1500",
        &["--mem-soft-mb", "2000", "--mem-hard-mb", "1500"],
        &[
            "soft memory limit 2000.0 MiB (--mem-soft-mb 2000)",
            "hard limit 1500.0 MiB (--mem-hard-mb 1500)",
        ],
    );
    let s = Scratch::new();
    let out = s.out();
    let mut cmd = Command::new(BIN);
    cmd.args(["score", "--model"]).arg(fixture("large_a"));
    cmd.arg("--input-ids").arg(s.good_ids()).arg("--out").arg(&out);
    cmd.args(["--mem-soft-pct", "90"]).env("XLSTM_MEM_HARD_PCT", "50");
    let o = output_within(cmd, std::time::Duration::from_secs(60));
    assert_clean_failure(
        "--mem-soft-pct 90, XLSTM_MEM_HARD_PCT=50",
        &o,
        &out,
        &["(--mem-soft-pct 90)", "(XLSTM_MEM_HARD_PCT=50: 50% of RAM)"],
    );
    assert_eq!(o.status.code(), Some(1));
}

// ---------------------------------------------------------------------------------------------
// tune's run directory.

/// A symbolic link or a file planted at the run directory's name, and any file already at
/// trials.csv (a link included), are refused; nothing is written through them.
#[cfg(unix)]
#[test]
fn tune_refuses_a_planted_run_directory_or_trials_file() {
    let s = Scratch::new();
    let runs = s.path("runs");
    std::fs::create_dir(&runs).unwrap();
    let elsewhere = s.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, runs.join("linked")).unwrap();
    std::fs::write(runs.join("file"), b"").unwrap();
    let victim = s.path("victim");
    std::fs::write(&victim, b"keep").unwrap();
    std::fs::create_dir(runs.join("planted")).unwrap();
    std::os::unix::fs::symlink(&victim, runs.join("planted").join("trials.csv")).unwrap();
    for (name, needles) in [
        ("linked", &["is a symbolic link, not a directory"][..]),
        ("file", &["is a regular file, not a directory"][..]),
        ("planted", &["trials.csv already exists"][..]),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "tune",
            "--preset",
            "tiny",
            "--trials",
            "1",
            "--seq",
            "16",
            "--repeats",
            "1",
        ]);
        cmd.args(["--decode-tokens", "2", "--check-tokens", "8", "--no-tune-cache"]);
        cmd.arg("--runs-dir").arg(&runs).args(["--run-name", name]);
        cmd.env("XDG_CACHE_HOME", s.path("cache"));
        let o = output_within(cmd, std::time::Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("xlstm: error: "), "{stderr}");
        for n in needles {
            assert!(last.contains(n), "{name}: expected `{n}` in: {stderr}");
        }
    }
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
}

/// Benchmark and tuning sizes that once overflowed an allocation (a panic) or ran for ever are
/// refused at once, as usage errors naming the flag.
#[test]
fn absurd_bench_and_tune_sizes_are_refused_at_once() {
    let huge = u64::MAX.to_string();
    let bench = ["bench", "--preset", "tiny", "--no-tune-cache"];
    let tune = ["tune", "--preset", "tiny", "--trials", "1", "--no-tune-cache"];
    for (base, flag) in [
        (&bench[..], "--prefill-lens"),
        (&bench[..], "--repeats"),
        (&bench[..], "--decode-tokens"),
        (&tune[..], "--seq"),
        (&tune[..], "--check-tokens"),
        (&tune[..], "--decode-tokens"),
        (&tune[..], "--population"),
    ] {
        let scratch = Scratch::new();
        let mut cmd = Command::new(BIN);
        cmd.args(base).args([flag, &huge]);
        if base[0] == "tune" {
            cmd.arg("--runs-dir").arg(scratch.path("runs"));
        }
        let o = output_within(cmd, std::time::Duration::from_secs(60));
        assert_usage_error(flag, &o, flag, &huge, &[&format!("{huge} is not in ")]);
        assert!(!scratch.path("runs").exists(), "{flag}: a run directory was created");
    }
}

/// The files tune writes at the end through the atomic writer (summary.csv in the run directory,
/// tuned.json in the cache directory) refuse a symbolic link planted at their name: the run fails
/// with one error line and the link's target keeps its contents.
#[cfg(unix)]
#[test]
fn tune_refuses_links_planted_at_its_summary_and_at_the_tuned_settings_store() {
    let s = Scratch::new();
    let victim = s.path("victim");
    std::fs::write(&victim, b"keep").unwrap();
    let (runs, cache) = (s.path("runs"), s.path("cache"));
    std::fs::create_dir_all(runs.join("planted")).unwrap();
    std::os::unix::fs::symlink(&victim, runs.join("planted").join("summary.csv")).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    std::os::unix::fs::symlink(&victim, cache.join("tuned.json")).unwrap();
    for (run_name, what) in [("planted", "summary.csv"), ("fresh", "tuned.json")] {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "tune",
            "--preset",
            "tiny",
            "--trials",
            "1",
            "--seq",
            "16",
            "--repeats",
            "1",
        ]);
        cmd.args(["--decode-tokens", "2", "--check-tokens", "8", "--json"]);
        cmd.arg("--runs-dir").arg(&runs).args(["--run-name", run_name]);
        cmd.env("XLSTM_CACHE_DIR", &cache);
        let o = output_within(cmd, std::time::Duration::from_secs(300));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("xlstm: error: ") && last.contains(what) && last.contains("symbolic link"),
            "{what}: {stderr}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep", "{what}");
    }
    assert!(std::fs::symlink_metadata(cache.join("tuned.json"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// The pipeline cache (written when a run ends, best effort) never writes through a link planted
/// at its file name: the run still succeeds, the link stays a link and its target is untouched.
#[cfg(unix)]
#[test]
fn pipeline_cache_does_not_write_through_a_planted_link() {
    let s = Scratch::new();
    let cache = s.path("cache");
    let score_with_cache = |out: &Path| {
        let mut cmd = Command::new(BIN);
        cmd.args(["score", "--model"]).arg(fixture("large_a"));
        cmd.arg("--input-ids").arg(s.good_ids()).arg("--out").arg(out);
        cmd.arg("--no-tune-cache").env("XLSTM_CACHE_DIR", &cache);
        output_within(cmd, std::time::Duration::from_secs(120))
    };
    assert_succeeded("first score", &score_with_cache(&s.out()));
    let cached: Vec<PathBuf> = std::fs::read_dir(&cache)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    if cached.is_empty() {
        eprintln!("this adapter keeps no pipeline cache; nothing to check");
        return;
    }
    let victim = s.path("victim");
    std::fs::write(&victim, b"keep").unwrap();
    for p in &cached {
        std::fs::remove_file(p).unwrap();
        std::os::unix::fs::symlink(&victim, p).unwrap();
    }
    assert_succeeded(
        "second score",
        &score_with_cache(&s.path("out").join("second.safetensors")),
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    for p in &cached {
        assert!(std::fs::symlink_metadata(p).unwrap().file_type().is_symlink());
    }
}

/// `xlstm ARGS`, failing the test if it has not ended within `secs`.
#[cfg(unix)]
fn run_within(args: &[&str], secs: u64) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    output_within(cmd, std::time::Duration::from_secs(secs))
}

/// A model's config.json and the token-id list are the user's inputs: a FIFO in
/// their place is refused at once (it used to block the reader forever), while links to regular
/// files (a download cache's layout) keep working.
#[cfg(unix)]
#[test]
fn fifo_inputs_are_refused_without_hanging_and_linked_model_files_load() {
    let s = Scratch::new();
    let out = s.out();
    let ids = s.good_ids();
    let model = s.model_copy("large_a");
    let arg = |p: &Path| p.display().to_string();

    // Every model file a link into another directory: loads and scores.
    let blobs = s.path("blobs");
    std::fs::create_dir(&blobs).unwrap();
    for e in std::fs::read_dir(&model).unwrap() {
        let e = e.unwrap();
        let blob = blobs.join(e.file_name());
        std::fs::rename(e.path(), &blob).unwrap();
        std::os::unix::fs::symlink(&blob, e.path()).unwrap();
    }
    let o = run_within(
        &[
            "score",
            "--model",
            &arg(&model),
            "--input-ids",
            &arg(&ids),
            "--out",
            &arg(&out),
        ],
        120,
    );
    assert_succeeded("score on linked model files", &o);
    std::fs::remove_file(&out).unwrap();

    // The token-id list as a FIFO.
    let fifo_ids = s.path("ids.fifo");
    mkfifo(&fifo_ids);
    let o = run_within(
        &[
            "score",
            "--model",
            &arg(&model),
            "--input-ids",
            &arg(&fifo_ids),
            "--out",
            &arg(&out),
        ],
        60,
    );
    assert_clean_failure("--input-ids FIFO", &o, &out, &["FIFO"]);

    // config.json as a FIFO.
    let config = model.join("config.json");
    std::fs::remove_file(&config).unwrap();
    mkfifo(&config);
    let o = run_within(
        &[
            "score",
            "--model",
            &arg(&model),
            "--input-ids",
            &arg(&ids),
            "--out",
            &arg(&out),
        ],
        60,
    );
    assert_clean_failure("config.json as a FIFO", &o, &out, &["FIFO"]);
}

/// tokenizer.json as a FIFO: `generate` (the command that needs it) fails with one line, not a hang.
#[cfg(unix)]
#[test]
fn a_fifo_as_tokenizer_json_is_refused_without_hanging() {
    let s = Scratch::new();
    let model = s.path("model");
    std::fs::create_dir(&model).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-large-mini");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(shipped.join(f), model.join(f)).unwrap();
    }
    mkfifo(&model.join("tokenizer.json"));
    let o = run_within(
        &[
            "generate",
            "--model",
            &model.display().to_string(),
            "--max-new-tokens",
            "2",
        ],
        60,
    );
    assert_clean_failure("tokenizer.json FIFO", &o, &s.out(), &["tokenizer.json"]);
}
