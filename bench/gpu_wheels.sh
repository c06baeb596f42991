#!/usr/bin/env bash
# Prepares what the GPU check (bench/gpu_check.sh) needs and the GPU machine lacks, into .gpu/ (git-ignored):
#   .gpu/wheels/  pkd's pure-Python requirements that machine's image does not hold (Python 3.12, manylinux x86_64);
#                 its own torch, numpy, pyyaml, tqdm, pillow, pytest and scipy are used as they are
#   .gpu/data/    MNIST as torchvision's raw files (MNIST/raw/*-ubyte.gz, 11 MiB: uint8, where mnist.pkl.gz's float32
#                 pixels take 16 MiB), written from this machine's MNIST (fetched first if missing); pkd reads them
#                 as the same tensors
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
import gzip, struct, sys
from pathlib import Path
import numpy as np
import torch
from pkd.data import load_split
raw = Path(sys.argv[1]) / "MNIST" / "raw"
raw.mkdir(parents=True, exist_ok=True)
split = {name: load_split("mnist", name) for name in ("train", "val", "test")}  # fetched when not here yet
pixels = lambda s: (s.inputs[:, 0] * 255).round().to(torch.uint8).numpy()  # (N, 28, 28): the k of k/255
def write(stem, array):  # an IDX file of unsigned bytes, gzipped
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(raw / f"{stem}.gz", "wb", compresslevel=9) as fh:
        fh.write(header + np.ascontiguousarray(array, np.uint8).tobytes())
write("train-images-idx3-ubyte", np.concatenate([pixels(split["train"]), pixels(split["val"])]))  # 50k + 10k
write("train-labels-idx1-ubyte", np.concatenate([split["train"].labels.numpy(), split["val"].labels.numpy()]))
write("t10k-images-idx3-ubyte", pixels(split["test"]))
write("t10k-labels-idx1-ubyte", split["test"].labels.numpy())
P
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
extra=$(du -sb "$dest" | cut -f1)
total=$(( (tree + extra) / 1048576 ))
echo "prepared $dest: $(ls "$dest/wheels" | wc -l) wheels, $(( extra / 1048576 )) MiB; with the tracked tree ${total} MiB of 64"
if [ "$total" -ge 64 ]; then echo "error: ${total} MiB would not travel (limit 64 MiB)" >&2; exit 1; fi
