"""Where training runs: the device choices every entry point (config, CLI, app, launcher) offers, resolved once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def check_device_choice(requested: str) -> str:
    """Refuse a device name that is not one of DEVICES (one line naming the choices)."""
    if requested not in DEVICES:
        raise ValueError(f"device {requested!r} is not one of {', '.join(DEVICES)}")
    return requested


def resolve_device(requested: str) -> "torch.device":
    """'auto' -> cuda when a GPU is visible else cpu; 'cuda' without a GPU is an error that says what to do."""
    import torch  # here, so that config validation does not pay for importing torch

    check_device_choice(requested)
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or --device auto")
        return torch.device("cuda")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        logger.info("device auto: no CUDA GPU visible, training on the CPU")
    return torch.device("cpu")


def autocast_dtype(precision: str, device: "torch.device") -> "torch.dtype | None":
    """The autocast dtype of training on `device` (None: plain fp32). auto = bf16 on CUDA, fp32 on the CPU;
    bf16 / fp16 need CUDA (the fused CPU scan is fp32)."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "fp32":
        return None
    if device.type != "cuda":
        raise ValueError(f"precision {precision} needs a CUDA GPU; training runs on {device}: use precision fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16
