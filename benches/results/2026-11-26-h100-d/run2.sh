#!/bin/bash
# Device call 2: coop chunkwise tests (verbose) and the layout probe, benches (baseline vs new in
# the same call), profiles (default schedule and one head band), then the remaining test suites.
cd "$(dirname "$0")/../../.."
K=$(ls .gpu/kernels-*); E=$(ls .gpu/end_to_end-*); V=$(ls .gpu/end_to_end_v1-*)
B="--unchecked-kernels --no-tune-cache"
t() { local lim=$1; shift; local f=$1; shift; echo "== $* (limit $lim s)" >> $OUT/$f; ( time timeout -k 5 $lim "$@" ) >> $OUT/$f 2>&1; echo "== rc $?" >> $OUT/$f; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt 2>&1
KERNELS_VERBOSE=1 t 60 tests.txt $K --test-threads 1 --nocapture coop
t 40 tests.txt $E --test-threads 1 --nocapture
t 60 bench.txt .gpu/xlstm-base bench --preset 7b --prefill-lens 512,2048 --decode-tokens 16 --repeats 2 $B --json
t 60 bench.txt .gpu/xlstm bench --preset 7b --prefill-lens 512,2048 --decode-tokens 16 --repeats 2 $B --json
t 45 profile.txt .gpu/xlstm-base bench --preset 7b --prefill-lens 512 --decode-tokens 8 --profile $B
t 45 profile.txt .gpu/xlstm bench --preset 7b --prefill-lens 512 --decode-tokens 8 --profile $B
t 45 profile_band8.txt .gpu/xlstm-base bench --preset 7b --prefill-lens 512,2048 --decode-tokens 8 --profile $B --heads-per-band 8
t 45 profile_band8.txt .gpu/xlstm bench --preset 7b --prefill-lens 512,2048 --decode-tokens 8 --profile $B --heads-per-band 8
t 40 tests.txt $V --test-threads 1
t 60 tests.txt $K --test-threads 1
