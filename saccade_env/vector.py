"""SaccadeMNISTVectorEnv: the batched core as a Gymnasium VectorEnv, torch tensors on any device."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from . import rng, spaces
from .core import SaccadeCore, make_config, make_reset_options


class SaccadeMNISTVectorEnv(VectorEnv):
    """``num_envs`` SaccadeMNIST environments stepped together as tensors on ``device``.

    The dynamics, spaces, rewards and episode end are those of
    :class:`saccade_env.env.SaccadeMNISTEnv` (see its docstring); this class differs only
    in carrying a batch:

    - observations: a dict of float32 tensors on ``device``, each ``(num_envs, ...)``;
    - actions: ``{"saccade": (num_envs, 2) float, "answer": (num_envs,) int}``, as
      tensors (any device) or NumPy arrays;
    - rewards (num_envs,) float32, terminations and truncations (num_envs,) bool tensors;
    - autoreset: next-step (``metadata["autoreset_mode"]``): the step after an episode
      ends resets that environment, ignoring its action, with reward 0;
    - infos: for environments whose episode ended this step, ``label``, ``target_xy``,
      ``eccentricity``, ``n_saccades``, ``correct`` and ``episode`` (``{"r", "l"}``),
      each with its ``_name`` boolean mask, as in Gymnasium's vector infos.  With
      ``privileged=True``, ``scene`` and ``target_xy`` every step.

    Environment ``i`` seeded with ``seed + i`` runs exactly the episodes of a single
    environment seeded with ``seed + i``.

    Args:
        num_envs: the batch size.
        device: torch device ("cpu", "cuda", ...).
        render_mode: None or "rgb_array" (frames of the first ``render_envs`` environments).
        data_dir: MNIST directory (default: the copy shipped with the package).
        **config: :class:`saccade_env.core.EnvConfig` fields and SceneConfig fields.

    Example::

        venv = gym.make_vec("SaccadeMNIST-v0", num_envs=4096, device="cuda")
        obs, info = venv.reset(seed=0)
        act = {"saccade": torch.zeros(4096, 2), "answer": torch.full((4096,), 10)}
        obs, reward, terminated, truncated, info = venv.step(act)
    """

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP, "render_fps": 4}

    def __init__(self, num_envs: int = 1, *, device: str | torch.device = "cpu", render_mode: str | None = None,
                 render_envs: int = 4, data_dir: str | os.PathLike | None = None, **config: Any) -> None:
        if isinstance(num_envs, (bool, np.bool_)) or not (isinstance(num_envs, (int, np.integer)) and num_envs >= 1):
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if isinstance(render_envs, (bool, np.bool_)) or not (isinstance(render_envs, (int, np.integer))
                                                             and render_envs >= 1):
            raise ValueError(f"render_envs must be a positive int (environments drawn by render()), got {render_envs!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array' for the vector env, got {render_mode!r}; "
                             f"for a window use the single env with render_mode='human'")
        self.cfg = make_config(**config)
        self.core = SaccadeCore(self.cfg, device=device, data_dir=data_dir)
        self.device = self.core.device
        self.num_envs = int(num_envs)
        self.render_mode, self.render_envs = render_mode, int(render_envs)
        self.single_action_space = spaces.action_space()
        self.single_observation_space = spaces.observation_space(self.cfg, self.core.periphery_bound())
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.state = None
        self._return = torch.zeros(self.num_envs, device=self.device)
        self._length = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self._last_obs: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Start a new episode in every environment.  ``seed``: an int (environment i gets
        seed + i), a list of num_envs ints, or None.  ``options``: see SaccadeMNISTEnv.reset."""
        opts = make_reset_options(options, self.num_envs, self.cfg.scene.size, self.device,
                                  n_digits=self.core.n_digits)
        if seed is not None or self.state is None:
            if isinstance(seed, (list, tuple)):
                if len(seed) != self.num_envs:
                    raise ValueError(f"reset(seed=list) needs {self.num_envs} seeds, got {len(seed)}")
                seeds = [rng.check_seed(s) for s in seed]
            elif seed is None:
                seeds = [None] * self.num_envs
            else:
                seeds = [rng.check_seed(seed) + i for i in range(self.num_envs)]
            entropy = np.random.default_rng()
            keys = torch.tensor([rng.key_from_seed(s, entropy) for s in seeds], dtype=torch.int64)
            self.state = self.core.init_state(keys.to(self.device))
        # inplace: this env owns its state and hands out nothing that aliases its scenes
        self.state = self.core.reset(self.state, torch.ones(self.num_envs, dtype=torch.bool, device=self.device),
                                     inplace=True, **opts)
        self._return.zero_()
        self._length.zero_()
        return self._observe(), self._info()

    def step(self, actions: dict):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        saccade, answer = spaces.check_action(actions, self.num_envs, self.device)
        restart = self.state.done  # next-step autoreset: these rows start over, their action ignored
        state, reward, terminated, truncated = self.core.step(self.state, saccade, answer)
        ended = terminated | truncated
        self._return = torch.where(restart, 0.0, self._return + reward)
        self._length = torch.where(restart, 0, self._length + 1)
        self.state = self.core.reset(state, restart, inplace=True) if bool(restart.any()) else state
        info = self._info()
        if bool(ended.any()):
            info.update(self._episode_info(state, answer, ended))
        return self._observe(), reward, terminated, truncated, info

    def reset_done(self) -> dict[str, torch.Tensor]:
        """Start new episodes now in the environments whose episode has ended, instead of
        at their next step (same-step autoreset, as stable-baselines3 expects; used by
        :class:`saccade_env.sb3.SB3VecEnv`).  Returns the observation of every environment:
        the new episodes' first ones where a row was reset, the others unchanged.  The
        reset rows' next step is an ordinary step (their action is not ignored)."""
        if self.state is None:
            raise RuntimeError("call reset() before reset_done()")
        done = self.state.done
        idx = done.nonzero().squeeze(1)
        if idx.numel() == 0:
            return self._last_obs
        self.state = self.core.reset(self.state, done, inplace=True)
        self._return = torch.where(done, 0.0, self._return)
        self._length = torch.where(done, 0, self._length)
        sub = dataclasses.replace(self.state, **{f.name: getattr(self.state, f.name)[idx]
                                                 for f in dataclasses.fields(self.state)
                                                 if torch.is_tensor(getattr(self.state, f.name))})
        fresh = self.core.observe(sub)  # only the reset rows are observed again
        self._last_obs = {k: v.index_copy(0, idx, fresh[k]) for k, v in self._last_obs.items()}
        return self._last_obs

    def render(self):
        if self.render_mode is None:
            raise RuntimeError("render() needs render_mode='rgb_array' at construction")
        from .render import frame_of
        n = min(self.render_envs, self.num_envs)
        return tuple(frame_of(self.core, self.state, self._last_obs, i) for i in range(n))

    def close(self, **kwargs):
        self.state = None
        self.closed = True

    # ------------------------------------------------------------------ helpers
    def _observe(self) -> dict[str, torch.Tensor]:
        self._last_obs = self.core.observe(self.state)
        return self._last_obs

    def _info(self) -> dict[str, Any]:
        if not self.cfg.privileged:
            return {}
        every = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        return {"scene": self.state.scene.clone(), "_scene": every,  # a copy: resets write into the state
                "target_xy": self.core.target_xy(self.state), "_target_xy": every}

    def _episode_info(self, state, answer, ended) -> dict[str, Any]:
        info: dict[str, Any] = {}
        for k, v in self.core.episode_info(state, answer).items():
            if k in ("target_xy",) and self.cfg.privileged:
                continue  # already there, every step
            info[k] = v
            info["_" + k] = ended
        info["episode"] = {"r": self._return.clone(), "l": self._length.clone(), "_r": ended, "_l": ended}
        info["_episode"] = ended
        return info
