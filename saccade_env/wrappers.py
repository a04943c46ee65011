"""Action flattening for libraries without Dict actions (stable-baselines3, ...), and 1-D sensors.

SaccadeMNIST's native action is ``{"saccade": Box(-1, 1, (2,)), "answer": Discrete(11)}``.
Two flat forms, one implementation (:class:`ActionMapping`, torch, batched) shared by the
single-env wrappers here and the SB3 vector adapter (:mod:`saccade_env.sb3`):

- **discrete**: ``MultiDiscrete([n_targets, 11])``: ``(target, answer)``; ``answer`` 10
  looks at saccade target ``target``, 0..9 answers.  The targets lie on a grid:

  - ``"uniform"``: the centres of an ``n`` x ``n`` grid of cells over the scene,
    ``target = row * n + col`` (row: y, downwards; col: x, rightwards);
  - ``"logpolar"``: the Where pathway's retinotopic grid, the 10 eccentricities x 24
    azimuths of the periphery's ring of filters (:class:`saccade_env.retina.Periphery`:
    same radii, same azimuths, odd rings offset by half a step), *relative to the current
    fixation* and clipped to the scene; ``target = ecc * 24 + azimuth``, the layout of
    the ``periphery`` observation's last two axes (``(C, E, A)``).

- **continuous**: ``Box(-1, 1, (13,))``: 2 saccade coordinates (scene coordinates) then
  11 answer scores; ``answer = argmax(scores)`` (10 = look).

:class:`FlattenSensors` turns the 3-D sensors (fovea, periphery, glimpse) into 1-D
vectors: SB3's ``check_env`` warns on any 3-D float Box ("is an image but its dtype is
not uint8"), so ``check_env`` is clean on ``FlattenSensors(DiscreteActions(env))``.
SB3 itself trains fine on the 3-D sensors with our extractor (agents/sb3_extractors.py).

Example::

    env = DiscreteActions(gym.make("SaccadeMNIST-v0"), grid="logpolar")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array([37, 10]))  # look at cell 37
"""
from __future__ import annotations

import functools
import numbers

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from .core import LOOK, EnvConfig
from .retina import Periphery, PeripheryConfig

GRIDS = ("uniform", "logpolar")
FORMS = ("discrete", "continuous")
N_ANSWERS = LOOK + 1


def uniform_grid(n: int) -> torch.Tensor:
    """(n*n, 2) the centres of an n x n grid of cells over the scene, scene coordinates (x, y);
    cell ``row * n + col``."""
    c = (torch.arange(n, dtype=torch.float32) + 0.5) * (2.0 / n) - 1.0
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], 1)


def logpolar_grid(cfg: EnvConfig) -> torch.Tensor:
    """(E*A, 2) the periphery's filter centres relative to the fixation, scene coordinates;
    entry ``e * A + a`` is ring ``e`` (innermost first), azimuth ``a`` (y down)."""
    return _logpolar_grid(cfg.periphery, cfg.scene.size).clone()


@functools.lru_cache(maxsize=8)
def _logpolar_grid(periphery: PeripheryConfig, size: int) -> torch.Tensor:
    p = Periphery(periphery, size)  # the same ring radii and azimuths as the sensor (built once per config)
    r = p.radius_px[:, None]  # (E, 1) px
    xy = torch.stack([r * torch.cos(p.azimuth), r * torch.sin(p.azimuth)], -1)  # (E, A, 2) px
    return (xy / (size / 2)).reshape(-1, 2)


