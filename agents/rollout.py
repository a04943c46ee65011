"""The one rollout loop: runs any agent (agents/base.py) on the batched environment.

Training scripts and ``eval/compare_agents.py`` both use :func:`run_episodes`; evaluation
with a budget of k saccades is :func:`evaluate`, which builds the env with ``max_saccades=k``.

Episodes run in *waves*: every environment of the vector env starts an episode, and the
wave ends when each has ended once (at most ``max_saccades + 2`` steps, since a look past
the budget truncates). Episode ``j`` of an evaluation is environment ``j mod B`` of wave
``j // B``, seeded ``seed + j``: the results do not depend on the batch size.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

import saccade_env  # noqa: F401  (registers the ids)
from saccade_env.data import parse_split

from .base import SENSORS, check_agent, env_kwargs_of, seed_agent


@dataclass
class Episodes:
    """One wave of B episodes, each played to its end.

    Attributes:
        correct: (B,) bool, the answer was the label (False when truncated).
        label: (B,) int64, revealed at the end (for supervised losses; never shown to agents).
        n_saccades: (B,) int64 looks made.
        eccentricity: (B,) float32 px, the digit's distance from the scene's centre.
        target_xy: (B, 2) float32, the digit's centre in scene coordinates.
        reward: (B,) float32 return; length: (B,) int64 steps.
        state: the agent's state after its last act (e.g. log-probs kept by a trainer).
        steps: when recorded, one dict per step: ``obs``, ``action``, ``reward`` (B,),
            ``live`` (B,) bool (the row was still in its first episode when it acted), and
            ``info``: the privileged scene and target, when the env exposes them.
        seconds: wall time of the wave.
    """

    correct: torch.Tensor
    label: torch.Tensor
    n_saccades: torch.Tensor
    eccentricity: torch.Tensor
    target_xy: torch.Tensor
    reward: torch.Tensor
    length: torch.Tensor
    state: Any
    steps: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def make_env(env_id: str, *, agent: Any, num_envs: int, device: str | torch.device = "cpu",
             max_saccades: int | None = None, split: str = "test", **env_kwargs) -> gym.vector.VectorEnv:
    """The vector env an agent runs on: only its sensors computed, privileged if it needs it.

    An agent may carry ``env_kwargs`` (agents/base.py: e.g. RAM's ``glimpse_size``/``glimpse_scales``,
    the sensor settings it was trained with); they apply unless ``env_kwargs`` here override them."""
    check_agent(agent)
    kw = {**env_kwargs_of(agent), **env_kwargs}
    kw["sensors"] = tuple(s for s in SENSORS if s in agent.sensors)
    if max_saccades is not None:
        kw["max_saccades"] = int(max_saccades)
    if agent.privileged:
        kw["privileged"] = True
    return gym.make_vec(env_id, num_envs=num_envs, device=device, split=split, **kw)


def run_episodes(venv: gym.vector.VectorEnv, agent: Any, *, seed: int | None = None,
                 options: dict | None = None, record: bool = False, grad: bool = False) -> Episodes:
    """Play one episode in every environment of ``venv`` with ``agent``.

    Args:
        venv: a SaccadeMNISTVectorEnv (``gym.make_vec``), built for the agent (:func:`make_env`).
        agent: follows agents/base.py.
        seed: reset seed (environment i gets seed + i); None continues each env's stream.
        options: reset options (label, eccentricity, target_xy), see SaccadeMNISTEnv.reset.
        record: keep every step's observation and action in ``Episodes.steps``.
        grad: run the agent with autograd on (trainers); off by default.
    """
    check_agent(agent)
    if agent.privileged and not venv.unwrapped.cfg.privileged:
        raise ValueError(f"agent {agent.name!r} is privileged: build the env with privileged=True "
                         f"(agents.rollout.make_env does)")
    B, dev = venv.num_envs, venv.unwrapped.device
    t0 = time.perf_counter()
    obs, info = venv.reset(seed=seed, options=options)
    state = agent.reset(B, dev)
    finished = torch.zeros(B, dtype=torch.bool, device=dev)
    out = {"correct": torch.zeros(B, dtype=torch.bool, device=dev),
           "label": torch.zeros(B, dtype=torch.int64, device=dev),
           "n_saccades": torch.zeros(B, dtype=torch.int64, device=dev),
           "eccentricity": torch.zeros(B, device=dev),
           "target_xy": torch.zeros(B, 2, device=dev),
           "reward": torch.zeros(B, device=dev),
           "length": torch.zeros(B, dtype=torch.int64, device=dev)}
    steps: list[dict] = []
    limit = int(venv.unwrapped.cfg.max_saccades) + 2
    with torch.set_grad_enabled(grad):
        for _ in range(limit):
            public = {k: v for k, v in info.items() if k in ("scene", "target_xy", "_scene", "_target_xy")}
            action, state = agent.act(obs, state, info=public if agent.privileged else None)
            nobs, reward, terminated, truncated, info = venv.step(action)
            live = ~finished
            if record:
                steps.append({"obs": obs, "action": action, "reward": reward, "live": live.clone(),
                              "info": public})
            ended = (terminated | truncated) & live
            if bool(ended.any()):
                for k in ("correct", "label", "n_saccades", "eccentricity"):
                    out[k] = torch.where(ended, info[k].to(out[k].dtype), out[k])
                out["target_xy"] = torch.where(ended[:, None], info["target_xy"], out["target_xy"])
                out["reward"] = torch.where(ended, info["episode"]["r"].float(), out["reward"])
                out["length"] = torch.where(ended, info["episode"]["l"].long(), out["length"])
                finished = finished | ended
            obs = nobs
            if bool(finished.all()):
                break
    if not bool(finished.all()):  # cannot happen with a well-formed env; say so rather than return junk
        raise RuntimeError(f"{int((~finished).sum())} episodes did not end within {limit} steps")
    return Episodes(state=state, steps=steps, seconds=time.perf_counter() - t0, **out)


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a binomial proportion (better than p ± 1.96·se near 0 and 1)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))  # min/max: rounding at p = 0, 1


@dataclass
class BudgetResult:
    """Per-episode outcomes of an agent at one saccade budget (NumPy, length ``episodes``)."""

    budget: int
    correct: np.ndarray
    n_saccades: np.ndarray
    eccentricity: np.ndarray
    seconds: float

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(int(self.correct.sum()), len(self.correct))

    @property
    def decisions_per_s(self) -> float:
        return len(self.correct) / self.seconds if self.seconds > 0 else float("nan")

    @classmethod
    def join(cls, parts: list["BudgetResult"]) -> "BudgetResult":
        """The result of consecutive blocks of one evaluation's episodes (e.g. the ranks' parts,
        in rank order), as one: outcomes concatenated, seconds summed (decisions/s stay per process)."""
        if not parts or len({p.budget for p in parts}) != 1:
            raise ValueError(f"join takes the parts of one budget's evaluation, got budgets {[p.budget for p in parts]}")
        return cls(budget=parts[0].budget, seconds=sum(p.seconds for p in parts),
                   **{k: np.concatenate([getattr(p, k) for p in parts]) for k in ("correct", "n_saccades",
                                                                                  "eccentricity")})


def split_size(split: str) -> int:
    """How many digits ``split`` ("test", "train", "train[55000:]", ...) holds."""
    _, start, stop = parse_split(split)
    return stop - start


def evaluate(agent: Any, *, env_id: str = "SaccadeMNIST-v0", budget: int, episodes: int | None,
             device: str | torch.device = "cpu", seed: int = 0, batch_size: int = 1000,
             split: str = "test", on_wave: Callable[[int], None] | None = None, part: range | None = None,
             **env_kwargs) -> BudgetResult:
    """Evaluate ``agent`` on ``episodes`` episodes of ``env_id`` with ``max_saccades=budget``.

    The episodes (and so the table) are a function of ``seed`` alone; an agent with its
    own randomness is re-seeded through its optional ``seed(int)`` (agents/base.py).
    ``episodes=None`` plays every digit of ``split`` exactly once, in order (episode ``j``
    shows digit ``j``; its position, background and every other draw still come from
    ``seed``): the papers' way of scoring a test set.
    ``on_wave(n)`` is called after each wave with the number of episodes it finished
    (for a progress bar).

    ``part``: play only these consecutive episodes of the evaluation (default all, ``range(episodes)``),
    e.g. a rank's block (``agents.distributed.shard``): they are the very episodes the whole
    evaluation plays there, so :meth:`BudgetResult.join` of the blocks is the whole result. An
    agent with its own randomness (a ``seed`` method) draws from one stream over the whole
    evaluation, so it only plays whole evaluations.
    """
    full = episodes is None
    if full:
        episodes = split_size(split)
    if episodes < 1 or budget < 0 or batch_size < 1 or seed < 0:
        raise ValueError(f"need episodes >= 1, budget >= 0, batch_size >= 1 and seed >= 0, got episodes={episodes}, "
                         f"budget={budget}, batch_size={batch_size}, seed={seed}")
    part = range(episodes) if part is None else part
    if part.step != 1 or not 0 <= part.start <= part.stop <= episodes:
        raise ValueError(f"part must be consecutive episodes of range({episodes}), got {part}")
    if part != range(episodes) and callable(getattr(agent, "seed", None)):
        raise ValueError(f"agent {getattr(agent, 'name', agent)!r} has its own randomness (a seed method): its "
                         f"episodes depend on those before them, so evaluate it whole (part=None)")
    if not part:
        return BudgetResult(budget=budget, seconds=0.0, correct=np.zeros(0, bool), n_saccades=np.zeros(0, np.int64),
                            eccentricity=np.zeros(0, np.float32))
    B = min(int(batch_size), len(part))
    venv = make_env(env_id, agent=agent, num_envs=B, device=device, max_saccades=budget, split=split,
                    **env_kwargs)
    seed_agent(agent, seed)
    parts: dict[str, list[np.ndarray]] = {"correct": [], "n_saccades": [], "eccentricity": []}
    seconds, done = 0.0, part.start
    try:
        while done < part.stop:  # a wave: episodes done .. done + B - 1, seeded seed + j
            options = ({"digit_index": np.minimum(np.arange(done, done + B), episodes - 1)} if full else None)
            ep = run_episodes(venv, agent, seed=seed + done, options=options)
            take = min(B, part.stop - done)
            for k in parts:
                parts[k].append(getattr(ep, k)[:take].cpu().numpy())
            seconds += ep.seconds
            done += take
            if on_wave is not None:
                on_wave(take)
    finally:
        venv.close()
    return BudgetResult(budget=budget, seconds=seconds, **{k: np.concatenate(v) for k, v in parts.items()})
