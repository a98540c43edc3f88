//! The recurrent state as a file: a state saved after prompt A and loaded in a new process
//! continues with B exactly as one prefill of A+B does, for both shipped model families; a
//! state from another model, dtype or format version, or a truncated or garbage file, is a
//! clear one-line error.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use xlstm_wgpu::sample::argmax;
use xlstm_wgpu::{LoadOptions, Logits, Model, SavedState, Session, SessionOptions, WeightDtype};

const BIN: &str = env!("CARGO_BIN_EXE_xlstm");

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

fn load(name: &str, dtype: WeightDtype) -> Model {
    let opts = LoadOptions {
        dtype: Some(dtype),
        tokenizer: false,
        ..Default::default()
    };
    Model::load(common::gpu(), &model_dir(name), &opts).unwrap()
}

/// A deterministic prompt of `n` ids below `vocab`, different for each `seed`.
fn ids(n: usize, seed: u32, vocab: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(40_503)) >> 7) % vocab as u32)
        .collect()
}

/// The `logits` tensor of an `xlstm score` output file.
fn score_logits(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("logits").unwrap();
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn score(model: &str, ids_path: &Path, out: &Path, extra: &[&Path], flags: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["score", "--dtype", "f32", "--no-tune-cache", "--model"])
        .arg(model_dir(model))
        .arg("--input-ids")
        .arg(ids_path)
        .arg("--out")
        .arg(out);
    for (f, p) in flags.iter().zip(extra) {
        cmd.arg(f).arg(p);
    }
    cmd.env("XLSTM_CACHE_DIR", out.with_extension("cache"));
    cmd.output().unwrap()
}

fn write_ids(path: &Path, ids: &[u32]) {
    std::fs::write(path, serde_json::to_vec(ids).unwrap()).unwrap();
}

