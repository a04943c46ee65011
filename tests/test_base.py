"""The agent protocol (agents/base.py): required members checked, optional ones read with their defaults."""
from __future__ import annotations

import pytest
import torch

from agents.base import LOOK, N_CLASSES, SENSORS, check_agent, env_kwargs_of, make_action, seed_agent
from agents.rollout import make_env
from saccade_env.core import LOOK as ENV_LOOK
from saccade_env.core import SENSORS as ENV_SENSORS


class Minimal:
    name, sensors, privileged = "minimal", ("fovea",), False

    def reset(self, batch_size, device):
        return None

    def act(self, obs, state, *, info=None):
        B = obs["fovea"].shape[0]
        return make_action(saccade=torch.zeros(B, 2), answer=torch.zeros(B, dtype=torch.int64),
                           look=torch.zeros(B, dtype=torch.bool)), state


def test_constants_are_the_environments():
    assert LOOK is ENV_LOOK and SENSORS is ENV_SENSORS and N_CLASSES == LOOK == 10


def test_optional_members_have_defaults():
    agent = Minimal()
    check_agent(agent)
    assert env_kwargs_of(agent) == {}
    seed_agent(agent, 3)  # nothing to seed: no error

    agent.env_kwargs = {"glimpse_size": 16, "glimpse_scales": 2}
    seen = []
    agent.seed = seen.append
    check_agent(agent)
    seed_agent(agent, 7)
    assert seen == [7]
    venv = make_env("SaccadeMNIST-v0", agent=agent, num_envs=2, glimpse_scales=3)  # the caller's keywords win
    try:
        cfg = venv.unwrapped.cfg
        assert cfg.glimpse_size == 16 and cfg.glimpse_scales == 3 and cfg.sensors == ("fovea",)
    finally:
        venv.close()


@pytest.mark.parametrize("change, message", [
    (lambda a: setattr(a, "sensors", ("eyes",)), "sensors"),
    (lambda a: setattr(a, "env_kwargs", ["glimpse_size"]), "env_kwargs must be a dict"),
    (lambda a: setattr(a, "seed", 3), "seed must be a method"),
])
def test_check_agent_says_what_is_wrong(change, message):
    agent = Minimal()
    change(agent)
    with pytest.raises(TypeError, match=message):
        check_agent(agent)


def test_check_agent_names_missing_members():
    class NoAct:
        name, sensors, privileged = "x", ("fovea",), False

        def reset(self, batch_size, device):
            return None

    with pytest.raises(TypeError, match=r"lacks \['act'\]"):
        check_agent(NoAct())
