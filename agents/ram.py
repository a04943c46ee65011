"""RAM, the recurrent attention model of Mnih et al. (2014), acting through the environment.

At every step the agent reads the environment's multi-scale ``glimpse`` sensor at its
current fixation (the "what") together with the fixation itself (the "where"), updates a
recurrent core, and either looks again -- at a location drawn from a Gaussian policy on
the core state -- or, when no saccade is left (``saccades_left == 0``), answers with the
classifier applied to the core state::

    what  : glimpse (B, k, g, g) --norm--> Linear -> ReLU           (B, what_hidden)
            (what_conv > 0: + Linear(c1), c1 = ReLU(Conv3x3/2(glimpse)), before the ReLU;
             what_conv2 > 0: + Linear(ReLU(Conv3x3/2(c1))) too)
    where : fixation (B, 2)              --> Linear -> ReLU          (B, where_hidden)
    g_t   = drop(ReLU(Linear(what) + Linear(where)))                (B, hidden)
    h_t   = core(g_t, h_{t-1})        GRU or LSTM cell               (B, hidden)
    logits_t = Linear(drop(h_t))      classifier, read at every step (B, 10)
    mu_t  = squash(Linear(h_t))       location policy mean           (B, 2)
    l_t   ~ N(mu_t, std^2), detached  the next fixation              (B, 2)
    b_t   = Linear(h_t.detach())      learned baseline of the reward (B,)

The sampled location ``l_t`` is detached: the classification loss never reaches the
location network through it (the environment snaps it to the pixel grid anyway), only
REINFORCE does, through ``log N(l_t; mu_t, std)``.  ``squash`` keeps the mean inside the
scene: ``location="tanh"`` (the paper) or ``location="clamp"``, a clamp to [-1, 1] whose
gradient is the identity (straight-through), so that a mean at the scene's edge keeps its
gradient where tanh's vanishes.  Measured, the clamp did not stop the policy's drift toward
the edge (docs/agents/ram.md): it looks like Adam's random walk on a noisy policy gradient,
which train/ram.py slows with a smaller learning rate for the location network.
By default the location network also
reads ``h_t.detach()`` (``policy_into_core=False``), so the policy gradient trains the
location network alone and the glimpse network and core learn from the classification
loss; ``policy_into_core=True`` lets REINFORCE reach the core as in the paper.

Because the classifier is trained at every step (train/ram.py), the agent can be read at
any budget k: evaluated with ``max_saccades=k`` it answers after k + 1 glimpses.
Evaluation uses the mean locations (``deterministic=True``, the default);
:func:`evaluate_mc` averages the class probabilities over several sampled scanpaths.

Checkpoints: one per preset, ``checkpoints/ram-<tag>.pt`` (tag: v0, centered28,
translated60, cluttered60, cluttered100), written by ``python train/ram.py --env <id>``.
On SaccadeMNIST-v0 the agent reads the glimpse sensor too (12x12, 4 scales: patches of
12, 24, 48 and 96 px), not the fovea + log-polar periphery of Daucé et al.: RAM's
mechanism is the multi-resolution glimpse, and the agent's ``env_kwargs`` carries the
sensor settings that :func:`agents.rollout.make_env` applies.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import saccade_env

from saccade_env.core import LOOK
from saccade_env.wrappers import ActionMapping

from .base import Seeded, make_action, must_answer
from .checkpoint import CheckpointError, checkpoint_dir, load_checkpoint, safe_load
from .nets import FovealClassifier, RetinotopicMaps
from .rollout import BudgetResult, make_env, run_episodes, split_size

PRESET_TAGS = {"SaccadeMNIST-v0": "v0", "SaccadeMNIST-Centered28-v0": "centered28",
               "SaccadeMNIST-Translated60-v0": "translated60", "SaccadeMNIST-Cluttered60-v0": "cluttered60",
               "SaccadeMNIST-Cluttered100-v0": "cluttered100"}


def checkpoint_name(env_id: str) -> str:
    """The checkpoint's agent key for a preset, e.g. ``ram-translated60`` (file checkpoints/<key>.pt)."""
    if env_id not in PRESET_TAGS:
        raise ValueError(f"RAM has no checkpoint naming for {env_id!r}; presets: {sorted(PRESET_TAGS)}")
    return f"ram-{PRESET_TAGS[env_id]}"


