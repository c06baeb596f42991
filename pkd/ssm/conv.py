"""Mamba's causal depthwise conv1d and its SiLU, ``silu(conv1d(x)[..., :L])``: on the fused CPU kernel where the
scan runs there (the custom operator ``pkd::conv_silu_fwd``, backward ``pkd::conv_silu_bwd``, with fake
implementations so ``torch.export`` traces it), else torch's ``F.conv1d`` and ``F.silu``.

Why: torch's depthwise conv backward cost more than the scan's in a classroom student's training step (torch
profiler, 2-core EPYC); the kernel's version reads Mamba's strided x (a channel slice of in_proj's output) in
place and fuses the SiLU. Letters: B batch, ED channels, L length, K kernel size (d_conv).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import register_flop_formula

from pkd.ssm.cpu_kernel import _loaded_kernel, load_cached_kernel
from pkd.ssm.dispatch import scan_backend


def causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``silu(F.conv1d(x, weight, bias, padding=K - 1, groups=ED)[..., :L])``.

    Args:
        x: (B, ED, L), any strides. weight: (ED, 1, K) (nn.Conv1d's depthwise weight). bias: (ED,) or None.
    Returns:
        (B, ED, L): computed by the fused kernel for float32 CPU tensors when the scan backend here is ``cpp`` and
        a gradient is wanted (training, where the time goes), by torch otherwise (inference, so evaluations
        reproduce saved runs' figures bit for bit; other devices and dtypes; the ``export`` and ``torch`` backends).
    """
    K = weight.shape[-1]
    training = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    fused = (training and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
             and (bias is None or bias.dtype == torch.float32) and scan_backend(x.device) == "cpp"
             and load_cached_kernel() is not None)
    if not fused:
        return F.silu(F.conv1d(x, weight, bias, padding=K - 1, groups=x.shape[1])[..., :x.shape[2]])
    return conv_silu_fwd_op(x, weight.reshape(weight.shape[0], K), bias)


@torch.library.custom_op("pkd::conv_silu_fwd", mutates_args=())
def conv_silu_fwd_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Kernel forward: x (B, ED, L) float32 (any strides), weight (ED, K) and bias (ED,) contiguous float32."""
    return _loaded_kernel().conv_fwd(x, weight.contiguous(), None if bias is None else bias.contiguous())


@conv_silu_fwd_op.register_fake
def _conv_silu_fwd_fake(x, weight, bias):
    return x.new_empty(x.shape)


@torch.library.custom_op("pkd::conv_silu_bwd", mutates_args=())
def _conv_silu_bwd_op(gout: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
                      ) -> list[torch.Tensor]:
    """Kernel backward: gx (B, ED, L), gweight per batch row (B, ED, K), gbias per batch row (B, ED) or empty."""
    return list(_loaded_kernel().conv_bwd(gout, x, weight.contiguous(), None if bias is None else bias.contiguous()))


@_conv_silu_bwd_op.register_fake
def _conv_silu_bwd_fake(gout, x, weight, bias):
    batch, dim, _ = x.shape
    return [x.new_empty(x.shape), x.new_empty(batch, dim, weight.shape[1]),
            x.new_empty(batch, dim) if bias is not None else x.new_empty(0)]


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight, bias)


def _backward(ctx, gout):
    x, weight, bias = ctx.saved_tensors
    gx, gw, gb = _conv_silu_bwd_op(gout.float().contiguous(), x, weight, bias)
    return gx, gw.sum(0), gb.sum(0) if bias is not None else None  # (B, ED, L), (ED, K), (ED,)


torch.library.register_autograd("pkd::conv_silu_fwd", _backward, setup_context=_setup_context)


@register_flop_formula(torch.ops.pkd.conv_silu_fwd)
def _conv_flops(x_shape, w_shape, bias_shape, out_shape=None, **kwargs) -> int:
    """What torch's FlopCounterMode counts for the F.conv1d this replaces (padded: L + K - 1 outputs, then sliced),
    so a model's counted FLOPs do not depend on the backend that ran it (pkd.flops' Mamba rule counts the same)."""
    batch, dim, length = x_shape
    k = w_shape[-1]
    return 2 * batch * dim * (length + k - 1) * k
