"""What every training and evaluation script shares: a config dataclass on the command line
(one name per thing: --env, --out, --name, --minutes, --lr, --checkpoint, --device, --seed,
--resume), the device, output locations checked before any work, the run directory with its
TensorBoard logs and resume file, and a clean stop on SIGINT/SIGTERM."""
from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
import os
import signal
import sys
import threading
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

import numpy as np
import torch

from saccade_env.core import check_device

from . import distributed


def parse_config(cls: type, argv: list[str] | None = None, *, description: str | None = None,
                 prog: str | None = None) -> Any:
    """Build ``cls`` (a frozen dataclass) from ``--field value`` options, one per field.

    Booleans take ``--flag`` / ``--no-flag``; tuples take several values; ``--resume`` alone
    means "yes" (``--resume auto``: continue when there is a resume file). A field's help is its
    ``metadata["help"]``, older spellings of its flag its ``metadata["aliases"]``. Invalid
    values fail with argparse's message (what and why). ``prog``: the command named in the
    usage line (default: the script's name; a subcommand passes ``"figures.py stn"``).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description or (cls.__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name, typ = "--" + f.name.replace("_", "-"), hints[f.name]
        names = (name, *f.metadata.get("aliases", ()))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        helptext = f.metadata.get("help", " ")
        origin = typing.get_origin(typ)
        if f.name == "resume":
            parser.add_argument(*names, nargs="?", const="yes", default=default, choices=RESUME[1:], metavar="auto",
                                help=helptext)
        elif typ is bool:
            if f.name.startswith("no_"):  # argparse reads "--no-x" as x=False: "--no-cap" would mean no_cap=False
                raise TypeError(f"{cls.__name__}.{f.name}: name a boolean option positively ({f.name[3:]}, "
                                f"default flipped); the command line then offers --{f.name[3:]} / --no-...")
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, default=default, help=helptext)
        elif origin is tuple:
            inner = typing.get_args(typ)[0]
            parser.add_argument(*names, type=inner, nargs="+", default=default, help=helptext)
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            inner = next(a for a in typing.get_args(typ) if a is not type(None))
            if inner is bool:
                parser.add_argument(*names, action=argparse.BooleanOptionalAction, default=default, help=helptext)
            else:
                parser.add_argument(*names, type=inner, default=default, help=helptext)
        else:
            parser.add_argument(*names, type=typ, default=default, help=helptext,
                                choices=f.metadata.get("choices"))
    args = vars(parser.parse_args(argv))
    for f in dataclasses.fields(cls):
        if typing.get_origin(hints[f.name]) is tuple:
            args[f.name] = tuple(args[f.name])
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        parser.error(str(err))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _coerce(name: str, value: Any, typ: Any) -> Any:
    """``value`` as the type ``typ`` declares (NumPy scalars become Python numbers), or TypeError
    / ValueError naming the option ``name``."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        return _coerce(name, value, next(a for a in args if a is not type(None)))
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            raise TypeError(f"{_flag(name)} takes a sequence of values, got {value!r}")
        inner = args[0]
        return tuple(_coerce(name, v, inner) for v in value)
    if typ is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise TypeError(f"{_flag(name)} is a boolean (True or False), got {value!r}")
    if typ is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
            return int(value)
        raise TypeError(f"{_flag(name)} must be an integer, got {value!r}")
    if typ is float:
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{_flag(name)} must be a finite number, got {value!r}")
            return value
        raise TypeError(f"{_flag(name)} must be a number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"{_flag(name)} must be a string, got {value!r}")
    return value


def check_ranges(cfg: Any) -> None:
    """Check every field of the frozen dataclass ``cfg``: its type (NumPy scalars are taken as the
    Python numbers they hold; NaN and infinities are refused), its ``"choices"``, and the range its
    metadata declares: ``"min"`` (inclusive), ``"above"`` (exclusive), ``"max"`` (inclusive), ``"below"``
    (exclusive).  A bad value is a TypeError or ValueError naming the option.  Configs call it
    first thing in ``__post_init__``, so a bad value fails before any work, from the command line or from code."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = _coerce(f.name, getattr(cfg, f.name), hints[f.name])
        object.__setattr__(cfg, f.name, value)  # frozen: the checked, plain-Python value
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{_flag(f.name)} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        lo, above, hi, below = (f.metadata.get(k) for k in ("min", "above", "max", "below"))
        if (lo, above, hi, below) == (None, None, None, None) or value is None:
            continue
        for v in (value if isinstance(value, tuple) else (value,)):
            if ((lo is not None and v < lo) or (above is not None and v <= above)
                    or (hi is not None and v > hi) or (below is not None and v >= below)):
                low = f">= {lo}" if lo is not None else f"> {above}" if above is not None else ""
                high = f"<= {hi}" if hi is not None else f"< {below}" if below is not None else ""
                need = " and ".join(x for x in (low, high) if x)
                raise ValueError(f"{_flag(f.name)} must be {need}, got {v!r}")


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


def seeded_init(seed: int, build: Callable[[], Any]) -> Any:
    """``build()`` with torch's CPU generator seeded by ``seed`` (and left as it was after): initial
    weights that depend on the seed alone, so two runs of one command start alike."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; a device that is not there is a clear error.
    Under torchrun, ``cuda`` is this process's GPU, ``cuda:LOCAL_RANK`` (agents.distributed)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and distributed.active():
        name = f"cuda:{distributed.local_rank()}"
    try:
        return check_device(name)
    except ValueError as err:
        raise SystemExit(f"--device {name}: {err} (or --device auto)") from None


RESUME = ("", "yes", "auto")


@dataclass(frozen=True)
class RunOptions:
    """The options every training script shares: where its outputs go and whether it continues a run.

    A run writes into ``<runs>/<name>/`` (TensorBoard events, the resume file, the checkpoint);
    the shipped ``checkpoints/`` change only with ``--promote`` (or ``--out`` there with ``--overwrite``).
    """

    name: str = field(default="", metadata={"help": "run name: outputs go to <runs>/<name>/ (default: the "
                                                    "agent's name)", "aliases": ("--run-name",)})
    runs: str = field(default="runs", metadata={"help": "folder of the run directories", "aliases": ("--runs-dir",)})
    out: str = field(default="", metadata={"help": "checkpoint to write (default <runs>/<name>/<agent>.pt)"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace an existing --out file, or start <runs>/<name>/ again from scratch"})
    promote: bool = field(default=False, metadata={
        "help": "at the end, also copy the checkpoint over the shipped one in checkpoints/ (the agent the "
                "comparison and load_agent() use)"})
    resume: str = field(default="", metadata={
        "help": "continue the run from <runs>/<name>/resume.pt (--resume: it must exist; --resume auto: "
                "continue when it exists, start afresh otherwise)", "choices": RESUME})


@dataclass(frozen=True)
class RunFiles:
    """Where a training run writes, all checked before any work (:func:`prepare_run`).

    Attributes:
        dir: the run directory ``<runs>/<name>/``.
        resume: its resume file.
        out: the checkpoint the run writes at the end.
        promote: the shipped checkpoint it then replaces (``--promote``), or None.
        continuing: True when the run goes on from ``resume``.
    """

    dir: Path
    resume: Path
    out: Path
    promote: Path | None
    continuing: bool


def _writable(path: Path) -> Path | None:
    """The nearest existing folder at or above ``path`` when the user cannot write there, else None."""
    p = path
    while not p.exists():
        p = p.parent
    return None if (p.is_dir() and os.access(p, os.W_OK | os.X_OK)) else p


def prepare_run(cfg: RunOptions, *, default_name: str, checkpoint: str, resume_file: str = "resume.pt") -> RunFiles:
    """Check every output location of a training run before it starts, creating its run directory.

    ``default_name``: the run name when ``cfg.name`` is empty; ``checkpoint``: the file name of the
    agent's shipped checkpoint (``foveal.pt``).  Raises SystemExit with the fix for: ``--resume``
    without a resume file; a new run over an existing one; an existing ``--out`` (or shipped
    checkpoint) without ``--overwrite``; a folder that cannot be written.

    Under torchrun it first joins the process group (:func:`agents.distributed.init`) and checks
    that the ranks can share ``--batch-size``; rank 0 alone checks and creates the folders and
    every rank gets its answer (the same paths, or the same SystemExit)."""
    distributed.init()
    if hasattr(cfg, "batch_size"):
        distributed.local_batch(cfg.batch_size)
    return distributed.on_main(lambda: _prepare_run(cfg, default_name=default_name, checkpoint=checkpoint,
                                                    resume_file=resume_file))


def _prepare_run(cfg: RunOptions, *, default_name: str, checkpoint: str, resume_file: str) -> RunFiles:
    from .checkpoint import checkpoint_dir

    name = cfg.name or default_name
    if not name or Path(name).name != name or name in (".", ".."):
        raise SystemExit(f"--name {name!r}: a run name is one folder name (no '/'), e.g. --name {default_name}")
    rdir = Path(cfg.runs) / name
    resume = rdir / resume_file
    if cfg.resume == "yes" and not resume.is_file():
        raise SystemExit(f"--resume: there is no resume file {resume} to continue from. Start a new run without "
                         f"--resume, pass the --name (and --runs) of the run to continue, or --resume auto "
                         f"(continue when there is one, start afresh otherwise)")
    continuing = cfg.resume == "yes" or (cfg.resume == "auto" and resume.is_file())
    out = Path(cfg.out) if cfg.out else rdir / checkpoint
    if not continuing and not cfg.overwrite and (resume.is_file() or (rdir / checkpoint).is_file()):
        raise SystemExit(f"{rdir} already holds a run: continue it with --resume, choose another --name, or pass "
                         f"--overwrite to start it again from scratch (its files are then replaced)")
    shipped = checkpoint_dir() / checkpoint
    if out.is_dir():
        raise SystemExit(f"--out {out} is a folder: pass a file name, e.g. --out {out / checkpoint}")
    if out.exists() and not cfg.overwrite:
        if out.resolve().parent == shipped.resolve().parent:
            raise SystemExit(f"--out {out} is a shipped checkpoint: leave --out out (the run writes "
                             f"{rdir / checkpoint}) and pass --promote to replace {shipped.name} at the end, or add "
                             f"--overwrite")
        if not continuing:  # a continued run rewrites its own checkpoint
            raise SystemExit(f"--out {out} exists: pass another --out, or --overwrite to replace it")
    for what, path in (("--runs", rdir), ("--out", out.parent)) + ((("--promote", shipped.parent),) if cfg.promote else ()):
        bad = _writable(path)
        if bad is not None:
            raise SystemExit(f"{what}: cannot write into {path} ({bad} is not a writable folder): choose "
                             f"another location" + (" (--runs, --name)" if what == "--runs" else ""))
    try:
        rdir.mkdir(parents=True, exist_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SystemExit(f"cannot create the run's folders ({err}): choose another --runs / --out") from None
    if not continuing and cfg.overwrite:
        resume.unlink(missing_ok=True)
    return RunFiles(dir=rdir, resume=resume, out=out, promote=shipped if cfg.promote else None,
                    continuing=continuing)


def output_file(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """An output file, checked before any work: an existing file is replaced only with ``--overwrite``;
    its folder must be writable (it is created). Raises SystemExit with the fix."""
    path = Path(path)
    if path.is_dir():
        raise SystemExit(f"--out {path} is a folder: pass a file name")
    if path.exists() and not overwrite:
        raise SystemExit(f"--out {path} exists: pass --overwrite to replace it, or another --out")
    bad = _writable(path.parent)
    if bad is not None:
        raise SystemExit(f"--out: cannot write into {path.parent} ({bad} is not a writable folder): pass another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def finish_run(files: RunFiles) -> None:
    """After the checkpoint is written: copy it over the shipped one if ``--promote`` asked for it
    (rank 0 alone under torchrun)."""
    if files.promote is not None and distributed.is_main():
        from .checkpoint import promote
        promote(files.out, files.promote.name)
        print(f"promoted {files.out} to {files.promote}")


class GracefulExit:
    """While active (``with GracefulExit() as stop:``), SIGINT and SIGTERM ask the training loop to
    stop instead of killing it: the loop polls ``stop.requested(step)``, saves its resume point,
    then calls ``stop.exit(...)``. A second Ctrl-C stops at once.

    Under torchrun the ranks stop together: :meth:`requested` is true on every rank once any
    rank got the signal, so they all save the same step; and a second signal within
    :attr:`ECHO_S` seconds of the first is ignored (torchrun passes a Ctrl-C on to its workers,
    which had it from the terminal already)."""

    ECHO_S = 5.0

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}
        self._at = 0.0

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            if distributed.active() and time.monotonic() - self._at < self.ECHO_S:
                return
            raise KeyboardInterrupt
        self.signum, self._at = signum, time.monotonic()

    def __enter__(self) -> "GracefulExit":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def requested(self, step: int) -> bool:
        """True once a stop signal came (``step``: the step about to be taken); under torchrun, once
        it came to any rank (every rank calls this at every step: it is a collective)."""
        got = distributed.maximum(self.signum or 0)
        if got and self.signum is None:  # another rank's signal: stop as it does
            self.signum = got
        return got != 0

    def exit(self, *, step: int, resume: Path) -> NoReturn:
        """Say where the run stopped and how to continue it, then exit with status 128 + signal."""
        name = signal.Signals(self.signum).name
        print(f"\n{name}: stopped at step {step}; the resume point is {resume}. Continue with the same command "
              f"and --resume", file=sys.stderr, flush=True)
        raise SystemExit(128 + self.signum)


class _NoLog:
    """What ranks other than 0 log to: every SummaryWriter method, doing nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def writer(path: Path):
    """A TensorBoard SummaryWriter logging into ``path`` (under torchrun, on rank 0; the other
    ranks get a writer that writes nothing)."""
    if not distributed.is_main():
        return _NoLog()
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(path))


def read_scalars(path: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of the TensorBoard scalar ``tag`` logged under ``path`` by :func:`writer` ([] if absent)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags().get("scalars", []) else []


def _state_of(obj):
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


# options that may change when a run is continued: its budget, learning rates, evaluation and logging, where
# outputs go, and where its first weights or cached samples came from (the resume file holds the weights)
MAY_CHANGE = frozenset({"steps", "minutes", "total_timesteps", "lr", "loc_lr", "locator_lr", "lr_final", "decay",
                        "device", "threads", "resume", "overwrite", "promote", "out", "name", "runs", "save_every",
                        "log_every", "eval_every", "eval_episodes", "final_episodes", "final_budgets", "eval_budgets",
                        "eval_scenes", "eval_shifts", "progress_bar", "freeze_localiser", "init", "init_localiser",
                        "init_classifier", "data_cache"})


def save_resume(path: Path, *, step: int, elapsed: float, config: Any, extra: dict | None = None, **stateful) -> None:
    """Write the resume file atomically: ``stateful`` modules, optimisers, schedulers and
    torch.Generators by name, torch's global random streams, the step reached, the wall time
    spent so far, the run's configuration and ``extra`` (tensors and plain values).

    Under torchrun every rank calls it (a collective): rank 0 writes its own state, which the
    ranks share but for their random streams, and every rank's generators and global streams
    under ``"ranks"``; ``extra`` is rank 0's."""
    from .checkpoint import atomic_save
    rng = {"torch": torch.get_rng_state()}  # torch's global stream (dropout draws from it)
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    ranks = distributed.all_gather({"rng": rng, "gens": {k: v.get_state() for k, v in stateful.items()
                                                         if isinstance(v, torch.Generator)}})
    if distributed.is_main():
        state = {"step": step, "elapsed": elapsed, "config": dataclasses.asdict(config), "extra": extra or {},
                 "rng": rng, "state": {k: _state_of(v) for k, v in stateful.items()}}
        if len(ranks) > 1:
            state.update(world=len(ranks), ranks=ranks)
        atomic_save(state, path)
    distributed.barrier()  # the file is whole before any rank goes on (or exits)


def load_resume(path: Path, *, device: torch.device, config: Any | None = None, extra: dict | None = None,
                **stateful) -> tuple[int, float]:
    """Restore ``stateful`` objects from a resume file; returns (step, elapsed seconds).

    With ``config``, the file must have been written by a run of the same configuration (options
    outside :data:`MAY_CHANGE` equal); ``extra`` (a dict) is filled with what was saved as extra.
    A missing, damaged or mismatched file is a SystemExit that says what to do.

    Under torchrun rank 0 reads the file and sends it to every rank, which takes its own random
    streams from it; a file of a run with another number of processes is refused."""
    from .checkpoint import CheckpointError, safe_load
    fix = "start a new run without --resume (another --name, or --overwrite to restart this one)"

    def read() -> dict:
        try:  # several ranks: read on the CPU, each rank's load_state_dict moves it to its device
            r = safe_load(path, what="resume file", fix=fix, map_location="cpu" if distributed.active() else device)
        except CheckpointError as err:
            raise SystemExit(f"--resume: {err}") from None
        if not isinstance(r, dict) or not {"step", "elapsed", "state", "config"} <= set(r):
            raise SystemExit(f"--resume: {path} is not a resume file of these scripts: {fix}")
        return r
    r = distributed.on_main(read)
    if r.get("world", 1) != distributed.world():
        raise SystemExit(f"--resume: {path} was written by a run of {r.get('world', 1)} process(es), this run has "
                         f"{distributed.world()}: continue it with as many (torchrun --nproc_per_node/--nnodes; 1: "
                         f"plain python), since every process's random streams are in the file; or {fix}")
    if "ranks" in r:  # this rank's random streams
        mine = r["ranks"][distributed.rank()]
        r["rng"] = mine["rng"]
        r["state"].update(mine["gens"])
    missing = set(stateful) - set(r["state"])
    if missing:
        raise SystemExit(f"--resume: {path} was written by another script (it lacks {sorted(missing)}); {fix}")
    if config is not None:
        ours = dataclasses.asdict(config)
        theirs = r["config"]
        differ = [k for k in ours if k not in MAY_CHANGE and k in theirs and _same(theirs[k]) != _same(ours[k])]
        differ += [k for k in ours if k not in MAY_CHANGE and k not in theirs]
        if differ:
            said = ", ".join(f"{_flag(k)} {theirs.get(k, '(absent)')!r} there, {ours[k]!r} here" for k in differ)
            raise SystemExit(f"--resume: {path} was written by a run of another configuration ({said}): pass the "
                             f"same values to continue it, or {fix}")
    for k, obj in stateful.items():
        try:
            if isinstance(obj, torch.Generator):
                obj.set_state(r["state"][k].cpu() if obj.device.type == "cpu" else r["state"][k])
            else:
                obj.load_state_dict(r["state"][k])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"--resume: {path} does not fit this run's {k} ({str(err).splitlines()[0]}); "
                             f"it was written with another configuration or script: {fix}") from None
    if extra is not None:
        extra.update(r.get("extra", {}))
    if "torch" in r.get("rng", {}):
        torch.set_rng_state(r["rng"]["torch"].cpu())
    if "cuda" in r.get("rng", {}) and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in r["rng"]["cuda"]])
    return int(r["step"]), float(r["elapsed"])


def _same(value: Any) -> Any:
    """A config value in a comparable form (tuples and lists alike)."""
    return [_same(v) for v in value] if isinstance(value, (list, tuple)) else value


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