/// Prefill A, save (CLI), continue with B in a new process (CLI) == prefill A+B in one go.
fn continues_in_a_new_process(name: &str) {
    let model = load(name, WeightDtype::F32);
    let v = model.vocab_size();
    let (a, b) = (ids(45, 1, v), ids(23, 2, v));
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_ids(&p("a.json"), &a);
    write_ids(&p("b.json"), &b);
    let o = score(name, &p("a.json"), &p("a.out"), &[&p("a.state")], &["--save-state"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = score(name, &p("b.json"), &p("b.out"), &[&p("a.state")], &["--load-state"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = score_logits(&p("b.out"));

    let mut ab = a.clone();
    ab.extend(&b);
    let mut s = Session::new(&model, SessionOptions::default()).unwrap();
    let all = s.prefill(&ab, Logits::All).unwrap();
    let want = &all[a.len() * v..];
    assert_eq!(got.len(), want.len());
    let d = common::score::max_abs_diff(&got, want);
    assert!(d < 1e-4, "{name}: continued logits differ by {d}");
    for (g, w) in got.chunks(v).zip(want.chunks(v)) {
        assert_eq!(argmax(g), argmax(w), "{name}: greedy ids differ");
    }

    // The tensors carry the state layout's shapes (not only flat lengths).
    let bytes = std::fs::read(p("a.state")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let flat = (0..st.len())
        .filter(|i| st.tensor(&format!("state.{i}")).unwrap().shape().len() < 2)
        .count();
    // Only the m vectors [NH] are one-dimensional: at most one tensor in three.
    assert!(
        flat * 3 <= st.len(),
        "{name}: {flat} of {} state tensors are flat",
        st.len()
    );

    // The library reads the file the CLI wrote, and its own round trip is exact.
    let saved = SavedState::read(&p("a.state"), &model).unwrap();
    assert_eq!(saved.position, a.len());
    let mut s = Session::new(&model, SessionOptions::default()).unwrap();
    s.prefill(&a, Logits::None).unwrap();
    let mine = s.save_state().unwrap();
    let d = mine
        .tensors
        .iter()
        .flatten()
        .zip(saved.tensors.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-4, "{name}: the saved state differs by {d}");
    mine.write(&p("lib.state"), &model).unwrap();
    assert_eq!(SavedState::read(&p("lib.state"), &model).unwrap(), mine);
}

#[test]
fn large_state_continues_in_a_new_process() {
    continues_in_a_new_process("xlstm-large-mini");
}

#[test]
fn v1_state_continues_in_a_new_process() {
    continues_in_a_new_process("xlstm-v1-mini");
}

/// The error of reading `path` for `model`, as one line.
fn read_error(path: &Path, model: &Model) -> String {
    let e = SavedState::read(path, model).unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    eprintln!("{e}");
    e
}

/// Replaces `from` by `to` (same length) in the file's header.
fn patch(path: &Path, from: &str, to: &str) -> PathBuf {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from} not in the header"));
    bytes[at..at + from.len()].copy_from_slice(to.as_bytes());
    let out = path.with_extension("patched");
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn mismatched_and_damaged_states_are_clear_errors() {
    let large = load("xlstm-large-mini", WeightDtype::F32);
    let v1 = load("xlstm-v1-mini", WeightDtype::F32);
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);

    let mut s = Session::new(&v1, SessionOptions::default()).unwrap();
    s.prefill(&ids(9, 3, v1.vocab_size()), Logits::None).unwrap();
    s.save_state().unwrap().write(&p("v1.state"), &v1).unwrap();
    let mut s = Session::new(&large, SessionOptions::default()).unwrap();
    s.prefill(&ids(9, 3, large.vocab_size()), Logits::None).unwrap();
    let saved = s.save_state().unwrap();
    saved.write(&p("large.state"), &large).unwrap();
    // A state of one model cannot be written as another's.
    assert!(saved.write(&p("x.state"), &v1).is_err());

    let e = read_error(&p("v1.state"), &large);
    assert!(e.contains("V1") || e.contains("v1"), "{e}");

    let large16 = load("xlstm-large-mini", WeightDtype::F16);
    let e = read_error(&p("large.state"), &large16);
    assert!(e.contains("f32") && e.contains("f16"), "{e}");

    let bumped = patch(
        &p("large.state"),
        "\"format_version\":\"1\"",
        "\"format_version\":\"9\"",
    );
    let e = read_error(&bumped, &large);
    assert!(e.contains("format version 9"), "{e}");

    // Same family and dtype, another shape: the shape hash catches it.
    let hash = "\"model_hash\":\"".to_string();
    let bytes = std::fs::read(p("large.state")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let at = text.find(&hash).unwrap() + hash.len();
    let old = &text[at..at + 16];
    let new: String = old.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    let other = patch(&p("large.state"), &format!("{hash}{old}"), &format!("{hash}{new}"));
    let e = read_error(&other, &large);
    assert!(e.contains("another shape"), "{e}");

    let full = std::fs::read(p("large.state")).unwrap();
    for cut in [4, 40, full.len() / 2, full.len() - 1] {
        std::fs::write(p("cut.state"), &full[..cut]).unwrap();
        let e = read_error(&p("cut.state"), &large);
        assert!(e.contains("cut.state"), "{e}");
    }
    std::fs::write(p("garbage.state"), b"this is not a safetensors file at all").unwrap();
    let e = read_error(&p("garbage.state"), &large);
    assert!(e.contains("garbage.state"), "{e}");
    let e = read_error(&p("missing.state"), &large);
    assert!(e.contains("missing.state"), "{e}");

    // Through the CLI: a clean failure with the message, no output file.
    write_ids(&p("b.json"), &ids(5, 4, large.vocab_size()));
    let o = score(
        "xlstm-large-mini",
        &p("b.json"),
        &p("b.out"),
        &[&p("v1.state")],
        &["--load-state"],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("v1.state"), "{err}");
    assert!(!p("b.out").exists());
}
