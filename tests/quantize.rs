//! `xlstm quantize` and loading the checkpoints it writes: for both model families and both
//! formats, scoring the quantized directory gives bit-identical logits to quantizing the original
//! at load; the output's config field, copied files, metadata and tensor shapes; hostile
//! quantized files fail with one clear error line; quantize refuses a non-empty --out and leaves
//! nothing behind when it fails.
//!
//! Run with `WGPU_BACKEND=vulkan cargo test --release --test quantize`.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;
use xlstm_wgpu::gpu::quant::EncodedMatrix;
use xlstm_wgpu::model::WeightDtype;

const BIN: &str = env!("CARGO_BIN_EXE_xlstm");
const MODELS: [&str; 2] = ["xlstm-large-mini", "xlstm-v1-mini"];

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(BIN)
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("running the xlstm binary")
}

fn quantize(model: &Path, out: &Path, dtype: &str) -> Output {
    run(&[&"quantize", &"--model", &model, &"--out", &out, &"--dtype", &dtype])
}

fn succeeded(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// One `xlstm: error:` line mentioning every needle, exit code 1.
fn clean_failure(what: &str, o: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let ctx = format!("{what}: exit {:?}, stderr:\n{stderr}", o.status.code());
    assert_eq!(o.status.code(), Some(1), "{ctx}");
    assert!(!stderr.contains("panicked"), "{ctx}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("xlstm: error: ")).collect();
    assert_eq!(errors.len(), 1, "{ctx}\n(expected one `xlstm: error:` line)");
    let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    assert_eq!(last, errors[0], "{ctx}\n(the error must be the last line)");
    for n in needles {
        assert!(errors[0].contains(n), "{ctx}\n(expected the message to mention `{n}`)");
    }
}

/// Quantizes a shipped model into `scratch/name` and returns that directory.
fn quantized(scratch: &TempDir, name: &str, dtype: &str) -> PathBuf {
    let out = scratch.path().join(format!("{name}-{dtype}"));
    let o = quantize(&model_dir(name), &out, dtype);
    succeeded("quantize", &o);
    assert!(o.stdout.is_empty(), "quantize printed on stdout");
    out
}

/// `xlstm score` of `ids` with 3 greedy tokens; the output file's tensors.
fn score(scratch: &TempDir, model: &Path, extra: &[&str]) -> Result<HashMap<String, Vec<u8>>, Output> {
    let ids = scratch.path().join("ids.json");
    std::fs::write(&ids, "[0, 5, 17, 42, 3, 9, 11, 100, 7]").unwrap();
    let out = scratch.path().join("scores.safetensors");
    let _ = std::fs::remove_file(&out);
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"score",
        &"--model",
        &model,
        &"--input-ids",
        &ids,
        &"--out",
        &out,
        &"--generate",
        &"3",
        &"--no-tune-cache",
    ];
    for e in extra {
        args.push(e);
    }
    let o = run(&args);
    if !o.status.success() {
        assert!(!out.exists(), "a failed score left its output");
        return Err(o);
    }
    let bytes = std::fs::read(&out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    Ok(st.tensors().into_iter().map(|(n, v)| (n, v.data().to_vec())).collect())
}

struct Tensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// The tensors of `dir/model.safetensors` and its metadata.
fn read_tensors(dir: &Path) -> (Vec<Tensor>, Option<HashMap<String, String>>) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
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
    (out, meta.metadata().clone())
}

/// Rewrites `dir/model.safetensors` through `edit`, keeping its metadata.
fn edit_tensors(dir: &Path, edit: impl FnOnce(&mut Vec<Tensor>)) {
    let (mut tensors, meta) = read_tensors(dir);
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap(),
            )
        })
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, meta).unwrap(),
    )
    .unwrap();
}

