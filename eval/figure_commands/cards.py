"""Print a Markdown table of the shipped checkpoints: how each was trained and what it scored.

    python eval/figures.py cards                 # reads checkpoints/*.pt (their "meta")
    python eval/figures.py cards --out runs/figures/cards.md   # also writes the table there

Every training script stores its command, seed, device, wall time and scores in the
checkpoint it writes; this table is read from there, not typed by hand.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from agents.checkpoint import FORMAT, CheckpointError, checkpoint_dir, safe_load
from agents.cli import check_ranges, output_file


def _score(v) -> str:
    if isinstance(v, dict) and "accuracy" in v:
        v = v["accuracy"]
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _threads(meta: dict, train_config: dict) -> str:
    """Torch threads of the training run: stored by the script (in its meta or its training config),
    else its command's --threads."""
    for k in ("threads", "torch_threads"):
        if k in meta:
            return str(meta[k])
    if "threads" in train_config:
        return str(train_config["threads"])
    words = str(meta.get("command", "")).split()
    if "--threads" in words[:-1] and words[words.index("--threads") + 1] != "0":
        return words[words.index("--threads") + 1]
    return "?"


def card(path: Path) -> str:
    try:
        ckpt = safe_load(path, what="checkpoint", fix="it is skipped")
    except CheckpointError as err:
        return f"| `{path.name}` | (unreadable: {err}) | | | | |\n"
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        return f"| `{path.name}` | (not a saccade-env checkpoint) | | | | |\n"
    m = ckpt.get("meta", {})
    config = ckpt.get("config")
    train_config = (config.get("train_config") or {}) if isinstance(config, dict) else {}
    scores = {**m.get("scores", {}), **{f"val_{k}": v for k, v in m.get("val_scores", {}).items()}}
    scores = ", ".join(f"{k} {_score(v)}" for k, v in scores.items())
    wall = next((m[k] for k in ("wall_s", "wall_time_s", "train_wall_s", "wall_seconds", "seconds") if k in m), None)
    return (f"| `{path.name}` ({path.stat().st_size / 1e6:.1f} MB) | {ckpt['agent']} | `{m.get('command', '?')}` | "
            f"{m.get('device', '?')}, {_threads(m, train_config)} thread(s), seed {m.get('seed', '?')} | "
            f"{'?' if wall is None else f'{wall / 60:.1f} min'} | {scores} |\n")


@dataclass(frozen=True)
class Config:
    """Print a Markdown table of the shipped checkpoints: how each was trained and what it scored."""

    checkpoints: str = field(default="", metadata={
        "help": "folder of the checkpoints (default: the shipped ones, checkpoints/ or $SACCADE_ENV_CHECKPOINTS)"})
    out: str = field(default="", metadata={"help": "also write the table to this Markdown file (default: print only)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out file"})

    def __post_init__(self) -> None:
        check_ranges(self)


def main(cfg: Config) -> str:
    out = output_file(cfg.out, overwrite=cfg.overwrite) if cfg.out else None
    folder = Path(cfg.checkpoints) if cfg.checkpoints else checkpoint_dir()
    files = sorted(folder.glob("*.pt"))
    if not files:
        sys.exit(f"no checkpoints in {folder}")
    table = ("| checkpoint | agent key | command | machine | training time | scores at the end of training |\n"
             "|---|---|---|---|---|---|\n" + "".join(card(f) for f in files))
    print(table)
    if out is not None:
        out.write_text(table)
        print(f"wrote {out}")
    return table

