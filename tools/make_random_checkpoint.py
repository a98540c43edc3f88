"""Write an xLSTM Large checkpoint of any shape with random weights, in the Hugging Face layout
(config.json + sharded model-0000N-of-0000M.safetensors + model.safetensors.index.json, BF16),
streaming tensor by tensor so the script's own memory stays small. Used to measure loading at the
7B shape where the real checkpoint cannot be downloaded:

    python3 tools/make_random_checkpoint.py OUT_DIR [--preset 7b] [--shard-gb 5]

Needs only numpy. The weights are N(0, 0.02) (norm weights 1, gate biases spread), so the model runs
but says nothing.
"""
import argparse
import json
import os
import struct

import numpy as np

PRESETS = {"7b": (4096, 8, 32, 50304), "1b": (2048, 4, 24, 50304), "small": (512, 4, 4, 4096)}


def tensors(e, nh, blocks, vocab):
    qk, v = e // 2, e
    f = -(-int(e * 2.6667) // 64) * 64
    yield "backbone.embeddings.weight", (vocab, e), "w"
    for i in range(blocks):
        p = f"backbone.blocks.{i}."
        yield p + "norm_mlstm.weight", (e,), "one"
        for n, rows in (("q", qk), ("k", qk), ("v", v), ("ogate_preact", v)):
            yield p + f"mlstm_layer.{n}.weight", (rows, e), "w"
        for n in ("igate_preact", "fgate_preact"):
            yield p + f"mlstm_layer.{n}.weight", (nh, e), "w"
            yield p + f"mlstm_layer.{n}.bias", (nh,), "bias"
        yield p + "mlstm_layer.multihead_norm.weight", (v,), "one"
        yield p + "mlstm_layer.out_proj.weight", (e, v), "w"
        yield p + "norm_ffn.weight", (e,), "one"
        yield p + "ffn.proj_up_gate.weight", (f, e), "w"
        yield p + "ffn.proj_up.weight", (f, e), "w"
        yield p + "ffn.proj_down.weight", (e, f), "w"
    yield "backbone.out_norm.weight", (e,), "one"
    yield "lm_head.weight", (vocab, e), "w"


def bf16_bytes(shape, kind, rng):
    n = int(np.prod(shape))
    if kind == "one":
        x = np.ones(n, np.float32)
    elif kind == "bias":
        x = rng.uniform(-2, 4, n).astype(np.float32)
    else:
        x = (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float32)
    return (x.view(np.uint32) >> 16).astype(np.uint16).tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--preset", default="7b", choices=sorted(PRESETS))
    ap.add_argument("--shard-gb", type=float, default=5.0)
    a = ap.parse_args()
    e, nh, blocks, vocab = PRESETS[a.preset]
    os.makedirs(a.out, exist_ok=True)
    specs = list(tensors(e, nh, blocks, vocab))
    # Group tensors into shards of about shard-gb.
    shards, cur, size = [], [], 0
    for name, shape, kind in specs:
        b = int(np.prod(shape)) * 2
        if cur and size + b > a.shard_gb * 1e9:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, shape, kind))
        size += b
    shards.append(cur)
    rng = np.random.default_rng(0)
    weight_map, total = {}, 0
    for si, shard in enumerate(shards):
        fname = f"model-{si + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {}, 0
        for name, shape, _ in shard:
            n = int(np.prod(shape)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * ((8 - len(hb) % 8) % 8)
        with open(os.path.join(a.out, fname), "wb") as fh:
            fh.write(struct.pack("<Q", len(hb)))
            fh.write(hb)
            for name, shape, kind in shard:
                fh.write(bf16_bytes(shape, kind, rng))
        total += off
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh)
    cfg = {
        "model_type": "xlstm", "architectures": ["xLSTMForCausalLM"], "embedding_dim": e, "num_heads": nh,
        "num_blocks": blocks, "vocab_size": vocab, "qk_dim_factor": 0.5, "v_dim_factor": 1.0,
        "ffn_proj_factor": 2.6667, "ffn_round_up_to_multiple_of": 64, "norm_eps": 1e-6, "gate_soft_cap": 15.0,
        "output_logit_soft_cap": 30.0, "add_out_norm": True, "use_bias": False, "weight_mode": "single",
        "chunk_size": 64, "eps": 1e-6, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
    }
    with open(os.path.join(a.out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=1)
    print(json.dumps({"out": a.out, "shards": len(shards), "bytes": total}))


if __name__ == "__main__":
    main()