fn tensor<'a>(tensors: &'a mut [Tensor], name: &str) -> &'a mut Tensor {
    tensors
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(json.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Copies a directory's files into `scratch/name`.
fn copy_dir(src: &Path, scratch: &TempDir, name: &str) -> PathBuf {
    let dst = scratch.path().join(name);
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

/// The matrices the loaders quantize, by the rule of each family: every 2-D tensor of xLSTM
/// Large (its norms and biases are 1-D); the original xLSTM's up/down projections (mLSTM layer
/// and FFN), embedding and lm_head.
fn expected_quantized(name: &str, tensors: &[Tensor]) -> Vec<String> {
    let mut out: Vec<String> = tensors
        .iter()
        .filter(|t| {
            if name == "xlstm-large-mini" {
                t.shape.len() == 2
            } else {
                [
                    "proj_up.weight",
                    "proj_down.weight",
                    "token_embedding.weight",
                    "lm_head.weight",
                ]
                .iter()
                .any(|s| t.name.ends_with(s))
            }
        })
        .map(|t| t.name.clone())
        .collect();
    out.sort();
    out
}

#[test]
fn quantized_checkpoints_score_bit_identically_to_quantizing_at_load() {
    let scratch = tempfile::tempdir().unwrap();
    for name in MODELS {
        let src = model_dir(name);
        let (src_tensors, _) = read_tensors(&src);
        for dtype in ["q8", "q4"] {
            let what = format!("{name} {dtype}");
            let q = quantized(&scratch, name, dtype);

            // config.json: the source's fields plus `quantization`.
            let mut want = read_json(&src.join("config.json"));
            want.as_object_mut().unwrap().insert(
                "quantization".into(),
                serde_json::json!({ "format": dtype, "group_size": 32, "version": 1 }),
            );
            assert_eq!(read_json(&q.join("config.json")), want, "{what}: config.json");
            // The other files copied, the weights not.
            for f in ["tokenizer.json", "README.md", "eval.json", "train_log.json"] {
                assert_eq!(
                    std::fs::read(q.join(f)).unwrap(),
                    std::fs::read(src.join(f)).unwrap(),
                    "{what}: {f}"
                );
            }
            let mut files: Vec<String> = std::fs::read_dir(&q)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            assert_eq!(
                files,
                [
                    "README.md",
                    "config.json",
                    "eval.json",
                    "model.safetensors",
                    "tokenizer.json",
                    "train_log.json"
                ],
                "{what}"
            );

            // The tensors: quantized matrices as U8 values and F16 scales, the rest as they were.
            let (tensors, meta) = read_tensors(&q);
            let meta = meta.expect("metadata");
            assert_eq!(
                meta.get("xlstm.quantization").map(String::as_str),
                Some(dtype),
                "{what}"
            );
            assert_eq!(meta.get("xlstm.group_size").map(String::as_str), Some("32"), "{what}");
            assert_eq!(
                meta.get("xlstm.format_version").map(String::as_str),
                Some("1"),
                "{what}"
            );
            let quantized: Vec<String> = tensors
                .iter()
                .filter(|t| t.dtype == Dtype::U8)
                .map(|t| t.name.clone())
                .collect();
            assert_eq!(
                quantized,
                expected_quantized(name, &src_tensors),
                "{what}: the quantized tensors"
            );
            let by_name: HashMap<&str, &Tensor> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
            for s in &src_tensors {
                let t = by_name[s.name.as_str()];
                if !quantized.contains(&s.name) {
                    assert_eq!(
                        (t.dtype, &t.shape, &t.data),
                        (s.dtype, &s.shape, &s.data),
                        "{what}: {}",
                        s.name
                    );
                    continue;
                }
                let head = s.name.ends_with("embedding.weight")
                    || s.name.ends_with("embeddings.weight")
                    || s.name == "lm_head.weight";
                let format = match (dtype, head) {
                    ("q8", _) | ("q4", true) => WeightDtype::Q8,
                    _ => WeightDtype::Q4,
                };
                let (rows, cols) = (s.shape[0], s.shape[1]);
                let kp = cols.next_multiple_of(32);
                let scales = by_name[format!("{}.scales", s.name).as_str()];
                assert_eq!(scales.dtype, Dtype::F16, "{what}: {}", s.name);
                if format == WeightDtype::Q8 {
                    assert_eq!(t.shape, [rows, kp], "{what}: {}", s.name);
                    assert_eq!(scales.shape, [rows, kp / 32], "{what}: {}", s.name);
                } else {
                    assert_eq!(t.shape, [rows, kp / 2], "{what}: {}", s.name);
                    assert_eq!(scales.shape, [rows, kp / 32, 2], "{what}: {}", s.name);
                }
                // Exactly the bytes of the host encoder.
                let data: Vec<f32> = match s.dtype {
                    Dtype::F32 => s
                        .data
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    Dtype::F16 => s
                        .data
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    Dtype::BF16 => s
                        .data
                        .chunks_exact(2)
                        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    d => panic!("{what}: {} has dtype {d:?}", s.name),
                };
                let m = EncodedMatrix::encode(format, &data, rows, cols, &s.name).unwrap();
                assert!(
                    m.values == t.data && m.scales == scales.data,
                    "{what}: {} bytes",
                    s.name
                );
            }
            assert_eq!(tensors.len(), src_tensors.len() + quantized.len(), "{what}");

            // Scoring: the quantized directory (its own format by default, or named) against
            // quantizing the original at load.
            let at_load = score(&scratch, &src, &["--dtype", dtype]).unwrap();
            let stored = score(&scratch, &q, &[]).unwrap();
            let named = score(&scratch, &q, &["--dtype", dtype]).unwrap();
            for t in ["logits", "generated_logits", "generated"] {
                assert!(at_load[t] == stored[t], "{what}: {t} differ");
                assert!(named[t] == stored[t], "{what}: {t} differ with --dtype");
            }
            let f16 = score(&scratch, &src, &[]).unwrap();
            assert!(
                f16["logits"] != stored["logits"],
                "{what}: the quantized model gives the f16 logits"
            );
        }
    }
}

#[test]
fn perplexity_of_a_quantized_checkpoint_equals_quantizing_at_load() {
    let scratch = tempfile::tempdir().unwrap();
    let name = "xlstm-v1-mini";
    let q = quantized(&scratch, name, "q4");
    let text = scratch.path().join("text.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. It was a bright cold day in April.",
    )
    .unwrap();
    let ppl = |model: &Path, extra: &[&str]| -> Value {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"perplexity",
            &"--model",
            &model,
            &"--text",
            &text,
            &"--json",
            &"--no-tune-cache",
        ];
        for e in extra {
            args.push(e);
        }
        let o = run(&args);
        succeeded("perplexity", &o);
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let a = ppl(&model_dir(name), &["--dtype", "q4"]);
    let b = ppl(&q, &[]);
    assert_eq!(a["nll"], b["nll"], "{a} vs {b}");
    assert_eq!(a["perplexity"], b["perplexity"], "{a} vs {b}");
    assert_eq!(b["dtype"], "q4");
}

#[test]
fn the_estimate_of_a_quantized_checkpoint_counts_its_stored_bytes() {
    use xlstm_wgpu::session::SessionOptions;
    use xlstm_wgpu::telemetry::Estimate;
    let scratch = tempfile::tempdir().unwrap();
    for name in MODELS {
        for (flag, dtype) in [("q8", WeightDtype::Q8), ("q4", WeightDtype::Q4)] {
            let q = quantized(&scratch, name, flag);
            let opts = SessionOptions::default();
            let at_load = Estimate::for_dir(&model_dir(name), dtype, &opts, 64, false).unwrap();
            let stored = Estimate::for_dir(&q, dtype, &opts, 64, false).unwrap();
            assert_eq!(at_load, stored, "{name} {flag}");
            assert!(Estimate::for_dir(&q, WeightDtype::F16, &opts, 64, false).is_err());
        }
    }
}

/// Runs score on a hostile copy of a quantized checkpoint and checks the failure.
fn hostile(scratch: &TempDir, q: &Path, case: &str, edit: impl FnOnce(&Path), needles: &[&str]) {
    let dir = copy_dir(q, scratch, case);
    edit(&dir);
    let o = score(scratch, &dir, &[]).expect_err(case);
    clean_failure(case, &o, needles);
}

#[test]
fn hostile_quantized_checkpoints_fail_cleanly() {
    let scratch = tempfile::tempdir().unwrap();
    let q = quantized(&scratch, "xlstm-large-mini", "q4");
    let field = |key: &'static str, v: Value| move |dir: &Path| edit_config(dir, |c| c["quantization"][key] = v);
    hostile(
        &scratch,
        &q,
        "group64",
        field("group_size", 64.into()),
        &["group size 64"],
    );
    hostile(
        &scratch,
        &q,
        "q3",
        field("format", "q3".into()),
        &["unknown format `q3`"],
    );
    hostile(&scratch, &q, "version2", field("version", 2.into()), &["version 2"]);
    hostile(
        &scratch,
        &q,
        "not-an-object",
        |d| edit_config(d, |c| c["quantization"] = "q4".into()),
        &["quantization"],
    );
    hostile(
        &scratch,
        &q,
        "no-field",
        |d| edit_config(d, |c| drop(c.remove("quantization"))),
        &["no `quantization` field"],
    );
    hostile(
        &scratch,
        &q,
        "format-disagrees",
        field("format", "q8".into()),
        &["q8", "q4"],
    );
    let proj = "backbone.blocks.1.mlstm_layer.out_proj.weight";
    hostile(
        &scratch,
        &q,
        "truncated",
        |d| {
            edit_tensors(d, |ts| {
                let t = tensor(ts, proj);
                let (rows, vb) = (t.shape[0], t.shape[1]);
                t.data = t.data.chunks_exact(vb).flat_map(|r| r[..vb - 16].to_vec()).collect();
                t.shape = vec![rows, vb - 16];
            })
        },
        &[proj, "bytes per row"],
    );
    hostile(
        &scratch,
        &q,
        "scales-rank",
        |d| {
            edit_tensors(d, |ts| {
                let t = tensor(ts, &format!("{proj}.scales"));
                t.shape = vec![t.shape.iter().product::<usize>()];
            })
        },
        &[proj, "scales"],
    );
    hostile(
        &scratch,
        &q,
        "scales-groups",
        |d| {
            edit_tensors(d, |ts| {
                let t = tensor(ts, &format!("{proj}.scales"));
                // Twice the rows of half the groups: the right size, the wrong shape.
                t.shape = vec![t.shape[0] * 2, t.shape[1] / 2, 2];
            })
        },
        &[proj],
    );
    hostile(
        &scratch,
        &q,
        "scales-dtype",
        |d| {
            edit_tensors(d, |ts| {
                let t = tensor(ts, &format!("{proj}.scales"));
                t.dtype = Dtype::BF16;
            })
        },
        &[proj, "F16"],
    );
    hostile(
        &scratch,
        &q,
        "no-scales",
        |d| edit_tensors(d, |ts| ts.retain(|t| t.name != format!("{proj}.scales"))),
        &[proj, "scales"],
    );
    hostile(
        &scratch,
        &q,
        "no-values",
        |d| edit_tensors(d, |ts| ts.retain(|t| t.name != proj)),
        &[proj, ".scales"],
    );
    hostile(
        &scratch,
        &q,
        "not-quantized",
        |d| {
            edit_tensors(d, |ts| {
                ts.retain(|t| t.name != format!("{proj}.scales"));
                let t = tensor(ts, proj);
                t.dtype = Dtype::F16;
                t.shape = vec![128, 128];
                t.data = vec![0; 128 * 128 * 2];
            })
        },
        &[proj, "not quantized"],
    );
    // A q4 lm_head in a q4 checkpoint (whose lm_head is q8).
    hostile(
        &scratch,
        &q,
        "q4-head",
        |d| {
            edit_tensors(d, |ts| {
                let (rows, cols) = (tensor(ts, "lm_head.weight").shape[0], 128);
                let data: Vec<f32> = (0..rows * cols).map(|i| ((i % 97) as f32 - 48.0) / 100.0).collect();
                let m = EncodedMatrix::encode(WeightDtype::Q4, &data, rows, cols, "lm_head").unwrap();
                let t = tensor(ts, "lm_head.weight");
                t.shape = vec![rows, m.values.len() / rows];
                t.data = m.values;
                let s = tensor(ts, "lm_head.weight.scales");
                s.shape = vec![rows, cols / 32, 2];
                s.data = m.scales;
            })
        },
        &["lm_head.weight", "stored as q4", "q8"],
    );
    hostile(
        &scratch,
        &q,
        "metadata-missing",
        |d| {
            let (tensors, _) = read_tensors(d);
            let views: Vec<(String, TensorView)> = tensors
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap(),
                    )
                })
                .collect();
            std::fs::write(
                d.join("model.safetensors"),
                safetensors::serialize(views, None).unwrap(),
            )
            .unwrap();
        },
        &["metadata"],
    );
    // Another format than the file's.
    let o = score(&scratch, &q, &["--dtype", "f16"]).expect_err("f16 on q4");
    clean_failure("--dtype f16 on a q4 checkpoint", &o, &["quantized to q4", "--dtype q4"]);
    let o = score(&scratch, &q, &["--dtype", "q8"]).expect_err("q8 on q4");
    clean_failure("--dtype q8 on a q4 checkpoint", &o, &["quantized to q4"]);
}

