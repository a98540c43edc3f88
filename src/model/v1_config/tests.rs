use super::*;
use serde_json::json;

fn mini() -> Value {
    json!({
        "mlstm_block": {"mlstm": {"proj_factor": 2.0, "round_proj_up_dim_up": true,
            "round_proj_up_to_multiple_of": 64, "_proj_up_dim": 256, "conv1d_kernel_size": 4,
            "qkv_proj_blocksize": 4, "num_heads": 4, "embedding_dim": 128, "bias": false,
            "dropout": 0.0, "context_length": 512, "_num_blocks": 4, "_inner_embedding_dim": 256},
            "_num_blocks": 4, "_block_idx": null},
        "slstm_block": {"slstm": {"hidden_size": 128, "num_heads": 4, "num_states": 4,
            "backend": "vanilla", "function": "slstm", "num_gates": 4, "embedding_dim": 128,
            "conv1d_kernel_size": 4, "group_norm_weight": true, "dropout": 0.0},
            "feedforward": {"proj_factor": 1.3, "round_proj_up_dim_up": true,
            "round_proj_up_to_multiple_of": 64, "_proj_up_dim": 0, "act_fn": "gelu",
            "embedding_dim": -1, "dropout": 0.0, "bias": false, "ff_type": "ffn_gated", "_num_blocks": 1}},
        "context_length": 512, "num_blocks": 4, "embedding_dim": 128, "add_post_blocks_norm": true,
        "bias": false, "dropout": 0.0, "slstm_at": [1], "_block_map": "0,1,0,0", "vocab_size": 4096,
        "tie_weights": false
    })
}

#[test]
fn parses_the_package_dump() {
    let cfg = V1Config::from_json(&mini()).unwrap();
    use BlockKind::*;
    assert_eq!(cfg.blocks, vec![Mlstm, Slstm, Mlstm, Mlstm]);
    assert_eq!(cfg.mlstm_layer().unwrap().inner_dim, 256);
    assert_eq!(cfg.mlstm_layer().unwrap().head_dim(), 64);
    assert_eq!(cfg.slstm_layer().unwrap().head_dim, 32);
    assert_eq!(cfg.feedforward.as_ref().unwrap().nominal_dim, 192);
    assert_eq!(cfg.context_length, Some(512));
    assert_eq!(detect_family(&mini()), Family::V1);
    assert_eq!(
        detect_family(&json!({"num_heads": 8, "embedding_dim": 64})),
        Family::Large
    );
}

#[test]
fn slstm_at_all_and_null_mlstm_block() {
    let mut j = mini();
    j["slstm_at"] = json!("all");
    j.as_object_mut().unwrap().remove("_block_map");
    assert!(V1Config::from_json(&j)
        .unwrap()
        .blocks
        .iter()
        .all(|&b| b == BlockKind::Slstm));
    let mut j = mini();
    j["mlstm_block"] = Value::Null;
    j["_block_map"] = json!("1,1,1,1");
    assert!(V1Config::from_json(&j)
        .unwrap()
        .blocks
        .iter()
        .all(|&b| b == BlockKind::Slstm));
}

#[test]
fn rejects_bad_configs() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "missing embedding_dim",
            Box::new(|j| {
                j.as_object_mut().unwrap().remove("embedding_dim");
            }),
        ),
        (
            "missing vocab",
            Box::new(|j| {
                j.as_object_mut().unwrap().remove("vocab_size");
            }),
        ),
        (
            "slstm_at out of range",
            Box::new(|j| {
                j["slstm_at"] = json!([7]);
                j.as_object_mut().unwrap().remove("_block_map");
            }),
        ),
        (
            "block map kind",
            Box::new(|j| {
                j["_block_map"] = json!("0,2,0,0");
            }),
        ),
        (
            "block map mismatch",
            Box::new(|j| {
                j["_block_map"] = json!("0,0,0,0");
            }),
        ),
        (
            "no slstm block",
            Box::new(|j| {
                j["slstm_block"] = Value::Null;
            }),
        ),
        (
            "no blocks",
            Box::new(|j| {
                j["slstm_block"] = Value::Null;
                j["mlstm_block"] = Value::Null;
            }),
        ),
        (
            "heads",
            Box::new(|j| {
                j["mlstm_block"]["mlstm"]["num_heads"] = json!(3);
            }),
        ),
        (
            "inner dim",
            Box::new(|j| {
                j["mlstm_block"]["mlstm"]["_inner_embedding_dim"] = json!(192);
            }),
        ),
        (
            "slstm heads",
            Box::new(|j| {
                j["slstm_block"]["slstm"]["num_heads"] = json!(5);
            }),
        ),
        (
            "backend",
            Box::new(|j| {
                j["slstm_block"]["slstm"]["backend"] = json!("triton");
            }),
        ),
        (
            "act",
            Box::new(|j| {
                j["slstm_block"]["feedforward"]["act_fn"] = json!("tanh");
            }),
        ),
        (
            "function",
            Box::new(|j| {
                j["slstm_block"]["slstm"]["function"] = json!("lstm");
            }),
        ),
        (
            "ff_type",
            Box::new(|j| {
                j["slstm_block"]["feedforward"]["ff_type"] = json!("moe");
            }),
        ),
        (
            "mlstm conv 0",
            Box::new(|j| {
                j["mlstm_block"]["mlstm"]["conv1d_kernel_size"] = json!(0);
            }),
        ),
        (
            "dims",
            Box::new(|j| {
                j["slstm_block"]["slstm"]["embedding_dim"] = json!(64);
            }),
        ),
        (
            "type",
            Box::new(|j| {
                j["num_blocks"] = json!("four");
            }),
        ),
        (
            "not an object",
            Box::new(|j| {
                j["mlstm_block"] = json!([1]);
            }),
        ),
    ];
    for (what, edit) in cases {
        let mut j = mini();
        edit(&mut j);
        match V1Config::from_json(&j) {
            Err(Error::Config(_)) => {}
            other => panic!("{what}: expected Error::Config, got {other:?}"),
        }
    }
}