class ActionMapping:
    """A flat action -> the native one, batched, on any device.

    Args:
        cfg: the environment's configuration (for the log-polar grid).
        form: "discrete" (MultiDiscrete([n_targets, 11])) or "continuous" (Box(-1, 1, (13,))).
        grid: "uniform" or "logpolar" (discrete form only).
        grid_size: cells per side of the uniform grid.
    """

    def __init__(self, cfg: EnvConfig, *, form: str = "discrete", grid: str = "logpolar", grid_size: int = 8) -> None:
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if grid not in GRIDS:
            raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
        if not (isinstance(grid_size, numbers.Integral) and not isinstance(grid_size, (bool, np.bool_))
                and grid_size >= 1):
            raise ValueError(f"grid_size must be a positive int, got {grid_size!r}")
        grid_size = int(grid_size)
        self.form, self.grid, self.grid_size = form, grid, grid_size
        self.targets = uniform_grid(grid_size) if grid == "uniform" else logpolar_grid(cfg)  # (T, 2)
        self.relative = grid == "logpolar"

    @property
    def n_targets(self) -> int:
        return self.targets.shape[0]

    def space(self) -> spaces.Space:
        """The flat action space."""
        if self.form == "discrete":
            return spaces.MultiDiscrete(np.array([self.n_targets, N_ANSWERS], dtype=np.int64))
        return spaces.Box(-1.0, 1.0, (2 + N_ANSWERS,), np.float32)

    def __call__(self, action: torch.Tensor, fixation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map a batch of flat actions.

        Args:
            action: (B, 2) int (discrete: target, answer) or (B, 13) float (continuous).
            fixation: (B, 2) float32, the current fixations (the log-polar grid is relative to them).

        Returns:
            saccade (B, 2) float32 in [-1, 1], answer (B,) int64 in 0..10.
        """
        action = torch.as_tensor(action, device=fixation.device)
        if action.is_floating_point() and not bool(torch.isfinite(action).all()):
            bad = (~torch.isfinite(action)).nonzero()[:4].tolist()
            raise ValueError(f"{self.form} action has non-finite values (NaN or infinity) at [row, column] "
                             f"{bad}: every saccade coordinate and answer score must be a finite number")
        if self.form == "continuous":
            if action.ndim != 2 or action.shape[1] != 2 + N_ANSWERS:
                raise ValueError(f"a batch of continuous actions has shape (B, {2 + N_ANSWERS}), got "
                                 f"{tuple(action.shape)}")
            action = action.to(torch.float32)
            return action[:, :2].clamp(-1.0, 1.0), action[:, 2:].argmax(1)
        if action.ndim != 2 or action.shape[1] != 2:
            raise ValueError(f"a batch of discrete actions has shape (B, 2) (target, answer), got {tuple(action.shape)}")
        if action.is_floating_point():
            action = action.round()
        action = action.long()
        if bool(((action[:, 0] < 0) | (action[:, 0] >= self.n_targets)).any()) or \
                bool(((action[:, 1] < 0) | (action[:, 1] >= N_ANSWERS)).any()):
            raise ValueError(f"discrete action out of range: targets in 0..{self.n_targets - 1}, answers in "
                             f"0..{N_ANSWERS - 1}, got {action.tolist()}")
        targets = self.targets.to(fixation.device)
        if self.targets.device != fixation.device:
            self.targets = targets
        saccade = targets[action[:, 0]]
        if self.relative:
            saccade = saccade + fixation.to(torch.float32)
        return saccade.clamp(-1.0, 1.0), action[:, 1]

    def answer_scores(self, action: torch.Tensor) -> torch.Tensor | None:
        """(B, 11) the answer scores of continuous actions (None for the discrete form)."""
        return torch.as_tensor(action)[:, 2:].float() if self.form == "continuous" else None


class _FlatActions(gym.ActionWrapper):
    """Shared by the two forms: keeps the fixation of the last observation (for relative grids)."""

    def __init__(self, env: gym.Env, mapping: ActionMapping) -> None:
        super().__init__(env)
        self.mapping = mapping
        self.action_space = mapping.space()
        self._fixation = torch.zeros(1, 2)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._fixation = torch.as_tensor(np.asarray(obs["fixation"], np.float32))[None]
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(self.action(action))
        self._fixation = torch.as_tensor(np.asarray(obs["fixation"], np.float32))[None]
        return obs, reward, terminated, truncated, info

    def action(self, action) -> dict:
        saccade, answer = self.mapping(torch.as_tensor(np.asarray(action))[None], self._fixation)
        return {"saccade": saccade[0].numpy().astype(np.float32), "answer": int(answer[0])}


class DiscreteActions(_FlatActions):
    """``MultiDiscrete([n_targets, 11])`` actions (see the module docstring) for a single env.

    Args:
        env: a SaccadeMNIST env (``gym.make(...)``).
        grid: "uniform" (``grid_size`` x ``grid_size`` cells over the scene) or "logpolar"
            (the periphery's 10 x 24 grid around the fixation).
    """

    def __init__(self, env: gym.Env, *, grid: str = "logpolar", grid_size: int = 8) -> None:
        super().__init__(env, ActionMapping(env.unwrapped.cfg, form="discrete", grid=grid, grid_size=grid_size))


class ContinuousActions(_FlatActions):
    """``Box(-1, 1, (13,))`` actions: saccade (x, y) then 11 answer scores (argmax; 10 = look)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env, ActionMapping(env.unwrapped.cfg, form="continuous"))


def flat_actions(env: gym.Env, form: str = "discrete", *, grid: str = "logpolar", grid_size: int = 8) -> gym.Env:
    """``env`` with the flat actions of ``form`` ("discrete" or "continuous")."""
    if form == "discrete":
        return DiscreteActions(env, grid=grid, grid_size=grid_size)
    if form == "continuous":
        return ContinuousActions(env)
    raise ValueError(f"form must be one of {FORMS}, got {form!r}")


class FlattenSensors(gym.ObservationWrapper):
    """Every observation entry as a 1-D float32 Box (C-order flattening, bounds kept).

    The extractor of agents/sb3_extractors.py reads flattened sensors too when given their
    shapes (:func:`sensor_shapes`)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.shapes = {k: tuple(s.shape) for k, s in env.observation_space.spaces.items()}
        self.observation_space = spaces.Dict({
            k: spaces.Box(s.low.reshape(-1), s.high.reshape(-1), (int(np.prod(s.shape)),), np.float32)
            for k, s in env.observation_space.spaces.items()})

    def observation(self, obs: dict) -> dict:
        return {k: np.asarray(v, np.float32).reshape(-1) for k, v in obs.items()}


def sensor_shapes(env: gym.Env) -> dict[str, tuple[int, ...]]:
    """The unflattened shape of each observation entry of ``env`` (flattened or not)."""
    e = env
    while e is not None:
        if isinstance(e, FlattenSensors):
            return dict(e.shapes)
        e = getattr(e, "env", None)
    return {k: tuple(s.shape) for k, s in env.observation_space.spaces.items()}
