"""Training and evaluation on several processes: ``torchrun`` and DistributedDataParallel (DDP).

Every trainer that fits a torch model by gradient, and ``eval/compare_agents.py``, runs unchanged
under ``torchrun --nproc_per_node N script.py ...`` (several GPUs of one machine, or several
machines: docs/scaling.md). Each process (a *rank*) runs the whole script:

- it joins torchrun's process group (:func:`init`, which :func:`agents.cli.prepare_run` calls):
  backend gloo for CPU tensors, NCCL for CUDA tensors, chosen from what the machine has;
- it takes its own GPU (``cuda:LOCAL_RANK``, :func:`agents.cli.resolve_device`);
- it plays its own shard of the data: its own random streams (:func:`rank_seed`) and
  ``--batch-size / N`` samples per step (:func:`local_batch`), so the global batch stays
  ``--batch-size``;
- its backward averages the gradients of all ranks (:func:`wrap`: DDP), so every rank takes the
  same optimiser step: with plain-mean losses, the step one process would take on the union of
  the ranks' batches;
- only rank 0 writes (logs, resume files, checkpoints: :func:`is_main`), after the ranks have
  agreed on when to stop (:func:`maximum`, :func:`main_value`).

Without torchrun (no ``WORLD_SIZE`` in the environment, or 1) every function here is the
identity or does nothing, so a plain ``python train/<agent>.py`` computes exactly what it did
before, bit for bit.
"""
from __future__ import annotations

import atexit
import os
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch
from torch import nn

T = TypeVar("T")

# how long the ranks that finish early wait at exit for rank 0 (its final evaluation, its checkpoint)
EXIT_WAIT = timedelta(days=1)
_exit_group: list[Any] = [None]

# a rank's seeds are seed + rank * RANK_STRIDE, 2**32 / the golden ratio: torch's CPU generator keeps a
# seed's low 32 bits only (2**32 would give every rank rank 0's stream), and in those bits the seeds
# of ranks 1..1024 lie at least 1.9 million from rank 0's (a seed plus a step count stays clear)
RANK_STRIDE = 0x9E3779B9


def _dist():
    import torch.distributed as dist
    return dist


def active() -> bool:
    """True inside a process group of more than one process (a torchrun with N > 1, after :func:`init`)."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> int:
    """How many processes share the work (1 without torchrun)."""
    return _here()[1]


def rank() -> int:
    """This process's rank, 0 .. :func:`world` - 1 (0 without torchrun)."""
    return _here()[0]


def _here() -> tuple[int, int]:
    """(rank, world) of this process: (0, 1) without torchrun."""
    return (_dist().get_rank(), _dist().get_world_size()) if active() else (0, 1)


def is_main() -> bool:
    """True on rank 0, the process that writes logs, checkpoints and resume files, and prints."""
    return rank() == 0


