//! The end-to-end fixtures of tools/make_fixtures*.py and the score protocol both end-to-end
//! suites check them with.

use safetensors::SafeTensors;
use xlstm_wgpu::sample::argmax;
use xlstm_wgpu::{LoadOptions, Logits, Model, Session, SessionOptions, WeightDtype};

/// One case of a fixture: the prompt, the official logits for every prompt position, and the
/// official greedy continuation with its logits.
pub struct Case {
    pub name: String,
    pub ids: Vec<u32>,
    pub logits: Vec<f32>,
    pub generated: Vec<u32>,
    pub generated_logits: Vec<f32>,
}

/// `tests/fixtures/{dir}/case_{label}.safetensors`.
pub fn load_case(dir: &str, label: &str) -> Case {
    let bytes = std::fs::read(super::fixture(&format!("{dir}/case_{label}.safetensors"))).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |n: &str| -> Vec<f32> { bytemuck::pod_collect_to_vec(st.tensor(n).unwrap().data()) };
    let i64s = |n: &str| -> Vec<u32> {
        let v: Vec<i64> = bytemuck::pod_collect_to_vec(st.tensor(n).unwrap().data());
        v.into_iter().map(|x| x as u32).collect()
    };
    Case {
        name: format!("{dir}/{label}"),
        ids: i64s("input_ids"),
        logits: f32s("logits"),
        generated: i64s("generated"),
        generated_logits: f32s("generated_logits"),
    }
}

/// The fixture model `name` with `dtype` weights and no tokenizer.
pub fn load_model(name: &str, dtype: WeightDtype) -> Model {
    Model::load(
        super::gpu(),
        &super::fixture(name),
        &LoadOptions {
            dtype: Some(dtype),
            tokenizer: false,
            ..Default::default()
        },
    )
    .unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The score protocol: prefill with every row of logits, then greedy decode through `step`.
/// Returns (logits, generated ids, generated logits).
pub fn run(model: &Model, opts: SessionOptions, case: &Case) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let v = model.vocab_size();
    let mut s = Session::new(model, opts).unwrap();
    let logits = s.prefill(&case.ids, Logits::All).unwrap();
    let mut row = logits[(case.ids.len() - 1) * v..].to_vec();
    let (mut ids, mut gl) = (Vec::new(), Vec::new());
    for i in 0..case.generated.len() {
        let next = argmax(&row) as u32;
        ids.push(next);
        gl.extend_from_slice(&row);
        if i + 1 < case.generated.len() {
            row = s.step(next).unwrap();
        }
    }
    (logits, ids, gl)
}
