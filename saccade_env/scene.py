"""Scenes: an MNIST digit in a large, possibly noisy and cluttered display, batched in torch.

The default follows Daucé, Albiges & Perrinet (2020): a 128x128 display, a MotionClouds
texture background (sf_0=0.1, B_sf=0.1, isotropic, noise level 0.75), one 28x28 digit
at contrast 0.7 placed at radius ``min(|N(0,1)| * 30, 34)`` px with a uniform angle.
The digit is lifted onto the noise's mid-grey as in the authors' code (WhereIsMyMNIST):
its strokes above half their peak become ``0.5 + contrast * (d - 0.5)`` (``d`` the digit
scaled to [0, 1]), the rest is dropped; digit and noise ``0.5 + noise * (z - 0.5)`` are
mixed by a pixel-wise maximum; the display is min-max normalised to [0, 1] and a circular
mask sets everything outside the disc to mid-grey (:attr:`SceneConfig.ink`).  The RAM/STN
benchmarks (translated and cluttered MNIST, black background) are the same machinery with
other values.

Coordinates: a scene is ``(B, size, size)``, indexed ``[b, y, x]``.  Positions are
given either in *scene coordinates* (x right, y down, -1..1 spans the scene's outer
edges) or in *pixel offsets* from the scene's centre (``offset_px = xy * size / 2``).
Digits sit at integer pixel offsets, so a fixation on the digit's centre sees it
exactly, without interpolation.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from .data import load_mnist

DIGIT = 28  # MNIST digits are 28x28
CACHE_ENV = "SACCADE_ENV_CACHE"
PLACEMENTS = ("radial", "uniform", "center")
INKS = ("lifted", "absolute")
GREY = 0.5  # mid-grey: the background level of a noise display, and the value outside its mask


@dataclass(frozen=True)
class SceneConfig:
    """What a scene looks like.  All lengths in pixels.

    Attributes:
        size: side of the square scene (even, at least 28).
        contrast: digit (and clutter) contrast in [0, 1] (see ``ink``).
        ink: how the digit is drawn over a noise background (``noise > 0``):
            "lifted" (default; Daucé et al. 2020's display, as in their code): the digit ``d``
            (scaled to [0, 1] by its own peak) becomes ``0.5 + contrast * (d - 0.5)`` where
            that is above the mid-grey 0.5 and is dropped elsewhere, the pixel-wise maximum
            with the noise is taken, and the whole display is min-max normalised to [0, 1]
            before the mask; "absolute": the digit's pixels are ``contrast * mnist / 255``
            from black, maximum with the noise, no normalisation (saccade-env 0.1's display,
            where a digit at contrast 0.3 is darker than the noise around it).  Over a
            noise-free scene (``noise=0``, black background) there is no grey to lift onto:
            both inks draw ``contrast * mnist / 255`` on black, bit for bit.
        placement: "radial" (Daucé 2020: radius ``min(|N(0,1)|*ecc_std, ecc_max)``,
            uniform angle), "uniform" (centre uniform over every position that keeps
            the digit inside the scene), or "center".
        ecc_std, ecc_max: the radial placement's scale and clipping radius.
        noise: MotionClouds background level in [0, 1] (0: black background, no texture).
        sf_0, B_sf: the MotionClouds envelope (peak spatial frequency, bandwidth), cycles/px.
        n_textures: textures in the background bank; each episode picks one and rolls it.
        texture_seed: seed of the bank (the bank is a pure function of this config).
        mask: multiply the display by a disc of diameter ``size`` (outside: background level).
        n_clutter, clutter_size: pieces of other digits (random crops) scattered in the scene.
        jitter: after placement, the digit moves by a uniform integer offset in [-jitter, jitter]
            px on each axis, and the scene's edge may crop it: a training augmentation (e.g. on
            the centred 28x28 preset, where no placement moves the digit). 0 in every preset.
        rotate: before placement, the digit turns about its centre by a uniform angle in
            [-rotate, rotate] degrees (bilinear resampling of the 28x28 image, zeros coming in at
            its corners): a training augmentation. 0 in every preset.
    """

    size: int = 128
    contrast: float = 0.7
    ink: str = "lifted"
    placement: str = "radial"
    ecc_std: float = 30.0
    ecc_max: float = 34.0
    noise: float = 0.75
    sf_0: float = 0.1
    B_sf: float = 0.1
    n_textures: int = 64
    texture_seed: int = 0
    mask: bool = True
    n_clutter: int = 0
    clutter_size: int = 8
    jitter: int = 0
    rotate: float = 0.0

    def __post_init__(self) -> None:
        _plain_values(self)
        if not isinstance(self.size, int) or self.size < DIGIT or self.size % 2:
            raise ValueError(f"SceneConfig.size must be an even int >= {DIGIT}, got {self.size!r}")
        for name in ("contrast", "noise"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"SceneConfig.{name} must be in [0, 1], got {v!r}")
        if self.ink not in INKS:
            raise ValueError(f"SceneConfig.ink must be one of {INKS}, got {self.ink!r}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"SceneConfig.placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.placement == "radial":
            if not (isinstance(self.ecc_std, float) and isinstance(self.ecc_max, float) and self.ecc_std > 0
                    and 0 <= self.ecc_max <= self.max_offset):
                raise ValueError(
                    f"radial placement needs ecc_std > 0 and 0 <= ecc_max <= {self.max_offset} "
                    f"(so the digit stays inside a {self.size}px scene), got ecc_std={self.ecc_std}, "
                    f"ecc_max={self.ecc_max}")
        if not (isinstance(self.sf_0, float) and 0.0 < self.sf_0 <= 0.5):
            raise ValueError(f"SceneConfig.sf_0 is a spatial frequency in cycles/px in (0, 0.5] (0.5: the pixel "
                             f"grid's Nyquist limit; 0.1 by default), got {self.sf_0!r}")
        if not (isinstance(self.B_sf, float) and 0.001 <= self.B_sf <= 1.0):
            raise ValueError(f"SceneConfig.B_sf is a frequency bandwidth in cycles/px in [0.001, 1] (0.1 by "
                             f"default), got {self.B_sf!r}")
        if not (isinstance(self.n_textures, int) and self.n_textures >= 1):
            raise ValueError(f"SceneConfig.n_textures must be an int >= 1, got {self.n_textures!r}")
        if not (isinstance(self.texture_seed, int) and self.texture_seed >= 0):
            raise ValueError(f"SceneConfig.texture_seed must be an int >= 0, got {self.texture_seed!r}")
        if not (isinstance(self.n_clutter, int) and self.n_clutter >= 0):
            raise ValueError(f"SceneConfig.n_clutter must be an int >= 0, got {self.n_clutter!r}")
        if not (isinstance(self.clutter_size, int) and 1 <= self.clutter_size <= DIGIT):
            raise ValueError(f"SceneConfig.clutter_size must be an int in 1..{DIGIT}, got {self.clutter_size!r}")
        if not (isinstance(self.jitter, int) and 0 <= self.jitter <= DIGIT // 2):
            raise ValueError(f"SceneConfig.jitter must be an int in 0..{DIGIT // 2} (px), got {self.jitter!r}")
        if not (isinstance(self.rotate, (int, float)) and 0.0 <= self.rotate <= 180.0):
            raise ValueError(f"SceneConfig.rotate must be an angle in degrees in [0, 180] (e.g. 10.0), "
                             f"got {self.rotate!r}")

    @property
    def max_offset(self) -> int:
        """Largest |x| or |y| pixel offset of the digit's centre that keeps it inside the scene."""
        return self.size // 2 - DIGIT // 2

    @property
    def lifted(self) -> bool:
        """Whether the digit is lifted onto the noise's grey and the display normalised (``ink``)."""
        return self.ink == "lifted" and self.noise > 0

    @property
    def background(self) -> float:
        """Grey level of an empty display (and of everything outside it)."""
        return GREY if self.noise > 0 else 0.0

    @property
    def extent(self) -> float:
        """Where digit centres lie, in scene coordinates: the radius of the disc of "radial"
        placement (``ecc_max / (size / 2)``: 34/64 on SaccadeMNIST-v0), half the side of the
        square of "uniform" placement, 0 for "center"."""
        reach = {"radial": self.ecc_max, "uniform": self.max_offset, "center": 0.0}[self.placement]
        return float(reach) / (self.size / 2)


