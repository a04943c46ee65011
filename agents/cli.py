"""What every training script shares: a config dataclass on the command line, the device,
the run directory with TensorBoard logs and a resume file."""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, Callable

import torch

from saccade_env.core import check_device


def parse_config(cls: type, argv: list[str] | None = None, *, description: str | None = None) -> Any:
    """Build ``cls`` (a frozen dataclass) from ``--field value`` options, one per field.

    Booleans take ``--flag`` / ``--no-flag``; tuples take several values. A field's help
    is its ``metadata["help"]``. Invalid values fail with argparse's message (what and why).
    """
    parser = argparse.ArgumentParser(description=description or (cls.__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name, typ = "--" + f.name.replace("_", "-"), hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        helptext = f.metadata.get("help", " ")
        origin = typing.get_origin(typ)
        if typ is bool:
            if f.name.startswith("no_"):  # argparse reads "--no-x" as x=False: "--no-cap" would mean no_cap=False
                raise TypeError(f"{cls.__name__}.{f.name}: name a boolean option positively ({f.name[3:]}, "
                                f"default flipped); the command line then offers --{f.name[3:]} / --no-...")
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=helptext)
        elif origin is tuple:
            inner = typing.get_args(typ)[0]
            parser.add_argument(name, type=inner, nargs="+", default=default, help=helptext)
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            inner = next(a for a in typing.get_args(typ) if a is not type(None))
            parser.add_argument(name, type=inner, default=default, help=helptext)
        else:
            parser.add_argument(name, type=typ, default=default, help=helptext,
                                choices=f.metadata.get("choices"))
    args = vars(parser.parse_args(argv))
    for f in dataclasses.fields(cls):
        if typing.get_origin(hints[f.name]) is tuple:
            args[f.name] = tuple(args[f.name])
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        parser.error(str(err))


def check_ranges(cfg: Any) -> None:
    """Raise ValueError, naming the option, for a field of the dataclass ``cfg`` outside the range its
    metadata declares: ``"min"`` (inclusive), ``"above"`` (exclusive), ``"max"`` (inclusive), ``"below"``
    (exclusive).  Configs call it
    first thing in ``__post_init__``, so a bad value fails before any work, from the command line or from code."""
    for f in dataclasses.fields(cfg):
        lo, above, hi, below = (f.metadata.get(k) for k in ("min", "above", "max", "below"))
        value = getattr(cfg, f.name)
        if (lo, above, hi, below) == (None, None, None, None) or value is None:
            continue
        if ((lo is not None and value < lo) or (above is not None and value <= above)
                or (hi is not None and value > hi) or (below is not None and value >= below)):
            low = f">= {lo}" if lo is not None else f"> {above}" if above is not None else ""
            high = f"<= {hi}" if hi is not None else f"< {below}" if below is not None else ""
            need = " and ".join(x for x in (low, high) if x)
            raise ValueError(f"--{f.name.replace('_', '-')} must be {need}, got {value!r}")


def at_least(lo: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``lo``; argparse's error then names the option and says the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value
    parse.__name__ = f"integer >= {lo}"
    return parse


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; a device that is not there is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return check_device(name)
    except ValueError as err:
        raise SystemExit(f"--device {name}: {err} (or --device auto)") from None


def run_dir(base: str, name: str) -> Path:
    """``<base>/<name>``, created: holds TensorBoard events and the resume file."""
    path = Path(base) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def writer(path: Path):
    """A TensorBoard SummaryWriter logging into ``path``."""
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(path))


def _state_of(obj):
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


def save_resume(path: Path, *, step: int, elapsed: float, config: Any, **stateful) -> None:
    """Write the resume file atomically: ``stateful`` modules, optimisers, schedulers and
    torch.Generators by name, the step reached and the wall time spent so far."""
    from .checkpoint import atomic_save
    atomic_save({"step": step, "elapsed": elapsed, "config": dataclasses.asdict(config),
                 "state": {k: _state_of(v) for k, v in stateful.items()}}, path)


def load_resume(path: Path, *, device: torch.device, **stateful) -> tuple[int, float]:
    """Restore ``stateful`` objects from a resume file; returns (step, elapsed seconds)."""
    if not Path(path).is_file():
        raise SystemExit(f"--resume: there is no {path} to continue from; start without --resume")
    r = torch.load(path, map_location=device, weights_only=False)
    missing = set(stateful) - set(r["state"])
    if missing:
        raise SystemExit(f"--resume: {path} was written by another script (it lacks {sorted(missing)}); "
                         f"start without --resume or choose another --name")
    for k, obj in stateful.items():
        if isinstance(obj, torch.Generator):
            obj.set_state(r["state"][k].cpu() if obj.device.type == "cpu" else r["state"][k])
        else:
            try:
                obj.load_state_dict(r["state"][k])
            except (RuntimeError, ValueError, KeyError) as err:
                raise SystemExit(f"--resume: {path} does not fit this run's {k} ({str(err).splitlines()[0]}); "
                                 f"it was written with another configuration or script: start without "
                                 f"--resume or choose another --name") from None
    return int(r["step"]), float(r["elapsed"])


def run_meta(cfg: Any, *, device: torch.device, wall: float, scores: dict) -> dict:
    """What a shipped checkpoint says of its training: command, seed, device, time, scores."""
    import shlex
    import sys
    return {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "seed": getattr(cfg, "seed", None),
            "device": str(device), "threads": torch.get_num_threads(), "wall_s": round(wall, 1),
            "scores": scores}


def cosine_factor(done: float, final: float = 0.0) -> float:
    """The learning-rate factor of a half-cosine decay from 1 to ``final`` at ``done`` in [0, 1]."""
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(max(done, 0.0), 1.0)))


def budget_done(step: int, steps: int, seconds: float = 0.0, budget_s: float = 0.0) -> float:
    """Fraction of a training budget spent: ``step`` of ``steps``, or ``seconds`` of ``budget_s``
    (0: no time budget), whichever is further along; at most 1."""
    done = step / max(1, steps)
    if budget_s:
        done = max(done, seconds / max(1e-9, budget_s))
    return min(1.0, done)


def cosine(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay of the learning rate from its start value to 0 over ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_factor(s / steps))
