"""Data-parallel training on torch.distributed, the way its users already start it: torchrun.

`torchrun --nproc-per-node N -m mmctr train ...` (or `mmctr train --nproc N`, which runs that)
starts N processes; each reads RANK / WORLD_SIZE / LOCAL_RANK from the environment torchrun sets,
joins one process group (gloo on CPU, nccl on GPU), trains on its own shard of the train rows with
DistributedDataParallel averaging the gradients, and scores its own block of the valid rows; the
blocks are gathered so that every rank sees the same valid AUC and takes the same early-stopping
and learning-rate decisions. Rank 0 alone writes the run directory and the checkpoints.

A single process (no torchrun) is world size 1: every function here is then a no-op, and training
is exactly what it was before any of this existed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from mmctr.errors import ConfigError


@dataclass(frozen=True)
class World:
    """Where this process sits in the job: rank `rank` of `size` processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def device(self) -> torch.device:
        if self.distributed and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ConfigError(
            f"environment variable {name}={raw!r}: expected an integer (set by torchrun)"
        ) from err


def init_world() -> World:
    """The world this process runs in, joining torchrun's process group when there is one."""
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    world = World(rank=_env_int("RANK", 0), size=size, local_rank=_env_int("LOCAL_RANK", 0))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend=backend)
    return world


def finish(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shard_rows(n: int, world: World) -> np.ndarray | None:
    """This rank's train rows: every `size`-th row starting at `rank` (so each shard samples the
    whole file), cut to the same length on every rank (DDP needs the same number of steps on all of
    them: at most size - 1 rows are left out). None for a single process: all rows."""
    if not world.distributed:
        return None
    per_rank = n // world.size
    if per_rank == 0:
        raise ConfigError(f"{n} train rows cannot be shared among {world.size} processes")
    return np.arange(world.rank, n, world.size)[:per_rank]


def block(n: int, world: World) -> slice:
    """This rank's contiguous block of `n` rows (valid/test scoring)."""
    per = -(-n // world.size)
    return slice(min(world.rank * per, n), min((world.rank + 1) * per, n))


def gather_blocks(local: np.ndarray, n: int, world: World) -> np.ndarray:
    """The blocks every rank scored (`block(n, world)`), put back together in row order on every
    rank."""
    if not world.distributed:
        return local
    per = -(-n // world.size)
    padded = torch.zeros(per, dtype=torch.float64)
    padded[: len(local)] = torch.from_numpy(np.asarray(local, dtype=np.float64))
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return torch.cat(parts).numpy()[:n].astype(local.dtype, copy=False)


def sum_over_ranks(value: float, world: World) -> float:
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def gather_objects(obj: object, world: World) -> list:
    """`obj` of every rank, in rank order (RNG states for a checkpoint)."""
    if not world.distributed:
        return [obj]
    out: list = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def sum_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """Sum the gradients of `params` over the ranks, in place, in one all-reduce.

    For training loops whose graph differs from rank to rank (Track 1: a rank whose share of the
    batch has no photo question leaves the image projection unused), where DistributedDataParallel
    would need `find_unused_parameters`. A parameter no rank touched keeps `grad = None`, so the
    optimizer skips it exactly as a 1-process run over the whole batch does."""
    if not world.distributed:
        return
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    dist.all_reduce(used)
    live = [p for p, u in zip(params, used.tolist(), strict=True) if u]
    if not live:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in live])
    dist.all_reduce(flat)
    at = 0
    for p in live:
        n = p.numel()
        p.grad = flat[at : at + n].view_as(p).clone()
        at += n


def local_batch_size(batch_size: int, world: World) -> int:
    """Each rank's share of the global batch: the same global batch as a 1-process run."""
    if batch_size % world.size:
        raise ConfigError(
            f"batch size {batch_size} cannot be split evenly among {world.size} processes; "
            f"use a multiple of {world.size} (it is the global batch, shared among them)"
        )
    return batch_size // world.size


def argv_without_launch(argv: list[str]) -> list[str]:
    """This command's arguments minus the launcher's own (--nproc, --nnodes, --rdzv-endpoint)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in ("--nproc", "--nnodes", "--rdzv-endpoint"):
            skip = "=" not in a
            continue
        out.append(a)
    return out


def launch(nproc: int, argv: list[str], nnodes: int = 1, rdzv_endpoint: str | None = None) -> int:
    """Run `mmctr <argv>` under torchrun with `nproc` processes per node; returns its exit code.
    Multi-node jobs run torchrun themselves on every node (see the README)."""
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc}: expected at least 1")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes > 1:
        if not rdzv_endpoint:
            raise ConfigError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
        cmd += [f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
    else:
        cmd += ["--standalone"]
    cmd += ["-m", "mmctr", *argv]
    if shutil.which(sys.executable) is None:  # pragma: no cover - sys.executable always exists
        raise ConfigError(f"{sys.executable}: the Python interpreter to launch is missing")
    return subprocess.call(cmd)