def _plain_values(cfg) -> None:
    """Store every number of the frozen dataclass ``cfg`` as the Python type of its field's default
    (NumPy scalars are taken as the numbers they hold), refusing NaN and infinities, and check its
    bool and str fields; a field's own check then says its range. A bad value is a TypeError or
    ValueError naming it."""
    name = type(cfg).__name__
    for f in fields(cfg):
        v, kind = getattr(cfg, f.name), type(f.default)
        if kind is bool:
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{name}.{f.name} must be True or False, got {v!r}")
            v = bool(v)
        elif kind is int:  # other values meet the field's own check, which says its range
            if isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{name}.{f.name} must be an int, got {v!r}")
            if isinstance(v, numbers.Integral):
                v = int(v)
        elif kind is float and isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
            v = float(v)  # other values meet the field's own check
            if not math.isfinite(v):
                raise ValueError(f"{name}.{f.name} must be a finite number, got {v!r}")
        elif kind is str and not isinstance(v, str):
            raise TypeError(f"{name}.{f.name} must be a string, got {v!r}")
        object.__setattr__(cfg, f.name, v)


# ---------------------------------------------------------------------------------------
# MotionClouds texture bank
# ---------------------------------------------------------------------------------------
def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "saccade_env")


def _make_textures(cfg: SceneConfig) -> np.ndarray:
    """(n_textures, size, size) float32 in [0, 1]: MotionClouds' static isotropic envelope,
    random phases and amplitudes drawn from our own generator (``MotionClouds.random_cloud``
    reseeds NumPy's global RNG, which an environment must never do), Michelson-rectified."""
    import MotionClouds as mc

    n = cfg.size
    fx, fy, ft = mc.get_grids(n, n, 1)
    envelope = mc.envelope_gabor(fx, fy, ft, V_X=0.0, V_Y=0.0, B_V=0.5, sf_0=cfg.sf_0, B_sf=cfg.B_sf,
                                 B_theta=np.inf)[:, :, 0]
    rng = np.random.default_rng(cfg.texture_seed)
    bank = np.empty((cfg.n_textures, n, n), np.float32)
    for i in range(cfg.n_textures):
        spectrum = np.exp(2j * np.pi * rng.random((n, n))) * rng.standard_normal((n, n)) * envelope
        spectrum = np.fft.ifftshift(spectrum)
        spectrum[0, 0] = 0.0
        z = np.fft.ifft2(spectrum).real
        bank[i] = mc.rectif(z, contrast=1.0, method="Michelson")
    return bank


