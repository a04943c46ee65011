"""Baselines: what any way of looking must beat, and the bounds it can reach.

- ``center``: answers from the first fovea (the eye at the scene's centre), no saccade.
- ``random``: saccades to random places (uniform in the disc where digits can be), then
  answers from the most confident fovea it saw.
- ``oracle`` (privileged): saccades straight to the digit's true centre, then answers:
  the upper bound of a foveal reader.
- ``fullview`` (privileged: it reads the whole scene, no retina): a CNN on the full
  128x128 scene at full resolution, what a user would pick instead of an eye.

The three foveal baselines share one classifier, the What pathway (``train/foveal.py``,
``checkpoints/foveal.pt``), and one answering rule: the class of the most confident of
the foveae seen so far (max softmax probability).
"""
from __future__ import annotations

import os
from typing import Any

import torch

from saccade_env.scene import SceneConfig

from .base import Seeded, make_action, must_answer
from .checkpoint import load_checkpoint
from .nets import FovealClassifier, SceneClassifier

FOVEAL_SCRIPT = "train/foveal.py"
FULLVIEW_SCRIPT = "train/fullview.py"


def load_foveal(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu") -> FovealClassifier:
    """The shared foveal classifier (What pathway), in eval mode, from ``checkpoints/foveal.pt``."""
    ckpt = load_checkpoint(path, agent="foveal", script=FOVEAL_SCRIPT, map_location=device)
    net = FovealClassifier(width=ckpt["config"]["width"])
    net.load_state_dict(ckpt["weights"]["net"])
    return net.to(device).eval().requires_grad_(False)


class _BestView:
    """The answering rule of the foveal baselines: keep the most confident view's class.

    State: ``(conf (B,) float, pred (B,) int64)``.
    """

    def __init__(self, classifier: FovealClassifier) -> None:
        self.classifier = classifier

    def reset(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.full((batch_size,), -1.0, device=device),
                torch.zeros(batch_size, dtype=torch.int64, device=device))

    def update(self, fovea: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        conf, pred = torch.softmax(self.classifier(fovea), 1).max(1)
        better = conf > state[0]
        return torch.where(better, conf, state[0]), torch.where(better, pred, state[1])


class CenterAgent(_BestView):
    """Answers from the first fovea; never moves its eye."""

    name, sensors, privileged = "center", ("fovea",), False

    def act(self, obs: dict[str, torch.Tensor], state: Any, *, info: dict | None = None):
        state = self.update(obs["fovea"], state)
        B = state[1].shape[0]
        return make_action(saccade=torch.zeros(B, 2, device=state[1].device), answer=state[1],
                           look=torch.zeros(B, dtype=torch.bool, device=state[1].device)), state


class RandomAgent(_BestView, Seeded):
    """Saccades to uniform random points of the disc of radius ``extent`` (scene
    coordinates; default ``SceneConfig().extent``, 34/64, where SaccadeMNIST-v0 puts its digits) until no saccade is
    left, then answers from the most confident fovea seen."""

    name, sensors, privileged = "random", ("fovea",), False

    def __init__(self, classifier: FovealClassifier, *, extent: float = SceneConfig().extent, seed: int = 0) -> None:
        super().__init__(classifier)
        self.extent = float(extent)
        self.seed(seed)

    def act(self, obs: dict[str, torch.Tensor], state: Any, *, info: dict | None = None):
        state = self.update(obs["fovea"], state)
        B, dev = state[1].shape[0], state[1].device
        g = self._generator(dev)
        radius = self.extent * torch.sqrt(torch.rand(B, generator=g, device=dev))
        angle = 2 * torch.pi * torch.rand(B, generator=g, device=dev)
        target = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], 1)
        return make_action(saccade=target, answer=state[1], look=~must_answer(obs)), state


class OracleAgent(_BestView):
    """Privileged: looks straight at the digit's true centre (``info["target_xy"]``), then
    answers; with no saccade allowed it answers from the first fovea."""

    name, sensors, privileged = "oracle", ("fovea",), True

    def reset(self, batch_size: int, device: torch.device):
        conf, pred = super().reset(batch_size, device)
        return conf, pred, torch.zeros(batch_size, dtype=torch.bool, device=device)

    def act(self, obs: dict[str, torch.Tensor], state: Any, *, info: dict | None = None):
        if info is None or "target_xy" not in info:
            raise ValueError("the oracle needs info['target_xy']: run it on an env made with privileged=True")
        conf, pred = self.update(obs["fovea"], state[:2])
        looked = state[2]
        look = ~looked & ~must_answer(obs)
        action = make_action(saccade=info["target_xy"], answer=pred, look=look)
        return action, (conf, pred, looked | look)


class FullviewAgent:
    """Privileged: classifies the whole scene (``info["scene"]``) with a CNN, no eye; answers at once."""

    name, sensors, privileged = "fullview", ("fovea",), True

    def __init__(self, classifier: SceneClassifier) -> None:
        self.classifier = classifier

    def reset(self, batch_size: int, device: torch.device) -> None:
        return None

    def act(self, obs: dict[str, torch.Tensor], state: Any, *, info: dict | None = None):
        if info is None or "scene" not in info:
            raise ValueError("fullview reads info['scene']: run it on an env made with privileged=True")
        pred = self.classifier(info["scene"]).argmax(1)
        B = pred.shape[0]
        return make_action(saccade=torch.zeros(B, 2, device=pred.device), answer=pred,
                           look=torch.zeros(B, dtype=torch.bool, device=pred.device)), state


def load_fullview(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu") -> SceneClassifier:
    """The fullview CNN, in eval mode, from ``checkpoints/fullview.pt``."""
    ckpt = load_checkpoint(path, agent="fullview", script=FULLVIEW_SCRIPT, map_location=device)
    net = SceneClassifier(**ckpt["config"]["net"])
    net.load_state_dict(ckpt["weights"]["net"])
    return net.to(device).eval().requires_grad_(False)


def load_agent(name: str, path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
               **options):
    """A baseline by name: center, random, oracle (from the foveal checkpoint) or fullview."""
    if name == "fullview":
        return FullviewAgent(load_fullview(path, device=device))
    kinds = {"center": CenterAgent, "random": RandomAgent, "oracle": OracleAgent}
    if name not in kinds:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(kinds) + ['fullview']}")
    return kinds[name](load_foveal(path, device=device), **options)
