"""The limits `xlstm bench --preset 7b` is held against, measured with PyTorch on the same card in
the same session as the peer baseline (bench_official.py):

- read bandwidth: a sum over 2 GiB of f16 (what a decode step does with the weights), and a
  device-to-device copy (read + write counted);
- the "GEMMs only, perfectly" prefill ceiling: cuBLAS bf16 GEMMs of the xLSTM-7B prefill's four
  projection shapes (fused q|k|v|o|i|f 4096 -> 12304, FFN up 4096 -> 21888, FFN down 10944 ->
  4096, out 4096 -> 4096) times 32 blocks, at S = 512, 2048 and 8192 tokens.

    python3 tools/peer/limits.py

Prints one JSON line per measurement. The decode ceiling is the model's weight bytes (`weight_bytes`
in `xlstm bench --json`) over the read bandwidth.
"""
import json
import time

import torch


def emit(**kw):
    print(json.dumps(kw), flush=True)


def median_seconds(fn, reps):
    fn()
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
    emit(gpu=torch.cuda.get_device_name(0), torch=torch.__version__)
    n = 1 << 30  # 2 GiB of f16
    x = torch.ones(n, dtype=torch.float16, device="cuda")
    t = median_seconds(lambda: x.sum(dtype=torch.float32), 20)
    emit(measure="read_bandwidth", bytes=2 * n, tb_per_s=round(2 * n / t / 1e12, 3))
    y = torch.empty_like(x)
    t = median_seconds(lambda: y.copy_(x), 20)
    emit(measure="copy_bandwidth", bytes=4 * n, tb_per_s=round(4 * n / t / 1e12, 3))
    del x, y
    torch.cuda.empty_cache()

    shapes = [(4096, 12304), (4096, 21888), (10944, 4096), (4096, 4096)]
    weights = [torch.randn(o, i, dtype=torch.bfloat16, device="cuda") * 0.02 for i, o in shapes]
    for s in [512, 2048, 8192]:
        xs = {i: torch.randn(s, i, dtype=torch.bfloat16, device="cuda") for i, _ in shapes}

        def prefill_gemms():
            for _ in range(32):
                for (i, _), w in zip(shapes, weights):
                    torch.matmul(xs[i], w.t())

        t = median_seconds(prefill_gemms, 5)
        flop = 2 * s * 32 * sum(i * o for i, o in shapes)
        emit(measure="prefill_gemms_bf16", seq=s, ms=round(t * 1e3, 2), tok_s=round(s / t, 1),
             tflop_per_s=round(flop / t / 1e12, 1))


if __name__ == "__main__":
    main()
