"""Network blocks shared by the agents."""
from __future__ import annotations

import torch
from torch import nn

from saccade_env.scene import GREY


class FovealClassifier(nn.Module):
    """A LeNet-like classifier of the 28x28 fovea: the What pathway of Daucé et al. 2020,
    shared by the foveal baselines (center, random, oracle) and the What/Where agent.

    ``forward(fovea (B, 1, 28, 28) in [0, 1]) -> logits (B, 10)``. The input is centred
    (x - GREY, the noise display's mid-grey) inside, so a grey noise background is near zero.
    """

    def __init__(self, *, width: int = 24, hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),           # 14x14
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # 7x7
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 49, hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, 10))
        self.config = {"width": width, "hidden": hidden, "dropout": dropout}

    def forward(self, fovea: torch.Tensor) -> torch.Tensor:
        if fovea.dim() != 4 or tuple(fovea.shape[1:]) != (1, 28, 28):
            raise ValueError(f"FovealClassifier takes (B, 1, 28, 28) foveae, got {tuple(fovea.shape)}")
        return self.head(self.features(fovea - GREY))


class SceneClassifier(nn.Module):
    """A CNN that sees the whole scene at full resolution, no retina (the ``fullview``
    baseline: what a user would pick instead of an eye).

    ``forward(scene (B, S, S) in [0, 1]) -> logits (B, 10)``; any S >= 32.
    """

    def __init__(self, *, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 5, stride=2, padding=2), nn.BatchNorm2d(w), nn.ReLU(),                 # S/2
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),          # S/4
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),  # S/8
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
            nn.Linear(2 * w, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        self.config = {"width": width, "hidden": hidden}

    def forward(self, scene: torch.Tensor) -> torch.Tensor:
        if scene.dim() != 3 or scene.shape[1] != scene.shape[2]:
            raise ValueError(f"SceneClassifier takes (B, S, S) scenes, got {tuple(scene.shape)}")
        return self.net(scene[:, None] - GREY)
