"""A stable-baselines3 policy (PPO or sb3-contrib's RecurrentPPO) as a protocol agent.

:class:`SB3Agent` wraps a trained SB3 actor-critic policy over SaccadeMNIST's flat actions
(:mod:`saccade_env.wrappers`) so that the one rollout loop (agents/rollout.py) and
eval/compare_agents.py run it like any other agent: deterministic actions, batched on
the vector env's tensors.  Where no saccade is left and the policy still asks to look
(which would end the episode unanswered), it answers its best class instead: the
arg-max of the answer head over the 10 classes (the protocol: an agent answers at the
latest when ``saccades_left`` reaches 0).

``load_agent()`` reads checkpoints/ppo.pt (written by train/ppo.py) or an SB3 ``.zip``.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import saccade_env
from saccade_env.core import check_device
from saccade_env.wrappers import ActionMapping

from .base import LOOK, N_CLASSES, SENSORS, must_answer
from .checkpoint import CheckpointError, load_checkpoint
from .nets import FovealClassifier
from .sb3_extractors import WHAT_KEY, RetinaExtractor, RetinotopicExtractor, RetinotopicPolicy, what_readout

NAME = "ppo"
SCRIPT = "train/ppo.py"
ENV_ONLY = {"device", "render_mode", "render_envs", "data_dir"}


def env_config(env_id: str, env_kwargs: dict) -> saccade_env.EnvConfig:
    """The EnvConfig of ``gym.make(env_id, **env_kwargs)`` (for the action grid)."""
    kw = {**gym.spec(env_id).kwargs, **{k: v for k, v in env_kwargs.items() if k not in ENV_ONLY}}
    return saccade_env.make_config(**kw)


class SB3Agent:
    """A trained SB3 policy acting through the agent protocol (agents/base.py).

    Args:
        policy: an SB3 ``ActorCriticPolicy`` (or sb3-contrib's recurrent one) whose
            observation space is SaccadeMNIST's Dict and action space a flat form.
        mapping: the flat action -> native action map the policy was trained with.
        what: the frozen What classifier whose reading the policy observes as ``obs["what"]``
            (agents.sb3_extractors.WhatObservation), or None.
        name: the agent's name in tables.
    """

    privileged = False

    def __init__(self, *, policy, mapping: ActionMapping, what: torch.nn.Module | None = None,
                 name: str = NAME) -> None:
        self.policy, self.mapping, self.what, self.name = policy, mapping, what, name
        self.keys = tuple(policy.observation_space.spaces)
        if (WHAT_KEY in self.keys) != (what is not None):
            raise ValueError(f"the policy {'reads' if WHAT_KEY in self.keys else 'does not read'} obs[{WHAT_KEY!r}]: "
                             f"pass what= the frozen What classifier it was trained with"
                             if WHAT_KEY in self.keys else "pass what=None")
        self.sensors = tuple(k for k in SENSORS if k in self.keys)
        self.recurrent = hasattr(policy, "lstm_actor")
        policy.set_training_mode(False)

    def reset(self, batch_size: int, device: torch.device) -> Any:
        """Recurrent policies: ((h, c) each (layers, B, hidden), episode_start (B,)); else None."""
        if not self.recurrent:
            return None
        layers, _, hidden = self.policy.lstm_hidden_state_shape
        z = torch.zeros(layers, batch_size, hidden, device=self.policy.device)
        return ((z, z.clone()), torch.ones(batch_size, device=self.policy.device))

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], state: Any, *, info: dict | None = None):
        """``obs``: the vector env's (B, ...) tensors -> ({"saccade" (B, 2), "answer" (B,)}, state)."""
        x = {k: obs[k].to(self.policy.device) for k in self.keys if k != WHAT_KEY}
        if self.what is not None:
            x[WHAT_KEY] = what_readout(self.what, x["fovea"])
        if self.recurrent:
            lstm, start = state
            dist, lstm = self.policy.get_distribution(x, lstm, start)
            state = (lstm, torch.zeros_like(start))
        else:
            dist = self.policy.get_distribution(x)
        flat = dist.get_actions(deterministic=True)
        fixation = obs["fixation"]
        saccade, answer = self.mapping(flat.to(fixation.device), fixation)
        forced = must_answer(obs) & (answer == LOOK)
        if bool(forced.any()):
            if self.mapping.form == "discrete":
                scores = dist.distribution[1].logits  # (B, 11): the answer component
            else:
                scores = flat[:, 2:]
            best = scores[:, :N_CLASSES].argmax(1).to(answer.device)
            answer = torch.where(forced, best, answer)
        return {"saccade": saccade.float(), "answer": answer.long()}, state


EXTRACTORS = {"mlp": RetinaExtractor, "retinotopic": RetinotopicExtractor}  # policy name -> features extractor


def policy_class(recurrent: bool, *, policy: str = "mlp"):
    """The policy class: :class:`~agents.sb3_extractors.RetinotopicPolicy` (``policy="retinotopic"``),
    SB3's MultiInputPolicy, or sb3-contrib's recurrent one (a clear error if missing)."""
    if policy not in EXTRACTORS:
        raise ValueError(f"policy must be one of {sorted(EXTRACTORS)}, got {policy!r}")
    if policy == "retinotopic":
        if recurrent:
            raise ValueError("the retinotopic policy is feed-forward: train the recurrent policy with --policy mlp")
        return RetinotopicPolicy
    if not recurrent:
        from stable_baselines3.common.policies import MultiInputActorCriticPolicy
        return MultiInputActorCriticPolicy
    try:
        return importlib.import_module("sb3_contrib.common.recurrent.policies").RecurrentMultiInputActorCriticPolicy
    except ImportError:
        raise ImportError("recurrent PPO needs sb3-contrib, which is not installed: pip install sb3-contrib") from None


def policy_options(cfg) -> dict:
    """The policy's keyword arguments (plain values, stored in the checkpoint) from train/ppo.py's Config;
    the features extractor's class is added from :data:`EXTRACTORS` when the policy is built."""
    if cfg.policy_name() == "retinotopic":
        return {"net_arch": {"pi": [], "vf": [cfg.hidden]}, "look_bias": cfg.look_bias,
                "features_extractor_kwargs": {"width": cfg.width, "layers": cfg.layers}}
    kwargs = {"net_arch": {"pi": [cfg.hidden], "vf": [cfg.hidden]},
              "features_extractor_kwargs": {"width": cfg.width, "fovea_dim": cfg.code, "periphery_dim": cfg.code,
                                            "glimpse_dim": cfg.code}}
    if cfg.recurrent:
        kwargs.update(lstm_hidden_size=cfg.hidden)
    return kwargs


def from_sb3_zip(path: str | os.PathLike, *, device: str | torch.device = "cpu", env_id: str = "SaccadeMNIST-v0",
                 form: str = "discrete", grid: str = "logpolar", grid_size: int = 8, **env_kwargs) -> SB3Agent:
    """An agent from an SB3 ``model.save()`` zip (PPO or RecurrentPPO); the action form must be given.

    Nothing pickled in the zip is unpickled: its spaces are rebuilt from ``env_id``, ``env_kwargs`` and
    the action form, its policy's options are read from their readable JSON copy (classes from an
    allow-list), and its weights are read by ``torch.load(..., weights_only=True)``; a zip that needs
    anything else is refused (CheckpointError)."""
    from stable_baselines3 import PPO
    check_device(device)  # SB3 would quietly take the CPU for a CUDA device that is not there
    mapping = ActionMapping(env_config(env_id, env_kwargs), form=form, grid=grid, grid_size=grid_size)
    spaces = {"observation_space": _zip_observation_space(path) or observation_space(env_id, env_kwargs),
              "action_space": mapping.space()}
    try:
        model = PPO.load(path, device=device, custom_objects=_zip_objects(path, recurrent=False, **spaces))
    except CheckpointError:
        raise
    except Exception:  # noqa: BLE001  (not a PPO zip: perhaps sb3-contrib's RecurrentPPO)
        policy_class(True)  # a clear error when sb3-contrib is missing
        model = importlib.import_module("sb3_contrib").RecurrentPPO.load(
            path, device=device, custom_objects=_zip_objects(path, recurrent=True, **spaces))
    return SB3Agent(policy=model.policy, mapping=mapping)


# what an SB3 zip's pickled entries may be replaced with: nothing there is unpickled
_NOT_NEEDED = ("_last_obs", "_last_episode_starts", "_last_original_obs", "_last_lstm_states", "ep_info_buffer",
               "ep_success_buffer", "rollout_buffer_class")
_SCHEDULES = ("lr_schedule", "learning_rate", "clip_range", "clip_range_vf")


def _zip_observation_space(path) -> gym.spaces.Dict | None:
    """The observation space an SB3 zip's policy was built on, read from the readable copy SB3 stores
    beside the pickled one (``{'fovea': Box(0.0, 1.0, (1, 28, 28), float32), ...}``); None if unreadable."""
    import json
    import re
    import zipfile

    import numpy as np
    try:
        with zipfile.ZipFile(path) as z:
            text = json.loads(z.read("data"))["observation_space"]["spaces"]
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return None
    num = r"(-?(?:inf|[\d.]+(?:e[-+]?\d+)?))"
    boxes = re.findall(rf"'(\w+)': Box\({num}, {num}, \(([\d, ]*)\), (float32|float64|uint8)\)", str(text))
    if not boxes or len(boxes) != str(text).count("Box("):
        return None
    return gym.spaces.Dict({k: gym.spaces.Box(float(lo), float(hi), tuple(int(d) for d in shape.split(",") if d.strip()),
                                              np.dtype(dtype)) for k, lo, hi, shape, dtype in boxes})


def _allowed_classes() -> dict[str, type]:
    from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor, NatureCNN
    nn = torch.nn
    return {repr(c): c for c in (RetinaExtractor, CombinedExtractor, FlattenExtractor, NatureCNN, nn.ReLU, nn.Tanh,
                                 nn.GELU, nn.ELU, nn.LeakyReLU, nn.SiLU, torch.optim.Adam, torch.optim.AdamW,
                                 torch.optim.RMSprop, torch.optim.SGD)}


def _zip_objects(path, *, recurrent: bool, observation_space, action_space) -> dict[str, Any]:
    """SB3's ``custom_objects`` for every pickled entry of the zip's data (so none is unpickled)."""
    import json
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"cannot read the SB3 zip {path} ({err}): pass a file written by SB3's model.save()") from None
    allowed = _allowed_classes()
    objects: dict[str, Any] = {}
    for key, item in data.items():
        if not (isinstance(item, dict) and ":serialized:" in item):
            continue
        if key in ("observation_space", "action_space"):
            objects[key] = observation_space if key == "observation_space" else action_space
        elif key == "policy_class":
            objects[key] = policy_class(recurrent)
        elif key in _SCHEDULES:
            objects[key] = 0.0  # training schedules: not used to act
        elif key in _NOT_NEEDED:
            objects[key] = None
        elif key == "policy_kwargs":
            kwargs = {k: v for k, v in item.items() if not k.startswith(":")}
            for k, v in kwargs.items():
                if isinstance(v, str) and v.startswith("<"):
                    if v not in allowed:
                        raise CheckpointError(f"the SB3 zip {path} names {v} in policy_kwargs[{k!r}], which is not among "
                                              f"the classes this package reads ({', '.join(allowed)})")
                    kwargs[k] = allowed[v]
            objects[key] = kwargs
        else:
            raise CheckpointError(f"the SB3 zip {path} holds a pickled {key!r}, which could run code when loaded, "
                                  f"and this package does not read it: pass a zip written by train/ppo.py's SB3 "
                                  f"model (runs/<name>/final.zip) or a train/ppo.py checkpoint (.pt)")
    return objects


