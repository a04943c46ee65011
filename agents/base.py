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

An agent answers at the latest when ``obs["saccades_left"]`` reaches 0 (:func:`must_answer`);
it may answer earlier. Evaluation with a budget of k saccades is the env with ``max_saccades=k``.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

LOOK = 10
N_CLASSES = 10


@runtime_checkable
class Agent(Protocol):
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
    """Raise a TypeError saying what is missing if ``agent`` does not follow the protocol."""
    missing = [a for a in ("name", "sensors", "privileged", "reset", "act") if not hasattr(agent, a)]
    if missing:
        raise TypeError(f"{type(agent).__name__} is not an agent: it lacks {missing}; see agents/base.py "
                        f"for the protocol (name, sensors, privileged, reset(batch_size, device), "
                        f"act(obs, state, *, info=None))")


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
