"""Per-sample inference FLOP counting with hand rules per module type.

Convention: **FLOPs, 2 FLOPs per multiply-add (MAC)**, 1 FLOP per elementwise add/multiply/compare/exp, counted
for one sample's inference forward pass (eval mode). `torch.utils.flop_counter.FlopCounterMode` uses the same
2-per-MAC convention for matmuls and convolutions; thop, fvcore and ptflops report MACs (halve FLOPs to compare).

Each report separates the *contraction* part (matmuls and convolutions only, without bias adds: what
FlopCounterMode counts) from the rest (bias adds, norms, activations, pooling, the selective scan).

This module is the counter and the rules for torch's own layers; it imports nothing from pkd.models. The rules
for pkd's own modules sit beside them and register when pkd.models is imported (always, once a model exists):
Mamba (analytic, with the scan of state-spaces/mamba#110), RMSNorm and the residual block in pkd.models.mamba,
Tokenizer and Pool in pkd.models.tokenizers, the ResNet block in pkd.models.teacher; the video teacher's frame
adapter, temporal mean and cosine head in pkd.models.clip.vificlip, open_clip's own modules in
pkd.models.clip.open_clip (registered when open_clip is first loaded there).

Letters: B batch, k kernel size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

logger = logging.getLogger(__name__)

__all__ = ["CONVENTION", "Cost", "FlopRow", "FlopReport", "FLOP_RULES", "register_flop_rule", "count_flops",
           "flops_table", "residual_add", "no_flops"]

CONVENTION = ("FLOPs per sample, one inference forward pass (eval mode); 1 multiply-add = 2 FLOPs, "
              "1 elementwise op = 1 FLOP; contraction = matmul/conv multiply-adds only (as FlopCounterMode)")


class Cost(NamedTuple):
    """What a rule returns for one module call (or one named part of it).

    flops: all FLOPs of the part; contraction: the matmul/conv share of them (2 per MAC, no bias);
    formula: how it was computed; part: suffix added to the module name ("" for the module itself);
    params: parameters attributed to the row (None: the module's own parameters).
    """

    flops: int
    contraction: int
    formula: str
    part: str = ""
    params: int | None = None


@dataclass(frozen=True)
class FlopRow:
    """One counted module call: name, type, FLOPs (all / contraction), parameters and the formula used."""

    name: str
    type: str
    flops: int
    contraction_flops: int
    params: int
    formula: str


@dataclass(frozen=True)
class FlopReport:
    """Per-sample inference FLOPs of a model (2 FLOPs per multiply-add; see `convention`).

    Attributes:
        model: class name of the model.
        input_shape: per-sample input shape (no batch dimension).
        flops: total FLOPs per sample.
        contraction_flops: matmul/conv FLOPs only (2 per MAC, no bias adds), comparable to FlopCounterMode.
        params: number of parameters of the model.
        rows: per-module breakdown in execution order.
    """

    model: str
    input_shape: tuple[int, ...]
    flops: int
    contraction_flops: int
    params: int
    rows: tuple[FlopRow, ...]
    convention: str = CONVENTION

    @property
    def macs(self) -> int:
        """Multiply-adds of the contraction part (contraction_flops / 2), the unit thop reports."""
        return self.contraction_flops // 2


Rule = Callable[[nn.Module, tuple, torch.Tensor], list[Cost]]
FLOP_RULES: dict[type, tuple[Rule, bool]] = {}


def register_flop_rule(*types: type, opaque: bool = False) -> Callable[[Rule], Rule]:
    """Register rule(module, inputs, output) -> list[Cost] for module types (subclasses inherit it).

    Args:
        types: module classes the rule covers.
        opaque: the rule counts the whole subtree (children are not visited); otherwise it counts only the
            module's own operations and its children are counted by their rules.
    """

    def decorator(rule: Rule) -> Rule:
        for t in types:
            FLOP_RULES[t] = (rule, opaque)
        return rule

    return decorator


def _find_rule(module: nn.Module) -> tuple[Rule, bool] | None:
    for cls in type(module).__mro__:
        if cls in FLOP_RULES:
            return FLOP_RULES[cls]
    return None


# --------------------------------------------------------------------------------------------------------- rules


@register_flop_rule(nn.Linear)
def _linear(m: nn.Linear, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """y = x W^T + b: 2*rows*in*out (contraction) + rows*out (bias). Source: definition; FlopCounterMode addmm."""
    rows = out.numel() // m.out_features
    mm = 2 * rows * m.in_features * m.out_features
    bias = rows * m.out_features if m.bias is not None else 0
    return [Cost(mm + bias, mm, f"2*{rows}*{m.in_features}*{m.out_features}" + (f" + {bias} bias" if bias else ""))]


@register_flop_rule(_ConvNd)
def _conv(m: _ConvNd, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Conv1d/2d (grouped/depthwise too): 2*out_numel*(C_in/groups)*prod(k) + out_numel bias.

    Source: definition; same as FlopCounterMode's conv_flop (2 * B * prod(w.shape) * prod(out spatial)).
    """
    if m.transposed:
        raise ValueError(f"no FLOP rule for transposed convolution {type(m).__name__}; register one")
    k = math.prod(m.kernel_size)
    per_out = m.in_channels // m.groups * k
    mm = 2 * out.numel() * per_out
    bias = out.numel() if m.bias is not None else 0
    return [Cost(mm + bias, mm, f"2*{out.numel()}*{per_out}" + (f" + {bias} bias" if bias else ""))]


@register_flop_rule(_BatchNorm)
def _batchnorm(m: nn.Module, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Inference BatchNorm folds to y = x*a + b: 2 FLOPs per element."""
    return [Cost(2 * out.numel(), 0, f"2*{out.numel()} (folded scale+shift)")]


@register_flop_rule(nn.ReLU)
def _relu(m: nn.Module, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """ReLU: one compare per element (thop and fvcore count 0)."""
    return [Cost(out.numel(), 0, f"{out.numel()} (1/elem)")]


@register_flop_rule(nn.SiLU)
def _silu(m: nn.Module, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """SiLU x*sigmoid(x): exp, add, divide, multiply = 4 FLOPs per element."""
    return [Cost(4 * out.numel(), 0, f"4*{out.numel()}")]


@register_flop_rule(nn.MaxPool1d, nn.MaxPool2d)
def _maxpool(m: nn.Module, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Max-pool: prod(k) - 1 compares per output element."""
    k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * (out.dim() - 2)
    return [Cost(out.numel() * (math.prod(k) - 1), 0, f"{out.numel()}*({math.prod(k)}-1)")]


@register_flop_rule(nn.AvgPool1d, nn.AvgPool2d)
def _avgpool(m: nn.Module, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Average pool: prod(k) - 1 adds + 1 divide = prod(k) per output element."""
    k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * (out.dim() - 2)
    return [Cost(out.numel() * math.prod(k), 0, f"{out.numel()}*{math.prod(k)}")]


@register_flop_rule(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
def _adaptive_avgpool(m: nn.Module, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Global/adaptive average pool (non-overlapping windows): in - out adds + out divides = in_numel."""
    return [Cost(inputs[0].numel(), 0, f"{inputs[0].numel()} (adds + divides)")]


@register_flop_rule(nn.LayerNorm)
def _layernorm(m: nn.LayerNorm, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """LayerNorm per row of D: mean (D-1 adds, 1 divide), subtract D, square D, variance (D-1 adds, 1 divide),
    +eps 1, rsqrt 1, scale D = 5D + 2; the elementwise affine adds *weight D and +bias D (7D + 2)."""
    d = math.prod(m.normalized_shape)
    rows = out.numel() // d
    per_row = 5 * d + 2 + (d if m.weight is not None else 0) + (d if m.bias is not None else 0)
    return [Cost(rows * per_row, 0, f"{rows}*{per_row} (per row of {d})")]


@register_flop_rule(nn.GELU)
def _gelu(m: nn.Module, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """GELU x*0.5*(1 + erf(x/sqrt 2)): divide, erf, add, two multiplies = 5 FLOPs per element (tanh form too)."""
    return [Cost(5 * out.numel(), 0, f"5*{out.numel()}")]


@register_flop_rule(nn.Embedding)
def _embedding(m: nn.Module, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Embedding lookup: a gather, 0 FLOPs."""
    return [Cost(0, 0, "0 (table lookup)")]


@register_flop_rule(nn.MultiheadAttention, opaque=True)
def _multihead_attention(m: nn.MultiheadAttention, inputs: tuple, out: tuple) -> list[Cost]:
    """Multi-head attention softmax(q k^T / sqrt(d_h) + mask) v, q/k/v/out projections included.

    For N sequences, Lq queries, Lk keys, model width D (h heads of d_h = D/h):
    projections 2*N*(Lq*D + Lk*kdim + Lk*vdim)*D and 2*N*Lq*D*D (+ biases), q scaling N*Lq*D, scores
    2*N*Lq*Lk*D, softmax 5 per score (max, subtract, exp, sum, divide: 5*N*h*Lq*Lk), weighted sum 2*N*Lq*Lk*D.
    Contractions equal FlopCounterMode with the math attention kernel (mm/addmm/bmm). A float attn_mask passed
    as a keyword is invisible to forward hooks: its N*h*Lq*Lk adds are counted by the caller's rule.
    Source: Vaswani et al. 2017 (arXiv 1706.03762); torch.nn.functional.multi_head_attention_forward.
    """
    if m.bias_k is not None or m.add_zero_attn:
        raise ValueError("no FLOP rule for MultiheadAttention with add_bias_kv/add_zero_attn; register one")
    q, k = inputs[0], inputs[1] if len(inputs) > 1 else inputs[0]
    seq = 1 if m.batch_first else 0
    n = 1 if q.dim() == 2 else q.shape[1 - seq]
    lq, lk = q.shape[seq if q.dim() == 3 else 0], k.shape[seq if k.dim() == 3 else 0]
    d, h = m.embed_dim, m.num_heads
    proj = 2 * n * (lq * d + lk * m.kdim + lk * m.vdim) * d
    proj_bias = n * (lq + 2 * lk) * d if m.in_proj_bias is not None else 0
    scores, mix = 2 * n * lq * lk * d, 2 * n * lq * lk * d
    out_proj = 2 * n * lq * d * d
    out_bias = n * lq * d if m.out_proj.bias is not None else 0
    other = proj_bias + n * lq * d + 5 * n * h * lq * lk + out_bias
    return [Cost(proj + scores + mix + out_proj + other, proj + scores + mix + out_proj,
                 f"proj {proj} + scores {scores} + softmax {5 * n * h * lq * lk} + mix {mix} + out {out_proj} "
                 f"(+ {other - 5 * n * h * lq * lk} bias/scale)")]


@register_flop_rule(nn.Dropout, nn.Flatten, nn.Identity)
def no_flops(m: nn.Module, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Reshapes and inference-mode dropout: 0 FLOPs."""
    return [Cost(0, 0, "0 (reshape / identity at inference)")]


def residual_add(m: nn.Module, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """The block's own residual add, 1 FLOP per output element (its children are counted by their rules).

    For residual blocks defined elsewhere: `register_flop_rule(MyBlock)(residual_add)` beside the block.
    """
    return [Cost(out.numel(), 0, f"{out.numel()} (residual add)")]


# --------------------------------------------------------------------------------------------------------- counting


def _attach_rules(name: str, module: nn.Module, rows: list[FlopRow], handles: list) -> None:
    """Hook `module` (if it has a rule) or its children: each hook appends its module's FlopRows to `rows`."""
    found = _find_rule(module)
    children = list(module.named_children())
    if found is None and not children:
        raise ValueError(f"no FLOP rule for module '{name}' of type {type(module).__name__}; "
                         f"add one with pkd.flops.register_flop_rule({type(module).__name__})")
    if found is not None:
        rule, opaque = found
        own = sum(p.numel() for p in (module.parameters() if opaque else module.parameters(recurse=False)))

        def hook(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            for cost in rule(mod, inputs, out):
                rows.append(FlopRow(
                    name=f"{name}.{cost.part}" if cost.part and name else (cost.part or name or "model"),
                    type=type(mod).__name__, flops=int(cost.flops), contraction_flops=int(cost.contraction),
                    params=own if cost.params is None else cost.params, formula=cost.formula))

        handles.append(module.register_forward_hook(hook))
        if opaque:
            return
    for child_name, child in children:
        _attach_rules(f"{name}.{child_name}" if name else child_name, child, rows, handles)


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> FlopReport:
    """Count per-sample inference FLOPs (2 per multiply-add) of model with one batch-1 forward pass.

    Modules with a registered rule are counted by it; containers without a rule are assumed to only compose
    their children (0 own FLOPs); a leaf module without a rule raises ValueError.

    Args:
        model: the network; its train/eval flags are restored afterwards.
        input_shape: per-sample input shape without batch, e.g. (1, 28, 28) for (C, H, W) or (L, D).
    Returns:
        FlopReport with totals and per-module rows.
    """
    if not isinstance(input_shape, (list, tuple)) or not input_shape or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in input_shape):
        raise ValueError(f"input_shape must be a non-empty list of positive ints without batch, got {input_shape!r}")
    rows: list[FlopRow] = []
    handles: list = []
    modes = {m: m.training for m in model.modules()}
    try:
        _attach_rules("", model, rows, handles)
        model.eval()
        first = next(model.parameters(), None)
        x = torch.zeros(1, *input_shape, dtype=first.dtype if first is not None else torch.float32,
                        device=first.device if first is not None else None)
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    report = FlopReport(
        model=type(model).__name__, input_shape=tuple(input_shape), flops=sum(r.flops for r in rows),
        contraction_flops=sum(r.contraction_flops for r in rows),
        params=sum(p.numel() for p in model.parameters()), rows=tuple(rows))
    logger.debug("%s %s: %d FLOPs, %d params", report.model, report.input_shape, report.flops, report.params)
    return report


def model_cost(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """(FLOPs per sample, parameters) of a model: the two figures every prefix.csv row carries."""
    report = count_flops(model, tuple(input_shape))
    return int(report.flops), int(report.params)


def flops_table(report: FlopReport) -> list[dict]:
    """Rows for display: one dict per counted module call plus a final "total" row.

    Returns:
        dicts with keys name, type, flops, contraction_flops, params, share (fraction of total FLOPs), formula.
    """
    total = max(report.flops, 1)
    table = [{"name": r.name, "type": r.type, "flops": r.flops, "contraction_flops": r.contraction_flops,
              "params": r.params, "share": r.flops / total, "formula": r.formula} for r in report.rows]
    table.append({"name": "total", "type": report.model, "flops": report.flops,
                  "contraction_flops": report.contraction_flops, "params": report.params,
                  "share": 1.0 if report.flops else 0.0, "formula": report.convention})
    return table
