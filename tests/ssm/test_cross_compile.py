"""The fused kernel compiles for 64-bit ARM: Debian's cross-compiler (g++-aarch64-linux-gnu) compiles
csrc/selective_scan.cpp against this torch's headers to an object file (compile only: nothing links or runs), with
the flags macOS gets (no OpenMP), for a target whose macros select the kernel's NEON branch.

It skips with one line where the cross-compiler is missing; CI (PKD_REQUIRE_KERNEL=1, .ci/run installs it) fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig

import pytest
from torch.utils.cpp_extension import include_paths

from pkd.ssm.cpu_info import kernel_flags
from pkd.ssm.cpu_kernel import _KERNEL_SOURCE

CROSS = "aarch64-linux-gnu-g++"


def test_kernel_compiles_for_aarch64_without_openmp(tmp_path, monkeypatch):
    if shutil.which(CROSS) is None:
        if os.environ.get("PKD_REQUIRE_KERNEL") == "1":
            pytest.fail(f"PKD_REQUIRE_KERNEL=1 but {CROSS} is missing: apt-get install g++-aarch64-linux-gnu")
        pytest.skip(f"{CROSS} not installed (apt-get install g++-aarch64-linux-gnu)")
    monkeypatch.delenv("PKD_KERNEL_CFLAGS", raising=False)
    cflags, _ = kernel_flags("Darwin", "arm64")  # what Apple silicon gets; -mcpu=native means nothing when crossing
    crossing = {"-mcpu=native": "-march=armv8-a", "-O3": "-O1"}  # -O1: the same code paths, half the compile time
    cflags = [crossing.get(f, f) for f in cflags]
    obj = tmp_path / "selective_scan.o"
    includes = [f"-I{p}" for p in [*include_paths(), sysconfig.get_paths()["include"]]]
    command = [CROSS, "-std=c++20", "-fPIC", "-c", *cflags, *includes, "-DTORCH_EXTENSION_NAME=pkd_scan_aarch64",
               str(_KERNEL_SOURCE), "-o", str(obj)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "-fopenmp" not in cflags
    data = obj.read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == 183  # e_machine EM_AARCH64
    macros = subprocess.run([CROSS, *cflags, "-dM", "-E", "-x", "c++", "-"], input="", capture_output=True, text=True,
                            timeout=120).stdout
    assert "#define __ARM_NEON 1" in macros and "__AVX2__" not in macros  # the kernel's NEON branch, 4 lanes
