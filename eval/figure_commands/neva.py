"""NeVA scanpaths on a few SaccadeMNIST-v0 test scenes -> a PNG (numpy + cv2).

Each row is one test scene: (1) the scene with the causal scanpath (orange) and the
privileged one (cyan), numbered fixations, the digit's true box (green); (2) what the causal
agent answered on (its seen view); (3) the privileged agent's seen view.  Titles give the
label and both answers.

    python eval/figures.py neva --episodes 4 --budget 3  # runs/figures/neva_scanpaths.png
    python eval/figures.py neva --out docs/neva_scanpaths.png --overwrite   # the documentation's figure
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from agents.cli import check_ranges, output_file
from agents.neva import load_agent, reconstruct
from agents.rollout import make_env, run_episodes

ORANGE, CYAN, GREEN, WHITE = (0, 140, 255), (255, 220, 0), (0, 200, 0), (255, 255, 255)


def final_view(agent, ep) -> torch.Tensor:
    """(B, S, S) the view the agent answered on, rebuilt from its last state and observation."""
    obs, st = ep.steps[-1]["obs"], ep.state
    with torch.no_grad():
        recon = reconstruct(st["canvas"], st["seen"], agent.backproject(obs["periphery"], obs["fixation"]),
                            agent.cfg)
        return agent.view(recon, st["memory"])


def to_px(xy: np.ndarray, S: int, zoom: int) -> tuple[int, int]:
    return int(round((xy[0] + 1) * S / 2 * zoom)), int(round((xy[1] + 1) * S / 2 * zoom))


def gray(img: np.ndarray, zoom: int) -> np.ndarray:
    u8 = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.resize(u8, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)


def draw_path(canvas: np.ndarray, fixations: list[np.ndarray], color, S: int, zoom: int) -> None:
    pts = [to_px(f, S, zoom) for f in fixations]
    for a, b in zip(pts, pts[1:]):
        cv2.arrowedLine(canvas, a, b, color, 2, tipLength=0.08)
    for i, p in enumerate(pts):
        cv2.circle(canvas, p, 5, color, -1)
        cv2.putText(canvas, str(i), (p[0] + 6, p[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)


@dataclass(frozen=True)
class Config:
    """NeVA scanpaths on a few SaccadeMNIST-v0 test scenes."""

    checkpoint: str = field(default="", metadata={"help": "NeVA checkpoint (default: the shipped one)"})
    episodes: int = field(default=4, metadata={"min": 1, "help": "test episodes (rows of the figure)",
                                               "aliases": ("--scenes",)})
    budget: int = field(default=3, metadata={"min": 0, "help": "saccades per episode"})
    seed: int = field(default=7, metadata={"min": 0, "help": "seed of the episodes"})
    scale: int = field(default=3, metadata={"min": 1, "help": "display px per scene px", "aliases": ("--zoom",)})
    out: str = field(default="runs/figures/neva_scanpaths.png", metadata={"help": "the PNG to write"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out file"})

    def __post_init__(self) -> None:
        check_ranges(self)


def main(args: Config) -> None:
    out = output_file(args.out, overwrite=args.overwrite)
    torch.set_num_threads(1)
    agents = {v: load_agent(args.checkpoint or None, variant=v) for v in ("neva", "neva-privileged")}
    venv = make_env("SaccadeMNIST-v0", agent=agents["neva-privileged"], num_envs=args.episodes,
                    max_saccades=args.budget, split="test")
    scene = venv.reset(seed=args.seed)[1]["scene"].numpy()  # the scenes run_episodes will replay
    runs, views = {}, {}
    for name, agent in agents.items():
        agent.seed(args.seed)
        runs[name] = run_episodes(venv, agent, seed=args.seed, record=True)
        views[name] = final_view(agent, runs[name]).numpy()
    venv.close()
    S, z = scene.shape[-1], args.scale
    rows = []
    for i in range(args.episodes):
        panel = gray(scene[i], z)
        c = to_px(runs["neva"].target_xy[i].numpy(), S, z)
        cv2.rectangle(panel, (c[0] - 14 * z, c[1] - 14 * z), (c[0] + 14 * z, c[1] + 14 * z), GREEN, 1)
        for name, color in (("neva", ORANGE), ("neva-privileged", CYAN)):
            fx = [s["obs"]["fixation"][i].numpy() for s in runs[name].steps]
            draw_path(panel, fx, color, S, z)
        lab = int(runs["neva"].label[i])
        ans = {n: int(runs[n].steps[-1]["action"]["answer"][i]) for n in runs}
        cells = [panel, gray(views["neva"][i], z), gray(views["neva-privileged"][i], z)]
        titles = [f"label {lab}: causal (orange) / privileged (cyan)", f"causal view -> {ans['neva']}",
                  f"privileged view -> {ans['neva-privileged']}"]
        for cell, t in zip(cells, titles):
            cv2.putText(cell, t, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, WHITE, 1, cv2.LINE_AA)
        rows.append(np.concatenate([np.pad(cl, ((2, 2), (2, 2), (0, 0))) for cl in cells], 1))
    cv2.imwrite(str(out), np.concatenate(rows, 0))
    print(f"wrote {args.out}")

