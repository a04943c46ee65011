"""Playing each digit of a split exactly once: the ``digit_index`` reset option and ``evaluate(episodes=None)``."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import saccade_env  # noqa: F401
from agents import registry
from agents.rollout import evaluate, make_env, run_episodes
from saccade_env.data import load_mnist


def test_digit_index_shows_that_digit():
    labels = load_mnist("test")[1]
    venv = gym.make_vec("SaccadeMNIST-v0", num_envs=4, split="test", sensors=("fovea",), privileged=True)
    index = np.array([3, 1234, 9999, 7])
    venv.reset(seed=0, options={"digit_index": index})
    st = venv.unwrapped.state
    assert st.label.tolist() == labels[index].tolist()
    digits = venv.unwrapped.core.sampler.digits[torch.as_tensor(index)]
    assert torch.equal(st.label, venv.unwrapped.core.sampler.labels[torch.as_tensor(index)])
    # the digit is drawn where the scene says: its brightest strokes sit at the offset
    c = venv.unwrapped.cfg.scene.size // 2 - 14
    for b in range(4):
        x, y = st.offset[b].tolist()
        patch = st.scene[b, c + y:c + y + 28, c + x:c + x + 28]
        stroke = digits[b] > 200
        assert float(patch[stroke].mean()) > float(patch[~stroke].mean()) + 0.15
    venv.close()


@pytest.mark.parametrize("bad", [-1, 10000, 2.5, [1, 2]])
def test_digit_index_is_validated(bad):
    env = gym.make("SaccadeMNIST-v0", split="test")
    with pytest.raises(ValueError, match="digit_index"):
        env.reset(seed=0, options={"digit_index": bad})
    with pytest.raises(ValueError, match="not both"):
        env.reset(seed=0, options={"digit_index": 1, "label": 3})


def test_full_split_plays_every_digit_once_in_order():
    """episodes=None: as many episodes as the split has digits, episode j showing digit j,
    whatever the batch size; the rest of each scene still comes from the seed."""
    agent = registry.load("center")
    split = "train[55000:55037]"
    a = evaluate(agent, budget=0, episodes=None, split=split, batch_size=10, seed=3)
    b = evaluate(agent, budget=0, episodes=None, split=split, batch_size=37, seed=3)
    assert len(a.correct) == 37
    assert np.array_equal(a.correct, b.correct) and np.array_equal(a.eccentricity, b.eccentricity)
    venv = make_env("SaccadeMNIST-v0", agent=agent, num_envs=37, max_saccades=0, split=split)
    ep = run_episodes(venv, agent, seed=3)
    labels = load_mnist("train")[1][55000:55037]
    assert not np.array_equal(ep.label.numpy(), labels)  # a plain run draws digits at random
    ep = run_episodes(venv, agent, seed=3, options={"digit_index": np.arange(37)})
    assert np.array_equal(ep.label.numpy(), labels)
    assert np.array_equal(ep.correct.numpy(), a.correct)