/// The entries of `dir` other than `keep`.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn quantize_refuses_bad_outputs_and_leaves_nothing_when_it_fails() {
    let scratch = tempfile::tempdir().unwrap();
    let src = model_dir("xlstm-large-mini");
    // A non-empty --out is refused and kept as it was.
    let out = scratch.path().join("full");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    clean_failure("non-empty --out", &quantize(&src, &out, "q8"), &["not empty"]);
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
    assert_eq!(leftovers(&out, &["keep.txt"]), Vec::<String>::new());
    // A file as --out.
    let file = scratch.path().join("file");
    std::fs::write(&file, "x").unwrap();
    clean_failure("file --out", &quantize(&src, &file, "q8"), &["not an empty directory"]);
    // Formats that are not quantized.
    let out = scratch.path().join("f16");
    clean_failure("--dtype f16", &quantize(&src, &out, "f16"), &["not a quantized format"]);
    assert!(!out.exists());
    // An empty --out is fine.
    let out = scratch.path().join("empty");
    std::fs::create_dir(&out).unwrap();
    succeeded("quantize into an empty dir", &quantize(&src, &out, "q8"));
    assert!(out.join("model.safetensors").is_file());
    // A quantized source is refused.
    let again = scratch.path().join("again");
    clean_failure("quantize twice", &quantize(&out, &again, "q4"), &["already"]);
    assert!(!again.exists());

    // A source without one of its matrices fails, leaving nothing next to --out.
    let broken = copy_dir(&src, &scratch, "broken");
    edit_tensors(&broken, |ts| {
        ts.retain(|t| t.name != "backbone.blocks.2.ffn.proj_down.weight")
    });
    let parent = scratch.path().join("outputs");
    std::fs::create_dir(&parent).unwrap();
    let out = parent.join("q");
    clean_failure(
        "missing tensor",
        &quantize(&broken, &out, "q4"),
        &["backbone.blocks.2.ffn.proj_down.weight"],
    );
    assert_eq!(
        leftovers(&parent, &[]),
        Vec::<String>::new(),
        "quantize left files behind"
    );
    // A value the format cannot hold fails while the tensors stream, also leaving nothing.
    let huge = copy_dir(&src, &scratch, "huge");
    edit_tensors(&huge, |ts| {
        let t = tensor(ts, "backbone.blocks.3.ffn.proj_down.weight");
        assert_eq!(t.dtype, Dtype::F16);
        t.dtype = Dtype::F32;
        let mut v: Vec<f32> = t
            .data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        v[5] = 1.0e9;
        t.data = bytemuck::cast_slice(&v).to_vec();
    });
    clean_failure(
        "out-of-range value",
        &quantize(&huge, &out, "q8"),
        &["backbone.blocks.3.ffn.proj_down.weight", "f16 cannot hold"],
    );
    assert_eq!(
        leftovers(&parent, &[]),
        Vec::<String>::new(),
        "quantize left files behind"
    );
}

