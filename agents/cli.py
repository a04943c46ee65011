"""What every training script shares: a config dataclass on the command line, the device,
the run directory with TensorBoard logs and a resume file."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

import torch


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


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; a device that is not there is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine; use --device cpu "
                         f"(or --device auto)")
    return dev


def run_dir(base: str, name: str) -> Path:
    """``<base>/<name>``, created: holds TensorBoard events and the resume file."""
    path = Path(base) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def writer(path: Path):
    """A TensorBoard SummaryWriter logging into ``path``."""
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(path))
