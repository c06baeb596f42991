"""Training beyond one process: the world of ranks that `torchrun` starts, and the few collectives pkd needs.

One process group serves the whole progressive run (teacher and every student). Rank 0 alone writes the run
directory; batches are shards of one seeded global batch (`pkd.data.iterate_batches(rank=, world_size=)`); logits
for caches and evaluation are computed in contiguous shards and gathered, so every sample counts exactly once
(no DistributedSampler padding). Gloo on CPU, NCCL on CUDA. Outside torchrun the world is one process and every
helper here is a no-op.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run: rank, world size, local rank (its GPU on this node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the run directory; the other ranks train beside it and write nothing."""
        return self.rank == 0


SINGLE = World()


def world_from_env() -> World:
    """The World torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (one process when they are unset)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ValueError(f"RANK={rank} WORLD_SIZE={size}: need 0 <= RANK < WORLD_SIZE")
    return World(rank, size, local)


def init_world(device: torch.device) -> World:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA, one GPU per local rank); one process: no-op."""
    world = world_from_env()
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend=backend)
        logger.info("rank %d of %d joined the %s process group", world.rank, world.size, backend)
    return world


def close_world(world: World) -> None:
    """The end of a finished run: wait for every rank, then leave the process group."""
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def leave_world(world: World) -> None:
    """Leave the process group on any exit, error or stop included, without waiting for the other ranks. A process
    that exits still in a gloo group can abort at interpreter shutdown (SIGABRT, "terminate called without an
    active exception": pytorch/pytorch#179291), which would replace its exit code and one-line error."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int) -> NoReturn:
    """End a torchrun rank with `code` now, skipping interpreter shutdown: even after leave_world a gloo rank can
    abort there (SIGABRT, "terminate called without an active exception"; seen in CI after a resumed two-rank run
    had written everything), and torchrun would then fail the whole run. Every run file is already written and
    closed (atomic writes, `with` blocks), so only the log handlers and standard streams need flushing."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's `obj` on every rank (small picklable values between pkd's own ranks only)."""
    if not world.distributed:
        return obj
    box = [obj if world.is_writer else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard_range(n: int, world: World) -> tuple[int, int]:
    """Contiguous [start, stop) of this rank's share of n samples (sizes differ by at most one)."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return start, start + base + (1 if world.rank < extra else 0)


def gather_rows(part: torch.Tensor, n: int, world: World) -> torch.Tensor:
    """Concatenate every rank's `part` (its shard_range rows, (n_r, ...)) into the full (n, ...) on every rank."""
    if not world.distributed:
        return part
    sizes = [shard_range(n, World(r, world.size)) for r in range(world.size)]
    longest = max(stop - start for start, stop in sizes)
    device = torch.device("cuda", world.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    padded = torch.zeros(longest, *part.shape[1:], dtype=part.dtype, device=device)
    padded[:len(part)] = part.to(device)
    pieces = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(pieces, padded)
    return torch.cat([piece[:stop - start] for piece, (start, stop) in zip(pieces, sizes)]).to(part.device)


def all_reduce_sums(values: dict[str, float], world: World) -> dict[str, float]:
    """Sum each named number over the ranks (fixed key order, so every rank reduces the same vector)."""
    if not world.distributed or not values:
        return values
    keys = sorted(values)
    device = torch.device("cuda", world.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    vector = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(vector)
    return dict(zip(keys, vector.cpu().tolist()))
