"""Compare `xlstm score` output with a reference case file written by tools/make_fixtures.py.

    python3 tools/compare_score.py CASE.safetensors OUT.safetensors [--tol 1e-3]

Prints the largest |logit difference| for the prompt and the generated tokens and whether the greedy
ids agree; exits 1 when a difference exceeds --tol or an id differs. Together with
`tools/make_fixtures.py --custom DIR ...` this checks checkpoints of any shape against the official
implementation:

    python3 tools/make_fixtures.py --custom /tmp/ck --embedding-dim 96 --num-heads 3 ...
    python3 -c "import json; from safetensors.numpy import load_file; \\
        json.dump(load_file('/tmp/ck/case_custom.safetensors')['input_ids'].tolist(), open('/tmp/ids.json', 'w'))"
    xlstm score --model /tmp/ck --input-ids /tmp/ids.json --out /tmp/out.safetensors --generate 8 --dtype f32
    python3 tools/compare_score.py /tmp/ck/case_custom.safetensors /tmp/out.safetensors
"""
import argparse
import sys

import numpy as np
from safetensors.numpy import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("out")
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    ref, out = load_file(a.case), load_file(a.out)
    ok = True
    for k in ("logits", "generated_logits"):
        if k in out and k in ref:
            d = float(np.abs(ref[k] - out[k]).max())
            print(f"{k}: max |diff| {d:.3e} (max |ref| {float(np.abs(ref[k]).max()):.2f})")
            ok &= d <= a.tol
    if "generated" in out and "generated" in ref:
        same = ref["generated"].tolist() == out["generated"].tolist()
        print(f"greedy ids identical: {same}")
        ok &= same
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
