"""A stable-baselines3 features extractor made for SaccadeMNIST's retina.

:class:`RetinaExtractor` encodes each sensor the observation space has, and concatenates:

- ``fovea`` (1, F, F): a small CNN (two stride-2 convs) -> ``fovea_dim``;
- ``periphery`` (C, E, A) = (12, 10, 24): the log-polar map, convolved with *circular*
  padding along the azimuth (the ring closes on itself) and zero padding along the
  eccentricity, then a linear layer -> ``periphery_dim``;
- ``glimpse`` (k, g, g): a small CNN -> ``glimpse_dim``;
- ``fixation`` (2,) and ``saccades_left`` (1,) (divided by its space's upper bound): as they are.

Sensors flattened to 1-D (:class:`saccade_env.wrappers.FlattenSensors`) are reshaped back
with ``shapes`` (:func:`saccade_env.wrappers.sensor_shapes`).

Use::

    PPO("MultiInputPolicy", venv, policy_kwargs=dict(features_extractor_class=RetinaExtractor))
"""
from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnvWrapper
from torch import nn

from saccade_env.core import SENSORS

from .nets import PERIPHERY_SCALE, CircularConv, RetinotopicMaps

def _small_cnn(c_in: int, width: int) -> nn.Sequential:
    """Two strided convs: (c_in, H, W) -> (2 * width, H/4, W/4), flattened."""
    return nn.Sequential(nn.Conv2d(c_in, width, 5, stride=2, padding=2), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())