@dataclass(frozen=True)
class RAMConfig:
    """The network.  ``glimpse_size``/``glimpse_scales`` must match the env's glimpse sensor.

    Attributes:
        glimpse_size, glimpse_scales: the sensor (patches of ``glimpse_size`` px, scales 2**j).
        what_hidden, where_hidden, hidden: widths of the glimpse network and the core.
        what_conv: channels of a convolutional branch of the what layer (0: none, the paper):
            the k scales as input channels, a 3x3 convolution of stride 2 (padding 1), ReLU,
            then a bias-free Linear to ``what_hidden`` added to the fully connected what layer
            before its ReLU.  It shares one set of local stroke detectors across the patch,
            which a fully connected layer must learn position by position.
        what_conv2: channels of a second 3x3 convolution of stride 2 (padding 1) on the first's
            ReLU output (0: none; needs ``what_conv``), ReLU, then its own bias-free Linear to
            ``what_hidden``, added likewise: the first layer's read-out stays, so a second layer
            can be added to a trained branch without changing what it computes.
        core: "gru" or "lstm".
        std: standard deviation of the Gaussian location policy (scene coordinates).
        policy_into_core: let REINFORCE's gradient reach the core (the paper) or not.
        locator_hidden: width of a ReLU hidden layer in the location network (0: linear, the paper).
        location: how the policy mean is kept in [-1, 1]: "tanh" (the paper) or "clamp"
            (straight-through clamp: the value clamped, the gradient passed as is).
        obs_mean, obs_std: normalisation of glimpse pixels (measured by the trainer).
        dropout: dropout probability on the glimpse feature g_t and on the core state read by
            the classifier (0: none, the paper); active only in training mode.
        sensor: "glimpse" (the paper's multi-resolution glimpse) or "retina" (SaccadeMNIST-v0's own
            fovea and log-polar periphery, see "RAM on the retina" in the module docstring).
        what_net: sensor "retina": the configuration of the frozen What classifier
            (agents.nets.FovealClassifier; its weights are part of the network's).
        periphery_shape: sensor "retina": the periphery's (C, E, A).
        where_width, where_layers: sensor "retina": the retinotopic maps over the periphery
            (agents.nets.RetinotopicMaps).
    """

    glimpse_size: int = 8
    glimpse_scales: int = 1
    what_hidden: int = 128
    what_conv: int = 0
    what_conv2: int = 0
    where_hidden: int = 128
    hidden: int = 256
    core: str = "gru"
    std: float = 0.1
    policy_into_core: bool = False
    locator_hidden: int = 0
    location: str = "tanh"
    obs_mean: float = 0.0
    obs_std: float = 1.0
    dropout: float = 0.0
    sensor: str = "glimpse"
    what_net: dict | None = None
    periphery_shape: tuple[int, int, int] = (12, 10, 24)
    where_width: int = 16
    where_layers: int = 2

    def __post_init__(self) -> None:
        if self.core not in ("gru", "lstm"):
            raise ValueError(f"core must be 'gru' or 'lstm', got {self.core!r}")
        if self.sensor not in SENSOR_MODES:
            raise ValueError(f"sensor must be one of {SENSOR_MODES}, got {self.sensor!r}")
        allowed = LOCATIONS[self.sensor]
        if self.location not in allowed:
            raise ValueError(f"location must be one of {allowed} with sensor {self.sensor!r}, got {self.location!r}")
        if self.sensor == "retina" and self.what_net is None:
            raise ValueError("sensor 'retina' reads the fovea with a frozen What classifier: pass what_net= its "
                             "configuration (FovealClassifier(...).config)")
        if not self.std > 0 or not self.obs_std > 0:
            raise ValueError(f"std and obs_std must be > 0, got std={self.std}, obs_std={self.obs_std}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.what_conv < 0 or (self.what_conv and self.glimpse_size < 2):
            raise ValueError(f"what_conv must be >= 0 (0: no convolutional branch) and needs glimpses of at "
                             f"least 2x2 px, got what_conv={self.what_conv}, glimpse_size={self.glimpse_size}")
        if self.what_conv2 < 0 or (self.what_conv2 and not self.what_conv):
            raise ValueError(f"what_conv2 must be >= 0 (0: no second convolutional layer) and needs the first "
                             f"(what_conv > 0), got what_conv={self.what_conv}, what_conv2={self.what_conv2}")


SENSOR_MODES = ("glimpse", "retina")
LOCATIONS = {"glimpse": ("tanh", "clamp"), "retina": ("logpolar",)}  # location policies each sensor allows


@dataclass
class RAMState:
    """The agent's memory over one batch of episodes.

    Attributes:
        h: (B, hidden) core state; c: (B, hidden) LSTM cell (None for a GRU).
        logits: per step, (B, 10) classifier outputs.
        log_pi: per step, (B,) log-density of the sampled location (0 where it answered).
        baseline: per step, (B,) predicted reward.
        look: per step, (B,) bool, the agent looked (its location was used).
        what_logp: per step, (B, 10) the frozen What's log-probabilities of the fovea (sensor
            "retina" only; train/ram.py's ``--reward fovea`` reads them).
    """

    h: torch.Tensor
    c: torch.Tensor | None
    logits: list = field(default_factory=list)
    log_pi: list = field(default_factory=list)
    baseline: list = field(default_factory=list)
    look: list = field(default_factory=list)
    what_logp: list = field(default_factory=list)


class RAMNet(nn.Module):
    """The parameters: glimpse network, core, classifier, location network, baseline."""

    def __init__(self, cfg: RAMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.sensor == "retina":
            self._build_retina(cfg)
            return
        n_in = cfg.glimpse_scales * cfg.glimpse_size ** 2
        self.what = nn.Sequential(nn.Flatten(), nn.Linear(n_in, cfg.what_hidden), nn.ReLU())
        if cfg.what_conv:  # added to what[1]'s output, before what[2]'s ReLU
            n_conv = cfg.what_conv * ((cfg.glimpse_size + 1) // 2) ** 2
            self.what_conv = nn.Sequential(
                nn.Conv2d(cfg.glimpse_scales, cfg.what_conv, 3, stride=2, padding=1), nn.ReLU(),
                nn.Flatten(), nn.Linear(n_conv, cfg.what_hidden, bias=False))
        if cfg.what_conv2:  # reads what_conv[:2]'s output; added there too
            side2 = ((cfg.glimpse_size + 1) // 2 + 1) // 2  # the side after two stride-2 convolutions
            n_conv2 = cfg.what_conv2 * side2 ** 2
            self.what_conv2 = nn.Sequential(
                nn.Conv2d(cfg.what_conv, cfg.what_conv2, 3, stride=2, padding=1), nn.ReLU(),
                nn.Flatten(), nn.Linear(n_conv2, cfg.what_hidden, bias=False))
        self.where = nn.Sequential(nn.Linear(2, cfg.where_hidden), nn.ReLU())
        self.mix_what = nn.Linear(cfg.what_hidden, cfg.hidden)
        self.mix_where = nn.Linear(cfg.where_hidden, cfg.hidden)
        cell = nn.GRUCell if cfg.core == "gru" else nn.LSTMCell
        self.core = cell(cfg.hidden, cfg.hidden)
        self.classifier = nn.Linear(cfg.hidden, 10)
        self.locator = (nn.Linear(cfg.hidden, 2) if not cfg.locator_hidden else nn.Sequential(
            nn.Linear(cfg.hidden, cfg.locator_hidden), nn.ReLU(), nn.Linear(cfg.locator_hidden, 2)))
        self.baseline = nn.Linear(cfg.hidden, 1)
        self.drop = nn.Dropout(cfg.dropout)  # identity when cfg.dropout == 0 or in eval mode

    def _build_retina(self, cfg: RAMConfig) -> None:
        """The retina variant's modules (see the module docstring)."""
        c, e, a = cfg.periphery_shape
        self.what_net = FovealClassifier(**cfg.what_net).requires_grad_(False).eval()  # frozen
        self.what = nn.Sequential(nn.Linear(20, cfg.what_hidden), nn.ReLU())
        self.maps = RetinotopicMaps(c, width=cfg.where_width, layers=cfg.where_layers)
        self.where = nn.Sequential(nn.Linear(cfg.where_width + 2, cfg.where_hidden), nn.ReLU())
        self.mix_what = nn.Linear(cfg.what_hidden, cfg.hidden)
        self.mix_where = nn.Linear(cfg.where_hidden, cfg.hidden)
        cell = nn.GRUCell if cfg.core == "gru" else nn.LSTMCell
        self.core = cell(cfg.hidden, cfg.hidden)
        self.classifier = nn.Linear(cfg.hidden, 10)
        self.locator = nn.Linear(cfg.hidden, e * a)  # the core's term of each target's logit: starts at zero
        nn.init.zeros_(self.locator.weight)
        nn.init.zeros_(self.locator.bias)
        self.baseline = nn.Linear(cfg.hidden, 1)
        self.drop = nn.Dropout(cfg.dropout)

    def train(self, mode: bool = True) -> "RAMNet":
        super().train(mode)
        if self.cfg.sensor == "retina":
            self.what_net.eval()  # frozen: no dropout, ever
        return self

    def policy_parameters(self) -> list[nn.Parameter]:
        """The parameters only the location policy's gradient (REINFORCE) reaches."""
        return list(self.locator.parameters()) + (list(self.maps.score.parameters())
                                                  if self.cfg.sensor == "retina" else [])

    def retina_features(self, fovea: torch.Tensor, periphery: torch.Tensor, fixation: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, 28, 28) fovea, (B, C, E, A) periphery, (B, 2) fixation ->
        (g_t (B, hidden), target scores (B, E*A), the frozen What's log-probabilities (B, 10))."""
        with torch.no_grad():
            logp = torch.log_softmax(self.what_net(fovea), -1)  # (B, 10) the frozen What's reading
        what = self.what(torch.cat([logp, logp.exp()], 1))
        scores, pooled = self.maps(periphery)
        where = self.where(torch.cat([pooled, fixation], 1))
        return self.drop(torch.relu(self.mix_what(what) + self.mix_where(where))), scores, logp

    def glimpse_features(self, glimpse: torch.Tensor, fixation: torch.Tensor) -> torch.Tensor:
        """(B, k, g, g) glimpse, (B, 2) fixation -> (B, hidden) glimpse feature g_t."""
        x = (glimpse - self.cfg.obs_mean) / self.cfg.obs_std
        if self.cfg.what_conv:
            c1 = self.what_conv[:2](x)  # (B, what_conv, ceil(g/2), ceil(g/2))
            pre = self.what[1](self.what[0](x)) + self.what_conv[2:](c1)
            if self.cfg.what_conv2:
                pre = pre + self.what_conv2(c1)
            what = self.what[2](pre)
        else:
            what = self.what(x)
        return self.drop(torch.relu(self.mix_what(what) + self.mix_where(self.where(fixation))))

    def mean_location(self, h: torch.Tensor) -> torch.Tensor:
        """(B, hidden) core state -> (B, 2) policy mean in [-1, 1] (the core detached unless
        ``policy_into_core``)."""
        a = self.locator(h if self.cfg.policy_into_core else h.detach())
        if self.cfg.location == "tanh":
            return torch.tanh(a)
        return a + (a.clamp(-1.0, 1.0) - a).detach()  # straight-through clamp


class RAMAgent(Seeded):
    """RAM as an agent of agents/base.py (batched, any device).

    Args:
        net: the RAMNet (its config fixes the sensor).
        deterministic: look at the policy's mean (evaluation) instead of sampling (training).
        env_id: the preset it was trained on (informational; None if unknown).
    """

    name = "ram"
    privileged = False

    def __init__(self, net: RAMNet, *, deterministic: bool = True, env_id: str | None = None) -> None:
        self.net = net
        self.cfg = net.cfg
        self.deterministic = deterministic
        self.env_id = env_id
        if self.cfg.sensor == "retina":
            self.sensors = ("fovea", "periphery")
            self.env_kwargs = {"sensors": self.sensors}
            env_cfg = saccade_env.make_config(**gym.spec(env_id or "SaccadeMNIST-v0").kwargs)
            self.targets = ActionMapping(env_cfg, form="discrete", grid="logpolar")  # cell -> saccade target
        else:
            self.sensors = ("glimpse",)
            self.env_kwargs = {"glimpse_size": self.cfg.glimpse_size, "glimpse_scales": self.cfg.glimpse_scales}
        self.seed(0)  # sampled locations use the agent's own generator (agents.base.Seeded)

    def reset(self, batch_size: int, device: torch.device) -> RAMState:
        z = torch.zeros(batch_size, self.cfg.hidden, device=device)
        return RAMState(h=z, c=z.clone() if self.cfg.core == "lstm" else None)

    def act(self, obs: dict[str, torch.Tensor], state: RAMState, *, info: dict | None = None
            ) -> tuple[dict[str, torch.Tensor], RAMState]:
        if self.cfg.sensor == "retina":
            return self._act_retina(obs, state)
        g = obs["glimpse"]  # (B, k, g, g)
        want = (self.cfg.glimpse_scales, self.cfg.glimpse_size, self.cfg.glimpse_size)
        if tuple(g.shape[1:]) != want:
            raise ValueError(f"RAM was built for glimpses of shape {want}, the env gives {tuple(g.shape[1:])}: "
                             f"make the env with glimpse_size={want[1]}, glimpse_scales={want[0]} "
                             f"(agent.env_kwargs; agents.rollout.make_env applies them)")
        net = self.net
        x = net.glimpse_features(g, obs["fixation"].detach())
        if state.c is None:
            h, c = net.core(x, state.h), None
        else:
            h, c = net.core(x, (state.h, state.c))
        logits = net.classifier(net.drop(h))  # (B, 10)
        mu = net.mean_location(h)  # (B, 2)
        if self.deterministic:
            loc = mu.detach()
        else:
            noise = torch.randn(mu.shape, generator=self._generator(mu.device), device=mu.device)
            loc = (mu.detach() + self.cfg.std * noise).detach()  # detached: no classification gradient
        look = ~must_answer(obs)  # (B,)
        log_pi = torch.distributions.Normal(mu, self.cfg.std).log_prob(loc).sum(-1) * look  # (B,)
        baseline = net.baseline(h.detach())[:, 0]  # (B,)
        st = RAMState(h=h, c=c, logits=state.logits + [logits], log_pi=state.log_pi + [log_pi],
                      baseline=state.baseline + [baseline], look=state.look + [look])
        action = make_action(saccade=loc, answer=logits.argmax(-1), look=look)
        return action, st

    def _act_retina(self, obs: dict[str, torch.Tensor], state: RAMState) -> tuple[dict[str, torch.Tensor], RAMState]:
        """One step of RAM on the retina: the location policy is a categorical over the log-polar targets."""
        p = obs["periphery"]
        if tuple(p.shape[1:]) != tuple(self.cfg.periphery_shape):
            raise ValueError(f"RAM was built for a periphery of shape {tuple(self.cfg.periphery_shape)}, the env "
                             f"gives {tuple(p.shape[1:])}: make the env with the periphery it was trained with")
        net, fixation = self.net, obs["fixation"].detach()
        x, scores, what_logp = net.retina_features(obs["fovea"], p, fixation)
        h, c = (net.core(x, state.h), None) if state.c is None else net.core(x, (state.h, state.c))
        logits = net.classifier(net.drop(h))  # (B, 10)
        cell_logits = scores + net.locator(h if self.cfg.policy_into_core else h.detach())  # (B, E*A)
        if self.deterministic:
            cell = cell_logits.argmax(-1)
        else:
            probs = torch.softmax(cell_logits.detach(), -1)
            cell = torch.multinomial(probs, 1, generator=self._generator(probs.device))[:, 0]
        look = ~must_answer(obs)  # (B,)
        log_pi = torch.log_softmax(cell_logits, -1).gather(1, cell[:, None])[:, 0] * look  # (B,)
        flat = torch.stack([cell, torch.full_like(cell, LOOK)], 1)
        loc, _ = self.targets(flat, fixation)
        baseline = net.baseline(h.detach())[:, 0]
        st = RAMState(h=h, c=c, logits=state.logits + [logits], log_pi=state.log_pi + [log_pi],
                      baseline=state.baseline + [baseline], look=state.look + [look],
                      what_logp=state.what_logp + [what_logp])
        return make_action(saccade=loc, answer=logits.argmax(-1), look=look), st


def build_agent(cfg: RAMConfig, *, device: str | torch.device = "cpu", deterministic: bool = True,
                env_id: str | None = None) -> RAMAgent:
    return RAMAgent(RAMNet(cfg).to(device), deterministic=deterministic, env_id=env_id)


def load_agent(path: str | Path | None = None, *, device: str | torch.device = "cpu",
               preset: str = "SaccadeMNIST-v0", deterministic: bool = True) -> RAMAgent:
    """The trained RAM of a preset (default file ``checkpoints/ram-<tag>.pt``), in eval mode.

    ``preset`` picks the default file; with an explicit ``path`` the checkpoint says which
    preset it was trained on and ``preset`` must agree with it.
    """
    key = checkpoint_name(preset)
    script = f"train/ram.py --env {preset}"
    if path is None:
        ckpt = load_checkpoint(None, agent=key, script=script, map_location=device)
    else:  # any RAM checkpoint; then check its preset
        ckpt = load_checkpoint(path, agent=_agent_key(path), script=script, map_location=device)
        if ckpt["config"]["env_id"] != preset:
            raise CheckpointError(f"{path} is a RAM trained on {ckpt['config']['env_id']}, not {preset}: pass "
                                  f"preset={ckpt['config']['env_id']!r} or the checkpoint of {preset} "
                                  f"(`python {script} --promote` writes {checkpoint_dir() / (key + '.pt')})")
    agent = build_agent(RAMConfig(**ckpt["config"]["net"]), device=device, deterministic=deterministic,
                        env_id=ckpt["config"]["env_id"])
    agent.net.load_state_dict(ckpt["weights"]["net"])
    agent.net.eval()
    return agent


def _agent_key(path: str | Path) -> str:
    """The agent key stored in a checkpoint file (so any ram-* file can be opened by path)."""
    try:
        key = safe_load(path, what="RAM checkpoint", fix="").get("agent", "")
    except (CheckpointError, AttributeError):
        key = ""
    return key if str(key).startswith("ram-") else "ram-v0"  # load_checkpoint then gives the clear error


def evaluate_mc(agent: RAMAgent, *, env_id: str, budget: int, episodes: int | None, samples: int = 8,
                device: str | torch.device = "cpu", seed: int = 0, batch_size: int = 250,
                **env_kwargs) -> BudgetResult:
    """Monte-Carlo evaluation: each episode is played ``samples`` times with sampled
    scanpaths (the same scene: the copies share the episode's seed), and the answer is the
    arg-max of the class probabilities averaged over the copies.

    Episode ``j`` is the scene of seed ``seed + j`` as in :func:`agents.rollout.evaluate`,
    so the numbers compare with it.  The averaged answer is computed here from the agent's
    final classifier outputs (the environment judged each copy alone).  ``episodes=None``
    plays every test digit once, in order, as :func:`agents.rollout.evaluate` does.
    """
    full = episodes is None
    if full:
        episodes = split_size("test")
    if episodes < 1 or budget < 0 or samples < 1 or batch_size < 1 or seed < 0:
        raise ValueError(f"need episodes >= 1, budget >= 0, samples >= 1, batch_size >= 1 and seed >= 0, got "
                         f"episodes={episodes}, budget={budget}, samples={samples}, batch_size={batch_size}, "
                         f"seed={seed}")
    B = min(int(batch_size), int(episodes))
    kw = {**agent.env_kwargs, **env_kwargs}
    venv = make_env(env_id, agent=agent, num_envs=B * samples, device=device, max_saccades=budget, **kw)
    was, agent.deterministic = agent.deterministic, False
    agent.seed(seed)
    correct, n_sacc, ecc, seconds, done = [], [], [], 0.0, 0
    try:
        while done < episodes:
            seeds = [seed + done + j for j in range(B) for _ in range(samples)]
            options = ({"digit_index": np.repeat(np.minimum(np.arange(done, done + B), episodes - 1), samples)}
                       if full else None)
            ep = run_episodes(venv, agent, seed=seeds, options=options)
            probs = torch.softmax(ep.state.logits[-1], -1).view(B, samples, 10).mean(1)
            take = min(B, episodes - done)
            correct.append((probs.argmax(-1) == ep.label.view(B, samples)[:, 0])[:take].cpu().numpy())
            n_sacc.append(ep.n_saccades.view(B, samples)[:take, 0].cpu().numpy())
            ecc.append(ep.eccentricity.view(B, samples)[:take, 0].cpu().numpy())
            seconds += ep.seconds
            done += take
    finally:
        agent.deterministic = was
        venv.close()
    return BudgetResult(budget=budget, correct=np.concatenate(correct), n_saccades=np.concatenate(n_sacc),
                        eccentricity=np.concatenate(ecc), seconds=seconds)


WIDTHS = ("what_hidden", "where_hidden", "hidden")  # the widths widen_weights can grow
BRANCHES = ("what_conv", "what_conv2")  # the convolutional what layers widen_weights can add (0 -> C)
GROWABLE = WIDTHS + BRANCHES


def can_grow(name: str, old: int, new: int) -> bool:
    """Whether :func:`widen_weights` takes the field ``name`` of :data:`GROWABLE` from ``old`` to
    ``new``: a width may stay or grow; a convolutional layer may stay or be added (0 -> C)."""
    return new >= old and (name not in BRANCHES or old in (0, new))


def widen_weights(weights: dict[str, torch.Tensor], old: RAMConfig, new: RAMConfig, *,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The weights of ``old``'s network, grown to ``new``'s widths without changing what it computes.

    Only :data:`GROWABLE` may differ (each at least as large as before; ``what_conv`` and
    ``what_conv2`` only from 0, adding the layer); every other field of the two configs must agree.  Each new unit gets
    fresh random input weights (the layer's default initialisation, drawn from ``generator``)
    and **zero outgoing weights**: it is computed but nothing reads it yet, so the grown
    network's logits, locations and baseline are the old network's exactly (tested), and
    training brings the new units in.  An added convolutional layer likewise starts with a
    zero output layer (its read-out into the what layer).  For the GRU/LSTM core, whose weights stack the gates, the growth
    applies within each gate block.

    Returns a state dict for ``RAMNet(new)``.
    """
    differ = [f.name for f in dataclasses.fields(old)
              if f.name not in GROWABLE and getattr(old, f.name) != getattr(new, f.name)]
    if differ:
        raise ValueError(f"only {GROWABLE} can grow; these differ too: {differ}")
    bad = [f"{k} {getattr(old, k)} -> {getattr(new, k)}" for k in GROWABLE
           if not can_grow(k, getattr(old, k), getattr(new, k))]
    if bad:
        raise ValueError(f"widths can only grow, and a convolutional what layer can only be added "
                         f"(what_conv or what_conv2 0 -> C), not widened: {', '.join(bad)}")
    with torch.random.fork_rng(devices=[]):  # the fresh units' draw, leaving the global RNG as it was
        if generator is not None:
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        fresh = RAMNet(new).state_dict()
    added = ("what_conv.3.weight", "what_conv2.3.weight")  # an added layer's read-out: starts at zero
    gates = {"gru": 3, "lstm": 4}[new.core]
    out = {}
    for name, f in fresh.items():
        if name not in weights:  # a convolutional layer that old lacks (0 -> C)
            out[name] = torch.zeros_like(f) if name in added else f.clone()
            continue
        w = weights[name].to(f.dtype)
        grown = f.clone()
        if name.startswith("core."):  # (gates * hidden, ...) -> (gates, hidden, ...), grown per gate
            grown, w = grown.view(gates, -1, *f.shape[1:]), w.reshape(gates, -1, *w.shape[1:])
        if name.rsplit(".", 1)[-1].startswith("weight"):  # (..., inputs): old units ignore the new inputs
            grown[tuple(slice(0, n) for n in w.shape[:-1]) + (slice(w.shape[-1], None),)] = 0.0
        grown[tuple(slice(0, n) for n in w.shape)] = w
        out[name] = grown.reshape(f.shape)
    return out


def config_dict(cfg: RAMConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
