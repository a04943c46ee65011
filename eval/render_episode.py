"""Render one SaccadeMNIST episode to a PNG strip (the README's picture).

    python eval/render_episode.py                       # docs/episode.png
    python eval/render_episode.py --env SaccadeMNIST-Cluttered60-v0 --seed 3 --out cluttered.png

The eye is driven by a scripted, privileged policy (it is told where the digit is),
only to show what the environment and its retina look like: a first look at the
centre, a saccade halfway to the digit, then one onto it, then an answer.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np

import saccade_env  # noqa: F401  (registers the ids)
from agents.cli import at_least


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="SaccadeMNIST-v0")
    p.add_argument("--seed", type=at_least(0), default=1)
    p.add_argument("--out", default="docs/episode.png")
    args = p.parse_args()

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
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({strip.shape[1]}x{strip.shape[0]}); label {info['label']}, "
          f"target {info['target_xy'].round(3).tolist()}, eccentricity {info['eccentricity']:.1f} px")


if __name__ == "__main__":
    main()
