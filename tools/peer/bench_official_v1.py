"""Peer baseline for the ORIGINAL xLSTM (`xlstm.xLSTMLMModel`, mLSTM + sLSTM blocks): the official
package on one NVIDIA GPU, and a checkpoint of the same model for `xlstm bench --model DIR`, so both
run the same weights on the same card in the same session.

    python3 tools/peer/bench_official_v1.py --save DIR [--preset 125m] [--prefill 512,2048] [--decode 64]

Builds the model from the preset with random weights (package init, then every parameter perturbed
so no gate is trivial), writes DIR/config.json (`dataclasses.asdict(xLSTMLMModelConfig)`) and
DIR/model.safetensors (BF16), then times the package on CUDA:
  * prefill: `model(ids)` over [1, S] (parallel mLSTM backend; the sLSTM "vanilla" backend is the
    package's portable path — "cuda" needs the JIT-compiled CUDA extension),
  * decode: B=1 `model.step()` loop (what the package uses for generation),
in bfloat16 and float32. Prints one JSON line per measurement.

On a machine with torch but without the xlstm package, install its wheels without dependencies
(see tools/peer/bench_official.py).
"""
import argparse
import dataclasses
import json
import os
import time

import torch
from safetensors.torch import save_file
from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig,
                   sLSTMLayerConfig, xLSTMLMModel, xLSTMLMModelConfig)

# E, blocks, sLSTM block indices, mLSTM heads, sLSTM heads, vocab, context length
PRESETS = {
    # xLSTM[7:1]-like, ~125M parameters (paper's small LM shape): sLSTM heads of width 192.
    "125m": (768, 12, [3, 9], 4, 4, 50304, 2048),
    # Narrow sLSTM heads (width 64): the persistent sequence kernel's side of the crossover.
    "125m-h12": (768, 12, [3, 9], 4, 12, 50304, 2048),
}


def emit(**kw):
    print(json.dumps(kw), flush=True)


def config(preset):
    e, blocks, slstm_at, m_heads, s_heads, vocab, ctx = PRESETS[preset]
    return xLSTMLMModelConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(
            conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=m_heads)),
        slstm_block=sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(backend="vanilla", num_heads=s_heads, conv1d_kernel_size=4),
            feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu")),
        context_length=ctx, num_blocks=blocks, embedding_dim=e, slstm_at=slstm_at, vocab_size=vocab)


def build(cfg):
    torch.manual_seed(0)
    model = xLSTMLMModel(cfg)
    model.reset_parameters()
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def timed(fn, reps):
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--save", required=True)
    ap.add_argument("--preset", default="125m", choices=sorted(PRESETS))
    ap.add_argument("--prefill", default="512,2048")
    ap.add_argument("--decode", type=int, default=64)
    a = ap.parse_args()
    cfg = config(a.preset)
    model = build(cfg)
    os.makedirs(a.save, exist_ok=True)
    with open(os.path.join(a.save, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=2)
    sd = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(a.save, "model.safetensors"))
    params = sum(p.numel() for p in model.parameters())
    emit(preset=a.preset, params=params, saved=a.save, device=torch.cuda.get_device_name(0),
         torch=torch.__version__)
    lens = [int(x) for x in a.prefill.split(",") if x]
    for dtype in (torch.bfloat16, torch.float32):
        m = build(cfg).to("cuda", dtype)
        # Same weights as the saved checkpoint (rounded to bf16 first).
        m.load_state_dict({k: v.to(dtype) for k, v in sd.items()})
        name = str(dtype).replace("torch.", "")
        g = torch.Generator(device="cuda").manual_seed(1)
        with torch.inference_mode():
            for s in lens:
                ids = torch.randint(0, cfg.vocab_size, (1, s), device="cuda", generator=g)
                try:
                    m(ids)
                    t = timed(lambda: m(ids), 2)
                    emit(impl="official", dtype=name, phase="prefill", seq=s, seconds=t, tok_per_s=s / t)
                except Exception as ex:  # noqa: BLE001 — report and go on
                    emit(impl="official", dtype=name, phase="prefill", seq=s, error=str(ex)[:200])
            tok = torch.randint(0, cfg.vocab_size, (1, 1), device="cuda", generator=g)

            def decode(n):
                state = None
                x = tok
                for _ in range(n):
                    logits, state = m.step(x, state)
                    x = logits[:, -1:].argmax(-1)

            try:
                decode(4)
                t = timed(lambda: decode(a.decode), 2)
                emit(impl="official", dtype=name, phase="decode", tokens=a.decode, seconds=t,
                     tok_per_s=a.decode / t, mode="eager step()")
            except Exception as ex:  # noqa: BLE001
                emit(impl="official", dtype=name, phase="decode", error=str(ex)[:200])
        emit(impl="official", dtype=name, peak_gpu_gb=torch.cuda.max_memory_allocated() / 1e9)
        del m
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    main()
