"""A stable-baselines3 features extractor made for SaccadeMNIST's retina.

:class:`RetinaExtractor` encodes each sensor the observation space has, and concatenates:

- ``fovea`` (1, F, F): a small CNN (two stride-2 convs) -> ``fovea_dim``;
- ``periphery`` (C, E, A) = (12, 10, 24): the log-polar map, convolved with *circular*
  padding along the azimuth (the ring closes on itself) and zero padding along the
  eccentricity, then a linear layer -> ``periphery_dim``;
- ``glimpse`` (k, g, g): a small CNN -> ``glimpse_dim``;
- ``fixation`` (2,) and ``saccades_left`` (1,) (divided by its space's upper bound): as they are.

Sensors flattened to 1-D (:class:`saccade_env.wrappers.FlattenSensors`) are reshaped back
with ``shapes`` (:func:`saccade_env.wrappers.sensor_shapes`).

Use::

    PPO("MultiInputPolicy", venv, policy_kwargs=dict(features_extractor_class=RetinaExtractor))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from saccade_env.core import SENSORS

PERIPHERY_SCALE = 10.0  # periphery responses are ~0.1 on SaccadeMNIST-v0's scenes: bring them to ~1


class CircularConv(nn.Module):
    """3x3 conv over (E, A) maps: circular padding along A (azimuth), zeros along E."""

    def __init__(self, c_in: int, c_out: int, *, stride: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, E, A) -> (B, c_out, E', A')
        x = F.pad(x, (1, 1, 0, 0), mode="circular")
        return self.conv(F.pad(x, (0, 0, 1, 1)))


def _small_cnn(c_in: int, width: int) -> nn.Sequential:
    """Two strided convs: (c_in, H, W) -> (2 * width, H/4, W/4), flattened."""
    return nn.Sequential(nn.Conv2d(c_in, width, 5, stride=2, padding=2), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())


def _flat_size(net: nn.Module, shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(net(torch.zeros(1, *shape)).shape[1])


class RetinaExtractor(BaseFeaturesExtractor):
    """Features of whichever sensors ``observation_space`` has (see the module docstring).

    Args:
        observation_space: SaccadeMNIST's Dict observation space (3-D or flattened sensors).
        fovea_dim, periphery_dim, glimpse_dim: width of each sensor's code.
        width: channels of the first conv layers (the second ones have twice as many).
        shapes: the unflattened shape of each flattened sensor (key -> shape).
    """

    def __init__(self, observation_space: spaces.Dict, *, fovea_dim: int = 128, periphery_dim: int = 128,
                 glimpse_dim: int = 128, width: int = 16,
                 shapes: dict[str, tuple[int, ...]] | None = None) -> None:
        shapes = dict(shapes or {})
        shp = {k: tuple(shapes.get(k, s.shape)) for k, s in observation_space.spaces.items()}
        for k in SENSORS:
            if k in shp and len(shp[k]) != 3:
                raise ValueError(f"sensor {k!r} has shape {shp[k]}: pass its (C, H, W) shape in "
                                 f"shapes= (saccade_env.wrappers.sensor_shapes(env) gives them)")
        heads: dict[str, nn.Module] = {}
        dims = 0
        if "fovea" in shp:
            cnn = _small_cnn(shp["fovea"][0], width)
            heads["fovea"] = nn.Sequential(cnn, nn.Linear(_flat_size(cnn, shp["fovea"]), fovea_dim), nn.ReLU())
            dims += fovea_dim
        if "periphery" in shp:
            c = shp["periphery"][0]
            enc = nn.Sequential(CircularConv(c, 2 * width), nn.ReLU(),
                                CircularConv(2 * width, 2 * width, stride=(2, 2)), nn.ReLU(),
                                nn.Flatten())
            heads["periphery"] = nn.Sequential(enc, nn.Linear(_flat_size(enc, shp["periphery"]),
                                                              periphery_dim), nn.ReLU())
            dims += periphery_dim
        if "glimpse" in shp:
            cnn = _small_cnn(shp["glimpse"][0], width) if min(shp["glimpse"][1:]) >= 4 else nn.Flatten()
            heads["glimpse"] = nn.Sequential(cnn, nn.Linear(_flat_size(cnn, shp["glimpse"]), glimpse_dim),
                                             nn.ReLU())
            dims += glimpse_dim
        passthrough = [k for k in ("fixation", "saccades_left") if k in shp]
        dims += sum(math.prod(shp[k]) for k in passthrough)
        super().__init__(observation_space, features_dim=dims)
        self.shapes, self.passthrough = shp, passthrough
        self.heads = nn.ModuleDict(heads)
        high = observation_space.spaces["saccades_left"].high.max() if "saccades_left" in shp else 1.0
        self.register_buffer("left_scale", torch.tensor(1.0 / float(high)), persistent=False)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``obs``: dict of (B, ...) float tensors -> (B, features_dim)."""
        parts = []
        for k, head in self.heads.items():
            x = obs[k].float().reshape(-1, *self.shapes[k])
            parts.append(head(x * PERIPHERY_SCALE if k == "periphery" else x))
        for k in self.passthrough:
            x = obs[k].float().reshape(obs[k].shape[0], -1)
            parts.append(x * self.left_scale if k == "saccades_left" else x)
        return torch.cat(parts, 1)
