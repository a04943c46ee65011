"""The registered environment ids: each a configuration of the one environment, with its source."""
from __future__ import annotations

from dataclasses import dataclass

from .scene import SceneConfig


@dataclass(frozen=True)
class Preset:
    """A registered id: its keyword arguments and where the setting comes from."""

    id: str
    kwargs: dict
    source: str
    summary: str


def _ram(size: int, n_clutter: int, glimpse_size: int, scales: int, max_saccades: int) -> dict:
    scene = SceneConfig(size=size, contrast=1.0, placement="center" if size == 28 else "uniform",
                        noise=0.0, mask=False, n_clutter=n_clutter)
    return dict(scene=scene, sensors=("glimpse",), glimpse_size=glimpse_size, glimpse_scales=scales,
                max_saccades=max_saccades)


PRESETS = (
    Preset("SaccadeMNIST-v0", dict(scene=SceneConfig(), sensors=("fovea", "periphery"), max_saccades=5),
           "Daucé, Albiges & Perrinet (2020), J. Vision 20(8):22",
           "128x128 MotionClouds noise (sf_0 0.1, B_sf 0.1, level 0.75), digit at contrast 0.7, "
           "radius min(|N(0,1)|*30, 34) px, circular mask; fovea 28x28 + log-polar periphery 12x10x24"),
    Preset("SaccadeMNIST-Centered28-v0", _ram(28, 0, 8, 1, 5),
           "Mnih et al. (2014), RAM, Table 1 (28x28 MNIST)",
           "plain 28x28 MNIST, centred; glimpse 8x8, 1 scale; 6 glimpses = 5 saccades"),
    Preset("SaccadeMNIST-Translated60-v0", _ram(60, 0, 12, 3, 7),
           "Mnih et al. (2014), RAM, Table 2; Jaderberg et al. (2015), STN",
           "60x60, digit anywhere, no noise; glimpse 12x12, 3 scales; 8 glimpses = 7 saccades"),
    Preset("SaccadeMNIST-Cluttered60-v0", _ram(60, 4, 12, 3, 7),
           "Mnih et al. (2014), RAM, Table 2; Jaderberg et al. (2015), STN",
           "60x60, digit anywhere, 4 clutter pieces 8x8; glimpse 12x12, 3 scales; 7 saccades"),
    Preset("SaccadeMNIST-Cluttered100-v0", _ram(100, 8, 12, 4, 7),
           "Mnih et al. (2014), RAM, Table 2 (100x100 cluttered)",
           "100x100, digit anywhere, 8 clutter pieces 8x8; glimpse 12x12, 4 scales; 7 saccades"),
)


def register_all() -> None:
    """Register every preset with Gymnasium (idempotent)."""
    import gymnasium as gym

    for p in PRESETS:
        if p.id in gym.registry:
            continue
        gym.register(id=p.id, entry_point="saccade_env.env:SaccadeMNISTEnv",
                     vector_entry_point="saccade_env.vector:SaccadeMNISTVectorEnv",
                     kwargs=dict(p.kwargs), disable_env_checker=False)
