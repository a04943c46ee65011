"""The environment's contract: Gymnasium's checker, seeding, vector == single, bad input, no label leak."""
from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from saccade_env import rng
from saccade_env.scene import SceneConfig, SceneSampler

from conftest import PRESET_IDS, answer, look


@pytest.mark.parametrize("env_id", PRESET_IDS)
def test_check_env_without_warnings(env_id):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(env_id)
        check_env(env.unwrapped, skip_render_check=True)
    assert [str(w.message) for w in caught] == []


def _play(env, seed, n=14):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for t in range(n):
        act = look(0.25 * math.sin(t), -0.3) if t % 4 != 3 else answer(t % 10)
        obs, r, te, tr, info = env.step(act)
        out.append((obs, r, te, tr, info))
        if te or tr:
            obs, _ = env.reset()
            out.append(obs)
    return out


def test_same_seed_same_episodes_and_different_seeds_differ():
    a, b = gym.make("SaccadeMNIST-v0"), gym.make("SaccadeMNIST-v0")
    pa, pb, pc = _play(a, 7), _play(b, 7), _play(b, 8)
    for x, y in zip(pa, pb):
        xo, yo = (x, y) if isinstance(x, dict) else (x[0], y[0])
        for k in xo:
            np.testing.assert_array_equal(xo[k], yo[k])
        if not isinstance(x, dict):
            assert x[1:4] == y[1:4]
            assert x[4].keys() == y[4].keys()
    assert not np.array_equal(pa[0]["fovea"], pc[0]["fovea"])


def test_vector_env_equals_single_envs():
    n, seed = 4, 11
    venv = gym.make_vec("SaccadeMNIST-v0", num_envs=n, max_saccades=2)
    singles = [gym.make("SaccadeMNIST-v0", max_saccades=2) for _ in range(n)]
    vobs, _ = venv.reset(seed=seed)
    sobs = [e.reset(seed=seed + i)[0] for i, e in enumerate(singles)]
    pending = [False] * n  # single env ended last step: the vector env resets it now
    for t in range(12):
        answers = [(10 if (t + i) % 3 else (t + i) % 10) for i in range(n)]
        sacc = np.array([[0.1 * i - 0.2, 0.05 * t - 0.3] for i in range(n)], np.float32)
        vobs, vr, vte, vtr, vinfo = venv.step({"saccade": torch.tensor(sacc), "answer": torch.tensor(answers)})
        for i, e in enumerate(singles):
            if pending[i]:
                sobs[i], _ = e.reset()
                pending[i] = False
                assert float(vr[i]) == 0.0 and not vte[i] and not vtr[i]
            else:
                sobs[i], r, te, tr, info = e.step({"saccade": sacc[i], "answer": answers[i]})
                assert (float(vr[i]), bool(vte[i]), bool(vtr[i])) == (r, te, tr)
                if te or tr:
                    pending[i] = True
                    assert bool(vinfo["_label"][i]) and int(vinfo["label"][i]) == info["label"]
                    assert bool(vinfo["correct"][i]) == info["correct"]
                else:
                    assert "_label" not in vinfo or not bool(vinfo["_label"][i])
            for k in sobs[i]:
                np.testing.assert_allclose(vobs[k][i].numpy(), sobs[i][k], atol=1e-5, err_msg=k)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP


def test_episode_dynamics_truncation_and_cost():
    env = gym.make("SaccadeMNIST-v0", max_saccades=2, saccade_cost=0.1)
    obs, info = env.reset(seed=0)
    assert info == {} and obs["saccades_left"][0] == 2
    obs, r, te, tr, info = env.step(look(0.5, -0.25))
    assert r == pytest.approx(-0.1) and not (te or tr) and info == {}
    np.testing.assert_array_equal(obs["fixation"], [0.5, -0.25])
    obs, *_ = env.step(look(0.3, 0.3))
    np.testing.assert_allclose(obs["fixation"], [round(0.3 * 64) / 64] * 2)
    assert obs["saccades_left"][0] == 0
    obs, r, te, tr, info = env.step(look())
    assert (r, te, tr) == (0.0, False, True) and info["n_saccades"] == 2 and "label" in info
    with pytest.raises(RuntimeError, match="reset"):
        env.step(look())


def test_label_revealed_only_at_the_end_and_reward_matches():
    env = gym.make("SaccadeMNIST-v0", privileged=True)
    obs, info = env.reset(seed=3, options={"label": 4})
    assert set(info) == {"scene", "target_xy"}
    assert set(obs) == {"fovea", "periphery", "fixation", "saccades_left"}
    obs, r, te, tr, info = env.step(look(0.1, 0.1))
    assert not any("label" in k or "correct" in k for k in info)
    obs, r, te, tr, info = env.step(answer(4))
    assert te and info["label"] == 4 and r == 1.0 and info["correct"]


