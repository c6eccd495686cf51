"""Data-parallel runs: the processes that a launcher starts share one run directory.

``torchrun --nproc_per_node N -m cachesteer_lite evaluate ...`` (or ``accelerate launch``) starts N copies of the
command and tells each its place in the environment: ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (which GPU of its
machine it uses, ``cuda:LOCAL_RANK``). Without them a run is one process and nothing here does anything.

With several processes, the runner

* prepares the method in the main process (rank 0) first, which saves the steering vector; the others then load
  that file, so every process steers with the same vector (:func:`main_first`);
* has every process read the stored records at the same moment (:func:`read_in_step`) and answer every
  ``WORLD_SIZE``-th of the batches that still hold unanswered items (:func:`batch_share`): whole batches, the same
  ones a single process forms, so a parallel run answers exactly what a single process would, sampling seeds
  included;
* appends each batch's records to the one shared items file under an exclusive lock (:func:`records.
  append_new_records`), so lines never interleave and no item is written twice;
* waits for every process, then the main process summarises the file and writes ``results.json`` once.

The processes only wait for each other (barriers), they exchange no tensors: the ``gloo`` backend serves on CPUs
and GPUs alike, with none of NCCL's per-device set-up, and its long timeout lets the others wait while the main
process extracts a vector or the slowest one finishes its last batch (a launcher stops them all if one fails).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from .records import read_records

BACKEND = "gloo"
TIMEOUT = timedelta(hours=24)  # how long a process waits at a barrier for the others


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run: its rank, their number, its GPU on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def parallel(self) -> bool:
        """Whether the run has more than one process."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes the run's shared files (rank 0)."""
        return self.rank == 0


def current_world(environ: Mapping[str, str] = os.environ) -> World:
    """The world that a launcher described in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one
    process when they are absent."""
    world = World(int(environ.get("RANK", 0)), int(environ.get("WORLD_SIZE", 1)), int(environ.get("LOCAL_RANK", 0)))
    if not 0 <= world.rank < world.size:
        raise ValueError(f"RANK {world.rank} is not between 0 and WORLD_SIZE - 1 ({world.size - 1})")
    return world


def process_device(world: World) -> str | None:
    """This process's GPU (``cuda:LOCAL_RANK``) in a parallel run on a machine with CUDA; None otherwise (the
    model loader's default)."""
    return f"cuda:{world.local_rank}" if world.parallel and torch.cuda.is_available() else None


@contextmanager
def process_group(world: World) -> Iterator[None]:
    """The processes of a parallel run joined in a process group while inside (nothing for one process, or when
    a group exists already); the group is destroyed on leaving if it was made here."""
    made = world.parallel and not dist.is_initialized()
    if made:
        dist.init_process_group(BACKEND, rank=world.rank, world_size=world.size, timeout=TIMEOUT)
    try:
        yield
    finally:
        if made:
            dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait until every process of a parallel run gets here."""
    if world.parallel:
        dist.barrier()


@contextmanager
def main_first(world: World) -> Iterator[None]:
    """Run the block in the main process first, then in the others, which may read what it wrote."""
    if not world.is_main:
        barrier(world)
    yield
    if world.is_main:
        barrier(world)


def read_in_step(path: Path, world: World) -> dict:
    """The records stored in ``path`` by item index, as every process sees them at the same moment.

    The main process first repairs a cut-off last line (:func:`records.read_records`), then the others read; no
    process appends before all have read, so all of them split the same remaining work.
    """
    with main_first(world):
        done = read_records(path, repair=world.is_main)
    barrier(world)
    return done


def batch_share(pending: Sequence[int], world: World) -> list[int]:
    """The batches this process answers: every ``WORLD_SIZE``-th of ``pending`` (the numbers of the batches that
    hold unanswered items), starting at its rank; all of them for one process."""
    return list(pending[world.rank :: world.size])


def gather_records(path: Path, world: World) -> dict:
    """Every record of ``path``, read once every process has answered its share."""
    barrier(world)
    return read_records(path)
