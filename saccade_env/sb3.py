"""A stable-baselines3 VecEnv over the torch vector env: PPO driving thousands of envs at once.

SB3 cannot take a Gymnasium ``VectorEnv`` as it is: it wants its own ``VecEnv`` API
(``reset() -> obs``, ``step_async``/``step_wait -> (obs, rewards, dones, infos)``), flat
actions (no Dict), NumPy arrays, and *same-step* autoreset: when an episode ends, the
returned observation is already the next episode's first one, and the last one is in
``infos[i]["terminal_observation"]``.  :class:`SB3VecEnv` gives it exactly that over
:class:`saccade_env.vector.SaccadeMNISTVectorEnv`:

- everything stays a tensor on ``device`` until the boundary: one ``.cpu().numpy()`` per
  observation key and step, actions go to the device once;
- actions are the flat forms of :mod:`saccade_env.wrappers` (the same
  :class:`~saccade_env.wrappers.ActionMapping` as the single-env wrappers);
- the vector env resets ended environments at their *next* step; the adapter resets them
  at once through :meth:`SaccadeMNISTVectorEnv.reset_done` (only those rows are observed
  again);
- ``infos[i]`` holds ``TimeLimit.truncated`` (as DummyVecEnv), and, at an episode's end,
  ``terminal_observation``
  and the episode's ``label``, ``target_xy``, ``eccentricity``, ``n_saccades``,
  ``correct``; wrap in ``VecMonitor`` for episode returns and lengths.

Example::

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor
    venv = VecMonitor(make_sb3_vec_env("SaccadeMNIST-v0", num_envs=1024, device="cuda"))
    PPO("MultiInputPolicy", venv).learn(100_000)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from .vector import SaccadeMNISTVectorEnv
from .wrappers import ActionMapping

_EPISODE_KEYS = ("label", "target_xy", "eccentricity", "n_saccades", "correct")


class SB3VecEnv(VecEnv):
    """SB3's VecEnv API over a :class:`SaccadeMNISTVectorEnv`.

    Args:
        venv: the torch vector env (any device).
        form: "discrete" (``MultiDiscrete([n_targets, 11])``) or "continuous" (``Box(-1, 1, (13,))``).
        grid, grid_size: the saccade targets of the discrete form (see :mod:`saccade_env.wrappers`).
        bootstrap_truncated: True (SB3's convention, as ``DummyVecEnv``):
            ``infos[i]["TimeLimit.truncated"] = truncated and not terminated``, so PPO
            bootstraps the value of the terminal observation.  This env truncates only
            when the agent looks past its budget, and the budget left is observed, so that
            end belongs to the task: False reports it as a plain end (no bootstrap, the
            reward 0 stands); train/ppo.py uses False.
    """

    def __init__(self, venv: SaccadeMNISTVectorEnv, *, form: str = "discrete", grid: str = "logpolar",
                 grid_size: int = 8, bootstrap_truncated: bool = True) -> None:
        if not isinstance(venv.unwrapped, SaccadeMNISTVectorEnv):
            raise TypeError(f"SB3VecEnv needs a SaccadeMNISTVectorEnv (gym.make_vec('SaccadeMNIST-v0', ...)), "
                            f"got {type(venv).__name__}")
        self.venv = venv.unwrapped
        self.device = self.venv.device
        self.mapping = ActionMapping(self.venv.cfg, form=form, grid=grid, grid_size=grid_size)
        self.bootstrap_truncated = bootstrap_truncated
        self._obs: dict[str, torch.Tensor] | None = None
        self._actions: np.ndarray | None = None
        super().__init__(self.venv.num_envs, self.venv.single_observation_space, self.mapping.space())

    # ------------------------------------------------------------------ the SB3 API
    def reset(self) -> dict[str, np.ndarray]:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        self._obs, _ = self.venv.reset(seed=seeds, options=self._merged_options())
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return self._to_numpy(self._obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        saccade, answer = self.mapping(torch.as_tensor(np.asarray(self._actions), device=self.device),
                                       self._obs["fixation"])
        obs, reward, terminated, truncated, info = self.venv.step({"saccade": saccade, "answer": answer})
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": False} for _ in range(self.num_envs)]
        if bool(done.any()):
            ended = done.nonzero().squeeze(1).tolist()
            last = self._to_numpy(obs)
            ep = {k: info[k].cpu().numpy() for k in _EPISODE_KEYS}
            limit = (truncated & ~terminated) if self.bootstrap_truncated else torch.zeros_like(truncated)
            limit = limit.cpu().numpy()
            for i in ended:
                d = infos[i]
                d["terminal_observation"] = {k: v[i] for k, v in last.items()}
                d["TimeLimit.truncated"] = bool(limit[i])
                for k, v in ep.items():
                    d[k] = v[i].item() if v[i].ndim == 0 else v[i]
            obs = self.venv.reset_done()
        self._obs = obs
        return (self._to_numpy(obs), reward.cpu().numpy().astype(np.float32), done.cpu().numpy(), infos)

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of the one batched env, once per index (the environments share it)."""
        return [getattr(self.venv, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._all_or_fail(indices, f"set_attr({attr_name!r})")
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        """Calls the method once on the batched env (it acts on every environment) and returns
        its result once per index; a subset of indices is an error."""
        self._all_or_fail(indices, f"env_method({method_name!r})")
        out = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [out] * self.num_envs

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))  # one batched env, no per-env gym wrappers

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            raise RuntimeError("get_images()/render() need the vector env made with render_mode='rgb_array'")
        return list(self.venv.render())

    def get_state(self) -> dict[str, Any]:
        """The environments' episodes as tensors (their scenes, fixations, random streams, ...) and
        the pending observation: with :meth:`set_state`, a training run stopped between two
        steps goes on exactly where it was."""
        v = self.venv
        if v.state is None:
            raise RuntimeError("call reset() before get_state()")
        return {"state": {f.name: getattr(v.state, f.name) for f in dataclasses.fields(v.state)},
                "return": v._return, "length": v._length, "last_obs": dict(v._last_obs), "obs": dict(self._obs)}

    def set_state(self, saved: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (on the same configuration and number of envs)."""
        v = self.venv
        if v.state is None:
            v.reset()
        fields = {f.name for f in dataclasses.fields(v.state)}
        if set(saved["state"]) != fields or saved["return"].shape != v._return.shape:
            raise ValueError(f"set_state(): the saved state is of another environment (fields "
                             f"{sorted(saved['state'])}, {tuple(saved['return'].shape)[0]} envs), this one has "
                             f"{sorted(fields)} and {self.num_envs} envs")
        to = lambda t: t.to(self.device) if torch.is_tensor(t) else t  # noqa: E731
        v.state = dataclasses.replace(v.state, **{k: to(t) for k, t in saved["state"].items()})
        v._return, v._length = to(saved["return"]), to(saved["length"])
        v._last_obs = {k: to(t) for k, t in saved["last_obs"].items()}
        self._obs = {k: to(t) for k, t in saved["obs"].items()}

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _to_numpy(obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {k: v.cpu().numpy() for k, v in obs.items()}

    def _all_or_fail(self, indices: VecEnvIndices, what: str) -> None:
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise NotImplementedError(f"{what} on a subset of environments: SB3VecEnv runs one batched env "
                                      f"whose attributes and methods are shared; call it with indices=None")

    def _merged_options(self) -> dict | None:
        """SB3's per-env option dicts -> one options dict for the vector env (values stacked
        per env where they differ)."""
        opts = self._options
        if all(not o for o in opts):
            return None
        keys = set(opts[0])
        if any(set(o) != keys for o in opts):
            raise ValueError("set_options(): every environment needs the same option keys "
                             f"(label, eccentricity, target_xy), got {[sorted(o) for o in opts]}")
        return {k: np.stack([np.asarray(o[k]) for o in opts]) for k in keys}


def make_sb3_vec_env(env_id: str = "SaccadeMNIST-v0", *, num_envs: int, device: str | torch.device = "cpu",
                     form: str = "discrete", grid: str = "logpolar", grid_size: int = 8,
                     bootstrap_truncated: bool = True, **env_kwargs) -> SB3VecEnv:
    """``SB3VecEnv(gym.make_vec(env_id, num_envs=..., device=..., **env_kwargs), form=..., ...)``."""
    venv = gym.make_vec(env_id, num_envs=num_envs, device=device, **env_kwargs)
    return SB3VecEnv(venv, form=form, grid=grid, grid_size=grid_size, bootstrap_truncated=bootstrap_truncated)
