"""The evaluation's figures and one-off measurements, one subcommand each.

    python eval/figures.py --help                     # the subcommands, one line each
    python eval/figures.py <subcommand> --help        # that subcommand's flags
    python eval/figures.py episode                    # runs/figures/episode.png
    python eval/figures.py scanpaths --agents random oracle --episodes 2 --out /tmp/scanpaths.gif

Each subcommand is a module of ``eval/figure_commands/`` (a ``Config`` dataclass parsed by
:func:`agents.cli.parse_config`, and ``main(cfg)``); its flags follow the convention of every
script (``--env``, ``--out``, ``--overwrite``, ``--device``, ``--seed``, ``--episodes``, ...).
A figure is written under ``runs/figures/`` unless ``--out`` says otherwise, and an existing
file is replaced only with ``--overwrite``. The comparison of agents is eval/compare_agents.py.
"""
from __future__ import annotations

import difflib
import importlib
import sys
from pathlib import Path
from types import ModuleType

# subcommand -> what it makes, in one line (the module is eval/figure_commands/<name with _ for ->.py)
SUBCOMMANDS: dict[str, str] = {
    "episode": "one episode as a PNG strip, driven by a scripted privileged eye (the README's picture)",
    "scanpaths": "an animated GIF of several agents playing the same test episodes, side by side",
    "what-where": "the What/Where figures of Daucé et al. 2020 and their numbers beside the paper's",
    "what-where-landings": "where What/Where's saccades land on far digits, and the accuracy there (printed)",
    "stn": "where the STN's localiser looks: its one-shot fixation on a grid of test scenes",
    "neva": "NeVA's scanpaths (causal and privileged) and the views it answered on, as a PNG",
    "neva-eval": "NeVA's accuracy vs saccade budget beside the planners sharing its classifier (JSON)",
    "ram-curves": "RAM's training curves from the TensorBoard logs of train/ram.py (PNG + table)",
    "ram-drift": "where a trained RAM looks: fixation-to-digit distance per glimpse (printed)",
    "learning-curves": "RAM's and PPO's held-out accuracy on v0 against env steps and wall-clock (PNG + table)",
    "cards": "a Markdown table of the shipped checkpoints: how each was trained, what it scored",
}
PROG = "figures.py"
USAGE = f"usage: {PROG} <subcommand> [flags]   ({PROG} <subcommand> --help: its flags)"


def module_name(name: str) -> str:
    """The module of ``eval/figure_commands/`` that implements subcommand ``name``."""
    return name.replace("-", "_")


def load(name: str) -> ModuleType:
    """The module of subcommand ``name`` (imported on demand: a subcommand loads only what it needs)."""
    if __package__:  # imported as eval.figures
        return importlib.import_module(f"{__package__}.figure_commands.{module_name(name)}")
    here = str(Path(__file__).resolve().parent)  # python eval/figures.py: eval/ is sys.path[0]
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module(f"figure_commands.{module_name(name)}")


def config(name: str) -> type:
    """The ``Config`` dataclass of subcommand ``name``: its flags."""
    return load(name).Config


def overview() -> str:
    """The --help text: usage, what the tool is, the subcommands with one line each."""
    width = max(map(len, SUBCOMMANDS))
    lines = [USAGE, "", (__doc__ or "").split("\n")[0], "", "subcommands:"]
    lines += [f"  {name:<{width}}  {line}" for name, line in SUBCOMMANDS.items()]
    return "\n".join(lines)


def _refuse(message: str) -> None:
    print(f"{USAGE}\n{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None):
    """Run ``figures.py <subcommand> [flags]``; returns what the subcommand's ``main`` returns.

    No subcommand, a flag in its place or an unknown one is a usage error (exit status 2) that
    lists the subcommands."""
    argv = sys.argv[1:] if argv is None else list(argv)
    names = ", ".join(SUBCOMMANDS)
    if argv and argv[0] in ("-h", "--help"):
        print(overview())
        raise SystemExit(0)
    if not argv:
        _refuse(f"name a subcommand, one of: {names}")
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        close = difflib.get_close_matches(name.replace("_", "-").lstrip("-"), SUBCOMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        what = "the subcommand comes first, its flags after it" if name.startswith("-") else f"unknown subcommand {name!r}"
        _refuse(f"{what}{hint}; the subcommands: {names}")
    from agents.cli import parse_config

    module = load(name)
    return module.main(parse_config(module.Config, rest, prog=f"{PROG} {name}"))


if __name__ == "__main__":
    main()