@pytest.mark.parametrize("bad, err, msg", [
    ({"saccade": np.array([np.nan, 0], np.float32), "answer": 10}, ValueError, "NaN"),
    ({"saccade": np.array([1.5, 0], np.float32), "answer": 10}, ValueError, r"\[-1, 1\]"),
    ({"saccade": np.zeros(2, np.float32), "answer": 11}, ValueError, "0..10"),
    ({"saccade": np.zeros(2, np.float32), "answer": -1}, ValueError, "0..10"),
    ({"saccade": np.zeros(2, np.float32), "answer": 2.0}, TypeError, "integer"),
    ({"saccade": np.zeros(3, np.float32), "answer": 10}, ValueError, "shape"),
    ({"saccade": np.zeros(2, np.int64), "answer": 10}, TypeError, "float"),
    ({"saccade": np.zeros(2, np.float32)}, TypeError, "answer"),
    ([0.0, 0.0], TypeError, "saccade"),
])
def test_bad_actions_raise_and_change_nothing(bad, err, msg):
    env, ref = gym.make("SaccadeMNIST-v0"), gym.make("SaccadeMNIST-v0")
    env.reset(seed=5)
    ref.reset(seed=5)
    with pytest.raises(err, match=msg):
        env.step(bad)
    a, b = env.step(look(0.2, 0.2)), ref.step(look(0.2, 0.2))
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])


def test_vector_env_rejects_wrong_batch_shape():
    venv = gym.make_vec("SaccadeMNIST-v0", num_envs=3)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        venv.step({"saccade": torch.zeros(2, 2), "answer": torch.full((2,), 10)})


@pytest.mark.parametrize("kwargs, err", [
    (dict(contrast=1.5), ValueError), (dict(noise=-0.1), ValueError), (dict(fovea_size=200), ValueError),
    (dict(fovea_size=27), ValueError), (dict(max_saccades=-1), ValueError), (dict(sensors=("eyes",)), ValueError),
    (dict(split="val"), ValueError), (dict(placement="nowhere"), ValueError), (dict(size=127), ValueError),
    (dict(colour="red"), TypeError),
])
def test_invalid_config(kwargs, err):
    with pytest.raises(err):
        gym.make("SaccadeMNIST-v0", **kwargs)


@pytest.mark.parametrize("options", [{"label": 12}, {"eccentricity": 100}, {"where": 1}])
def test_bad_reset_options(options):
    env = gym.make("SaccadeMNIST-v0")
    with pytest.raises(ValueError):
        env.reset(seed=0, options=options)


def test_digit_position_distribution_matches_spec():
    sampler = SceneSampler(SceneConfig(), split="test")
    n = 4000
    u = rng.uniforms(torch.arange(n), torch.zeros(n, dtype=torch.int64), sampler.n_uniforms)
    off = sampler.sample(u).offset.float()
    r = off.norm(dim=1)
    assert r.max() <= 34 + 0.71  # offsets rounded to whole pixels
    clipped = (r > 33.0).float().mean().item()  # P(|N| > 34/30) = 0.257, radii rounded to pixels
    assert 0.2 < clipped < 0.33
    assert 18.0 < r.median().item() < 22.5  # 30 * 0.674
    ang = torch.atan2(off[:, 1], off[:, 0])
    assert abs(torch.cos(ang).mean().item()) < 0.06 and abs(torch.sin(ang).mean().item()) < 0.06


def test_reset_options_are_honoured():
    env = gym.make("SaccadeMNIST-v0", max_saccades=0)
    env.reset(seed=1, options={"eccentricity": 20})
    info = env.step(look())[4]
    assert abs(info["eccentricity"] - 20) <= 1.0
    env.reset(seed=1, options={"target_xy": (0.25, -0.125)})
    info = env.step(look())[4]
    np.testing.assert_allclose(info["target_xy"], [0.25, -0.125])


def test_global_rngs_untouched(tmp_path, monkeypatch):
    monkeypatch.setenv("SACCADE_ENV_CACHE", str(tmp_path))
    np_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state().clone()
    env = gym.make("SaccadeMNIST-v0", texture_seed=123, n_textures=4)  # builds a fresh bank
    _play(env, 0)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert list(tmp_path.glob("motionclouds_*.npz"))
