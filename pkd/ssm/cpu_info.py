"""What CPU this is, for the fused kernel's build and for every figure printed beside it: the model name, its widest
SIMD extension, and the compiler flags the kernel is built with on this platform.

Read from ``/proc/cpuinfo`` on Linux and ``sysctl`` on macOS; nothing here imports torch, so the bench scripts and
``python -m pkd backends`` print it cheaply.
"""

from __future__ import annotations

import functools
import os
import platform
import shlex
import subprocess
from pathlib import Path

X86 = ("x86_64", "amd64", "i386", "i686")
ARM64 = ("aarch64", "arm64")
EXTRA_FLAGS_ENV = "PKD_KERNEL_CFLAGS"


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _sysctl(name: str) -> str:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name, e.g. "AMD EPYC 7B13" (x86 Linux; with its family and model where a VM shows a bare
    "AMD EPYC"), "Apple M2" (macOS), else the ARM implementer/part codes or the machine type."""
    info = _cpuinfo()
    if info.get("model name"):
        name = info["model name"]
        if not any(ch.isdigit() for ch in name) and "cpu family" in info:  # a VM's bare "AMD EPYC": say which one
            name += f" family {info['cpu family']} model {info.get('model', '?')}"
        return name
    if platform.system() == "Darwin":
        return _sysctl("machdep.cpu.brand_string") or platform.machine()
    if "CPU implementer" in info:
        return f"ARM CPU implementer {info['CPU implementer']} part {info.get('CPU part', '?')}"
    return platform.processor() or platform.machine() or "unknown CPU"


def vector_extension(flags: str | None = None, machine: str | None = None) -> str:
    """The widest SIMD extension the CPU reports: "AVX-512F", "AVX2", "AVX", "NEON", "SSE2" or "none known".

    Args:
        flags: the CPU's flag words (default: /proc/cpuinfo's "flags" or ARM "Features").
        machine: the machine type (default: platform.machine()), for macOS on Apple silicon, which lists no flags.
    """
    if flags is None:
        info = _cpuinfo()
        flags = info.get("flags") or info.get("Features") or ""
    words = set(flags.lower().split())
    machine = (machine or platform.machine()).lower()
    for flag, name in (("avx512f", "AVX-512F"), ("avx2", "AVX2"), ("avx", "AVX"), ("asimd", "NEON"),
                       ("neon", "NEON"), ("sse2", "SSE2")):
        if flag in words:
            return name
    return "NEON" if machine in ARM64 else "none known"


def kernel_flags(system: str | None = None, machine: str | None = None) -> tuple[list[str], list[str]]:
    """Compiler and linker flags for the fused kernel on this platform (or the one named).

    ``-march=native`` on x86, ``-mcpu=native`` on 64-bit ARM (GCC and clang both take it there), nothing
    CPU-specific elsewhere; OpenMP everywhere but macOS, whose Apple clang has no ``-fopenmp`` (torch's
    parallel_for then runs each scan on one thread, still correct). ``$PKD_KERNEL_CFLAGS`` is appended, e.g.
    ``-mno-avx512f`` to build and time the AVX2 kernel on an AVX-512 CPU (a separate cache entry).

    Returns:
        (extra_cflags, extra_ldflags) for torch.utils.cpp_extension.load.
    """
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    cflags, ldflags = ["-O3", "-ffp-contract=fast"], []
    if machine in X86:
        cflags.append("-march=native")
    elif machine in ARM64:
        cflags.append("-mcpu=native")
    if system != "Darwin":
        cflags.append("-fopenmp")
        ldflags.append("-fopenmp")
    return cflags + shlex.split(os.environ.get(EXTRA_FLAGS_ENV, "")), ldflags


def describe_cpu() -> str:
    """One line naming this CPU for benchmark output, e.g. "AMD EPYC family 25 model 17 (x86_64, AVX-512F, 2 cores)"."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_model()} ({platform.machine()}, {vector_extension()}, {cores} cores)"
