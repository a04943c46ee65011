"""STN agent: the spatial transformer (Jaderberg et al. 2015) as a one-shot saccade.

A *localisation network* reads what the eye sees at its current fixation and regresses
where to look next, a translation in scene coordinates; a *classifier* reads the fovea
there.  In the paper the localiser regresses an affine transform and a differentiable
sampler crops the input; here the sampler is the retina itself: :func:`saccade_env.retina.fovea`
is bilinear in the (real-valued) fixation, so the classification loss at the new fovea
back-propagates through the retina into the localiser (train/stn.py trains them end to end).
The fovea of this environment has a fixed size (28x28), so the transform is a translation
only (no zoom).

What the localiser reads (``where_sensors``):

- SaccadeMNIST-v0 (128x128 noise scenes): by default the log-polar log-Gabor periphery
  (12, 10, 24) and the fovea (1, 28, 28), the two sensors of the preset; the shipped
  checkpoints/stn-v0.pt reads a 16x16 four-scale glimpse (the whole scene at 8 px/sample
  down to full resolution) and the fovea instead, which localised far better in a short
  CPU budget (docs/agents/stn.md); the agent's ``env_kwargs`` carry the glimpse settings;
- the RAM/STN presets (60x60 translated/cluttered): the preset's multi-scale glimpse
  (3, 12, 12; from the centre it covers 48x48 px, every digit centre is inside it)
  and the fovea.  The periphery works there too (``--where-sensors periphery fovea``)
  but costs ~15x more to read on a CPU.

Its last layer is initialised to zero: at the start of training the eye stays where it is
(the identity transform of the paper).  As an agent (protocol in agents/base.py) it looks
while it has saccades left, each look being the same module applied from the current
fixation to what it sees there, then answers with the classifier's arg-max on the last
fovea.  With a budget of 0 it answers from the first fovea; with 1, one saccade to the
regressed point then the answer (the paper's one shot).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from saccade_env.scene import GREY

from .base import N_CLASSES, SENSORS, make_action, must_answer
from .checkpoint import CheckpointError, checkpoint_dir, load_checkpoint
from .nets import FovealClassifier

SCRIPT = "train/stn.py"
# where the shipped checkpoint of each environment lives (load_agent(env=...))
DEFAULT_CHECKPOINTS = {"SaccadeMNIST-v0": "stn-v0.pt", "SaccadeMNIST-Cluttered60-v0": "stn-cluttered60.pt"}


CLASSIFIERS = ("lenet", "vgg", "foveal")


@dataclass(frozen=True)
class STNConfig:
    """The architecture (stored in the checkpoint; enough to rebuild the agent).

    Attributes:
        where_sensors: the observations the localiser reads ("periphery", "glimpse", "fovea").
        shapes: ``{sensor: shape}`` of every sensor read (without the batch dimension).
        background: grey level of an empty scene (the env's ``scene.background``),
            subtracted from the fovea and glimpse before the networks read them.
        hidden: width of the localiser's hidden layers.
        max_step: largest translation of one look, scene coordinates (tanh-bounded).
        periphery_energy: also feed the localiser the periphery's phase-invariant energy
            ``sqrt(even**2 + odd**2)`` per orientation (complex cells: where the edges are,
            whatever their phase), beside the raw responses.
        classifier: "lenet" (this module's :class:`Classifier`, ``channels`` and ``fc``),
            "vgg" (:class:`VGGClassifier`: 3x3 convolutions with batch norm, ``channels`` and
            ``fc``) or "foveal" (the shared What pathway, :class:`agents.nets.FovealClassifier`
            with width ``channels[0]`` and hidden ``fc``, so it can start from checkpoints/foveal.pt).
        channels, fc: the classifier's convolution widths and its hidden layer.
    """

    where_sensors: tuple[str, ...] = ("periphery", "fovea")
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = (("fovea", (1, 28, 28)), ("periphery", (12, 10, 24)))
    background: float = GREY
    hidden: int = 256
    max_step: float = 1.0
    periphery_energy: bool = False
    classifier: str = "lenet"
    channels: tuple[int, int] = (32, 64)
    fc: int = 256

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"STNConfig.classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")
        shapes = dict(self.shapes)
        bad = [s for s in self.where_sensors if s not in ("periphery", "glimpse", "fovea")]
        if bad or not self.where_sensors:
            raise ValueError(f"where_sensors must be among 'periphery', 'glimpse', 'fovea', got {self.where_sensors!r}")
        missing = [s for s in {*self.where_sensors, "fovea"} if s not in shapes]
        if missing:
            raise ValueError(f"STNConfig.shapes lacks the shape of {missing}; give (name, shape) pairs")

    @property
    def sensors(self) -> tuple[str, ...]:
        """Every observation the agent reads (the env computes only these)."""
        return tuple(s for s in SENSORS if s in {*self.where_sensors, "fovea"})


class Localiser(nn.Module):
    """Sensors at a fixation -> the translation (B, 2) to the next fixation.

    One branch per sensor (flatten, layer norm, linear, ReLU), concatenated, one hidden
    layer, and a zero-initialised output: an untrained localiser says "stay".
    """

    def __init__(self, cfg: STNConfig) -> None:
        super().__init__()
        shapes = dict(cfg.shapes)
        self.keys = cfg.where_sensors
        self.energy = cfg.periphery_energy and "periphery" in self.keys
        if self.energy and shapes["periphery"][0] % 2:
            raise ValueError("periphery_energy needs even/odd phase pairs (PeripheryConfig.n_phase=2)")
        size = {k: math.prod(shapes[k]) * (3 if k == "periphery" and self.energy else 2) // 2 for k in self.keys}
        self.branches = nn.ModuleDict({
            k: nn.Sequential(nn.Flatten(), nn.LayerNorm(size[k], elementwise_affine=False),
                             nn.Linear(size[k], cfg.hidden), nn.ReLU())
            for k in self.keys})
        self.trunk = nn.Sequential(nn.Linear(cfg.hidden * len(self.keys), cfg.hidden), nn.ReLU())
        self.out = nn.Linear(cfg.hidden, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.max_step = cfg.max_step

    def forward(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        """``views[k]``: (B, *shape) per sensor -> (B, 2) translation, scene coordinates."""
        views = dict(views)
        if self.energy:  # (B, C, E, A) -> (B, C + C/2, E, A): channels are (theta, phase) with phase fastest
            x = views["periphery"]
            views["periphery"] = torch.cat([x, torch.sqrt(x[:, 0::2] ** 2 + x[:, 1::2] ** 2 + 1e-12)], 1)
        h = torch.cat([self.branches[k](views[k]) for k in self.keys], 1)
        return self.max_step * torch.tanh(self.out(self.trunk(h)))


class Classifier(nn.Module):
    """LeNet-like: (B, 1, 28, 28) fovea -> (B, 10) logits."""

    def __init__(self, cfg: STNConfig) -> None:
        super().__init__()
        c1, c2 = cfg.channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c2 * 4 * 4, cfg.fc), nn.ReLU(), nn.Linear(cfg.fc, N_CLASSES))

    def forward(self, fovea: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(fovea))


class VGGClassifier(nn.Module):
    """Two VGG blocks (two 3x3 convolutions with batch norm, then 2x2 max-pool) and a
    batch-normed hidden layer with dropout: (B, 1, 28, 28) fovea -> (B, 10) logits.

    Wider and better conditioned than :class:`Classifier`; it reads a cluttered fovea better
    (docs/agents/stn.md) at ~4x the compute.  Batch norm: put the agent in ``eval()`` to act.
    """

    def __init__(self, cfg: STNConfig, dropout: float = 0.3) -> None:
        super().__init__()
        c1, c2 = cfg.channels

        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(*conv(1, c1), *conv(c1, c1), nn.MaxPool2d(2),      # 14x14
                                      *conv(c1, c2), *conv(c2, c2), nn.MaxPool2d(2),     # 7x7
                                      nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c2 * 7 * 7, cfg.fc, bias=False), nn.BatchNorm1d(cfg.fc), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(cfg.fc, N_CLASSES))

    def forward(self, fovea: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(fovea))


class STNAgent(nn.Module):
    """The agent: localiser + classifier, batched, on any device.

    Args:
        config: the architecture (:class:`STNConfig`).
        max_looks: at most this many saccades per episode (None: the whole budget).
        env_kwargs: scene settings it was trained with beyond its preset (e.g. ``contrast``);
            agents.rollout.make_env applies them.
    """

    name = "stn"
    privileged = False

    def __init__(self, *, config: STNConfig = STNConfig(), max_looks: int | None = None,
                 env_kwargs: dict | None = None) -> None:
        super().__init__()
        self.config = config
        self.sensors = config.sensors
        self.max_looks = max_looks
        self.localiser = Localiser(config)
        if config.classifier == "foveal":
            self.classifier = FovealClassifier(width=config.channels[0], hidden=config.fc)
        elif config.classifier == "vgg":
            self.classifier = VGGClassifier(config)
        else:
            self.classifier = Classifier(config)
        self.env_kwargs = dict(env_kwargs or {})

    # ------------------------------------------------------------- differentiable parts
    def prepare(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw sensor tensors -> network inputs (fovea and glimpse minus the background)."""
        shapes = dict(self.config.shapes)
        out = {}
        for k in {*self.config.where_sensors, "fovea"}:
            if k not in views:
                raise KeyError(f"the STN agent reads {k!r}; build the env with sensors={self.sensors} "
                               f"(agents.rollout.make_env does)")
            if tuple(views[k].shape[1:]) != tuple(shapes[k]):
                raise ValueError(f"observation {k!r} has shape {tuple(views[k].shape[1:])}, the agent was trained "
                                 f"on {tuple(shapes[k])}: evaluate it on the environment it was trained on")
            out[k] = views[k] - self.config.background if k in ("fovea", "glimpse") else views[k]
        return out

    def locate(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 2) translation from the raw sensors ``views`` (what the eye sees now)."""
        return self.localiser(self.prepare(views))

    def classify(self, fovea: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) raw fovea -> (B, 10) logits."""
        if self.config.classifier == "foveal":  # the shared What pathway centres its input itself
            return self.classifier(fovea)
        return self.classifier(fovea - self.config.background)

    # ------------------------------------------------------------- agent protocol
    def reset(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        """State: (B,) int64 looks made so far."""
        return torch.zeros(batch_size, dtype=torch.int64, device=device)

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], state: torch.Tensor, *, info: dict | None = None
            ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Look (to fixation + localiser's translation) while saccades are left, then answer."""
        look = ~must_answer(obs)
        if self.max_looks is not None:
            look = look & (state < self.max_looks)
        saccade = obs["fixation"] + self.locate(obs)
        answer = self.classify(obs["fovea"]).argmax(1)
        return make_action(saccade=saccade, answer=answer, look=look), state + look.long()


def checkpoint_config(agent: STNAgent) -> dict:
    """The checkpoint's ``config``: the architecture, as plain Python values."""
    c = asdict(agent.config)
    c["shapes"] = [[k, list(v)] for k, v in agent.config.shapes]
    c["where_sensors"] = list(agent.config.where_sensors)
    c["channels"] = list(agent.config.channels)
    return c


def config_from_checkpoint(c: dict) -> STNConfig:
    keys = {"where_sensors", "shapes", "background", "hidden", "max_step", "periphery_energy", "classifier",
            "channels", "fc"}
    c = {k: v for k, v in c.items() if k in keys}
    if "channels" in c:
        c["channels"] = tuple(c["channels"])
    c["where_sensors"] = tuple(c["where_sensors"])
    c["shapes"] = tuple((k, tuple(v)) for k, v in c["shapes"])
    return STNConfig(**c)


def load_agent(path: str | Path | None = None, *, device: str | torch.device = "cpu",
               env: str = "SaccadeMNIST-v0", **options) -> STNAgent:
    """The trained STN agent.  ``path`` None reads the shipped checkpoint of ``env`` (in
    ``checkpoints/`` or ``$SACCADE_ENV_CHECKPOINTS``): stn-v0.pt for SaccadeMNIST-v0,
    stn-cluttered60.pt for SaccadeMNIST-Cluttered60-v0.  ``options``: constructor options (``max_looks``)."""
    shipped = path is None
    if path is None:
        if env not in DEFAULT_CHECKPOINTS:
            raise CheckpointError(f"no shipped STN checkpoint for {env!r} (there are: {sorted(DEFAULT_CHECKPOINTS)}); "
                                  f"train one with `python {SCRIPT} --env {env}` and pass its path")
        path = checkpoint_dir() / DEFAULT_CHECKPOINTS[env]
        if not path.is_file():
            raise CheckpointError(f"no STN checkpoint at {path}: train one with `python {SCRIPT} --env {env} "
                                  f"--promote` (it writes {path.name} there)")
    ckpt = load_checkpoint(path, agent="stn", script=SCRIPT, map_location=device)
    if shipped and ckpt["config"].get("env", env) != env:
        raise CheckpointError(f"{path} holds an STN trained on {ckpt['config']['env']}, not {env}: restore the "
                              f"shipped file (git checkout -- checkpoints/{path.name}) or train one with "
                              f"`python {SCRIPT} --env {env} --promote`")
    options.setdefault("env_kwargs", ckpt["config"].get("env_kwargs", {}))
    agent = STNAgent(config=config_from_checkpoint(ckpt["config"]), **options)
    agent.load_state_dict(ckpt["weights"]["agent"])
    return agent.to(device).eval()


def location_error_px(fixation: torch.Tensor, target_xy: torch.Tensor, scene_size: int) -> torch.Tensor:
    """(B,) distance in pixels between fixations and digit centres, both (B, 2) scene coordinates."""
    return (fixation - target_xy).norm(dim=1) * (scene_size / 2)


