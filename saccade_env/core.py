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
import math
import os
from dataclasses import dataclass, field

import torch

from . import rng
from .data import parse_split
from .retina import Periphery, PeripheryConfig, fovea, glimpse
from .scene import DIGIT, SceneConfig, SceneSampler, _plain_values, offsets_to_xy

SENSORS = ("fovea", "periphery", "glimpse")
LOOK = 10  # the answer that means "saccade, don't answer yet"


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a torch.device; a CUDA device where CUDA is absent is a ValueError that says what to pass
    (torch's own message names its build, and some libraries fall back to the CPU without a word)."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device={str(device)!r} is not a torch device; pass 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}: CUDA is not available here (no GPU visible, or a CPU-only "
                         f"torch build); pass device='cpu', or install a CUDA build of torch on a GPU machine")
    return dev


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
        split: "train" (MNIST's 60k training digits) or "test" (its 10k test digits), or a
            contiguous slice of one: "train[:55000]" and "train[55000:]" split the training
            digits into a fitting set and a validation set.
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
        _plain_values(self)  # NumPy scalars as Python numbers; NaN, infinities and non-bool flags refused
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
        parse_split(self.split)  # "train", "test" or a slice such as "train[:55000]"; the error says so


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
        if not isinstance(s, (str, list, tuple)):
            raise TypeError(f"sensors must be a sensor name or a sequence of them among {SENSORS}, got {s!r}")
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
        maps: (B, L, M, M) float32, the box-filtered maps of ``whitened`` the periphery reads
            on the pixel grid (:meth:`Periphery.prepare`), or None (then computed when
            read).  Derived from ``whitened``: a state with another ``whitened`` must have
            its ``maps`` replaced too, or set to None.
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
    maps: torch.Tensor | None = None


def _copy(state: EnvState) -> EnvState:
    """A shallow copy (what ``dataclasses.replace(state)`` gives, without its per-call overhead)."""
    st = EnvState.__new__(EnvState)
    st.__dict__.update(state.__dict__)
    return st


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
        self.device = check_device(device)
        self.sampler = SceneSampler(cfg.scene, split=cfg.split, device=self.device, data_dir=data_dir)
        self.periphery = (Periphery(cfg.periphery, cfg.scene.size).to(self.device)
                          if "periphery" in cfg.sensors else None)
        self.pad = cfg.scene.background
        self.n_digits = int(self.sampler.labels.shape[0])  # digits in the split (``digit_index`` runs over them)
        self._slots = torch.arange(cfg.max_saccades + 1, device=self.device)
        self._start = torch.zeros(2, device=self.device)  # where the eye starts, and the trail then
        self._start_trail = torch.full((cfg.max_saccades + 1, 2), float("nan"), device=self.device)
        self._start_trail[0] = 0.0

    map_budget = 2 << 30  # bytes: larger batches compute the periphery's maps at each read instead of storing them

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
            done=torch.ones(B, dtype=torch.bool, device=dev), key=keys.to(dev, torch.int64), episode=z - 1,
            maps=self._empty_maps(B))

    def _empty_maps(self, B: int) -> torch.Tensor | None:
        if self.periphery is None or B * math.prod(self.periphery.map_shape) * 4 > self.map_budget:
            return None
        return torch.zeros(B, *self.periphery.map_shape, device=self.device)

    def reset(self, state: EnvState, mask: torch.Tensor, *, label: torch.Tensor | None = None,
              eccentricity: torch.Tensor | None = None, offset: torch.Tensor | None = None,
              digit_index: torch.Tensor | None = None, inplace: bool = False) -> EnvState:
        """Start new episodes where ``mask`` (B,) bool is set; other rows are untouched.

        The options (see :meth:`SceneSampler.sample`) are (B,)-shaped like the batch;
        only the masked rows are used.  Returns a new state; the input is not modified,
        unless ``inplace``: then the new episodes' scenes, whitened scenes and maps (the
        large tensors) are written into ``state``'s own, which the new state shares (no
        copy of the batch; for a caller that owns ``state`` and has handed out nothing
        that aliases those tensors, such as the vector env).
        """
        idx = mask.nonzero().squeeze(1)
        n = idx.numel()
        if n == 0:
            return state
        st, full = _copy(state), n == mask.shape[0]
        pick = (lambda t: t) if full else (lambda t: t[idx])  # the reset rows of a (B, ...) tensor
        put = (lambda old, new: new) if full else (lambda old, new: old.index_copy(0, idx, new))
        if full:  # every row: the new rows are the new state (no copies, no indexing)
            st.episode = state.episode + 1
            st.n_saccades = torch.zeros_like(state.n_saccades)
            st.done = torch.zeros_like(state.done)
        else:
            st.episode = state.episode.index_add(0, idx, torch.ones_like(idx))
            st.n_saccades = state.n_saccades.index_fill(0, idx, 0)
            st.done = state.done.index_fill(0, idx, False)
        u = rng.uniforms(pick(st.key), pick(st.episode), self.sampler.n_uniforms)
        options = {k: pick(v) for k, v in (("label", label), ("eccentricity", eccentricity), ("offset", offset),
                                           ("digit_index", digit_index)) if v is not None}
        big = (state.scene, state.whitened, state.maps)
        into = big if inplace and full else None  # drawn straight into the state's tensors
        scene, st.label, st.offset, whitened, maps = self._draw(u, options, state.maps is not None, into)
        st.label, st.offset = put(state.label, st.label), put(state.offset, st.offset)
        if into is None:
            new = (scene, whitened, maps)
            if inplace:  # partial: the reset rows only
                for old, t in zip(big, new):
                    if t is not None:
                        old.index_copy_(0, idx, t)
            else:
                st.scene, st.whitened, st.maps = (old if t is None else put(old, t) for old, t in zip(big, new))
        st.fixation = put(state.fixation, self._start.expand(n, 2).clone())
        st.trail = put(state.trail, self._start_trail.expand(n, *self._start_trail.shape).clone())
        return st

    reset_chunk = 64  # episodes drawn at once (their scenes, whitened scenes and maps stay in cache)

    def _draw(self, u: torch.Tensor, options: dict[str, torch.Tensor], with_maps: bool,
              into: tuple[torch.Tensor | None, ...] | None = None):
        """New episodes from their (n, n_uniforms) uniforms: scene (n, S, S), label (n,),
        offset (n, 2), whitened scene and periphery maps (None where not needed); the
        scenes, whitened scenes and maps are written into ``into``'s tensors when given."""
        n, P, c = u.shape[0], self.periphery, self.reset_chunk
        with_maps = with_maps and P is not None
        out = None
        for i in range(0, n, c):
            b = self.sampler.sample(u[i:i + c], **{k: v[i:i + c] for k, v in options.items()})
            w = P.whiten(b.scene, pad=self.pad) if P is not None else None
            if n <= c and into is None:
                return b.scene, b.label, b.offset, w, P.prepare(w) if with_maps else None
            if out is None:
                out = [t.new_empty((n, *t.shape[1:])) for t in (b.label, b.offset)]
                if into is not None:
                    out = [into[0], *out, into[1], into[2] if with_maps else None]
                else:
                    out = [b.scene.new_empty(n, *b.scene.shape[1:]), *out,
                           w.new_empty(n, *w.shape[1:]) if w is not None else None,
                           w.new_empty(n, *P.map_shape) if with_maps else None]
            for o, t in zip(out, (b.scene, b.label, b.offset, w)):
                if o is not None:
                    o[i:i + c] = t
            if with_maps:
                P.prepare(w, out=out[4][i:i + c])
        return tuple(out)

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
        asked = live & (answer == LOOK)
        move = asked & (state.n_saccades < cfg.max_saccades)
        truncated = asked ^ move  # a look with no saccade left
        terminated = live ^ asked  # an answer
        reward = (terminated & (answer == state.label)).float()
        if cfg.saccade_cost:
            reward = reward - cfg.saccade_cost * move.float()
        half = cfg.scene.size / 2
        target = torch.round(saccade.to(torch.float32) * half) / half
        st = _copy(state)
        st.fixation = torch.where(move[:, None], target, state.fixation)
        st.n_saccades = state.n_saccades + move
        slot = move[:, None] & (self._slots == st.n_saccades[:, None])  # (B, T)
        st.trail = torch.where(slot[..., None], target[:, None, :], state.trail)
        st.done = ~move  # ended before, or now (every live row that does not move ends)
        return st, reward, terminated, truncated

    # ----------------------------------------------------------------- observe
    def observe(self, state: EnvState) -> dict[str, torch.Tensor]:
        """The observation of every row: a dict of (B, ...) float32 tensors."""
        cfg, obs = self.cfg, {}
        if "fovea" in cfg.sensors:
            obs["fovea"] = fovea(state.scene, state.fixation, size=cfg.fovea_size, pad=self.pad)
        if "periphery" in cfg.sensors:
            obs["periphery"] = self._periphery(state)
        if "glimpse" in cfg.sensors:
            obs["glimpse"] = glimpse(state.scene, state.fixation, size=cfg.glimpse_size,
                                     scales=cfg.glimpse_scales, pad=self.pad)
        obs["fixation"] = state.fixation.clone()
        obs["saccades_left"] = (cfg.max_saccades - state.n_saccades).to(torch.float32)[:, None]
        return obs

    def _periphery(self, state: EnvState) -> torch.Tensor:
        """(B, C, E, A): on the pixel grid from the state's maps (or maps computed now, a
        chunk at a time), elsewhere (a fixation a caller placed off the grid) by :meth:`Periphery.read`."""
        P, fix = self.periphery, state.fixation
        if not P.on_grid(fix):
            return P.read(state.whitened, fix)
        if state.maps is not None:
            return P.read_prepared(state.maps, fix)
        n = 2 * P.chunk_maps  # maps of a few scenes at a time, read while in cache
        return torch.cat([P.read_prepared(P.prepare(w), f) for w, f in zip(state.whitened.split(n), fix.split(n))])

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


