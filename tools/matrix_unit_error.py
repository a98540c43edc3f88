"""Where the f16 fast path's error enters: `xlstm score` logits of the official fixtures with the
matrix units on every kernel family, on the prefill GEMMs only, on the chunkwise phases only, and
on none, against the fixture (the official f32 implementation) and against the same GPU's f16
path with every matrix unit masked (f16 weights, f32 arithmetic: what the f16 path would give
without the f16 activations and operands).

    python3 tools/matrix_unit_error.py [XLSTM_BINARY] > accuracy.json

Runs `xlstm score` (default target/release/xlstm) on tests/fixtures/{large_a t1000, large_c t130,
large_b t37, large_d t300} with XLSTM_DISABLE_FEATURES set per path; plain Python, no packages.
"""
import array
import json
import os
import struct
import subprocess
import sys
import tempfile

CASES = [("large_a", "t1000"), ("large_c", "t130"), ("large_b", "t37"), ("large_d", "t300")]
# name -> XLSTM_DISABLE_FEATURES
PATHS = {
    "f16 matrix units everywhere": "",
    "f16 matrix units in the GEMMs only": "coop-chunk",
    "f16 matrix units in the chunkwise phases only": "coop-gemm",
    "f16 no matrix units": "coop-matrix",
}


def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        a = array.array("f" if v["dtype"] == "F32" else "q")
        a.frombytes(b[8 + n + s:8 + n + e])
        out[k] = a
    return out


def max_abs_diff(a, b):
    return max(abs(x - y) for x, y in zip(a, b))


def main():
    xlstm = sys.argv[1] if len(sys.argv) > 1 else "target/release/xlstm"
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model, case in CASES:
            fixture = read(f"tests/fixtures/{model}/case_{case}.safetensors")
            ids = os.path.join(tmp, "ids.json")
            with open(ids, "w") as f:
                json.dump(list(fixture["input_ids"]), f)
            runs = {}
            for name, mask in [("f32", "")] + list(PATHS.items()):
                out = os.path.join(tmp, "out.safetensors")
                env = dict(os.environ, XLSTM_DISABLE_FEATURES=mask)
                subprocess.run([xlstm, "score", "--model", f"tests/fixtures/{model}", "--input-ids", ids,
                                "--generate", str(len(fixture["generated"])), "--dtype",
                                "f32" if name == "f32" else "f16", "--out", out],
                               env=env, check=True, stdout=subprocess.DEVNULL)
                runs[name] = read(out)
            exact = runs["f16 no matrix units"]
            r = {}
            for name, v in runs.items():
                e = {"prompt_vs_official": round(max_abs_diff(v["logits"], fixture["logits"]), 6),
                     "generated_vs_official": round(max_abs_diff(v["generated_logits"], fixture["generated_logits"]), 6),
                     "greedy_ids_equal": list(v["generated"]) == list(fixture["generated"])}
                if name != "f32":
                    e["prompt_vs_f16_without_matrix_units"] = round(max_abs_diff(v["logits"], exact["logits"]), 6)
                    e["generated_vs_f16_without_matrix_units"] = round(
                        max_abs_diff(v["generated_logits"], exact["generated_logits"]), 6)
                r[name] = e
            result[f"{model} {case}"] = r
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
