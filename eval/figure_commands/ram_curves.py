"""RAM training curves: test-split monitor accuracy vs iterations for each preset trained,
read from the TensorBoard logs of train/ram.py (runs/ram-<tag>/).

    python eval/figures.py ram-curves              # -> runs/figures/ram_curves.png + a Markdown table
    python eval/figures.py ram-curves --runs runs --out docs/ram_curves.png --overwrite
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.checkpoint import CheckpointError, safe_load
from agents.cli import check_ranges, output_file, read_scalars
from agents.ram import PRESET_TAGS


@dataclass(frozen=True)
class Config:
    """RAM training curves read from the TensorBoard logs of train/ram.py."""

    runs: str = field(default="runs", metadata={"help": "folder of the run directories (ram-<tag>/)"})
    checkpoints: str = field(default="checkpoints", metadata={"help": "folder of the RAM checkpoints",
                                                              "aliases": ("--ckpts",)})
    out: str = field(default="runs/figures/ram_curves.png", metadata={"help": "the PNG to write"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out file"})

    def __post_init__(self) -> None:
        check_ranges(self)


def main(args: Config) -> None:
    out = output_file(args.out, overwrite=args.overwrite)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    print("| preset | iterations | test accuracy at each monitor eval (last: the final score) |")
    print("|---|---|---|")
    for env_id, tag in PRESET_TAGS.items():
        run = Path(args.runs) / f"ram-{tag}"
        if not run.is_dir():
            continue
        test = read_scalars(run, "test/accuracy")
        ckpt = Path(args.checkpoints) / f"ram-{tag}.pt"
        if ckpt.is_file():  # the final score (all test episodes of the trainer's final evaluation)
            try:
                meta = safe_load(ckpt, what="RAM checkpoint", fix=f"train one with `python train/ram.py --env {env_id}`")["meta"]
            except CheckpointError as err:
                raise SystemExit(str(err)) from None
            last = max(meta["scores"], key=lambda k: int(k.split("_k")[1]))
            if not test or test[-1][0] != meta["iterations"]:
                test.append((meta["iterations"], meta["scores"][last]))
        train = read_scalars(run, "train/reward")
        if test:
            ax1.plot(*zip(*test), marker="o", label=tag)
            print(f"| {env_id} | {test[-1][0]} | " + ", ".join(f"{s}: {v:.3f}" for s, v in test) + " |")
        if train:
            ax2.plot(*zip(*train), label=tag, alpha=0.8)
    ax1.set(xlabel="iteration (128 episodes each)", ylabel="accuracy", title="test split (deterministic)")
    ax2.set(xlabel="iteration", ylabel="accuracy", title="training waves (sampled locations)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"\nwrote {out}")

