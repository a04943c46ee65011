"""Checkpoints: written atomically, read without running code, checked against what is asked for.

A shipped checkpoint (``checkpoints/<agent>.pt``) holds what is needed to rebuild and run
an agent: ``{"format", "agent", "config", "weights", "meta"}``, tensors and plain Python
values only (numbers, strings, lists, dicts). Training scripts also keep a resume file
(model, optimiser, progress) in their run directory, written the same way.

Every file is read with ``torch.load(..., weights_only=True)``: a file that carries pickled
code (a class or a function to call) is refused, never executed.
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
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


def _remove_orphans(path: Path) -> None:
    """Delete temporary files a killed writer of ``path`` left behind (``<name>.<pid>.*.tmp`` of a
    process that no longer runs)."""
    for tmp in path.parent.glob(path.name + ".*.tmp"):
        pid = tmp.name[len(path.name) + 1:].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:  # another user's live process
            pass


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``:
    a crash mid-write leaves the previous file intact, never a truncated one; a failed write
    removes its temporary file (and a later write removes those of killed processes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically (:func:`atomic_write`)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    return atomic_write(path, write)


def safe_load(path: str | os.PathLike, *, what: str, fix: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain values only, no code runs.

    Raises CheckpointError naming ``what`` the file should be and saying ``fix`` when the file is
    missing, damaged (truncated, not a torch file) or carries pickled objects other than those."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {what} at {path}: {fix}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:
            raise CheckpointError(
                f"refused to read {path}: it carries a pickled Python object ({found.group(1)}), which could run "
                f"code when loaded; a {what} holds tensors and plain values only. Use a file made by this "
                f"package's scripts: {fix}") from None
        raise CheckpointError(f"cannot read the {what} {path} (it is damaged: not a torch file of tensors and "
                              f"plain values): {fix}") from None
    except Exception as err:  # truncated, not a torch file, ...
        raise CheckpointError(f"cannot read the {what} {path} ({type(err).__name__}: {str(err).splitlines()[0]}); "
                              f"it is damaged or not a {what}: {fix}") from None


def save_checkpoint(path: str | os.PathLike, *, agent: str, config: dict, weights: dict,
                    meta: dict | None = None) -> Path:
    """Write an agent checkpoint atomically. ``weights``: name -> state_dict (or tensor);
    ``config`` and ``meta``: tensors and plain values (what ``weights_only`` loading reads)."""
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
    fix = f"train one with `python {script} --promote`" + (
        f" (--promote copies the result over {path})" if path.parent.resolve() == checkpoint_dir().resolve() else "")
    ckpt = safe_load(path, what=f"{agent} checkpoint", fix=fix, map_location=map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a saccade-env checkpoint (format {FORMAT}): {fix}")
    if ckpt.get("agent") != agent:
        raise CheckpointError(f"{path} holds a {ckpt.get('agent')!r} agent, not {agent!r}: {fix}")
    return ckpt


def promote(src: str | os.PathLike, name: str) -> Path:
    """Copy the checkpoint ``src`` over the shipped ``checkpoint_dir() / name`` (atomically)."""
    return atomic_write(checkpoint_dir() / name, lambda tmp: shutil.copyfile(src, tmp))