RESET_OPTIONS = ("label", "eccentricity", "target_xy", "digit_index")


def make_reset_options(options: dict | None, batch: int, size: int, device: torch.device, *,
                       n_digits: int) -> dict[str, torch.Tensor]:
    """Validate ``reset(options=...)`` and turn it into (B,)-shaped tensors for :meth:`SaccadeCore.reset`.

    Accepted keys: ``label`` (int 0..9), ``eccentricity`` (px, >= 0), ``target_xy``
    ((2,) scene coordinates), ``digit_index`` (int in 0..n_digits-1: which digit of the
    env's split to show, e.g. to play every test digit once); each a scalar/pair for every
    environment or one per environment (leading dimension ``batch``).
    """
    if not options:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    unknown = set(options) - set(RESET_OPTIONS)
    if unknown:
        raise ValueError(f"unknown reset option(s) {sorted(unknown)}; valid: {', '.join(RESET_OPTIONS)}")
    if "label" in options and "digit_index" in options:
        raise ValueError("give either 'label' or 'digit_index' in reset options, not both (a digit has its label)")
    if "eccentricity" in options and "target_xy" in options:
        raise ValueError("give either 'eccentricity' or 'target_xy' in reset options, not both")
    out = {}
    max_off = size // 2 - DIGIT // 2

    def per_env(name, value, dtype=None, tail=()):
        try:
            t = torch.as_tensor(value, dtype=dtype)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"reset option {name!r} must be a number or an array of numbers, got {value!r}") from None
        if tuple(t.shape) not in (tail, (batch, *tail)):
            raise ValueError(f"reset option {name!r} must have shape {tail} (all environments) or "
                             f"{(batch, *tail)} (one per environment), got {tuple(t.shape)}")
        return t.broadcast_to((batch, *tail))

    if "label" in options:
        lab = per_env("label", options["label"])
        if lab.is_floating_point() or lab.dtype == torch.bool or ((lab < 0) | (lab > 9)).any():
            raise ValueError(f"reset option 'label' must be an integer in 0..9, got {options['label']!r}")
        out["label"] = lab.to(device, torch.int64)
    if "digit_index" in options:
        di = per_env("digit_index", options["digit_index"])
        if di.is_floating_point() or di.dtype == torch.bool or ((di < 0) | (di >= n_digits)).any():
            raise ValueError(f"reset option 'digit_index' must be an integer in 0..{n_digits - 1} (a digit of "
                             f"the env's split, {n_digits} digits), got {options['digit_index']!r}")
        out["digit_index"] = di.to(device, torch.int64)
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
