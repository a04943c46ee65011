"""Learning curves of the agents trained by reward on SaccadeMNIST-v0, RAM and PPO: held-out
accuracy against environment steps and against wall-clock minutes, from their training logs.

    python eval/figures.py learning-curves          # -> runs/figures/learning_curves.png + a Markdown table
    python eval/figures.py learning-curves --ppo-runs runs/ppo runs/ppo-scratch --ram-runs runs/ram-v0 \
        --out docs/learning_curves.png --overwrite

PPO's points are train/ppo.py's held-out evaluations (``val/accuracy`` in runs/<name>/progress.csv,
at ``--monitor-budget`` saccades, deterministic actions); RAM's are train/ram.py's monitor
evaluations (``valid/accuracy`` in its TensorBoard log, at its training budget, deterministic
locations). Both read held-out training digits (``train[55000:]``), never the test split. An
environment step is one observation and one action: RAM plays ``batch_size`` episodes of
``max_saccades + 1`` steps per iteration.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from agents.checkpoint import CheckpointError, safe_load
from agents.cli import check_ranges, output_file, read_scalars


@dataclass(frozen=True)
class Config:
    """Held-out accuracy of RAM and PPO on SaccadeMNIST-v0 against env steps and wall-clock."""

    ppo_runs: tuple[str, ...] = field(default=("runs/ppo",), metadata={
        "help": "train/ppo.py run directories (their progress.csv)"})
    ram_runs: tuple[str, ...] = field(default=("runs/ram-v0",), metadata={
        "help": "train/ram.py run directories (their TensorBoard log and ram-v0.pt)"})
    out: str = field(default="runs/figures/learning_curves.png", metadata={"help": "the PNG to write"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out file"})

    def __post_init__(self) -> None:
        check_ranges(self)


def ppo_curve(run: Path) -> tuple[str, list[tuple[int, float, float]]]:
    """(label, [(env steps, minutes, accuracy)]) from a train/ppo.py run's progress.csv."""
    path = run / "progress.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file; pass --ppo-runs, run directories of train/ppo.py")
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/accuracy") and r.get("time/total_timesteps")]
    if not rows:
        raise SystemExit(f"{path} has no held-out evaluation (val/accuracy): train with --monitor-every > 0")
    cfg = _ppo_config(run)
    kind = "RecurrentPPO" if cfg.get("recurrent") else "PPO"
    what = ", no What" if cfg.get("what") == "none" else ""
    points = [(int(float(r["time/total_timesteps"])), float(r["val/minutes"]), float(r["val/accuracy"])) for r in rows]
    return f"{kind}{what} (k={cfg.get('monitor_budget', '?')})", points


def _ppo_config(run: Path) -> dict:
    """The train/ppo.py options of a run (from its checkpoint or resume file)."""
    for name in ("ppo.pt", "resume.pt"):
        if (run / name).is_file():
            try:
                saved = safe_load(run / name, what="PPO file", fix="pass other --ppo-runs")
            except CheckpointError:
                continue
            cfg = saved.get("config", {})
            return cfg.get("train_config", cfg)
    return {}


def ram_curve(run: Path) -> tuple[str, list[tuple[int, float, float]]]:
    """(label, [(env steps, minutes, accuracy)]) from a train/ram.py run's TensorBoard log."""
    if not run.is_dir():
        raise SystemExit(f"{run}: no such folder; pass --ram-runs, run directories of train/ram.py")
    ckpts = sorted(run.glob("ram-*.pt"))
    if not ckpts:
        raise SystemExit(f"{run} holds no finished RAM checkpoint (ram-<tag>.pt): let the run finish, or pass other "
                         f"--ram-runs")
    try:
        ckpt = safe_load(ckpts[0], what="RAM checkpoint", fix="pass other --ram-runs")
    except CheckpointError as err:
        raise SystemExit(str(err)) from None
    batch, n_sacc = ckpt["config"]["train"]["batch_size"], ckpt["config"]["max_saccades"]
    by_iter = read_scalars(run, "valid/accuracy")
    by_minutes = read_scalars(run, "valid/accuracy_vs_minutes")
    if not by_iter or len(by_iter) != len(by_minutes):
        raise SystemExit(f"{run}: its log lacks the held-out monitor (valid/accuracy): train with --valid N")
    points = [(it * batch * (n_sacc + 1), m / 100, acc) for (it, acc), (m, _) in zip(by_iter, by_minutes)]
    return f"RAM (k={n_sacc})", points


def main(args: Config) -> None:
    curves = [ppo_curve(Path(r)) for r in args.ppo_runs] + [ram_curve(Path(r)) for r in args.ram_runs]
    out = output_file(args.out, overwrite=args.overwrite)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    print("| agent | env steps | minutes | held-out accuracy |")
    print("|---|---:|---:|---:|")
    for label, points in curves:
        steps, minutes, acc = zip(*points)
        ax1.plot(steps, acc, marker="o", ms=3, label=label)
        ax2.plot(minutes, acc, marker="o", ms=3, label=label)
        for s, m, a in points:
            print(f"| {label} | {s:,} | {m:.1f} | {a:.3f} |")
    ax1.set(xlabel="environment steps", ylabel="held-out accuracy", title="SaccadeMNIST-v0: accuracy vs steps")
    ax2.set(xlabel="wall-clock minutes (2-core CPU)", title="accuracy vs wall-clock")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"\nwrote {out}")