def load_agent(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu", **options) -> SB3Agent:
    """The PPO agent of checkpoints/ppo.pt (default), another train/ppo.py checkpoint, or an SB3 zip
    (``options`` then give env_id, form, grid, grid_size and env kwargs)."""
    if path is not None and Path(path).suffix == ".zip":
        return from_sb3_zip(path, device=device, **options)
    ckpt = load_checkpoint(path, agent=NAME, script=SCRIPT, map_location=device)
    cfg = ckpt["config"]
    try:
        mapping = ActionMapping(env_config(cfg["env"], cfg["env_kwargs"]), form=cfg["form"], grid=cfg["grid"],
                                grid_size=cfg["grid_size"])
        name = cfg.get("policy", "mlp")
        what = None
        space = observation_space(cfg["env"], cfg["env_kwargs"])
        if cfg.get("what") is not None:
            what = FovealClassifier(**cfg["what"]).to(device)
            what.load_state_dict(ckpt["weights"]["what"])
            what.eval()
            space = gym.spaces.Dict({**space.spaces, WHAT_KEY: gym.spaces.Box(-float("inf"), 0.0, (10,))})
        policy = policy_class(cfg["recurrent"], policy=name)(
            space, mapping.space(), lambda _: 0.0, features_extractor_class=EXTRACTORS[name], **cfg["policy_kwargs"])
        policy.load_state_dict(ckpt["weights"]["policy"])
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(f"the ppo checkpoint {path or 'checkpoints/ppo.pt'} does not match this code "
                              f"({type(err).__name__}: {err}): retrain it with `python {SCRIPT}`") from None
    return SB3Agent(policy=policy.to(device), mapping=mapping, what=what)


def observation_space(env_id: str, env_kwargs: dict) -> gym.spaces.Dict:
    """The observation space of ``gym.make(env_id, **env_kwargs)`` (what the policy was built on)."""
    kw = {k: v for k, v in env_kwargs.items() if k not in ENV_ONLY}
    env = gym.make(env_id, **kw)
    try:
        return env.observation_space
    finally:
        env.close()
