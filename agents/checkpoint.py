"""Checkpoints: written atomically, read with errors that say which script makes them.

A shipped checkpoint (``checkpoints/<agent>.pt``) holds what is needed to rebuild and run
an agent: ``{"format", "agent", "config", "weights", "meta"}``. Training scripts also keep
a resume file (model, optimiser, progress) in their run directory, written the same way.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from saccade_env.core import check_device

FORMAT = "saccade-env-checkpoint/1"
ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or belongs to another agent or configuration."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``:
    a crash mid-write leaves the previous file intact, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_checkpoint(path: str | os.PathLike, *, agent: str, config: dict, weights: dict,
                    meta: dict | None = None) -> Path:
    """Write an agent checkpoint atomically. ``weights``: name -> state_dict (or tensor)."""
    return atomic_save({"format": FORMAT, "agent": agent, "config": dict(config), "weights": weights,
                        "meta": dict(meta or {})}, path)


def checkpoint_dir() -> Path:
    """The directory of the shipped checkpoints: ``checkpoints/``, or ``$SACCADE_ENV_CHECKPOINTS``."""
    return Path(os.environ.get("SACCADE_ENV_CHECKPOINTS", CHECKPOINTS))


def default_path(agent: str) -> Path:
    """Where the shipped checkpoint of ``agent`` lives: ``checkpoint_dir() / <agent>.pt``."""
    return checkpoint_dir() / f"{agent}.pt"


def load_checkpoint(path: str | os.PathLike | None, *, agent: str, script: str,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint of ``agent`` (default: the shipped one), or raise CheckpointError
    naming ``script``, the command that trains it.  A CUDA ``map_location`` where CUDA is absent is a ValueError."""
    check_device(map_location)
    path = Path(path) if path is not None else default_path(agent)
    fix = f"train one with `python {script}`" + ("" if "--out " in script else f" (it writes checkpoints/{agent}.pt)")
    if not path.is_file():
        raise CheckpointError(f"no {agent} checkpoint at {path}: {fix}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # truncated, not a torch file, ...
        raise CheckpointError(f"cannot read the {agent} checkpoint {path} ({type(err).__name__}: {err}); "
                              f"it is damaged or not a checkpoint: {fix}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a saccade-env checkpoint (format {FORMAT}): {fix}")
    if ckpt.get("agent") != agent:
        raise CheckpointError(f"{path} holds a {ckpt.get('agent')!r} agent, not {agent!r}: {fix}")
    return ckpt
