"""Fixtures for the pkd.ssm tests: the fused CPU kernel, built or loaded once per session."""

from __future__ import annotations

import os

import pytest

from pkd import ssm
from pkd.ssm.cpu_kernel import KERNEL, load_cached_kernel


@pytest.fixture(scope="session")
def cpp_kernel():
    """Builds (once, cached under $PKD_CACHE_DIR) or loads the fused kernel; skips only without a compiler."""
    if not ssm.build_cpu_kernel(verbose=True):
        if os.environ.get("PKD_REQUIRE_KERNEL") == "1":
            pytest.fail(f"PKD_REQUIRE_KERNEL=1 but the fused kernel is unavailable: {KERNEL.error}")
        pytest.skip(f"fused kernel unavailable: {KERNEL.error}")
    return load_cached_kernel()
