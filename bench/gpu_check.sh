#!/usr/bin/env bash
# The prepared GPU check (docs/gpu.md): on a machine with a CUDA GPU, in at most 8 minutes, says with figures whether
# pkd trains and serves there; writes REPORT_DIR/gpu_check.md and .json; exits 1 if anything that should work did not.
# Without a GPU it says so in one line and exits 0.
#   bash bench/gpu_wheels.sh             # here, once, with network: .gpu/wheels + .gpu/data (ignored, < 64 MiB with the tree)
#   bash bench/gpu_check.sh [REPORT_DIR] # there, no network needed
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check-report}}"
if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
  # pkd's packages the GPU machine lacks, beside (never over) its own torch: installed into a folder of their own
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pkd-gpu-site \
    .gpu/wheels/*.whl || { echo "error: installing .gpu/wheels failed; re-make them with bash bench/gpu_wheels.sh" >&2; exit 1; }
  export PYTHONPATH="/tmp/pkd-gpu-site${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -f .gpu/data/MNIST/raw/t10k-images-idx3-ubyte.gz ] && export PKD_DATA_DIR="$PWD/.gpu/data"
exec python3 bench/gpu_check.py --out "$out"
