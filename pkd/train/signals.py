"""Stopping a training process cleanly: SIGTERM becomes an exception that unwinds to the CLI."""

from __future__ import annotations

import signal


class StopRequested(BaseException):
    """Raised anywhere in the process on SIGTERM: the run stops cleanly (a BaseException, so that no broad
    `except Exception` on the way, e.g. while reading data, can mistake it for a failure)."""


def install_stop_handler() -> None:
    """Turn SIGTERM into StopRequested so a stopped run ends cleanly with its last checkpoint intact."""
    def handler(signum, frame):  # noqa: ARG001
        raise StopRequested(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
