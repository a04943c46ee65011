"""Scanpaths: an animated GIF of the same test episodes played by several agents, side by side.

    python eval/figures.py scanpaths                          # every agent with a checkpoint: runs/figures/scanpaths.gif
    python eval/figures.py scanpaths --agents random oracle --episodes 2 --budget 3 --out docs/scanpaths.gif --overwrite

Rows are episodes (the same scenes for every agent), columns are agents. Each panel shows
the scene with the agent's fixation trail and fovea box, the digit's centre (cyan), what
its eye sees at the current fixation, and at the end its answer (green if right, red if
wrong) beside the label.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from agents import registry
from agents.checkpoint import CheckpointError
from agents.cli import output_file, resolve_device
from agents.rollout import make_env, run_episodes
from saccade_env.render import render_frame


@dataclass(frozen=True)
class Config:
    """Render the scanpaths of agents on the same test episodes into a GIF."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "the preset"})
    agents: tuple[str, ...] = field(default=(), metadata={"help": "agents (default: all with a checkpoint)"})
    episodes: int = field(default=3, metadata={"help": "episodes (rows of the animation)"})
    budget: int = field(default=3, metadata={"help": "saccade budget k"})
    seed: int = field(default=1, metadata={"help": "seed of the episodes"})
    scale: int = field(default=2, metadata={"help": "pixels per scene pixel"})
    ms_per_frame: int = field(default=700, metadata={"help": "GIF frame duration (ms)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    out: str = field(default="runs/figures/scanpaths.gif", metadata={"help": "the GIF to write"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out file"})

    def __post_init__(self):
        unknown = [a for a in self.agents if a not in registry.AGENTS]
        if unknown:
            raise ValueError(f"unknown agent(s) {unknown}; known: {', '.join(registry.AGENTS)}")
        if self.episodes < 1 or self.budget < 0 or self.scale < 1:
            raise ValueError("--episodes and --scale must be >= 1, --budget >= 0")
        if not self.out.lower().endswith(".gif"):
            raise ValueError(f"--out must name a .gif file, got {self.out!r}")


def play(name: str, agent, cfg: Config, device: torch.device) -> dict:
    """One recorded wave: per step the fixation and views, then the answer and the label (NumPy)."""
    venv = make_env(cfg.env, agent=agent, num_envs=cfg.episodes, device=device, max_saccades=cfg.budget,
                    privileged=True)
    if hasattr(agent, "seed"):
        agent.seed(cfg.seed)
    ep = run_episodes(venv, agent, seed=cfg.seed, record=True)
    steps = ep.steps
    views = [{k: s["obs"][k].cpu().numpy() for k in ("fovea", "glimpse") if k in s["obs"]} for s in steps]
    fix = np.stack([s["obs"]["fixation"].cpu().numpy() for s in steps])  # (T, B, 2)
    live = np.stack([s["live"].cpu().numpy() for s in steps])            # (T, B)
    answers = np.stack([s["action"]["answer"].cpu().numpy() for s in steps])
    last = live.sum(0) - 1                                                  # (B,) the answering step
    venv.close()
    return {"name": name, "scene": steps[0]["info"]["scene"].cpu().numpy(), "fix": fix, "views": views,
            "last": last, "answer": answers[last, np.arange(cfg.episodes)], "label": ep.label.cpu().numpy(),
            "target": ep.target_xy.cpu().numpy(), "fovea_size": venv.unwrapped.cfg.fovea_size}


def panel(run: dict, b: int, t: int, scale: int) -> np.ndarray:
    """Agent ``run``'s view of episode ``b`` at step ``t`` (held at its last step)."""
    t = min(t, int(run["last"][b]))
    trail = run["fix"][: t + 1, b]
    done = t == int(run["last"][b])
    img = render_frame(scene=run["scene"][b], trail=trail, fovea_size=run["fovea_size"],
                       views={k: v[b] for k, v in run["views"][t].items()}, target_xy=run["target"][b],
                       answer=int(run["answer"][b]) if done and run["answer"][b] < 10 else None,
                       label=int(run["label"][b]) if done else None, scale=scale)
    head = np.full((22, img.shape[1], 3), 255, np.uint8)
    cv2.putText(head, f"{run['name']}  step {t}", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([head, img], 0)


def main(cfg: Config) -> Path:
    from PIL import Image

    out = output_file(cfg.out, overwrite=cfg.overwrite)
    device = resolve_device(cfg.device)
    names = list(cfg.agents) or registry.available(cfg.env)
    if not names:
        raise SystemExit(f"no agent of {cfg.env} has a checkpoint: train one, e.g. `python train/foveal.py`")
    runs = []
    for n in names:
        try:
            runs.append(play(n, registry.load(n, device=device), cfg, device))
        except CheckpointError as err:
            raise SystemExit(str(err)) from None
    steps = max(int(r["last"].max()) for r in runs) + 1
    grids = [[[panel(r, b, t, cfg.scale) for r in runs] for b in range(cfg.episodes)]
             for t in range(steps + 2)]  # two more frames: the answers stay on screen
    h = max(p.shape[0] for g in grids for row in g for p in row)  # one size for every frame
    w = max(p.shape[1] for g in grids for row in g for p in row)
    frames = []
    for grid in grids:
        canvas = np.full((h * cfg.episodes, w * len(runs), 3), 255, np.uint8)
        for i, row in enumerate(grid):
            for j, p in enumerate(row):
                canvas[i * h:i * h + p.shape[0], j * w:j * w + p.shape[1]] = p
        frames.append(Image.fromarray(canvas))
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=cfg.ms_per_frame, loop=0)
    print(f"wrote {out}: {len(runs)} agents x {cfg.episodes} episodes, {len(frames)} frames")
    return out

