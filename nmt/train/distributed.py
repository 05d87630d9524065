"""torch.distributed for torchrun: process group setup, rank-0-first work and small collectives.

One process per device. torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (a plain
`python train.py`) everything here is a no-op and the world has one rank.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from nmt.errors import NMTError

log = logging.getLogger(__name__)
# Other ranks wait in a collective while rank 0 validates (decoding a whole split): allow
# for long validations instead of the 30-minute default.
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def world_from_env(env: dict[str, str] | None = None) -> World:
    """The World torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (one rank without them)."""
    env = os.environ if env is None else env
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise NMTError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)"
        ) from None
    return World(rank, size, local) if size > 1 else SINGLE


def init(device: torch.device, world: World) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    if not world.distributed:
        return device
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise NMTError(
                f"local rank {world.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                "start at most one process per GPU (--nproc-per-node)"
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
        log.info("rank %d of %d joined (%s)", world.rank, world.size, backend)
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    """Element-wise sum over ranks of a few numbers (float64, exact for token counts)."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(obj: Any, world: World) -> Any:
    """Rank 0's obj on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, world: World) -> list[Any] | None:
    """Every rank's obj as a list on rank 0 (None elsewhere)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size if world.main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def main_first(fn: Callable[[], Any], world: World, others: bool = True) -> Any:
    """fn() on rank 0, then on the other ranks (which reuse what rank 0 cached or wrote).

    others=False: fn runs on rank 0 alone and every rank gets its result. When rank 0 fails
    with an NMTError the others stop with it, quietly: rank 0 prints it.
    """
    if not world.distributed:
        return fn()
    result, error = None, None
    if world.main:
        try:
            result = fn()
        except NMTError as exc:
            error = exc
    failed, shared = broadcast((error is not None, None if others else result), world)
    if error is not None:
        raise error
    if failed:
        raise SystemExit(2)
    if world.main:
        return result
    return fn() if others else shared


def shard(chunk: list, world: World) -> list:
    """This rank's share of an update's batches: every world.size-th, starting at the rank."""
    return chunk[world.rank :: world.size]
