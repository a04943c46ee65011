"""saccade-env: SaccadeMNIST, a Gymnasium environment for active vision.

``import saccade_env`` registers the ids of :data:`saccade_env.presets.PRESETS`
(``SaccadeMNIST-v0`` and the RAM/STN benchmarks) with Gymnasium.
"""
from .core import EnvConfig, EnvState, SaccadeCore, check_device, make_config
from .env import SaccadeMNISTEnv
from .presets import PRESETS, register_all
from .retina import Periphery, PeripheryConfig, eye_window, fovea, glimpse
from .scene import SceneConfig
from .vector import SaccadeMNISTVectorEnv

register_all()

__all__ = ["EnvConfig", "EnvState", "PRESETS", "Periphery", "PeripheryConfig", "SaccadeCore",
           "SaccadeMNISTEnv", "SaccadeMNISTVectorEnv", "SceneConfig", "check_device", "eye_window", "fovea",
           "glimpse", "make_config"]
__version__ = "0.2.0"
