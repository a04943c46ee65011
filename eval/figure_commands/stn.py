"""Where the STN's localisation network looks: its one-shot fixation on a grid of test scenes.

    python eval/figures.py stn                                         # runs/figures/stn_fixations.png
    python eval/figures.py stn --out docs/stn_fixations.png --overwrite # the documentation's figure
    python eval/figures.py stn --env SaccadeMNIST-Cluttered60-v0 --out docs/stn_fixations_cluttered60.png

Each panel is a test scene (grey), the eye's start at the centre (small dot), the trail
to the fixation the localiser chose with a budget of one saccade (filled dot and the
28x28 fovea box there), and the digit's true centre (cross in a circle).  The caption
gives the label, the agent's answer and the distance from fixation to digit centre.
The episodes are played by agents.rollout.run_episodes, as in the evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from agents.cli import check_ranges, output_file, resolve_device
from agents.rollout import make_env, run_episodes
from agents.stn import load_agent
from saccade_env.render import draw_scene
from saccade_env.retina import fovea


def caption(panel: np.ndarray, text: str, colour: tuple[int, int, int]) -> np.ndarray:
    """The panel with a 22 px text strip below it (RGB uint8)."""
    strip = np.full((22, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return np.concatenate([panel, strip], 0)


def stats(agent, env_id: str, n: int, *, seed: int, device: str | torch.device = "cpu") -> str:
    """Where the one-shot saccade lands and what the classifier makes of it, on n test episodes:
    separates the localisation's errors from the classifier's (reading at the true centre)."""
    venv = make_env(env_id, agent=agent, num_envs=n, device=device, max_saccades=1, split="test")
    ep = run_episodes(venv, agent, seed=seed, record=True)
    core, state = venv.unwrapped.core, venv.unwrapped.state
    S = core.cfg.scene.size
    fix = torch.round(ep.steps[0]["action"]["saccade"] * (S / 2)) / (S / 2)
    err = (fix - ep.target_xy).norm(dim=1) * (S / 2)
    with torch.no_grad():
        at_centre = agent.classify(fovea(state.scene, ep.target_xy, size=core.cfg.fovea_size, pad=core.pad))
    oracle = (at_centre.argmax(1) == ep.label).float().mean()
    venv.close()
    return (f"{env_id}, {n} test episodes, k=1: accuracy {float(ep.correct.float().mean()):.4f}; fixation error "
            f"median {float(err.median()):.1f} px, mean {float(err.mean()):.1f} px, >= 6 px in "
            f"{float((err >= 6).float().mean()):.1%}; digit {float(ep.target_xy.norm(dim=1).mean() * S / 2):.1f} px "
            f"from the centre on average; the same classifier at the true centre: {float(oracle):.4f}")


@dataclass(frozen=True)
class Config:
    """Where the STN's localisation network looks: its one-shot fixation on a grid of test scenes."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "environment id"})
    checkpoint: str = field(default="", metadata={"help": "STN checkpoint (default: the shipped one of --env)"})
    rows: int = field(default=4, metadata={"min": 1, "help": "rows of scenes"})
    cols: int = field(default=4, metadata={"min": 1, "help": "columns of scenes"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of the episodes"})
    scale: int = field(default=0, metadata={"min": 0, "help": "display px per scene px (0: fit ~260 px)"})
    stats: int = field(default=0, metadata={"min": 0, "help": "also measure N test episodes (k=1): fixation "
                                                             "error, accuracy there and at the digit's true centre"})
    device: str = field(default="cpu", metadata={"help": "auto, cpu or cuda"})
    out: str = field(default="runs/figures/stn_fixations.png", metadata={"help": "the PNG to write"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out file"})

    def __post_init__(self) -> None:
        check_ranges(self)


def main(args: Config) -> None:
    out = output_file(args.out, overwrite=args.overwrite)
    device = resolve_device(args.device)
    agent = load_agent(args.checkpoint or None, env=args.env, device=device)
    if args.stats:
        print(stats(agent, args.env, args.stats, seed=10**6, device=device))
    n = args.rows * args.cols
    venv = make_env(args.env, agent=agent, num_envs=n, device=device, max_saccades=1, split="test")
    ep = run_episodes(venv, agent, seed=args.seed, record=True)
    core, state = venv.unwrapped.core, venv.unwrapped.state  # the ended episodes (autoreset is next-step)
    S = core.cfg.scene.size
    scale = args.scale or max(1, round(260 / S))
    look = ep.steps[0]["action"]["saccade"]  # (n, 2) where the localiser sent the eye
    trail = torch.round(look * (S / 2)) / (S / 2)  # the env snaps it to the pixel grid
    answer = ep.steps[1]["action"]["answer"]
    err = (trail - ep.target_xy).norm(dim=1) * (S / 2)
    panels = []
    for i in range(n):
        img = draw_scene(state.scene[i].cpu().numpy(), np.stack([np.zeros(2), trail[i].cpu().numpy()]),
                         fovea_size=core.cfg.fovea_size, target_xy=ep.target_xy[i].cpu().numpy(), scale=scale)
        ok = bool(ep.correct[i])
        text = f"{int(ep.label[i])} -> {int(answer[i])}  err {float(err[i]):.1f}px"
        panels.append(caption(img, text, (0, 120, 0) if ok else (200, 0, 0)))
    venv.close()
    h, w = panels[0].shape[:2]
    grid = np.full((args.rows * (h + 4), args.cols * (w + 4), 3), 255, np.uint8)
    for i, panel in enumerate(panels):
        r, c = divmod(i, args.cols)
        grid[r * (h + 4):r * (h + 4) + h, c * (w + 4):c * (w + 4) + w] = panel
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]}): {int(ep.correct.sum())}/{n} correct, "
          f"median fixation error {float(err.median()):.1f} px")

