#!/bin/bash
# Device call 3 (final): tests of the final build (both phases on the matrix units), the hedge
# build with only phase 2 on the matrix units (xlstm-p2, end_to_end_p2), benches and profiles of
# the baseline, the final build and the hedge in the same call.
cd "$(dirname "$0")/../../.."
for f in .gpu/*.gz; do gunzip -c "$f" > "${f%.gz}"; chmod +x "${f%.gz}"; done
K=.gpu/kernels-ebb30625fab9350a; E=.gpu/end_to_end-51025d2fb9766a1c; V=.gpu/end_to_end_v1-4fcf059d8f3345ea
B="--unchecked-kernels --no-tune-cache"
J="--preset 7b --prefill-lens 512,2048 --decode-tokens 16 --repeats 2 $B --json"
P="--preset 7b --prefill-lens 512 --decode-tokens 8 --profile $B"
t() { local lim=$1; shift; local f=$1; shift; echo "== $* (limit $lim s)" >> $OUT/$f; ( time timeout -k 5 $lim "$@" ) >> $OUT/$f 2>&1; echo "== rc $?" >> $OUT/$f; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt 2>&1
KERNELS_VERBOSE=1 t 60 tests.txt $K --test-threads 1 --nocapture coop
t 40 tests.txt $E --test-threads 1 --nocapture
t 40 tests.txt .gpu/end_to_end_p2 --test-threads 1 --nocapture f16
for r in 1 2; do
  t 60 bench.txt .gpu/xlstm-base bench $J
  t 60 bench.txt .gpu/xlstm bench $J
done
t 60 bench.txt .gpu/xlstm-p2 bench $J
t 45 profile.txt .gpu/xlstm-base bench $P
t 45 profile.txt .gpu/xlstm bench $P
t 45 profile.txt .gpu/xlstm-p2 bench $P
t 40 tests.txt $V --test-threads 1 --nocapture
t 60 tests.txt $K --test-threads 1
