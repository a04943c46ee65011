"""Network blocks shared by the agents."""
from __future__ import annotations

import torch
import torch.nn.functional as F
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


PERIPHERY_SCALE = 10.0  # periphery responses are ~0.1 on SaccadeMNIST-v0's scenes: bring them to ~1


class CircularConv(nn.Module):
    """3x3 conv over (E, A) maps: circular padding along A (azimuth), zeros along E."""

    def __init__(self, c_in: int, c_out: int, *, stride: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, E, A) -> (B, c_out, E', A')
        x = F.pad(x, (1, 1, 0, 0), mode="circular")
        return self.conv(F.pad(x, (0, 0, 1, 1)))


class RetinotopicMaps(nn.Module):
    """Scores on the periphery's own log-polar map: one per cell, i.e. per saccade target of the
    discrete log-polar actions (saccade_env.wrappers, ``grid="logpolar"``: target ``e * A + a``).

    ``layers`` circular 3x3 convolutions (:class:`CircularConv`, ``width`` channels, ReLU) over the
    periphery (scaled by :data:`PERIPHERY_SCALE`) and a channel holding the ring index (0 innermost,
    1 outermost), then a 1x1 convolution to one channel. What is learnt about one place serves every
    place at the same eccentricity.

    ``forward(periphery (B, C, E, A)) -> (scores (B, E*A), pooled (B, width))``, ``pooled`` the
    channel-wise maximum of the last hidden layer over the map.
    """

    def __init__(self, in_channels: int, *, width: int = 16, layers: int = 2) -> None:
        super().__init__()
        if layers < 1 or width < 1:
            raise ValueError(f"RetinotopicMaps needs layers >= 1 and width >= 1, got layers={layers}, width={width}")
        convs: list[nn.Module] = []
        for i in range(layers):
            convs += [CircularConv(in_channels + 1 if i == 0 else width, width), nn.ReLU()]
        self.hidden = nn.Sequential(*convs)
        self.score = nn.Conv2d(width, 1, 1)

    def forward(self, periphery: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, _, E, A = periphery.shape
        ring = torch.linspace(0.0, 1.0, E, device=periphery.device, dtype=periphery.dtype)
        x = torch.cat([periphery * PERIPHERY_SCALE, ring[None, None, :, None].expand(B, 1, E, A)], 1)
        h = self.hidden(x)  # (B, width, E, A)
        return self.score(h).flatten(1), h.amax((2, 3))
