//! The models shipped in models/ (xlstm-large-mini: xLSTM Large; xlstm-v1-mini: the original xLSTM
//! with mLSTM and sLSTM blocks; both trained with the official implementation, see their READMEs)
//! against the numbers the official implementation recorded in their eval.json: mean per-token loss
//! on a held-out passage within 1e-3, and the greedy continuation of a fixed prompt token for token.

mod common;

use serde_json::Value;
use std::path::PathBuf;
use xlstm_wgpu::sample::argmax;
use xlstm_wgpu::{
    LoadOptions, Logits, Model, PrefillStrategy, Sampler, SamplerConfig, Session, SessionOptions, WeightDtype,
};

const MODELS: [&str; 2] = ["xlstm-large-mini", "xlstm-v1-mini"];

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

fn eval(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(model_dir(name).join("eval.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn load(name: &str, dtype: WeightDtype) -> Model {
    Model::load(
        common::gpu(),
        &model_dir(name),
        &LoadOptions {
            dtype: Some(dtype),
            tokenizer: true,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Mean next-token cross-entropy of `tokens` under the model.
fn mean_loss(model: &Model, tokens: &[u32]) -> f64 {
    let v = model.vocab_size();
    let mut s = Session::new(model, SessionOptions::default()).unwrap();
    let logits = s.prefill(tokens, Logits::All).unwrap();
    let mut total = 0.0;
    for (t, row) in logits.chunks(v).take(tokens.len() - 1).enumerate() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        total += lse - row[tokens[t + 1] as usize] as f64;
    }
    total / (tokens.len() - 1) as f64
}

#[test]
fn held_out_loss_matches_the_official_implementation() {
    for name in MODELS {
        let e = eval(name);
        let passage = ids(&e["passage"]["token_ids"]);
        let want = e["passage"]["mean_ce_loss"].as_f64().unwrap();
        for dtype in [WeightDtype::F32, WeightDtype::F16] {
            let got = mean_loss(&load(name, dtype), &passage);
            eprintln!("{name} {dtype:?}: mean loss {got:.6} (official {want:.6})");
            assert!((got - want).abs() < 1e-3, "{name} {dtype:?}: loss {got} vs {want}");
        }
    }
}

#[test]
fn greedy_continuation_matches_token_for_token() {
    for name in MODELS {
        greedy_continuation(name);
    }
}

fn greedy_continuation(name: &str) {
    let e = eval(name);
    let g = &e["greedy"];
    let prompt = ids(&g["prompt_token_ids"]);
    let want = ids(&g["continuation_token_ids"]);
    let model = load(name, WeightDtype::F32);
    assert_eq!(model.bos_token_id(), Some(0), "{name}: config names BOS 0");

    // The tokenizer reproduces the official prompt ids (BOS 0, then the text).
    let tok = model.tokenizer().unwrap();
    let mut encoded = vec![0];
    encoded.extend(tok.encode(g["prompt_text"].as_str().unwrap()).unwrap());
    assert_eq!(encoded, prompt);

    // Step by step, logits read back each time.
    let mut s = Session::new(&model, SessionOptions::default()).unwrap();
    let mut row = s.prefill(&prompt, Logits::Last).unwrap();
    let mut got = Vec::new();
    for _ in 0..want.len() {
        let id = argmax(&row) as u32;
        got.push(id);
        row = s.step(id).unwrap();
    }
    assert_eq!(got, want, "{name}: step path");

    // generate(): greedy batches with the ids kept on the GPU.
    let mut s = Session::new(&model, SessionOptions::default()).unwrap();
    let mut sampler = Sampler::new(SamplerConfig::default()).unwrap();
    let stats = s
        .generate(&prompt, want.len(), &mut sampler, &[], &mut |_| Ok(true))
        .unwrap();
    assert_eq!(stats.generated, want, "{name}: batched greedy path");
    let text = tok.decode(&stats.generated).unwrap();
    assert_eq!(text, g["continuation_text"].as_str().unwrap());
}

/// The quantized decode steps round their inputs to int8 (where the adapter has integer dot
/// products): they follow the float path of the same format within that rounding, and they are
/// continuous in the state. Decode steps after the recurrent and the scheduled prefill start from
/// states that differ by f32 rounding (f16's steps then differ by ~1e-5); there the quantized
/// steps must agree as closely. With q4's bias term taken over the exact input sum instead of the
/// rounded one, the Large mini's q4 steps were 0.49-0.60 from the float path and moved by 0.32
/// with the prefill strategy on lavapipe. Where the chunkwise prefill runs on matrix units the
/// two states differ by its f16 products (f16's steps 6e-3 apart on the H200): that moves many
/// int8 roundings, so the quantized steps then differ by up to the int8 rounding's own size
/// (H200 q8: 0.13), which the second bound allows.
#[test]
fn quantized_decode_steps_follow_the_float_path() {
    let ids: Vec<u32> = (0..24u32).map(|i| (i * 37 + 11) % 200 + 5).collect();
    let head = 16;
    for name in MODELS {
        // (steps vs the prefill of the same format, steps after recurrent vs scheduled prefill)
        let measure = |dtype: WeightDtype| {
            let model = load(name, dtype);
            let v = model.vocab_size();
            let float = Session::new(&model, SessionOptions::default())
                .unwrap()
                .prefill(&ids, Logits::All)
                .unwrap();
            let steps_after = |strategy: PrefillStrategy| {
                let mut opts = SessionOptions::default();
                opts.schedule.strategy = strategy;
                let mut s = Session::new(&model, opts).unwrap();
                s.prefill(&ids[..head], Logits::None).unwrap();
                let mut rows = Vec::new();
                for &id in &ids[head..] {
                    rows.extend(s.step(id).unwrap());
                }
                rows
            };
            let recurrent = steps_after(PrefillStrategy::Recurrent);
            let scheduled = steps_after(PrefillStrategy::Scheduled);
            let to_float = max_abs_diff(&scheduled, &float[head * v..]);
            let between = max_abs_diff(&scheduled, &recurrent);
            eprintln!(
                "{name} {dtype:?}: steps vs prefill {to_float:.3e}, after recurrent vs scheduled prefill {between:.3e}"
            );
            (to_float, between)
        };
        let (f16_to_prefill, f16_between) = measure(WeightDtype::F16);
        for dtype in [WeightDtype::Q8, WeightDtype::Q4] {
            let (to_float, between) = measure(dtype);
            let bound = if f16_between < 1e-4 { 1e-3 } else { 0.35 };
            assert!(
                between <= bound,
                "{name} {dtype:?}: steps after two prefills differ by {between} (f16: {f16_between})"
            );
            assert!(
                to_float < 0.35 + f16_to_prefill,
                "{name} {dtype:?}: steps differ from the prefill by {to_float} (f16: {f16_to_prefill})"
            );
        }
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}
