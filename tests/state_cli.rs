//! `xlstm generate --save-state / --load-state`: a greedy generation from prompt A + B in one run
//! gives the same text as saving the state after A in one process and continuing with B in
//! another (no second BOS), for both shipped model families; the saved state is the one at the
//! end of the run (prompt and every generated token); a state file from the other model is a
//! one-line error with exit code 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_xlstm");

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

/// `xlstm generate` greedily (temperature 0, the default) in f32 on `model` with `prompt`.
fn generate(model: &str, prompt: &str, tokens: usize, extra: &[&str], cache: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "generate",
        "--dtype",
        "f32",
        "--no-tune-cache",
        "--ignore-eos",
        "--model",
    ])
    .arg(model_dir(model))
    .args(["--prompt", prompt, "--max-new-tokens", &tokens.to_string()])
    .args(extra)
    .env("XLSTM_CACHE_DIR", cache);
    cmd.output().unwrap()
}

fn ok(what: &str, o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{what}: exit {:?}\n{stderr}", o.status.code());
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// The `prompt tokens N` of generate's summary line.
fn prompt_tokens(o: &Output) -> usize {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("prompt tokens "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    line["prompt tokens ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The `position` metadata of a state file.
fn state_position(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().as_ref().unwrap()["position"].parse().unwrap()
}

const A: &str = "It is a truth universally";
const B: &str = " acknowledged, that a single man";
const N: usize = 10;

fn continues_in_a_new_process(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let state = dir.path().join("a.state");
    let whole = generate(model, &format!("{A}{B}"), N, &[], &cache);
    let whole_text = ok("A+B", &whole);

    let save = ["--save-state", state.to_str().unwrap()];
    let first = generate(model, A, 0, &save, &cache);
    assert_eq!(ok("A --save-state", &first).trim_end(), A);
    let load = ["--load-state", state.to_str().unwrap()];
    let second = generate(model, B, N, &load, &cache);
    let second_text = ok("B --load-state", &second);

    // The split does not change the tokens (BPE splits at the space), and no BOS is added when
    // continuing: the two halves hold the tokens of the whole.
    assert_eq!(
        prompt_tokens(&first) + prompt_tokens(&second),
        prompt_tokens(&whole),
        "{model}: prompt tokens of A, B and A+B"
    );
    assert_eq!(state_position(&state), prompt_tokens(&first));
    let gen_whole = whole_text.strip_prefix(&format!("{A}{B}")).unwrap();
    let gen_split = second_text.strip_prefix(B).unwrap();
    assert!(gen_whole.trim().len() > 3, "{model}: little text: {whole_text:?}");
    assert_eq!(gen_split, gen_whole, "{model}: continued text differs");
}

#[test]
fn large_continues_in_a_new_process() {
    continues_in_a_new_process("xlstm-large-mini");
}

#[test]
fn v1_continues_in_a_new_process() {
    continues_in_a_new_process("xlstm-v1-mini");
}

/// The state saved at the end of a generation holds the prompt and every generated token (the
/// last one included, though `Session::generate` leaves it unfed), for decode batches of one and
/// of several steps; continuing from it works.
#[test]
fn saved_state_is_the_end_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for batch in ["1", "4"] {
        let state = dir.path().join(format!("end-{batch}.state"));
        let save = ["--save-state", state.to_str().unwrap(), "--decode-batch", batch];
        let o = generate("xlstm-large-mini", A, 7, &save, &cache);
        ok("A, 7 tokens, --save-state", &o);
        assert_eq!(state_position(&state), prompt_tokens(&o) + 7, "decode batch {batch}");
        let load = ["--load-state", state.to_str().unwrap()];
        let o = generate("xlstm-large-mini", B, 3, &load, &cache);
        assert!(ok("continue", &o).starts_with(B));
    }
}

/// A state made by the other model family is refused in one line, exit code 1, and a bad state
/// path is refused before anything runs.
#[test]
fn a_state_from_the_other_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let state = dir.path().join("large.state");
    let save = ["--save-state", state.to_str().unwrap()];
    ok("large --save-state", &generate("xlstm-large-mini", A, 0, &save, &cache));
    let load = ["--load-state", state.to_str().unwrap()];
    let o = generate("xlstm-v1-mini", B, 4, &load, &cache);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(o.stdout.is_empty(), "{}", String::from_utf8_lossy(&o.stdout));
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("xlstm: error: ") && lines[0].contains("not a usable state file"),
        "{stderr}"
    );
    assert!(lines[0].contains("large"), "{stderr}");

    // A directory as --save-state is refused before the model runs.
    let save = ["--save-state", dir.path().to_str().unwrap()];
    let o = generate("xlstm-large-mini", A, 2, &save, &cache);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(o.stdout.is_empty() && stderr.trim().lines().count() == 1, "{stderr}");
}