def local_rank() -> int:
    """This process's rank on its machine (torchrun's ``LOCAL_RANK``; 0 without torchrun): its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def init() -> None:
    """Join torchrun's process group, once; nothing without torchrun.

    Reads torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``). The backend is gloo on a machine without CUDA, else ``cpu:gloo,cuda:nccl``
    (NCCL for CUDA tensors, gloo for the CPU ones: ``--device cpu`` works there too); on CUDA
    each process uses GPU ``LOCAL_RANK``.
    """
    dist = _dist()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or not dist.is_available() or dist.is_initialized():
        return
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise SystemExit(f"WORLD_SIZE={size} but {', '.join(missing)} unset: start the script with torchrun "
                         f"(torchrun --nproc_per_node {size} ...), or unset WORLD_SIZE for one process")
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend)
    _exit_group[0] = dist.new_group(backend="gloo", timeout=EXIT_WAIT)
    atexit.register(_close)


def _close() -> None:
    """Leave the process group at exit, all ranks together: a process of a gloo group that exits
    while a peer is still running may abort ("terminate called without an active exception"),
    and torchrun would then stop the others, e.g. rank 0 in its final evaluation. The ranks that
    end early wait here for rank 0 (up to :data:`EXIT_WAIT`); after an uncaught error nobody waits."""
    import gc
    import sys
    dist = _dist()
    if not dist.is_initialized():
        return
    if getattr(sys, "last_value", None) is None:  # a normal exit (or SystemExit, which every rank takes)
        gc.collect()  # DDP wrappers sit in reference cycles: free them while their group exists
        dist.barrier(group=_exit_group[0])
    dist.destroy_process_group()


def rank_seed(seed: int, *, rank: int | None = None) -> int:
    """The seed of this rank's random streams: ``seed`` on rank 0 (and without torchrun),
    ``seed + rank * RANK_STRIDE`` elsewhere, so that no two ranks draw the same samples.
    ``rank``: another rank's (default this process's)."""
    return int(seed) + (_here()[0] if rank is None else rank) * RANK_STRIDE


def shard(n: int, *, rank: int | None = None, world: int | None = None) -> range:
    """This rank's contiguous block of ``range(n)``: rank r of W gets ``[r*n//W, (r+1)*n//W)``
    (blocks differ in size by at most one; some are empty when n < W). ``rank``, ``world``:
    another split's (default this process's)."""
    r = _here()[0] if rank is None else rank
    w = _here()[1] if world is None else world
    if not 0 <= r < w:
        raise ValueError(f"rank must lie in 0..{w - 1} (world {w}), got {r}")
    return range(r * n // w, (r + 1) * n // w)


def local_batch(batch: int, *, world: int | None = None, flag: str = "--batch-size") -> int:
    """The samples per step of each rank: the global ``batch`` / :func:`world`. A batch the ranks
    cannot share evenly is a SystemExit that names the nearest batches that work."""
    w = _here()[1] if world is None else world
    if batch % w:
        near = sorted({max(w, batch - batch % w), batch + w - batch % w})
        raise SystemExit(f"{flag} {batch} is the global batch, shared by the {w} processes of this run: it must "
                         f"be a multiple of {w}; pass {' or '.join(f'{flag} {b}' for b in near)} (or run "
                         f"another number of processes)")
    return batch // w


class _Forward(nn.Module):
    """A module whose forward is ``fn(*args)``: DDP then averages the gradients of ``model``'s
    parameters that ``fn`` used (a step that calls the model's methods rather than its forward)."""

    def __init__(self, model: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def wrap(model: nn.Module, *, forward: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """What a training step calls: under torchrun, DistributedDataParallel of ``model``, whose
    backward averages the gradients over the ranks (call it where the step called ``model``);
    without torchrun ``model`` itself (or ``forward``), unchanged.

    ``forward``: a function of the step's inputs that runs ``model`` some other way than its
    ``forward`` (its methods, several calls, a whole rollout); the returned callable runs it
    under DDP. Wrap after the weights are loaded (DDP copies rank 0's weights to every rank).
    Evaluate and save ``model`` itself, never the wrapper (its state dict keeps its names).
    """
    if not active():
        return model if forward is None else forward
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model if forward is None else _Forward(model, forward))


def maximum(value: int) -> int:
    """The largest ``value`` over the ranks, on every rank (e.g. a stop signal that reached one
    process first: every rank must stop at the same step); ``value`` itself without torchrun."""
    if not active():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64)
    _dist().all_reduce(t, op=_dist().ReduceOp.MAX)
    return int(t.item())


def main_value(value: float) -> float:
    """Rank 0's ``value`` on every rank (e.g. its wall clock, for a time budget or a learning rate
    that follows it: every rank must take the same decision); ``value`` itself without torchrun."""
    if not active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    _dist().broadcast(t, src=0)
    return float(t.item())


def all_gather(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` without torchrun."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world()
    _dist().all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait until every rank gets here; nothing without torchrun."""
    if active():
        _dist().barrier()


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 alone, its result given to every rank (e.g. checking and creating the
    run's folders, reading the resume file: rank 0's machine holds them). A SystemExit or error
    there stops every rank with its message; without torchrun just ``fn()``."""
    if not active():
        return fn()
    box: list[Any] = [None]
    error: BaseException | None = None
    if is_main():
        try:
            box = [("ok", fn())]
        except SystemExit as err:
            box, error = [("exit", err.code)], err
        except Exception as err:  # noqa: BLE001  (re-raised below, after the other ranks are told)
            box, error = [("exit", f"rank 0 failed: {type(err).__name__}: {err}")], err
    _dist().broadcast_object_list(box, src=0)
    kind, value = box[0]
    if error is not None:
        raise error
    if kind == "exit":
        raise SystemExit(value)
    return value


__all__ = ["RANK_STRIDE", "active", "all_gather", "barrier", "init", "is_main", "local_batch",
           "local_rank", "main_value", "maximum", "on_main", "rank", "rank_seed", "shard", "wrap", "world"]
