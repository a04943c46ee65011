"""The one implementation of SaccadeMNIST's dynamics: a batched, device-agnostic core.

:class:`SaccadeCore` holds the immutable parts (digits, textures, filters) on a device
and advances an :class:`EnvState` (tensors with a leading batch dimension ``B``).  The
vector environment drives it with ``B = num_envs``; the single environment with
``B = 1``.  Neither adapter reimplements anything of the dynamics.

Episode: at reset a scene is drawn and the eye sits at the scene's centre.  An action
is a saccade target ``(B, 2)`` in scene coordinates and an answer ``(B,)`` in 0..10.
Answers 0..9 end the episode (terminated) with reward 1 if right, 0 if wrong; answer 10
"looks": the eye jumps to the saccade target (snapped to the pixel grid) with reward
``-saccade_cost``; a look once ``max_saccades`` are spent ends the episode truncated
with reward 0.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import torch

from . import rng
from .retina import Periphery, PeripheryConfig, fovea, glimpse
from .scene import DIGIT, SceneConfig, SceneSampler, offsets_to_xy

SENSORS = ("fovea", "periphery", "glimpse")
LOOK = 10  # the answer that means "saccade, don't answer yet"


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines an environment.  Build one with :func:`make_config`.

    Attributes:
        scene: what the scenes look like.
        periphery: the log-polar retina.
        sensors: which observations are computed (``fixation`` and ``saccades_left``
            are always there): any of "fovea", "periphery", "glimpse".
        fovea_size: side of the fovea, px (even, at most the scene's size).
        glimpse_size, glimpse_scales: RAM's glimpse, ``glimpse_scales`` patches of
            ``glimpse_size`` samples, the j-th covering ``glimpse_size * 2**j`` px.
        max_saccades: saccades allowed before an answer is due.
        saccade_cost: reward subtracted per saccade.
        split: "train" (MNIST's 60k training digits) or "test" (its 10k test digits).
        privileged: expose the scene and the target position in ``info`` (for the
            oracle baseline and planners that use what no eye has seen yet).
    """

    scene: SceneConfig = field(default_factory=SceneConfig)
    periphery: PeripheryConfig = field(default_factory=PeripheryConfig)
    sensors: tuple[str, ...] = ("fovea", "periphery")
    fovea_size: int = 28
    glimpse_size: int = 8
    glimpse_scales: int = 1
    max_saccades: int = 5
    saccade_cost: float = 0.0
    split: str = "train"
    privileged: bool = False

    def __post_init__(self) -> None:
        bad = [s for s in self.sensors if s not in SENSORS]
        if bad or not self.sensors or len(set(self.sensors)) != len(self.sensors):
            raise ValueError(f"sensors must be distinct names among {SENSORS}, got {self.sensors!r}")
        size = self.scene.size
        if not (isinstance(self.fovea_size, int) and 2 <= self.fovea_size <= size and self.fovea_size % 2 == 0):
            raise ValueError(f"fovea_size must be an even int between 2 and the scene's size ({size}), "
                             f"got {self.fovea_size!r}")
        if not (isinstance(self.glimpse_size, int) and 2 <= self.glimpse_size <= size and self.glimpse_size % 2 == 0):
            raise ValueError(f"glimpse_size must be an even int between 2 and the scene's size ({size}), "
                             f"got {self.glimpse_size!r}")
        if not (isinstance(self.glimpse_scales, int) and 1 <= self.glimpse_scales <= 6):
            raise ValueError(f"glimpse_scales must be an int in 1..6, got {self.glimpse_scales!r}")
        if not (isinstance(self.max_saccades, int) and self.max_saccades >= 0):
            raise ValueError(f"max_saccades must be an int >= 0, got {self.max_saccades!r}")
        if not (isinstance(self.saccade_cost, (int, float)) and self.saccade_cost >= 0):
            raise ValueError(f"saccade_cost must be a number >= 0, got {self.saccade_cost!r}")
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")


_SCENE_FIELDS = {f.name for f in dataclasses.fields(SceneConfig)}
_ENV_FIELDS = {f.name for f in dataclasses.fields(EnvConfig)}


def make_config(**kwargs) -> EnvConfig:
    """An :class:`EnvConfig` from keyword arguments.  Besides EnvConfig's own fields,
    any :class:`SceneConfig` field (``contrast=0.3``, ``noise=0``, ...) may be given
    directly; it overrides that field of ``scene``."""
    scene_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _SCENE_FIELDS}
    unknown = set(kwargs) - _ENV_FIELDS
    if unknown:
        raise TypeError(f"unknown argument(s) {sorted(unknown)}; valid: {sorted(_ENV_FIELDS | _SCENE_FIELDS)}")
    if "sensors" in kwargs:
        s = kwargs["sensors"]
        kwargs["sensors"] = (s,) if isinstance(s, str) else tuple(s)
    scene = kwargs.pop("scene", None) or SceneConfig()
    if isinstance(scene, dict):
        scene = SceneConfig(**scene)
    if scene_kw:
        scene = dataclasses.replace(scene, **scene_kw)
    return EnvConfig(scene=scene, **kwargs)


