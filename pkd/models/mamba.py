"""The Mamba layer: the Mamba-1 mixer (B, L, D) -> (B, L, D), RMSNorm, the pre-norm residual block, their FLOP rules,
and recurrent inference (InferenceParams, `step`, `allocate_inference_cache`).

The block follows state-spaces/mamba `mamba_ssm/modules/mamba_simple.py` (slow path) and alxndrTL/mamba.py
`mambapy/mamba.py`: same constructor arguments, parameter names, shapes and initialisation, so a state_dict
moves between pkd, mamba-ssm and mamba.py unchanged. Recurrent inference is mamba_simple's: `forward(x,
inference_params)` runs the whole prompt and leaves its last conv inputs and SSM state in
`inference_params.key_value_memory_dict[layer_idx]`; once `seqlen_offset > 0` it runs `step` on one token, which
updates those states in place (mamba_ssm/utils/generation.py increments `seqlen_offset` between calls).

No generic counter sees the selective scan (its ops are a CUDA/C++ kernel or a loop of elementwise ops), so the
block is counted analytically from its sizes (`mamba_costs`), with the scan at 9*L*ED*N FLOPs as given by the Mamba
authors in state-spaces/mamba issue 110 (https://github.com/state-spaces/mamba/issues/110), plus L*ED for the
D skip and L*ED for the z gate.

Letters: B batch, L sequence length, D d_model, ED d_inner = expand * d_model, N d_state, R dt_rank, k d_conv.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pkd.flops import Cost, register_flop_rule, residual_add
from pkd.models.checks import check_choice, check_int
from pkd.ssm import selective_scan
from pkd.ssm.conv import causal_conv1d_silu

__all__ = ["InferenceParams", "Mamba", "RMSNorm", "ResidualBlock", "mamba_costs"]


@dataclasses.dataclass
class InferenceParams:
    """The recurrent-inference state of a model, as mamba_ssm.utils.generation.InferenceParams (same fields).

    Attributes:
        max_seqlen, max_batch_size: the sizes the caller plans for (kept for mamba-ssm compatibility).
        seqlen_offset: tokens already consumed; 0 -> the next forward runs a whole prompt, > 0 -> one `step`.
        batch_size_offset: unused by Mamba layers (kept for compatibility).
        key_value_memory_dict: layer_idx -> (conv_state (B, ED, k), ssm_state (B, ED, N)), filled by the layers.
        lengths_per_sample: unused by Mamba layers (kept for compatibility).
    """

    max_seqlen: int
    max_batch_size: int
    seqlen_offset: int = 0
    batch_size_offset: int = 0
    key_value_memory_dict: dict = dataclasses.field(default_factory=dict)
    lengths_per_sample: torch.Tensor | None = None

    def reset(self, max_seqlen: int, max_batch_size: int) -> None:
        """Start a new sequence (the layers' states are zeroed when they are next read with seqlen_offset 0)."""
        self.max_seqlen = max_seqlen
        self.max_batch_size = max_batch_size
        self.seqlen_offset = 0
        if self.lengths_per_sample is not None:
            self.lengths_per_sample.zero_()


def _init_dt_proj(dt_proj: nn.Linear, dt_init: str, dt_scale: float, dt_min: float, dt_max: float,
                  dt_init_floor: float, factory: dict) -> None:
    """mamba_simple's dt_proj initialisation, in its order of random draws: the weight, then the bias."""
    # dt_proj weight: preserve variance at initialisation.
    dt_rank, d_inner = dt_proj.in_features, dt_proj.out_features  # R, ED
    dt_init_std = dt_rank**-0.5 * dt_scale
    if dt_init == "constant":
        nn.init.constant_(dt_proj.weight, dt_init_std)
    else:
        nn.init.uniform_(dt_proj.weight, -dt_init_std, dt_init_std)
    if dt_proj.bias.is_meta:  # sizes only (pkd.train.specs, pkd.artifacts): no values, and arithmetic on meta
        return  # tensors imports torch._dynamo (2-3 s of CPU in every training and eval process)
    # dt bias: softplus(bias) = dt, dt log-uniform in [dt_min, dt_max] (inverse softplus, pytorch#72759).
    dt = torch.exp(
        torch.rand(d_inner, **factory) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    ).clamp(min=dt_init_floor)  # (ED,)
    with torch.no_grad():
        dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
    dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]