def texture_bank(cfg: SceneConfig) -> np.ndarray:
    """The background textures of ``cfg``, built once and cached on disk keyed by their
    parameters (directory: ``$SACCADE_ENV_CACHE`` or ``~/.cache/saccade_env``).

    The cache file carries a SHA-256 checksum of its parameters and content, and its first
    texture is rebuilt and compared at each load: a file that does not match (damaged, empty,
    partial, or holding other textures) is rebuilt, with a warning.

    Returns:
        (n_textures, size, size) float32 in [0, 1].
    """
    params = {k: asdict(cfg)[k] for k in ("size", "sf_0", "B_sf", "n_textures", "texture_seed")}
    key = repr(sorted(params.items()))
    digest = hashlib.sha1(key.encode() + b"v1").hexdigest()[:16]
    path = _cache_dir() / f"motionclouds_{digest}.npz"
    if path.exists():
        bank = _read_bank(path, cfg, key)
        if bank is not None:
            return bank
        warnings.warn(f"the texture cache {path} does not match its checksum or its parameters (damaged, "
                      f"partial, or other textures); rebuilding it", stacklevel=2)
    bank = _make_textures(cfg)
    if not np.isfinite(bank).all():
        raise ValueError(f"SceneConfig sf_0={cfg.sf_0}, B_sf={cfg.B_sf} give a texture envelope with no "
                         f"energy on a {cfg.size}px grid (non-finite textures): widen B_sf or move sf_0")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".tmp", delete=False) as f:
            tmp = f.name
            np.savez(f, bank=bank, sha256=np.array(_checksum(key, bank)))
        os.replace(tmp, path)
    except OSError as err:
        warnings.warn(f"could not cache the texture bank in {path.parent} ({err}); it is rebuilt "
                      f"at each start. Set {CACHE_ENV} to a writable directory to cache it.", stacklevel=2)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return bank


