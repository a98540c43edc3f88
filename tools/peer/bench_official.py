"""Peer baseline: the official xLSTM stack (xlstm 2.0.6 + mlstm_kernels 2.0.6, PyTorch, Triton)
on one NVIDIA GPU, xLSTM-7B shapes with random bf16 weights — the numbers `xlstm bench --preset 7b`
is compared against, measured on the same card in the same session.

    python3 tools/peer/bench_official.py [CONFIG_INDEX] [--quick]

On a machine with torch and triton but without the xlstm packages, install the three small
wheels without dependencies first:
    pip download --no-deps -d wheels xlstm==2.0.6 mlstm-kernels==2.0.6 einops==0.8.2 dacite
    pip install --no-deps --target pylib wheels/*.whl && export PYTHONPATH=$PWD/pylib

Prints one JSON line per measurement. Prefill: forward over [1, S] tokens (inference mode,
TFLA chunkwise kernel). Decode: B=1 greedy step loop with recurrent state, eager PyTorch
(no CUDA graphs, no torch.compile) and, where it works, with CUDA graphs.
"""
import json
import sys
import time

import torch

from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig


def emit(**kw):
    print(json.dumps(kw), flush=True)


def build(chunkwise, sequence, step):
    cfg = xLSTMLargeConfig(
        embedding_dim=4096, num_heads=8, num_blocks=32, vocab_size=50304,
        mode="inference", chunkwise_kernel=chunkwise, sequence_kernel=sequence,
        step_kernel=step, chunk_size=128, return_last_states=True,
        autocast_kernel_dtype="bfloat16", inference_state_dtype="float32",
        weight_mode="fused",
    )
    with torch.device("meta"):
        model = xLSTMLarge(cfg)
    model = model.to_empty(device="cuda").to(torch.bfloat16)
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.02, generator=g)
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 1.0, generator=g)
    model.eval()
    return model


def timed(fn, reps):
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    quick = "--quick" in sys.argv
    emit(gpu=torch.cuda.get_device_name(0), torch=torch.__version__)
    kernels = [("chunkwise--triton_xl_chunk", "native_sequence__triton", "triton"),
               ("chunkwise--triton_limit_chunk", "native_sequence__triton", "triton"),
               ("chunkwise--triton_xl_chunk", "native_sequence__native", "native"),
               ("chunkwise--native_autograd", "native_sequence__native", "native")]
    only = [a for a in sys.argv[1:] if a.isdigit()]
    if not only:  # each configuration in its own process: a Triton crash ends only that one
        import subprocess
        for i in range(len(kernels)):
            r = subprocess.run([sys.executable, __file__, str(i)] + (["--quick"] if quick else []))
            if r.returncode != 0:
                emit(config=kernels[i], crashed=r.returncode)
        return
    for chunkwise, sequence, step in [kernels[int(only[0])]]:
        try:
            model = build(chunkwise, sequence, step)
        except Exception as e:  # noqa: BLE001
            emit(kernel=chunkwise, error=repr(e)[:300])
            continue
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            for S in ([2048] if quick else [512, 2048, 8192]):
                x = torch.randint(0, 50304, (1, S), device="cuda")
                try:
                    model(x)  # warm-up / compile
                    t = timed(lambda: model(x), 3 if quick else 5)
                    emit(kernel=chunkwise, phase="prefill", seq=S, ms=round(t * 1e3, 2),
                         tok_s=round(S / t, 1))
                except Exception as e:  # noqa: BLE001
                    emit(kernel=chunkwise, phase="prefill", seq=S, error=repr(e)[:300])
            # decode: B=1, state carried, eager
            try:
                x = torch.randint(0, 50304, (1, 128), device="cuda")
                _, state = model(x)
                tok = torch.zeros((1, 1), dtype=torch.long, device="cuda")
                for _ in range(8):
                    logits, state = model(tok, state)
                n = 64 if quick else 128

                def loop():
                    nonlocal state, tok
                    for _ in range(n):
                        logits, state = model(tok, state)
                        tok = logits[:, -1:].argmax(-1)

                t = timed(loop, 3)
                emit(kernel=chunkwise, phase="decode_eager", tokens=n, tok_s=round(n / t, 1),
                     ms_per_tok=round(t / n * 1e3, 3),
                     peak_gb=round(torch.cuda.max_memory_allocated() / 1e9, 2))
            except Exception as e:  # noqa: BLE001
                emit(kernel=chunkwise, phase="decode_eager", error=repr(e)[:300])
            # decode with a CUDA graph of one step
            try:
                tok = torch.zeros((1, 1), dtype=torch.long, device="cuda")
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        logits, state = model(tok, state)
                torch.cuda.current_stream().wait_stream(s)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    g_logits, g_state = model(tok, state)
                n = 128

                def gloop():
                    for _ in range(n):
                        graph.replay()
                        tok.copy_(g_logits[:, -1:].argmax(-1))

                t = timed(gloop, 3)
                emit(kernel=chunkwise, phase="decode_cudagraph", tokens=n, tok_s=round(n / t, 1),
                     ms_per_tok=round(t / n * 1e3, 3))
            except Exception as e:  # noqa: BLE001
                emit(kernel=chunkwise, phase="decode_cudagraph", error=repr(e)[:300])
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