def _flat_size(net: nn.Module, shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(net(torch.zeros(1, *shape)).shape[1])


class RetinaExtractor(BaseFeaturesExtractor):
    """Features of whichever sensors ``observation_space`` has (see the module docstring).

    Args:
        observation_space: SaccadeMNIST's Dict observation space (3-D or flattened sensors).
        fovea_dim, periphery_dim, glimpse_dim: width of each sensor's code.
        width: channels of the first conv layers (the second ones have twice as many).
        shapes: the unflattened shape of each flattened sensor (key -> shape).
    """

    def __init__(self, observation_space: spaces.Dict, *, fovea_dim: int = 128, periphery_dim: int = 128,
                 glimpse_dim: int = 128, width: int = 16,
                 shapes: dict[str, tuple[int, ...]] | None = None) -> None:
        shapes = dict(shapes or {})
        shp = {k: tuple(shapes.get(k, s.shape)) for k, s in observation_space.spaces.items()}
        for k in SENSORS:
            if k in shp and len(shp[k]) != 3:
                raise ValueError(f"sensor {k!r} has shape {shp[k]}: pass its (C, H, W) shape in "
                                 f"shapes= (saccade_env.wrappers.sensor_shapes(env) gives them)")
        heads: dict[str, nn.Module] = {}
        dims = 0
        if "fovea" in shp:
            cnn = _small_cnn(shp["fovea"][0], width)
            heads["fovea"] = nn.Sequential(cnn, nn.Linear(_flat_size(cnn, shp["fovea"]), fovea_dim), nn.ReLU())
            dims += fovea_dim
        if "periphery" in shp:
            c = shp["periphery"][0]
            enc = nn.Sequential(CircularConv(c, 2 * width), nn.ReLU(),
                                CircularConv(2 * width, 2 * width, stride=(2, 2)), nn.ReLU(),
                                nn.Flatten())
            heads["periphery"] = nn.Sequential(enc, nn.Linear(_flat_size(enc, shp["periphery"]),
                                                              periphery_dim), nn.ReLU())
            dims += periphery_dim
        if "glimpse" in shp:
            cnn = _small_cnn(shp["glimpse"][0], width) if min(shp["glimpse"][1:]) >= 4 else nn.Flatten()
            heads["glimpse"] = nn.Sequential(cnn, nn.Linear(_flat_size(cnn, shp["glimpse"]), glimpse_dim),
                                             nn.ReLU())
            dims += glimpse_dim
        passthrough = [k for k in ("what", "fixation", "saccades_left") if k in shp]
        dims += sum(math.prod(shp[k]) for k in passthrough)
        super().__init__(observation_space, features_dim=dims)
        self.shapes, self.passthrough = shp, passthrough
        self.heads = nn.ModuleDict(heads)
        high = observation_space.spaces["saccades_left"].high.max() if "saccades_left" in shp else 1.0
        self.register_buffer("left_scale", torch.tensor(1.0 / float(high)), persistent=False)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``obs``: dict of (B, ...) float tensors -> (B, features_dim)."""
        parts = []
        for k, head in self.heads.items():
            x = obs[k].float().reshape(-1, *self.shapes[k])
            parts.append(head(x * PERIPHERY_SCALE if k == "periphery" else x))
        for k in self.passthrough:
            x = obs[k].float().reshape(obs[k].shape[0], -1)
            parts.append(x * self.left_scale if k == "saccades_left" else x)
        return torch.cat(parts, 1)


# --- The retinotopic policy: saccade targets scored on the periphery's own map -------------------------------------

WHAT_KEY = "what"  # the observation key the frozen What pathway adds: (10,) log-probabilities of the classes


@torch.no_grad()
def what_readout(what: nn.Module, fovea: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28, 28) fovea -> (B, 10) float32 log-probabilities of a frozen What classifier
    (agents.nets.FovealClassifier), computed without gradient."""
    return torch.log_softmax(what(fovea.float()), -1).float()


class WhatObservation(VecEnvWrapper):
    """Adds ``obs["what"]``, a frozen What classifier's (10,) log-probabilities of the fovea, to an
    SB3 VecEnv's Dict observations (terminal observations included); optionally shapes the reward.

    The classifier is read once per env step here rather than inside the features extractor,
    where PPO would run it again at every epoch over the rollout: the same features, several
    times cheaper on a CPU. It never learns (frozen, no gradient).

    ``shaping > 0`` adds potential-based reward shaping (Ng, Harada & Russell 1999):
    ``shaping * (gamma * phi(s') - phi(s))`` on every step, with ``phi`` the classifier's
    probability of the episode's true label at the fovea and ``phi = 0`` once the episode has
    ended. A saccade that brings the digit under the fovea is paid at once, instead of only
    through the answer that follows. Shaping of this form leaves the optimal policies
    unchanged (the shaped return differs by ``-shaping * phi(s_0)``, which no action changes);
    it uses the label, as the answer's reward does, and only in training.
    ``venv`` must then be a :class:`saccade_env.sb3.SB3VecEnv` (its labels are read).
    """

    def __init__(self, venv, what: nn.Module, *, shaping: float = 0.0, gamma: float = 0.99) -> None:
        if "fovea" not in venv.observation_space.spaces:
            raise ValueError("WhatObservation reads the fovea: make the env with the 'fovea' sensor")
        if not (shaping >= 0 and 0 <= gamma <= 1):
            raise ValueError(f"WhatObservation needs shaping >= 0 and 0 <= gamma <= 1, got {shaping}, {gamma}")
        space = spaces.Dict({**venv.observation_space.spaces,
                             WHAT_KEY: spaces.Box(-math.inf, 0.0, (10,), np.float32)})
        super().__init__(venv, observation_space=space)
        self.what = what.eval().requires_grad_(False)
        self.device = next(what.parameters()).device
        self.shaping, self.gamma = float(shaping), float(gamma)
        self._phi = np.zeros(self.num_envs, np.float32)  # phi of the current observations

    def _add(self, obs: dict) -> dict:
        fovea = torch.as_tensor(obs["fovea"], device=self.device)
        return {**obs, WHAT_KEY: what_readout(self.what, fovea).cpu().numpy()}

    def _potential(self, logp: np.ndarray, labels) -> np.ndarray:
        """(B, 10) log-probabilities, (B,) labels -> (B,) the probability of each label."""
        labels = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
        return np.exp(logp[np.arange(len(labels)), labels]).astype(np.float32)

    def _labels(self) -> torch.Tensor:
        return self.venv.unwrapped.venv.state.label  # (B,) the current episodes' labels

    def reset(self):
        obs = self._add(self.venv.reset())
        if self.shaping:
            self._phi = self._potential(obs[WHAT_KEY], self._labels())
        return obs

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        ended = np.flatnonzero(dones)
        if len(ended):  # one batched read of the episodes' last observations
            last = {k: np.stack([infos[i]["terminal_observation"][k] for i in ended]) for k in obs}
            scores = self._add(last)[WHAT_KEY]
            for j, i in enumerate(ended):
                infos[i]["terminal_observation"] = {**infos[i]["terminal_observation"], WHAT_KEY: scores[j]}
        obs = self._add(obs)
        if self.shaping:
            phi = self._potential(obs[WHAT_KEY], self._labels())  # the new episodes' for the rows that ended
            nxt = np.where(dones, 0.0, phi)
            rewards = rewards + self.shaping * (self.gamma * nxt - self._phi)
            self._phi = phi
        return obs, rewards.astype(np.float32), dones, infos


class RetinotopicExtractor(BaseFeaturesExtractor):
    """Features for :class:`RetinotopicPolicy`: one score per log-polar saccade target, then context.

    ``features = [scores (E*A), context]``:

    - ``scores``: :class:`agents.nets.RetinotopicMaps` over the periphery map (C, E, A): cell
      ``e * A + a`` scores the saccade target at ring ``e``, azimuth ``a``, the layout of the
      discrete log-polar actions (saccade_env.wrappers, ``grid="logpolar"``);
    - ``context``: the What pathway's reading (``obs["what"]``: log-probabilities, probabilities and
      their maximum, 21) if the observation has it, the channel-wise maximum over the map of the
      maps' last hidden layer (``width``), a small CNN code of the fovea (``fovea_dim``) if there is
      no What reading, and the fixation (2) and ``saccades_left`` (1, over its bound) when observed.
    """

    def __init__(self, observation_space: spaces.Dict, *, width: int = 32, layers: int = 3,
                 fovea_dim: int = 64) -> None:
        shp = {k: tuple(s.shape) for k, s in observation_space.spaces.items()}
        if "periphery" not in shp or len(shp["periphery"]) != 3:
            raise ValueError(f"RetinotopicExtractor scores saccade targets on the periphery's (C, E, A) map; the "
                             f"observation has {sorted(shp)}: make the env with the 'periphery' sensor, unflattened")
        if layers < 1 or width < 1:
            raise ValueError(f"RetinotopicExtractor needs layers >= 1 and width >= 1, got {layers}, {width}")
        c, e, a = shp["periphery"]
        ctx = width
        fovea = None
        if WHAT_KEY in shp:
            ctx += 21
        elif "fovea" in shp:
            cnn = _small_cnn(shp["fovea"][0], 16)
            fovea = nn.Sequential(cnn, nn.Linear(_flat_size(cnn, shp["fovea"]), fovea_dim), nn.ReLU())
            ctx += fovea_dim
        passthrough = [k for k in ("fixation", "saccades_left") if k in shp]
        ctx += sum(math.prod(shp[k]) for k in passthrough)
        super().__init__(observation_space, features_dim=e * a + ctx)
        self.n_cells, self.passthrough, self.fovea_shape = e * a, passthrough, shp.get("fovea")
        self.reads_what = WHAT_KEY in shp
        self.maps = RetinotopicMaps(c, width=width, layers=layers)
        self.fovea = fovea
        high = observation_space.spaces["saccades_left"].high.max() if "saccades_left" in shp else 1.0
        self.register_buffer("left_scale", torch.tensor(1.0 / float(high)), persistent=False)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``obs``: dict of (B, ...) float tensors -> (B, E*A + context)."""
        scores, pooled = self.maps(obs["periphery"].float())
        parts = [scores]
        if WHAT_KEY in obs:  # first in the context: RetinotopicHead adds it to the class logits
            logp = obs[WHAT_KEY].float()
            prob = logp.exp()
            parts += [logp, prob, prob.amax(1, keepdim=True)]
        parts.append(pooled)
        if self.fovea is not None:
            parts.append(self.fovea(obs["fovea"].float().reshape(-1, *self.fovea_shape)))
        for k in self.passthrough:
            x = obs[k].float().reshape(obs[k].shape[0], -1)
            parts.append(x * self.left_scale if k == "saccades_left" else x)
        return torch.cat(parts, 1)


class RetinotopicHead(nn.Module):
    """(B, E*A + context) features -> (B, E*A + 11) logits of ``MultiDiscrete([E*A, 11])``: the
    target logits are the extractor's cell scores plus a learned bias per cell; the 11 answer
    logits (10 classes, then look) a linear read-out of the context, to which the What pathway's
    log-probabilities (the context's first 10 values, ``reads_what``) are added on the classes: a
    fresh policy answers what the What reads, and learns when to look and where."""

    def __init__(self, features_dim: int, *, n_cells: int, n_answers: int, reads_what: bool) -> None:
        super().__init__()
        self.n_cells, self.reads_what = n_cells, reads_what
        self.cell_bias = nn.Parameter(torch.zeros(n_cells))
        self.answer = nn.Linear(features_dim - n_cells, n_answers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        cells, context = features[:, :self.n_cells], features[:, self.n_cells:]
        answer = self.answer(context)
        if self.reads_what:
            answer = torch.cat([answer[:, :10] + context[:, :10], answer[:, 10:]], 1)
        return torch.cat([cells + self.cell_bias, answer], 1)


class RetinotopicPolicy(MultiInputActorCriticPolicy):
    """SB3's MultiInputPolicy with :class:`RetinotopicExtractor` and :class:`RetinotopicHead`, for the
    discrete log-polar action form (``MultiDiscrete([E*A, 11])``, saccade_env.wrappers): each saccade
    target's logit is computed at that target's place in the periphery's map, so what the policy learns
    about one place serves every place. The policy reads the features directly (``net_arch["pi"]``
    is empty); the value function has its own MLP (``net_arch["vf"]``, default [64]).

    ``look_bias`` is the initial bias of the look logit (answer 10). With the What reading
    (whose class probabilities sum to 1) a fresh policy looks with probability
    ``1 / (1 + exp(-look_bias))``: one step in two at 0; without it, about one step in
    ``1 + 10 exp(-look_bias)``. Looking often at first lets the saccade targets' scores be
    tried, and learnt, before answering at once becomes a habit.
    """

    def __init__(self, observation_space, action_space, lr_schedule, *, look_bias: float = 0.0, **kwargs) -> None:
        self.look_bias = float(look_bias)
        net_arch = kwargs.pop("net_arch", None)
        vf = net_arch.get("vf", [64]) if isinstance(net_arch, dict) else [64]
        kwargs.setdefault("features_extractor_class", RetinotopicExtractor)
        super().__init__(observation_space, action_space, lr_schedule, net_arch={"pi": [], "vf": vf}, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        n_cells = self.features_extractor.n_cells
        nvec = tuple(int(n) for n in getattr(self.action_space, "nvec", ()))
        if nvec != (n_cells, 11):
            raise ValueError(f"RetinotopicPolicy takes the discrete log-polar actions MultiDiscrete([{n_cells}, 11]) "
                             f"(form='discrete', grid='logpolar'), got {self.action_space}")
        self.action_net = RetinotopicHead(self.features_dim, n_cells=n_cells, n_answers=11,
                                          reads_what=self.features_extractor.reads_what)
        self.action_net.answer.apply(lambda m: self.init_weights(m, gain=0.01))
        with torch.no_grad():
            self.action_net.answer.bias[-1] = self.look_bias
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
