"""The agent protocol: what every agent of saccade-env offers, so one rollout loop runs them all.

An agent acts on a *batch* of environments (the vector env's tensors):

- ``name``: a short identifier ("ram", "what_where", ...), used in tables and checkpoints;
- ``sensors``: the observation keys it reads (the env is built with ``sensors=`` these,
  so nobody pays for a sensor it ignores);
- ``privileged``: True if it needs what no eye has seen (the scene, the target position);
  such an agent only runs on an env made with ``privileged=True`` and its rows are
  marked "privileged" in every table;
- ``reset(batch_size, device) -> state``: the state of ``batch_size`` fresh episodes;
- ``act(obs, state, *, info=None) -> (action, state)``: ``obs`` is the vector env's
  observation dict of (B, ...) tensors, ``info`` its info dict (the scene and target
  only when privileged; never the label); ``action`` is
  ``{"saccade": (B, 2) float32, "answer": (B,) int64}`` (answer 10 = look).

Two members are optional; the rollout (agents/rollout.py) reads them only through
:func:`env_kwargs_of` and :func:`seed_agent`, which give their defaults when they are absent:

- ``env_kwargs``: a dict of keyword arguments of ``gym.make_vec`` the agent needs (e.g. the
  glimpse size and scales it was trained with); :func:`agents.rollout.make_env` applies them.
  Default ``{}``.
- ``seed(seed: int) -> None``: re-seed the agent's own randomness (see :class:`Seeded`);
  :func:`agents.rollout.evaluate` calls it with the evaluation's seed. Default: nothing to seed.

An agent answers at the latest when ``obs["saccades_left"]`` reaches 0 (:func:`must_answer`);
it may answer earlier. Evaluation with a budget of k saccades is the env with ``max_saccades=k``.
The look action :data:`LOOK` and the sensor names :data:`SENSORS` are the environment's
(``saccade_env.core``).
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from saccade_env.core import LOOK, SENSORS

N_CLASSES = LOOK  # answers 0..LOOK-1 name a class; LOOK asks for a saccade

__all__ = ["LOOK", "N_CLASSES", "SENSORS", "Agent", "Seeded", "check_agent", "env_kwargs_of", "make_action",
           "must_answer", "seed_agent"]


@runtime_checkable
class Agent(Protocol):
    """What every agent offers (the module's docstring describes each member).

    Optional, not part of this runtime check: ``env_kwargs`` and ``seed(int)``
    (:func:`env_kwargs_of`, :func:`seed_agent`).
    """

    name: str
    sensors: tuple[str, ...]
    privileged: bool

    def reset(self, batch_size: int, device: torch.device) -> Any: ...

    def act(self, obs: dict[str, torch.Tensor], state: Any, *, info: dict | None = None
            ) -> tuple[dict[str, torch.Tensor], Any]: ...


def must_answer(obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) bool: no saccade left, the agent must answer now."""
    return obs["saccades_left"][:, 0] <= 0


def make_action(*, saccade: torch.Tensor, answer: torch.Tensor, look: torch.Tensor) -> dict[str, torch.Tensor]:
    """Combine a saccade target and a class into one action.

    Args:
        saccade: (B, 2) target of a look, scene coordinates in [-1, 1] (clamped here).
        answer: (B,) int class 0..9, used where ``look`` is False.
        look: (B,) bool, True to look (answer 10) instead of answering.
    """
    ans = torch.where(look, torch.full_like(answer, LOOK), answer.long())
    return {"saccade": saccade.detach().float().clamp(-1.0, 1.0), "answer": ans}


def check_agent(agent: Any) -> None:
    """Raise a TypeError saying what is missing or wrong if ``agent`` does not follow the protocol."""
    missing = [a for a in ("name", "sensors", "privileged", "reset", "act") if not hasattr(agent, a)]
    if missing:
        raise TypeError(f"{type(agent).__name__} is not an agent: it lacks {missing}; see agents/base.py "
                        f"for the protocol (name, sensors, privileged, reset(batch_size, device), "
                        f"act(obs, state, *, info=None); optional: env_kwargs, seed(int))")
    unknown = [s for s in agent.sensors if s not in SENSORS]
    if unknown:
        raise TypeError(f"{type(agent).__name__}.sensors names {unknown}: the sensors are {SENSORS}")
    if not isinstance(getattr(agent, "env_kwargs", {}), dict):
        raise TypeError(f"{type(agent).__name__}.env_kwargs must be a dict of gym.make_vec keywords, "
                        f"got {type(agent.env_kwargs).__name__}")
    if hasattr(agent, "seed") and not callable(agent.seed):
        raise TypeError(f"{type(agent).__name__}.seed must be a method seed(int), got {agent.seed!r}")


def env_kwargs_of(agent: Any) -> dict:
    """The agent's optional ``env_kwargs`` (the env settings it needs), ``{}`` if it has none."""
    return dict(getattr(agent, "env_kwargs", None) or {})


def seed_agent(agent: Any, seed: int) -> None:
    """Re-seed the agent's own randomness through its optional ``seed(int)``; nothing if it has none."""
    if callable(getattr(agent, "seed", None)):
        agent.seed(int(seed))


class Seeded:
    """Mixin for agents with their own randomness: ``seed(int)`` and a per-device
    ``torch.Generator`` (never the global RNG). Call ``self.seed(...)`` in ``__init__``."""

    def seed(self, seed: int) -> None:
        """Re-seed the agent's own generator."""
        self._seed, self._gen = int(seed), None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != torch.device(device):
            self._gen = torch.Generator(device=device).manual_seed(self._seed)
        return self._gen
