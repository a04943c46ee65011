"""Render one SaccadeMNIST episode to a PNG strip (the README's picture).

    python eval/figures.py episode                      # runs/figures/episode.png
    python eval/figures.py episode --out docs/episode.png --overwrite   # the documentation's picture
    python eval/figures.py episode --env SaccadeMNIST-Cluttered60-v0 --seed 3 --out cluttered.png

The eye is driven by a scripted, privileged policy (it is told where the digit is),
only to show what the environment and its retina look like: a first look at the
centre, a saccade halfway to the digit, then one onto it, then an answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import gymnasium as gym
import numpy as np

import saccade_env  # noqa: F401  (registers the ids)
from agents.cli import check_ranges, output_file


@dataclass(frozen=True)
class Config:
    """Render one SaccadeMNIST episode to a PNG strip."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "environment id"})
    seed: int = field(default=1, metadata={"min": 0, "help": "seed of the episode"})
    out: str = field(default="runs/figures/episode.png", metadata={"help": "the PNG to write"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out file"})

    def __post_init__(self) -> None:
        check_ranges(self)


def main(args: Config) -> None:
    out = output_file(args.out, overwrite=args.overwrite)
    env = gym.make(args.env, render_mode="rgb_array", privileged=True, split="test")
    obs, info = env.reset(seed=args.seed)
    frames = [env.render()]
    target = info["target_xy"].astype(np.float32)
    for xy in (target / 2, target):
        obs, _, _, _, info = env.step({"saccade": xy, "answer": 10})
        frames.append(env.render())
    _, _, _, _, info = env.step({"saccade": target, "answer": 0})  # a placeholder answer: no classifier here
    frames.append(env.render())
    h = max(f.shape[0] for f in frames)
    frames = [np.pad(f, ((0, h - f.shape[0]), (0, 0), (0, 0))) for f in frames]
    strip = np.concatenate(frames[:3], axis=1)
    cv2.imwrite(str(out), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({strip.shape[1]}x{strip.shape[0]}); label {info['label']}, "
          f"target {info['target_xy'].round(3).tolist()}, eccentricity {info['eccentricity']:.1f} px")