/// Prompt logits and 4 greedy steps of `dir` loaded on `gpu` in `dtype` (`None`: the default).
fn library_logits(
    gpu: &std::sync::Arc<xlstm_wgpu::Gpu>,
    dir: &Path,
    dtype: Option<WeightDtype>,
) -> (WeightDtype, Vec<f32>) {
    use xlstm_wgpu::{LoadOptions, Logits, Model, Session, SessionOptions};
    let opts = LoadOptions {
        dtype,
        tokenizer: false,
        ..Default::default()
    };
    let model = Model::load(gpu.clone(), dir, &opts).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let v = model.vocab_size();
    let ids: Vec<u32> = [0u32, 5, 17, 3, 9, 11, 2].iter().map(|i| i % v as u32).collect();
    let mut s = Session::new(&model, SessionOptions::default()).unwrap();
    let mut out = s.prefill(&ids, Logits::All).unwrap();
    let mut next = (ids[ids.len() - 1] + 1) % v as u32;
    for _ in 0..4 {
        let row = s.step(next).unwrap();
        next = xlstm_wgpu::sample::argmax(&row) as u32;
        out.extend(row);
    }
    (model.dtype(), out)
}

/// The test fixtures cover what the shipped models do not: rows padded to whole groups
/// (E = 48, 40), BF16 and F32 sources, sharded sources (with an index), the unfused and fused
/// projection names, tied embeddings, an FFN width taken from the checkpoint; and, with a tiny
/// storage-binding limit, matrices split into row parts.
#[test]
fn fixtures_load_bit_identically_from_their_quantized_copies() {
    let fixture = |name: &str| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("fixtures")
            .join(name)
    };
    let scratch = tempfile::tempdir().unwrap();
    let plain = std::sync::Arc::new(xlstm_wgpu::Gpu::new(&Default::default()).unwrap());
    let split = std::sync::Arc::new(
        xlstm_wgpu::Gpu::new(&xlstm_wgpu::GpuOptions {
            binding_limit: Some(4096),
            ..Default::default()
        })
        .unwrap(),
    );
    for name in ["large_b", "large_c", "large_d", "v1_b", "v1_c", "v1_f"] {
        for (flag, dtype) in [("q8", WeightDtype::Q8), ("q4", WeightDtype::Q4)] {
            let what = format!("{name} {flag}");
            let out = scratch.path().join(format!("{name}-{flag}"));
            succeeded(&what, &quantize(&fixture(name), &out, flag));
            // One file; no case files, shards or index copied.
            let mut files: Vec<String> = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|f| f.ends_with(".safetensors") || f.ends_with(".json"))
                .collect();
            files.sort();
            assert_eq!(files, ["config.json", "model.safetensors"], "{what}");
            for gpu in [&plain, &split] {
                let at_load = library_logits(gpu, &fixture(name), Some(dtype));
                let stored = library_logits(gpu, &out, None);
                assert_eq!(stored.0, dtype, "{what}");
                assert!(at_load.1 == stored.1, "{what}: logits differ");
            }
        }
    }
}
