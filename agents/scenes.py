"""Scenes for supervised training: a preset's scene sampler, outside the environment loop.

Supervised parts of agents (classifiers, the Where pathway, the spatial transformer) learn
from batches of scenes drawn the way the environment draws them, without stepping it.
"""
from __future__ import annotations

import dataclasses

import torch

from saccade_env import presets
from saccade_env.core import make_config
from saccade_env.scene import SceneBatch, SceneSampler


def preset_scene(env_id: str, **overrides):
    """The SceneConfig of a registered preset, with SceneConfig fields overridden."""
    preset = next((p for p in presets.PRESETS if p.id == env_id), None)
    if preset is None:
        raise ValueError(f"{env_id!r} is not a SaccadeMNIST preset; choose one of "
                         f"{[p.id for p in presets.PRESETS]}")
    return dataclasses.replace(make_config(**preset.kwargs).scene, **overrides)


def sample_scenes(sampler: SceneSampler, n: int, gen: torch.Generator) -> SceneBatch:
    """``n`` scenes (SceneBatch: scene (n, S, S), label (n,), offset (n, 2)) drawn with ``gen``."""
    return sampler.sample(torch.rand(n, sampler.n_uniforms, generator=gen, device=sampler.device))