def _checksum(key: str, bank: np.ndarray) -> str:
    return hashlib.sha256(key.encode() + np.ascontiguousarray(bank, np.float32).tobytes()).hexdigest()


def _read_bank(path: Path, cfg: SceneConfig, key: str) -> np.ndarray | None:
    """The cached bank at ``path`` if it is whole and holds the textures of ``cfg``, else None."""
    try:
        with np.load(path, allow_pickle=False) as f:
            bank, checksum = f["bank"], str(f["sha256"])
    except Exception:  # noqa: BLE001  (empty, partial, not an npz: rebuilt)
        return None
    if bank.dtype != np.float32 or bank.shape != (cfg.n_textures, cfg.size, cfg.size):
        return None
    if checksum != _checksum(key, bank):
        return None
    first = _make_textures(replace(cfg, n_textures=1))[0]  # the bank's first texture, rebuilt: same parameters
    return bank if np.array_equal(first, bank[0]) else None


# ---------------------------------------------------------------------------------------
# Batched scene sampling
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneBatch:
    """Freshly drawn scenes.  scene (B, S, S) float32 in [0, 1]; label (B,) int64;
    offset (B, 2) int64 pixel offset (x, y) of the digit's centre from the scene's centre."""

    scene: torch.Tensor
    label: torch.Tensor
    offset: torch.Tensor


