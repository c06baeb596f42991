#!/usr/bin/env bash
# Prepares what the GPU check (bench/gpu_check.sh) needs and the GPU machine lacks, into .gpu/ (git-ignored):
#   .gpu/wheels/  pkd's pure-Python requirements that machine's image does not hold (Python 3.12, manylinux x86_64);
#                 its own torch, numpy, pyyaml, tqdm, pillow, pytest and scipy are used as they are
#   .gpu/data/    MNIST (mnist.pkl.gz, from this machine's data folder, fetched first if missing)
# and fails if .gpu/ plus the tracked tree would not fit the 64 MiB that travels to the GPU machine.
#   bash bench/gpu_wheels.sh [--dest DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu
if [ "${1:-}" = "--dest" ]; then dest="$2"; fi
# thop: FLOPs counts (imported by training and inference); mambapy: tests/ssm's upstream baseline
wheels=("thop==0.1.1.post2209072238" "mambapy==1.2.0")
mkdir -p "$dest/wheels" "$dest/data"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d "$dest/wheels" "${wheels[@]}"
python3 - "$dest/data" <<'P'
import shutil, sys
from pathlib import Path
from pkd.data import load_split, resolve_data_root
load_split("mnist", "test")  # fetches mnist.pkl.gz into the data folder when it is not there yet
source = resolve_data_root() / "mnist.pkl.gz"
shutil.copyfile(source, Path(sys.argv[1]) / "mnist.pkl.gz")
P
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
extra=$(du -sb "$dest" | cut -f1)
total=$(( (tree + extra) / 1048576 ))
echo "prepared $dest: $(ls "$dest/wheels" | wc -l) wheels, $(( extra / 1048576 )) MiB; with the tracked tree ${total} MiB of 64"
if [ "$total" -ge 64 ]; then echo "error: ${total} MiB would not travel (limit 64 MiB)" >&2; exit 1; fi
