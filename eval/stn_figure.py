"""Where the STN's localisation network looks: its one-shot fixation on a grid of test scenes.

    python eval/stn_figure.py                                          # docs/stn_fixations.png
    python eval/stn_figure.py --env SaccadeMNIST-Cluttered60-v0 --out docs/stn_fixations_cluttered60.png

Each panel is a test scene (grey), the eye's start at the centre (small dot), the trail
to the fixation the localiser chose with a budget of one saccade (filled dot and the
28x28 fovea box there), and the digit's true centre (cross in a circle).  The caption
gives the label, the agent's answer and the distance from fixation to digit centre.
The episodes are played by agents.rollout.run_episodes, as in the evaluation.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from agents.cli import at_least
from agents.rollout import make_env, run_episodes
from agents.stn import load_agent
from saccade_env.render import draw_scene
from saccade_env.retina import fovea


def caption(panel: np.ndarray, text: str, colour: tuple[int, int, int]) -> np.ndarray:
    """The panel with a 22 px text strip below it (RGB uint8)."""
    strip = np.full((22, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return np.concatenate([panel, strip], 0)


def stats(agent, env_id: str, n: int, *, seed: int) -> str:
    """Where the one-shot saccade lands and what the classifier makes of it, on n test episodes:
    separates the localisation's errors from the classifier's (reading at the true centre)."""
    venv = make_env(env_id, agent=agent, num_envs=n, max_saccades=1, split="test")
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="SaccadeMNIST-v0")
    p.add_argument("--checkpoint", default=None, help="default: the shipped checkpoint of --env")
    p.add_argument("--rows", type=at_least(1), default=4)
    p.add_argument("--cols", type=at_least(1), default=4)
    p.add_argument("--seed", type=at_least(0), default=0)
    p.add_argument("--scale", type=at_least(0), default=0, help="display px per scene px (0: fit ~260 px)")
    p.add_argument("--out", default="docs/stn_fixations.png")
    p.add_argument("--stats", type=at_least(0), default=0, help="also measure N test episodes (k=1): fixation error, "
                                                         "accuracy there and at the digit's true centre")
    args = p.parse_args()

    agent = load_agent(args.checkpoint, env=args.env)
    if args.stats:
        print(stats(agent, args.env, args.stats, seed=10**6))
    n = args.rows * args.cols
    venv = make_env(args.env, agent=agent, num_envs=n, max_saccades=1, split="test")
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
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]}): {int(ep.correct.sum())}/{n} correct, "
          f"median fixation error {float(err.median()):.1f} px")


if __name__ == "__main__":
    main()
