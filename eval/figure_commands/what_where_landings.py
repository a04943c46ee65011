"""Where do the What/Where agent's saccades land?  Episodes with the digit at a given distance
from the scene's centre, at most ``--budget`` saccades: the share of episodes by the distance
from the last fixation to the digit's centre, and the accuracy in each band (printed, and as
JSON with ``--out``).

    python eval/figures.py what-where-landings                       # 30-40 px, one saccade, 2,000 test episodes
    python eval/figures.py what-where-landings --checkpoint checkpoints/what_where_glimpse.pt

It separates two causes of a miss: a saccade that lands near the digit but not near enough
for What (the log-polar grid of landing points), and one that lands elsewhere (Where picked
the wrong place).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from agents import what_where as ww
from agents.cli import check_ranges, output_file, resolve_device
from agents.rollout import make_env, run_episodes

BANDS = ((0, 4), (4, 8), (8, 12), (12, 20), (20, float("inf")))  # px from the digit's centre


def landing_bands(agent, *, budget: int, ecc_range: tuple[float, float], episodes: int, seed: int,
                  split: str = "test", device: str = "cpu") -> dict:
    """{"accuracy", "mean_saccades", "bands": [{"px": [lo, hi], "share", "accuracy"}]} over ``episodes``
    episodes whose digits sit at eccentricities drawn uniformly in ``ecc_range`` (px)."""
    ecc = np.random.default_rng(seed).uniform(*ecc_range, episodes).astype(np.float32)
    venv = make_env("SaccadeMNIST-v0", agent=agent, num_envs=episodes, device=device, max_saccades=budget,
                    split=split)
    try:
        ep = run_episodes(venv, agent, seed=seed, options={"eccentricity": ecc}, record=True)
        half = venv.unwrapped.cfg.scene.size / 2
    finally:
        venv.close()
    fixations = torch.stack([s["obs"]["fixation"] for s in ep.steps])  # (T, B, 2): the fixation at each step
    fix = fixations[ep.length - 1, torch.arange(fixations.shape[1])]  # where each episode ended
    dist = (fix - ep.target_xy).norm(dim=-1) * half
    correct = ep.correct.float()
    bands = []
    for lo, hi in BANDS:
        m = (dist >= lo) & (dist < hi)
        bands.append({"px": [lo, None if hi == float("inf") else hi], "share": float(m.float().mean()),
                      "accuracy": float(correct[m].mean()) if m.any() else None})
    return {"accuracy": float(correct.mean()), "mean_saccades": float(ep.n_saccades.float().mean()), "bands": bands}


@dataclass(frozen=True)
class Config:
    """Where the What/Where agent's saccades land on far digits, and what What reads there."""

    checkpoint: str = field(default="", metadata={"help": "Where checkpoint (default checkpoints/what_where.pt)"})
    budget: int = field(default=1, metadata={"min": 1, "help": "saccade budget k"})
    ecc_min: float = field(default=30.0, metadata={"min": 0, "help": "nearest digit eccentricity (px)"})
    ecc_max: float = field(default=40.0, metadata={"min": 0, "help": "farthest digit eccentricity (px)"})
    episodes: int = field(default=2000, metadata={"min": 1, "help": "episodes"})
    split: str = field(default="test", metadata={"help": "MNIST split of the digits"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of the episodes"})
    device: str = field(default="cpu", metadata={"help": "auto, cpu or cuda"})
    out: str = field(default="", metadata={"help": "also write the result as JSON here"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out file"})

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.ecc_max < self.ecc_min:
            raise ValueError(f"--ecc-max ({self.ecc_max}) must be >= --ecc-min ({self.ecc_min})")


def main(cfg: Config) -> dict:
    device = str(resolve_device(cfg.device))
    agent = ww.load_agent(cfg.checkpoint or None, device=device)
    res = landing_bands(agent, budget=cfg.budget, ecc_range=(cfg.ecc_min, cfg.ecc_max), episodes=cfg.episodes,
                        seed=cfg.seed, split=cfg.split, device=device)
    print(f"digits {cfg.ecc_min:g}-{cfg.ecc_max:g} px away, at most {cfg.budget} saccade(s), {cfg.episodes} "
          f"{cfg.split} episodes: accuracy {res['accuracy']:.1%}, {res['mean_saccades']:.2f} saccades")
    for b in res["bands"]:
        lo, hi = b["px"]
        acc = "-" if b["accuracy"] is None else f"{b['accuracy']:.1%}"
        print(f"  last fixation {lo}-{hi if hi is not None else 'inf'} px from the digit: "
              f"{b['share']:.1%} of episodes, accuracy {acc}")
    if cfg.out:
        path = output_file(cfg.out, overwrite=cfg.overwrite)
        path.write_text(json.dumps({"config": asdict(cfg), **res}, indent=1))
        print(f"wrote {path}")
    return res