@dataclass
class EnvState:
    """A batch of episodes.  Every tensor has the batch dimension B first.

    Attributes:
        scene: (B, S, S) float32 in [0, 1].
        whitened: (B, S, S) float32, what the periphery reads (None without that sensor).
        fixation: (B, 2) float32 scene coordinates, on the pixel grid.
        trail: (B, max_saccades + 1, 2) float32, fixations so far (unused rows: NaN).
        n_saccades: (B,) int64.
        label: (B,) int64.  Never part of an observation.
        offset: (B, 2) int64 pixel offset of the digit's centre from the scene's centre.
        done: (B,) bool, the episode has ended.
        key, episode: (B,) int64, each environment's random stream and episode count.
    """

    scene: torch.Tensor
    whitened: torch.Tensor | None
    fixation: torch.Tensor
    trail: torch.Tensor
    n_saccades: torch.Tensor
    label: torch.Tensor
    offset: torch.Tensor
    done: torch.Tensor
    key: torch.Tensor
    episode: torch.Tensor


class SaccadeCore:
    """The dynamics, on a batch, on one device.

    Args:
        cfg: the environment's configuration.
        device: where everything lives and runs.
        data_dir: MNIST directory (default: the copy shipped with the package).
    """

    def __init__(self, cfg: EnvConfig, *, device: torch.device | str = "cpu",
                 data_dir: str | os.PathLike | None = None) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.sampler = SceneSampler(cfg.scene, split=cfg.split, device=self.device, data_dir=data_dir)
        self.periphery = (Periphery(cfg.periphery, cfg.scene.size).to(self.device)
                          if "periphery" in cfg.sensors else None)
        self.pad = cfg.scene.background
        self._slots = torch.arange(cfg.max_saccades + 1, device=self.device)

    # ----------------------------------------------------------------- reset
    def init_state(self, keys: torch.Tensor) -> EnvState:
        """A batch of ended episodes (to be reset) with the given (B,) int64 stream keys."""
        B, S, dev = keys.shape[0], self.cfg.scene.size, self.device
        z = torch.zeros(B, dtype=torch.int64, device=dev)
        return EnvState(
            scene=torch.full((B, S, S), self.pad, device=dev),
            whitened=torch.zeros(B, S, S, device=dev) if self.periphery is not None else None,
            fixation=torch.zeros(B, 2, device=dev),
            trail=torch.full((B, self.cfg.max_saccades + 1, 2), float("nan"), device=dev),
            n_saccades=z.clone(), label=z.clone(), offset=torch.zeros(B, 2, dtype=torch.int64, device=dev),
            done=torch.ones(B, dtype=torch.bool, device=dev), key=keys.to(dev, torch.int64), episode=z - 1)

    def reset(self, state: EnvState, mask: torch.Tensor, *, label: torch.Tensor | None = None,
              eccentricity: torch.Tensor | None = None, offset: torch.Tensor | None = None) -> EnvState:
        """Start new episodes where ``mask`` (B,) bool is set; other rows are untouched.

        The options (see :meth:`SceneSampler.sample`) are (B,)-shaped like the batch;
        only the masked rows are used.  Returns a new state (inputs are not modified).
        """
        idx = mask.nonzero().squeeze(1)
        if idx.numel() == 0:
            return state
        st = dataclasses.replace(state)
        st.episode = state.episode.index_add(0, idx, torch.ones_like(idx))
        u = rng.uniforms(st.key[idx], st.episode[idx], self.sampler.n_uniforms)
        pick = (lambda t: None if t is None else t[idx])
        batch = self.sampler.sample(u, label=pick(label), eccentricity=pick(eccentricity), offset=pick(offset))
        st.scene = state.scene.index_copy(0, idx, batch.scene)
        if self.periphery is not None:
            st.whitened = state.whitened.index_copy(0, idx, self.periphery.whiten(batch.scene, pad=self.pad))
        st.label = state.label.index_copy(0, idx, batch.label)
        st.offset = state.offset.index_copy(0, idx, batch.offset)
        st.fixation = state.fixation.index_fill(0, idx, 0.0)
        trail = torch.full_like(state.trail[idx], float("nan"))
        trail[:, 0] = 0.0
        st.trail = state.trail.index_copy(0, idx, trail)
        st.n_saccades = state.n_saccades.index_fill(0, idx, 0)
        st.done = state.done.index_fill(0, idx, False)
        return st

    # ----------------------------------------------------------------- step
    def step(self, state: EnvState, saccade: torch.Tensor, answer: torch.Tensor
             ) -> tuple[EnvState, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Apply one action to every running episode (rows already ``done`` are left as they are).

        Args:
            saccade: (B, 2) float32 in [-1, 1], the target of a look.
            answer: (B,) int64 in 0..10; 10 means look.

        Returns:
            (state, reward (B,) float32, terminated (B,) bool, truncated (B,) bool).
        """
        cfg = self.cfg
        live = ~state.done
        look = answer == LOOK
        move = live & look & (state.n_saccades < cfg.max_saccades)
        truncated = live & look & ~move
        terminated = live & ~look
        reward = torch.where(terminated, (answer == state.label).float(),
                             torch.where(move, 0.0 - cfg.saccade_cost, 0.0))
        half = cfg.scene.size / 2
        target = torch.round(saccade.to(torch.float32) * half) / half
        st = dataclasses.replace(state)
        st.fixation = torch.where(move[:, None], target, state.fixation)
        st.n_saccades = state.n_saccades + move.long()
        slot = move[:, None] & (self._slots[None, :] == st.n_saccades[:, None])  # (B, T)
        st.trail = torch.where(slot[..., None], target[:, None, :], state.trail)
        st.done = state.done | terminated | truncated
        return st, reward, terminated, truncated

    # ----------------------------------------------------------------- observe
    def observe(self, state: EnvState) -> dict[str, torch.Tensor]:
        """The observation of every row: a dict of (B, ...) float32 tensors."""
        cfg, obs = self.cfg, {}
        if "fovea" in cfg.sensors:
            obs["fovea"] = fovea(state.scene, state.fixation, size=cfg.fovea_size, pad=self.pad)
        if "periphery" in cfg.sensors:
            obs["periphery"] = self.periphery.read(state.whitened, state.fixation)
        if "glimpse" in cfg.sensors:
            obs["glimpse"] = glimpse(state.scene, state.fixation, size=cfg.glimpse_size,
                                     scales=cfg.glimpse_scales, pad=self.pad)
        obs["fixation"] = state.fixation.clone()
        obs["saccades_left"] = (cfg.max_saccades - state.n_saccades).to(torch.float32)[:, None]
        return obs

    def target_xy(self, state: EnvState) -> torch.Tensor:
        """(B, 2) the digit's centre in scene coordinates."""
        return offsets_to_xy(state.offset, self.cfg.scene.size)

    def episode_info(self, state: EnvState, answer: torch.Tensor) -> dict[str, torch.Tensor]:
        """What an episode's end reveals: label, target_xy, eccentricity (px), n_saccades, correct."""
        return {"label": state.label.clone(), "target_xy": self.target_xy(state),
                "eccentricity": state.offset.float().norm(dim=1), "n_saccades": state.n_saccades.clone(),
                "correct": answer == state.label}

    def periphery_bound(self) -> float:
        return self.periphery.bound() if self.periphery is not None else 0.0


def make_reset_options(options: dict | None, batch: int, size: int, device: torch.device
                       ) -> dict[str, torch.Tensor]:
    """Validate ``reset(options=...)`` and turn it into (B,)-shaped tensors for :meth:`SaccadeCore.reset`.

    Accepted keys: ``label`` (int 0..9), ``eccentricity`` (px, >= 0), ``target_xy``
    ((2,) scene coordinates); each a scalar/pair for every environment or one per
    environment (leading dimension ``batch``).
    """
    if not options:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    unknown = set(options) - {"label", "eccentricity", "target_xy"}
    if unknown:
        raise ValueError(f"unknown reset option(s) {sorted(unknown)}; valid: label, eccentricity, target_xy")
    if "eccentricity" in options and "target_xy" in options:
        raise ValueError("give either 'eccentricity' or 'target_xy' in reset options, not both")
    out = {}
    max_off = size // 2 - DIGIT // 2

    def per_env(name, value, dtype=None, tail=()):
        t = torch.as_tensor(value, dtype=dtype)
        if tuple(t.shape) not in (tail, (batch, *tail)):
            raise ValueError(f"reset option {name!r} must have shape {tail} (all environments) or "
                             f"{(batch, *tail)} (one per environment), got {tuple(t.shape)}")
        return t.broadcast_to((batch, *tail))

    if "label" in options:
        lab = per_env("label", options["label"])
        if lab.is_floating_point() or lab.dtype == torch.bool or ((lab < 0) | (lab > 9)).any():
            raise ValueError(f"reset option 'label' must be an integer in 0..9, got {options['label']!r}")
        out["label"] = lab.to(device, torch.int64)
    if "eccentricity" in options:
        ecc = per_env("eccentricity", options["eccentricity"], torch.float32)
        if not torch.isfinite(ecc).all() or (ecc < 0).any() or (ecc > max_off).any():
            raise ValueError(f"reset option 'eccentricity' must be in [0, {max_off}] px (the digit must "
                             f"stay inside the scene), got {options['eccentricity']!r}")
        out["eccentricity"] = ecc.to(device)
    if "target_xy" in options:
        xy = per_env("target_xy", options["target_xy"], torch.float32, (2,))
        off = torch.round(xy * (size / 2))
        if not torch.isfinite(xy).all() or (off.abs() > max_off).any():
            raise ValueError(f"reset option 'target_xy' must keep the digit inside the scene: |x|, |y| <= "
                             f"{max_off / (size / 2):.4f}, got {options['target_xy']!r}")
        out["offset"] = off.to(device, torch.int64)
    return out
