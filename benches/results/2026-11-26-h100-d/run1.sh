#!/bin/bash
# Device call 1: coop chunkwise tests, then benches (baseline vs new in the same call), then the
# remaining test suites. Every step has its own time limit; outputs under $OUT.
cd "$(dirname "$0")/../../.."
K=$(ls .gpu/kernels-*); E=$(ls .gpu/end_to_end-*); V=$(ls .gpu/end_to_end_v1-*)
B="--unchecked-kernels --no-tune-cache"
t() { local lim=$1; shift; local f=$1; shift; echo "== $* (limit $lim s)" >> $OUT/$f; ( time timeout -k 5 $lim "$@" ) >> $OUT/$f 2>&1; echo "== rc $?" >> $OUT/$f; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt 2>&1
t 60 tests.txt $K --test-threads 1 --nocapture coop
t 60 bench.txt .gpu/xlstm-base bench --preset 7b --prefill-lens 512,2048 --decode-tokens 16 --repeats 2 $B --json
t 60 bench.txt .gpu/xlstm bench --preset 7b --prefill-lens 512,2048 --decode-tokens 16 --repeats 2 $B --json
t 45 profile.txt .gpu/xlstm-base bench --preset 7b --prefill-lens 512 --decode-tokens 8 --profile $B
t 45 profile.txt .gpu/xlstm bench --preset 7b --prefill-lens 512 --decode-tokens 8 --profile $B
t 40 tests.txt $E --test-threads 1 --nocapture
t 40 tests.txt $V --test-threads 1 f16
t 60 tests.txt $K --test-threads 1
