"""Flat actions (saccade_env/wrappers.py): SB3's check_env, the grids, one mapping for single and batched envs."""
from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.env_checker import check_env

import saccade_env
from saccade_env.retina import Periphery
from saccade_env.wrappers import (ActionMapping, ContinuousActions, DiscreteActions, FlattenSensors, flat_actions,
                                  logpolar_grid, sensor_shapes, uniform_grid)

from conftest import PRESET_IDS


FAST = dict(sensors=("fovea",), split="test")  # where the test needs no periphery: cheaper to build


@pytest.mark.parametrize("env_id", PRESET_IDS)
def test_sb3_check_env_passes_without_warnings_on_both_forms(env_id):
    base = gym.make(env_id)  # the preset's default sensors
    for form, expected in [("discrete", gym.spaces.MultiDiscrete([240, 11])),
                           ("continuous", gym.spaces.Box(-1, 1, (13,), np.float32))]:
        env = FlattenSensors(flat_actions(base, form))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any warning (SB3's or Gymnasium's) fails the test
            check_env(env)
        assert env.action_space == expected


def test_uniform_grid_cells_are_cell_centres_row_major():
    g = uniform_grid(4)
    assert g.shape == (16, 2)
    np.testing.assert_allclose(g[0], [-0.75, -0.75])  # top-left
    np.testing.assert_allclose(g[1], [-0.25, -0.75])  # next column: x grows
    np.testing.assert_allclose(g[4], [-0.75, -0.25])  # next row: y grows (down)
    np.testing.assert_allclose(g[15], [0.75, 0.75])


def test_logpolar_grid_is_the_peripherys_filter_grid():
    cfg = saccade_env.make_config()
    p = Periphery(cfg.periphery, cfg.scene.size)
    g = logpolar_grid(cfg).reshape(10, 24, 2) * (cfg.scene.size / 2)  # px from the fixation
    np.testing.assert_allclose(g.norm(dim=-1), p.radius_px[:, None].expand(10, 24), rtol=1e-5)
    np.testing.assert_allclose(torch.atan2(g[..., 1], g[..., 0]) % (2 * np.pi), p.azimuth % (2 * np.pi), atol=1e-5)
    assert abs(float(p.azimuth[1, 0] - p.azimuth[0, 0]) - np.pi / 24) < 1e-6  # odd rings offset by half a step
    assert 2.0 < float(p.radius_px[0]) < 2.5 and 50 < float(p.radius_px[-1]) < 52


def test_discrete_uniform_saccade_lands_on_the_cell_centre():
    env = DiscreteActions(gym.make("SaccadeMNIST-v0", **FAST), grid="uniform", grid_size=4)
    env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(np.array([1 * 4 + 2, 10]))  # row 1, col 2
    np.testing.assert_allclose(obs["fixation"], [0.25, -0.25])
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert obs["saccades_left"][0] == 4


def test_discrete_logpolar_targets_are_relative_to_the_fixation_and_clipped():
    env = DiscreteActions(gym.make("SaccadeMNIST-v0", **FAST), grid="logpolar")
    half = 64.0
    grid = logpolar_grid(env.unwrapped.cfg)
    env.reset(seed=1)
    target = 9 * 24 + 0  # outermost ring, first azimuth (pointing right)
    obs, *_ = env.step(np.array([target, 10]))
    first = np.round(grid[target].numpy() * half) / half
    np.testing.assert_allclose(obs["fixation"], first, atol=1e-6)
    obs, *_ = env.step(np.array([target, 10]))  # again: from the new fixation, clipped at the right edge
    np.testing.assert_allclose(obs["fixation"], np.clip(np.round((first + grid[target].numpy()) * half) / half, -1, 1),
                               atol=1e-6)
    assert obs["fixation"][0] == pytest.approx(1.0)


def test_continuous_answer_is_the_argmax_of_the_scores():
    env = ContinuousActions(gym.make("SaccadeMNIST-v0", max_saccades=1, **FAST))
    obs, _ = env.reset(seed=2)
    look = np.full(13, -1.0, np.float32)
    look[:2], look[2 + 10] = [0.5, -0.5], 1.0
    obs, reward, terminated, truncated, _ = env.step(look)
    np.testing.assert_allclose(obs["fixation"], [0.5, -0.5])
    assert not (terminated or truncated)
    answer = np.zeros(13, np.float32)
    answer[2 + 3] = 0.9
    obs, reward, terminated, truncated, info = env.step(answer)
    assert terminated and not truncated
    assert info["correct"] == (info["label"] == 3) and reward == float(info["label"] == 3)


def test_mapping_is_batched_and_rejects_out_of_range_actions():
    cfg = saccade_env.make_config()
    m = ActionMapping(cfg, form="discrete", grid="logpolar")
    fix = torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.99, 0.0]])
    sac, ans = m(torch.tensor([[0, 10], [24, 3], [239, 10]]), fix)
    np.testing.assert_allclose(sac[0], m.targets[0])
    np.testing.assert_allclose(sac[1], fix[1] + m.targets[24])
    assert float(sac[2, 0]) == 1.0 and ans.tolist() == [10, 3, 10]
    with pytest.raises(ValueError, match="out of range"):
        m(torch.tensor([[240, 10]]), fix[:1])
    with pytest.raises(ValueError, match="out of range"):
        m(torch.tensor([[0, 11]]), fix[:1])
    with pytest.raises(ValueError, match="grid must be"):
        ActionMapping(cfg, grid="polar")


def test_flatten_sensors_keeps_the_values_and_reports_the_shapes():
    base = DiscreteActions(gym.make("SaccadeMNIST-Translated60-v0"))
    flat = FlattenSensors(DiscreteActions(gym.make("SaccadeMNIST-Translated60-v0")))
    a, _ = base.reset(seed=3)
    b, _ = flat.reset(seed=3)
    assert sensor_shapes(flat) == {k: v.shape for k, v in a.items()} == {"glimpse": (3, 12, 12), "fixation": (2,),
                                                                         "saccades_left": (1,)}
    for k in a:
        np.testing.assert_array_equal(a[k].reshape(-1), b[k])
        assert flat.observation_space[k].contains(b[k])