class Mamba(nn.Module):
    """Mamba-1 mixer (B, L, D) -> (B, L, D) with mamba_ssm.modules.mamba_simple.Mamba's arguments and layout.

    ``use_fast_path`` is accepted for mamba-ssm compatibility: pkd has one path, whose scan is dispatched by
    pkd.ssm (the fused kernel where it applies), so the flag changes nothing. ``layer_idx`` names this layer's
    entry in ``InferenceParams.key_value_memory_dict``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.d_model = check_int("d_model", d_model)
        self.d_state = check_int("d_state", d_state)
        self.d_conv = check_int("d_conv", d_conv)
        self.expand = check_int("expand", expand)
        self.d_inner = self.expand * self.d_model  # ED
        if dt_rank != "auto" and (isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1):
            raise ValueError(f"dt_rank must be 'auto' or an integer >= 1, got {dt_rank!r}")
        self.dt_rank = math.ceil(self.d_model / 16) if dt_rank == "auto" else dt_rank  # R
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min <= dt_max, got {dt_min!r}, {dt_max!r}")
        check_choice("dt_init", dt_init, ("random", "constant"))
        if layer_idx is not None and (isinstance(layer_idx, bool) or not isinstance(layer_idx, int) or layer_idx < 0):
            raise ValueError(f"layer_idx must be None or an integer >= 0, got {layer_idx!r}")
        self.use_fast_path = bool(use_fast_path)
        self.layer_idx = layer_idx
        factory = {"device": device, "dtype": dtype}

        # Module creation and random draws happen in mamba_simple's order, so one seed gives the same weights.
        self.in_proj = nn.Linear(self.d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        _init_dt_proj(self.dt_proj, dt_init, dt_scale, dt_min, dt_max, dt_init_floor, factory)

        # S4D-real initialisation A = -(1..N), stored as log in fp32; D skip = 1.
        if self.dt_proj.weight.is_meta:  # sizes only: no values (see _init_dt_proj)
            self.A_log = nn.Parameter(torch.empty(self.d_inner, self.d_state, dtype=torch.float32, device=device))
        else:
            A = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)  # (ED, N)
            self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))  # (ED,)
        self.D._no_weight_decay = True  # type: ignore[attr-defined]

        self.out_proj = nn.Linear(self.d_inner, self.d_model, bias=bias, **factory)

    def forward(self, x: torch.Tensor, inference_params: InferenceParams | None = None) -> torch.Tensor:
        """Mix along the sequence (mamba_simple's forward).

        Args:
            x: (B, L, D) input.
            inference_params: None for a plain pass. Otherwise this layer's states (B, ED, k) and (B, ED, N) in
                ``inference_params.key_value_memory_dict[layer_idx]`` are made if missing; with ``seqlen_offset``
                0 the pass overwrites them with the last k conv inputs and the last SSM state, with
                ``seqlen_offset`` > 0 it is one ``step`` (L = 1) that updates them in place.
        Returns:
            (B, L, D) output.
        """
        batch, L, _ = x.shape
        conv_state = ssm_state = None
        if inference_params is not None:
            conv_state, ssm_state = self._get_states_from_cache(inference_params, batch)
            if inference_params.seqlen_offset > 0:
                out, _, _ = self.step(x, conv_state, ssm_state)  # the states are updated in place
                return out
        # As mamba_simple's slow path: matmul and transpose B L C -> B C L at once. `W @ t` folds (B, L) into one
        # GEMM and returns a (B, C, L) view of its (B, L, C) result, so no transposed copy is made here; the scan
        # backend makes its inputs contiguous itself (u already is, after the conv).
        xz = self.in_proj.weight @ x.transpose(1, 2)  # (2ED, D) @ (B, D, L) -> (B, 2ED, L)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias[:, None]  # (B, 2ED, L)
        u, z = xz.chunk(2, dim=1)  # (B, ED, L), (B, ED, L)
        if conv_state is not None:  # the last k conv inputs, zero-padded on the left when L < k
            conv_state.copy_(F.pad(u, (self.d_conv - L, 0)))  # (B, ED, k)

        u = causal_conv1d_silu(u, self.conv1d.weight, self.conv1d.bias)  # silu(conv1d(u)[..., :L]): (B, ED, L)

        x_dbl = self.x_proj.weight @ u  # (R+2N, ED) @ (B, ED, L) -> (B, R+2N, L)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)  # (B, R|N|N, L)
        delta = self.dt_proj.weight @ dt  # (ED, R) @ (B, R, L) -> (B, ED, L); bias added inside the scan

        A = -torch.exp(self.A_log.float())  # (ED, N)
        y = selective_scan(u, delta, A, B, C, self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(),
                           delta_softplus=True, return_last_state=ssm_state is not None)  # (B, ED, L)
        if ssm_state is not None:
            y, last_state = y  # (B, ED, L), (B, ED, N)
            ssm_state.copy_(last_state)
        return self.out_proj(y.transpose(1, 2))  # (B, L, ED) -> (B, L, D)

    def step(
        self,
        hidden_states: torch.Tensor,
        conv_state: torch.Tensor,
        ssm_state: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token of the recurrence (mamba_simple's step without its CUDA kernels); the states change in place.

        Args:
            hidden_states: (B, 1, D) the next token.
            conv_state: (B, ED, k) the last k conv inputs.
            ssm_state: (B, ED, N) the SSM state.
        Returns:
            out (B, 1, D), and conv_state and ssm_state (the same tensors, updated).
        """
        if hidden_states.dim() != 3 or hidden_states.shape[1] != 1:
            raise ValueError(f"Mamba.step takes one token (B, 1, D), got {tuple(hidden_states.shape)}; feed a "
                             "longer sequence to forward() or one token at a time")
        dtype = hidden_states.dtype
        xz = self.in_proj(hidden_states.squeeze(1))  # (B, 2ED)
        x, z = xz.chunk(2, dim=-1)  # (B, ED), (B, ED)

        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))  # (B, ED, k): drop the oldest input
        conv_state[:, :, -1] = x
        x = torch.sum(conv_state * self.conv1d.weight[:, 0], dim=-1)  # (B, ED, k) * (ED, k) -> (B, ED)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x).to(dtype=dtype)  # (B, ED)

        x_db = self.x_proj(x)  # (B, R+2N)
        dt, B, C = torch.split(x_db, [self.dt_rank, self.d_state, self.d_state], dim=-1)  # (B, R|N|N)
        dt = F.linear(dt, self.dt_proj.weight)  # (B, ED); its bias is added with the softplus
        A = -torch.exp(self.A_log.float())  # (ED, N)

        dt = F.softplus(dt + self.dt_proj.bias.to(dtype=dt.dtype))  # (B, ED)
        dA = torch.exp(torch.einsum("bd,dn->bdn", dt, A))  # (B, ED, N)
        dB = torch.einsum("bd,bn->bdn", dt, B)  # (B, ED, N)
        ssm_state.copy_(ssm_state * dA + x[..., None] * dB)  # (B, ED, N)
        y = torch.einsum("bdn,bn->bd", ssm_state.to(dtype), C)  # (B, ED)
        y = (y + self.D.to(dtype) * x) * F.silu(z)  # (B, ED)
        return self.out_proj(y).unsqueeze(1), conv_state, ssm_state  # (B, 1, D)

    def allocate_inference_cache(
        self,
        batch_size: int,
        max_seqlen: int,
        dtype: torch.dtype | None = None,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero states for ``step``: conv_state (B, ED, k) in the conv's dtype, ssm_state (B, ED, N) in dt_proj's
        (or both in ``dtype``). ``max_seqlen`` is accepted as in mamba-ssm (a Mamba state does not grow)."""
        device = self.out_proj.weight.device
        conv_dtype = self.conv1d.weight.dtype if dtype is None else dtype
        ssm_dtype = self.dt_proj.weight.dtype if dtype is None else dtype
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, device=device, dtype=conv_dtype)
        ssm_state = torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=ssm_dtype)
        return conv_state, ssm_state

    def _get_states_from_cache(
        self,
        inference_params: InferenceParams,
        batch_size: int,
        initialize_states: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's (conv_state, ssm_state) in ``inference_params``, allocated (zeros) on first use."""
        if self.layer_idx is None:
            raise ValueError("this Mamba block has no layer_idx, so it cannot keep states in inference_params; "
                             "build it with Mamba(..., layer_idx=i)")
        cache = inference_params.key_value_memory_dict
        if self.layer_idx not in cache:
            cache[self.layer_idx] = self.allocate_inference_cache(batch_size, inference_params.max_seqlen)
        conv_state, ssm_state = cache[self.layer_idx]
        if conv_state.shape[0] != batch_size:
            raise ValueError(f"inference_params holds states for batch {conv_state.shape[0]} at layer "
                             f"{self.layer_idx}, got a batch of {batch_size}; use a new InferenceParams per batch")
        if initialize_states:
            conv_state.zero_()
            ssm_state.zero_()
        return conv_state, ssm_state


def mamba_costs(m: Mamba, batch: int, seq_len: int) -> list[Cost]:
    """Analytic FLOPs of one Mamba block call on (batch, seq_len, D), part by part.

    in_proj 2*L*D*2ED; conv1d (depthwise, as executed: Lc = L + 2*pad - k + 1 outputs, then sliced to L)
    2*ED*k*Lc + ED*Lc bias, SiLU 4*L*ED; x_proj 2*L*ED*(R+2N); dt_proj 2*L*R*ED; scan: delta bias L*ED +
    softplus 3*L*ED + selective scan 9*L*ED*N (state-spaces/mamba#110) + D skip L*ED + SiLU(z) 4*L*ED +
    z gate L*ED; out_proj 2*L*ED*D (+ bias terms when bias=True). A = -exp(A_log) is weight-only and not counted.
    All terms are multiplied by batch.
    """
    L, D, ED, N, R = seq_len, m.d_model, m.d_inner, m.d_state, m.dt_rank
    k, pad = m.conv1d.kernel_size[0], m.conv1d.padding[0]
    Lc = L + 2 * pad - k + 1

    def n_params(mod: nn.Module) -> int:
        return sum(p.numel() for p in mod.parameters())

    def lin(part: str, mod: nn.Linear, rows: int) -> Cost:
        mm = 2 * rows * mod.in_features * mod.out_features
        bias = rows * mod.out_features if mod.bias is not None and part != "dt_proj" else 0
        formula = f"2*{rows}*{mod.in_features}*{mod.out_features}" + (f" + {bias} bias" if bias else "")
        return Cost(batch * (mm + bias), batch * mm, formula, part, n_params(mod))

    conv_mm = 2 * ED * k * Lc
    conv_bias = ED * Lc if m.conv1d.bias is not None else 0
    scan = L * ED * (1 + 3 + 9 * N + 1 + 4 + 1)
    return [
        lin("in_proj", m.in_proj, L),
        Cost(batch * (conv_mm + conv_bias + 4 * L * ED), batch * conv_mm,
             f"2*{ED}*{k}*{Lc} + {conv_bias} bias + 4*{L}*{ED} SiLU", "conv1d", n_params(m.conv1d)),
        lin("x_proj", m.x_proj, L),
        lin("dt_proj", m.dt_proj, L),  # its bias is added inside the scan (delta_bias), counted there
        Cost(batch * scan, 0,
             f"{L}*{ED}*(1 dt bias + 3 softplus + 9*{N} scan [mamba#110] + 1 D skip + 4 SiLU(z) + 1 z gate)",
             "scan", m.A_log.numel() + m.D.numel()),
        lin("out_proj", m.out_proj, L),
    ]


@register_flop_rule(Mamba, opaque=True)
def _mamba(m: Mamba, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """Mamba block, counted analytically (see mamba_costs)."""
    b, L, _ = inputs[0].shape
    return mamba_costs(m, b, L)


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension: x / sqrt(mean(x^2) + eps) * weight (mamba.py's keys)."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(check_int("d_model", d_model)))  # (D,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (..., D). Returns: (..., D)."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


@register_flop_rule(RMSNorm)
def _rmsnorm(m: RMSNorm, inputs: tuple, out: torch.Tensor) -> list[Cost]:
    """RMSNorm per row of D: square D, sum D-1, /D 1, +eps 1, rsqrt 1, scale D, *weight D = 4D + 2."""
    d = out.shape[-1]
    rows = out.numel() // d
    return [Cost(rows * (4 * d + 2), 0, f"{rows}*(4*{d}+2)")]


class ResidualBlock(nn.Module):
    """Pre-norm residual Mamba layer x + mixer(norm(x)); keys `mixer.*`, `norm.weight` as in mamba.py.

    ``mamba_kwargs`` go to Mamba (``layer_idx`` among them, for recurrent inference).
    """

    def __init__(self, d_model: int, **mamba_kwargs: object) -> None:
        super().__init__()
        self.mixer = Mamba(d_model, **mamba_kwargs)  # type: ignore[arg-type]
        self.norm = RMSNorm(d_model)

    def forward(self, x: torch.Tensor, inference_params: InferenceParams | None = None) -> torch.Tensor:
        """Args: x: (B, L, D); inference_params: as in Mamba.forward. Returns: (B, L, D)."""
        return x + self.mixer(self.norm(x), inference_params=inference_params)

    def step(
        self,
        x: torch.Tensor,
        conv_state: torch.Tensor,
        ssm_state: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token: x (B, 1, D) -> (out (B, 1, D), conv_state, ssm_state), states updated in place."""
        out, conv_state, ssm_state = self.mixer.step(self.norm(x), conv_state, ssm_state)
        return x + out, conv_state, ssm_state

    def allocate_inference_cache(
        self,
        batch_size: int,
        max_seqlen: int,
        dtype: torch.dtype | None = None,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixer's zero states: conv_state (B, ED, k), ssm_state (B, ED, N)."""
        return self.mixer.allocate_inference_cache(batch_size, max_seqlen, dtype=dtype, **kwargs)


register_flop_rule(ResidualBlock)(residual_add)  # its own add; the mixer and norm are counted by their rules