class SceneSampler:
    """Draws batches of scenes on ``device`` from uniforms the caller supplies.

    Args:
        cfg: the scene's configuration.
        split: "train" (60k MNIST digits), "test" (10k) or a slice such as "train[:55000]".
        device: where the digits, textures and scenes live.
        data_dir: MNIST directory (see :func:`saccade_env.data.load_mnist`).
    """

    _FIXED = 9  # uniforms used by the digit, its position and the texture
    _PER_CLUTTER = 5

    def __init__(self, cfg: SceneConfig, *, split: str = "train", device: torch.device | str = "cpu",
                 data_dir: str | os.PathLike | None = None) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        images, labels = load_mnist(split, data_dir=data_dir)
        self.digits = torch.tensor(images, device=self.device)  # (N, 28, 28) uint8
        self.labels = torch.tensor(labels, device=self.device, dtype=torch.int64)  # (N,)
        self.order = torch.argsort(self.labels, stable=True)  # digit indices grouped by label
        counts = torch.bincount(self.labels, minlength=10)
        self.label_count = counts
        self.label_start = torch.cumsum(counts, 0) - counts
        self.textures = (torch.as_tensor(texture_bank(cfg), device=self.device) if cfg.noise > 0 else None)
        s = cfg.size
        if self.textures is not None:
            # the background levels of every texture, tiled 2x2 so that a texture rolled by
            # (dy, dx) is the window at (dy, dx): ``_rolled[t, dy, dx]`` is (S, S), a view
            tiled = (0.5 + cfg.noise * (self.textures - 0.5)).repeat(1, 2, 2)
            n = cfg.n_textures
            self._rolled = tiled.as_strided((n, s, s, s, s), (4 * s * s, 2 * s, 1, 2 * s, 1))
        c = (torch.arange(s, device=self.device, dtype=torch.float32) + 0.5) - s / 2
        self.disc = (c[None, :] ** 2 + c[:, None] ** 2) <= (s / 2) ** 2  # (S, S) bool
        self._outside = ~self.disc.view(-1)  # (S*S,) what the mask paints over
        self._arange_d = torch.arange(DIGIT, device=self.device)
        self._arange_c = torch.arange(cfg.clutter_size, device=self.device)

    @property
    def n_uniforms(self) -> int:
        """Uniform numbers :meth:`sample` consumes per scene."""
        return self._tail + (2 if self.cfg.jitter else 0) + (1 if self.cfg.rotate else 0)

    @property
    def _tail(self) -> int:
        """Index of the first augmentation uniform (jitter's two, then rotate's one): after the
        digit's and the clutter's, so that the augmentations leave every other draw as it was."""
        return self._FIXED + self._PER_CLUTTER * self.cfg.n_clutter

    def sample(self, u: torch.Tensor, *, label: torch.Tensor | None = None,
               eccentricity: torch.Tensor | None = None, offset: torch.Tensor | None = None,
               digit_index: torch.Tensor | None = None) -> SceneBatch:
        """Draw ``B`` scenes.

        Args:
            u: (B, n_uniforms) float32 uniforms in [0, 1).
            label: (B,) int64, a label in 0..9 to impose, or -1 to draw one at random.
            digit_index: (B,) int64, the index of the digit in the split to show, or -1 to
                draw one at random (every other draw is unchanged).
            eccentricity: (B,) float32, a distance (px) of the digit from the centre to
                impose (angle still random), or NaN to draw it.
            offset: (B, 2) int64 pixel offsets of the digit's centre to impose.

        Returns:
            SceneBatch.
        """
        cfg, dev = self.cfg, self.device
        B = u.shape[0]
        # --- which digit
        n = self.labels.shape[0]
        idx = (u[:, 0] * n).long().clamp_max(n - 1)
        if label is not None:
            lab = label.clamp(0, 9)
            pick = (u[:, 0] * self.label_count[lab]).long().clamp_max(self.label_count[lab] - 1)
            idx = torch.where(label >= 0, self.order[self.label_start[lab] + pick], idx)
        if digit_index is not None:
            idx = torch.where(digit_index >= 0, digit_index.clamp(0, n - 1), idx)
        digits = self.digits[idx]  # (B, 28, 28) uint8
        if cfg.rotate:  # the uniform after jitter's two
            a = (u[:, self._tail + (2 if cfg.jitter else 0)] * 2 - 1) * math.radians(cfg.rotate)  # (B,)
            cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
            theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
            grid = torch.nn.functional.affine_grid(theta, [B, 1, DIGIT, DIGIT], align_corners=False)
            digits = torch.nn.functional.grid_sample(digits[:, None].float(), grid, mode="bilinear",
                                                     padding_mode="zeros", align_corners=False)[:, 0]
        # --- where
        m = cfg.max_offset
        if cfg.placement == "radial":
            normal = torch.sqrt(-2 * torch.log1p(-u[:, 1])) * torch.cos(2 * math.pi * u[:, 2])
            radius = (normal.abs() * cfg.ecc_std).clamp_max(cfg.ecc_max)
        elif cfg.placement == "uniform":
            radius = None
        else:
            radius = torch.zeros(B, device=dev)
        angle = 2 * math.pi * u[:, 3]
        if eccentricity is not None:
            given = ~torch.isnan(eccentricity)
            radius = torch.where(given, eccentricity, radius if radius is not None else eccentricity)
        if radius is not None:
            polar = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], 1).round().long()
        if radius is not None and cfg.placement != "uniform":
            xy = polar
        else:
            uniform = ((u[:, 7:9] * (2 * m + 1)).long() - m).clamp(-m, m)
            xy = uniform if radius is None else torch.where(given[:, None], polar, uniform)  # some rows imposed
        if offset is not None:
            xy = offset
        xy = xy.clamp(-m, m)
        if cfg.jitter and offset is None:  # two uniforms after the clutter's: prefix-stable streams for the rest
            j, t = cfg.jitter, self._tail
            xy = xy + ((u[:, t:t + 2] * (2 * j + 1)).long() - j).clamp(-j, j)
        # --- the display: the background (a texture picked and rolled, or black), then the
        # digit and the clutter at their contrast, all mixed by a pixel-wise maximum
        s, scale = cfg.size, cfg.contrast / 255.0
        lifted = cfg.lifted
        if self.textures is not None:
            t = (u[:, 4] * cfg.n_textures).long().clamp_max(cfg.n_textures - 1)
            dxy = (u[:, 5:7] * s).long()  # (B, 2) the roll (dx, dy)
            canvas = self._rolled[t, dxy[:, 1], dxy[:, 0]].view(B, s * s)  # a copy (advanced indexing)
        else:
            canvas = torch.zeros(B, s * s, device=dev)
        rows = (s // 2 - DIGIT // 2 + xy[:, 1])[:, None, None] + self._arange_d[None, :, None]  # (B, 28, 1)
        cols = (s // 2 - DIGIT // 2 + xy[:, 0])[:, None, None] + self._arange_d  # (B, 1, 28)
        if lifted:  # scaled by the digit's own peak, onto the grey; strokes at or below it dropped (0: a no-op)
            peak = digits.flatten(1).amax(1).float().clamp_min(1e-6)[:, None, None]
            ink = _lift(digits.float() / peak, cfg.contrast)
        else:
            ink = digits.float() * scale
        if cfg.jitter:  # the digit may cross the edge: its outside pixels paint 0 (a no-op) at the edge
            inside = (rows >= 0) & (rows < s) & (cols >= 0) & (cols < s)
            ink, rows, cols = ink * inside, rows.clamp(0, s - 1), cols.clamp(0, s - 1)
        canvas.scatter_reduce_(1, (rows * s + cols).view(B, -1), ink.view(B, -1), reduce="amax")
        if cfg.n_clutter:
            self._paint_clutter(canvas, u[:, self._FIXED:self._FIXED + self._PER_CLUTTER * cfg.n_clutter],
                                scale, lifted)
        if lifted:  # the whole square min-max normalised to [0, 1], as the reference does before its mask
            lo, hi = canvas.aminmax(dim=1, keepdim=True)
            canvas = (canvas - lo) / (hi - lo).clamp_min(1e-12)
        if cfg.mask:
            canvas.masked_fill_(self._outside, cfg.background)
        canvas = canvas.view(B, s, s)
        return SceneBatch(scene=canvas, label=self.labels[idx], offset=xy)

    def _paint_clutter(self, canvas: torch.Tensor, u: torch.Tensor, scale: float, lifted: bool) -> None:
        """Max-paint ``n_clutter`` random crops of random digits into ``canvas`` (B, S*S): times
        ``scale``, or lifted onto the grey like the digit (``lifted``)."""
        cfg = self.cfg
        B, k, s, c = canvas.shape[0], cfg.n_clutter, cfg.size, cfg.clutter_size
        u = u.view(B, k, self._PER_CLUTTER)
        n = self.labels.shape[0]
        src = self.digits[(u[..., 0] * n).long().clamp_max(n - 1)]  # (B, k, 28, 28)
        sy = (u[..., 1] * (DIGIT - c + 1)).long()
        sx = (u[..., 2] * (DIGIT - c + 1)).long()
        ar = self._arange_c
        rows = (sy[..., None] + ar)[..., :, None].expand(B, k, c, c)
        cols = (sx[..., None] + ar)[..., None, :].expand(B, k, c, c)
        pieces = src.flatten(2).gather(2, (rows * DIGIT + cols).flatten(2))  # (B, k, c*c)
        ty = (u[..., 3] * (s - c + 1)).long()
        tx = (u[..., 4] * (s - c + 1)).long()
        flat = (ty[..., None, None] + ar[:, None]) * s + (tx[..., None, None] + ar)  # (B, k, c, c)
        ink = _lift(pieces.float() / 255.0, cfg.contrast) if lifted else pieces.float() * scale
        canvas.scatter_reduce_(1, flat.reshape(B, -1), ink.reshape(B, -1), reduce="amax")


def _lift(d: torch.Tensor, contrast: float) -> torch.Tensor:
    """The reference's ink: ``0.5 + contrast * (d - 0.5)`` for a digit ``d`` in [0, 1], kept
    where it is above the mid-grey 0.5, and 0 (nothing painted under a maximum) elsewhere."""
    v = 0.5 + contrast * (d - 0.5)
    return torch.where(v > 0.5, v, torch.zeros_like(v))


def offsets_to_xy(offset: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel offsets (..., 2) from the centre -> scene coordinates (..., 2) in [-1, 1]."""
    return offset.to(torch.float32) * (2.0 / size)
