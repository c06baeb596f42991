"""onnxruntime-web for the web-page tests: from the cache that `python -m pkd.web.runtime` fills (.ci/run does,
before the tests), never downloaded by a test. Missing: a failure under PKD_REQUIRE_WEB=1 (CI), else a skip."""

from __future__ import annotations

import os

import pytest


def require_web_runtime() -> None:
    from pkd.web.runtime import runtime_files

    try:
        runtime_files(download=False)
    except ValueError as exc:
        if os.environ.get("PKD_REQUIRE_WEB") == "1":
            pytest.fail(f"PKD_REQUIRE_WEB=1 but {exc}")
        pytest.skip(str(exc))
