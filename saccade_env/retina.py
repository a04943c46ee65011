"""The eye: a sharp fovea, a log-polar log-Gabor periphery, and RAM's multi-scale glimpse.

Every sensor is a plain function of ``(scenes, fixations)``, batched, device-agnostic and
differentiable in the fixation (bilinear sampling), so agents such as the spatial
transformer or NeVA can backpropagate through the eye.

Fixations are in scene coordinates: (x, y), x right, y down, -1..1 spans the scene's
outer edges; a fixation at integer pixel offsets from the scene's centre makes the fovea
exactly a slice of the scene.

The periphery uses the locality of its filters instead of a dense 2880 x S^2 product.
Each log-Gabor filter of ring ``e`` is the same small kernel (``kernel`` x ``kernel``
samples, defined once in a local frame) read on a grid of sample points whose spacing
grows with eccentricity and whose axes turn with the azimuth.  So the orientations are
relative to the azimuth, the peak frequency falls as 1/eccentricity (capped), and a
filter costs ``kernel**2`` samples whatever its size.  The samples are read by bilinear
interpolation from an image pyramid of the whitened scene, at the level whose pixel
spacing matches the sample spacing (anti-aliasing).  Filters are zero-mean (no response
to mean brightness), nothing wraps around the scene's edges (outside is the
background level), and the grid is centred exactly on the fixation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------
# the eye-centred window, and the sensors read from it
# ---------------------------------------------------------------------------------------
def to_pixels(fixations: torch.Tensor, scene_size: int) -> torch.Tensor:
    """Scene coordinates (..., 2) -> pixel offsets (..., 2) from the scene's centre."""
    return fixations * (scene_size / 2)


def eye_window(images: torch.Tensor, fixations: torch.Tensor, *, size: int, pad: float = 0.0) -> torch.Tensor:
    """The ``size`` x ``size`` part of the images centred on each fixation.

    Args:
        images: (B, S, S) float32.
        fixations: (B, 2) scene coordinates (x, y).
        size: even side of the window, pixels.
        pad: value of everything outside the images.

    Returns:
        (B, size, size).  At integer pixel offsets (where the environment's eye lands)
        this is an exact slice, read by indexing; elsewhere, or when the fixations
        require a gradient, it is read by bilinear interpolation, which agrees with the
        slice at integer offsets and is differentiable in the fixation.
    """
    B, S, _ = images.shape
    if B == 1 and not fixations.requires_grad:  # one eye: a plain slice where it lands on the grid
        ox, oy = (v * (S / 2) for v in fixations[0].tolist())
        if ox == round(ox) and oy == round(oy):
            left, top = int(round(ox)) + S // 2 - size // 2, int(round(oy)) + S // 2 - size // 2
            l0, t0 = min(max(left, 0), S), min(max(top, 0), S)
            part = images[:, t0:max(top + size, t0), l0:max(left + size, l0)]
            margins = (l0 - left, size - (l0 - left) - part.shape[2], t0 - top, size - (t0 - top) - part.shape[1])
            if not any(margins):
                return part.clone()  # callers own their observation
            return F.pad(part, margins, value=pad)
    off = to_pixels(fixations, S)
    if fixations.requires_grad or not torch.equal(off, off.round()):
        r = (torch.arange(size, device=images.device, dtype=images.dtype) - (size - 1) / 2) * (2.0 / S)
        grid = torch.stack(torch.broadcast_tensors(r[None, :], r[:, None]), -1)  # (size, size, 2) as (x, y)
        grid = grid[None] + fixations[:, None, None, :]
        out = F.grid_sample((images - pad)[:, None], grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return out[:, 0] + pad
    start = off.long() + (S // 2 - size // 2)  # (B, 2) top-left pixel (x, y)
    ar = torch.arange(size, device=images.device)
    cols = start[:, 0:1] + ar  # (B, size)
    rows = start[:, 1:2] + ar
    inside = ((rows >= 0) & (rows < S))[:, :, None] & ((cols >= 0) & (cols < S))[:, None, :]
    bidx = torch.arange(B, device=images.device)[:, None, None]
    out = images[bidx, rows.clamp(0, S - 1)[:, :, None], cols.clamp(0, S - 1)[:, None, :]]
    return torch.where(inside, out, torch.full_like(out, pad))


def fovea(scenes: torch.Tensor, fixations: torch.Tensor, *, size: int = 28, pad: float = 0.0) -> torch.Tensor:
    """The sharp central crop: (B, S, S) scenes, (B, 2) fixations -> (B, 1, size, size)."""
    return eye_window(scenes, fixations, size=size, pad=pad)[:, None]


def _box_pyramid(window: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """(B, R, R) -> [level 0 (B, R, R), level 1 (B, R/2, R/2), ...], 2x2 averages."""
    out = [window]
    for _ in range(levels - 1):
        x = out[-1]
        x = x[:, 0::2] + x[:, 1::2]
        out.append((x[:, :, 0::2] + x[:, :, 1::2]) * 0.25)
    return out


def glimpse(scenes: torch.Tensor, fixations: torch.Tensor, *, size: int = 8, scales: int = 1,
            pad: float = 0.0) -> torch.Tensor:
    """RAM's glimpse: ``scales`` patches around the fixation, patch ``j`` covering
    ``size * 2**j`` pixels averaged down to ``size`` x ``size``.

    Args:
        scenes: (B, S, S) float32.
        fixations: (B, 2) scene coordinates.
        size: even side of each patch; scales: number of patches.

    Returns:
        (B, scales, size, size).
    """
    R = size << (scales - 1)
    levels = _box_pyramid(eye_window(scenes, fixations, size=R, pad=pad), scales)
    out = []
    for j, lv in enumerate(levels):
        c = (R >> j) // 2 - size // 2
        out.append(lv[:, c:c + size, c:c + size])
    return torch.stack(out, 1)


# ---------------------------------------------------------------------------------------
# log-polar log-Gabor periphery
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeripheryConfig:
    """The log-polar retina of Daucé et al. (2020).

    Attributes:
        n_theta, n_phase, n_azimuth, n_eccentricity: filter bank layout (6 x 2 x 24 x 10).
        rho: ratio of successive ring radii.
        ecc_max: outermost ring radius over the scene's half-diagonal, times rho
            (the paper's 0.8: rings at about 2.3 to 51 px in a 128 px scene).
        sf_max: cap of the peak spatial frequency, cycles/px.
        sf_scale: peak frequency = min(sf_max, sf_scale / radius_px).
        B_sf: radial bandwidth of the log-Gabor (ratio, as in SLIP).
        kernel: samples per side of each filter's support.
        whiten: whiten the scene (1/f spectrum flattened) before filtering, as the paper.
    """

    n_theta: int = 6
    n_phase: int = 2
    n_azimuth: int = 24
    n_eccentricity: int = 10
    rho: float = 1.41
    ecc_max: float = 0.8
    sf_max: float = 0.45
    sf_scale: float = 1.36
    B_sf: float = 0.4
    kernel: int = 9
    whiten: bool = True

    def __post_init__(self) -> None:
        for name in ("n_theta", "n_azimuth", "n_eccentricity", "kernel"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"PeripheryConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.n_phase not in (1, 2):
            raise ValueError(f"PeripheryConfig.n_phase must be 1 (even) or 2 (even, odd), got {self.n_phase!r}")
        if not self.rho > 1:
            raise ValueError(f"PeripheryConfig.rho must be > 1, got {self.rho!r}")
        if not (0 < self.sf_max <= 0.5 and self.sf_scale > 0 and self.ecc_max > 0 and self.B_sf > 0):
            raise ValueError("PeripheryConfig needs 0 < sf_max <= 0.5 and positive sf_scale, ecc_max, B_sf")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(theta x phase, eccentricity, azimuth)."""
        return (self.n_theta * self.n_phase, self.n_eccentricity, self.n_azimuth)


_SF_LOCAL = 0.25  # peak frequency of the local kernel, cycles per sample


def _local_kernels(cfg: PeripheryConfig) -> torch.Tensor:
    """(kernel**2, n_theta * n_phase) zero-mean, unit-norm log-Gabor kernels in a local
    frame whose x axis points away from the fixation (orientation relative to azimuth)."""
    n, k = 64, cfg.kernel
    f = torch.fft.fftfreq(n, dtype=torch.float64)
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    fr = torch.sqrt(fx**2 + fy**2).clamp_min(1e-9)
    radial = torch.exp(-0.5 * torch.log(fr / _SF_LOCAL) ** 2 / math.log(1 + cfg.B_sf) ** 2)
    radial[0, 0] = 0.0
    b_theta = math.pi / cfg.n_theta / 2
    kernels = []
    for t in range(cfg.n_theta):
        theta = t * math.pi / cfg.n_theta
        dtheta = torch.atan2(fy, fx) - theta
        angular = torch.exp(torch.cos(dtheta) / b_theta**2 - 1 / b_theta**2)  # one-sided: analytic filter
        spatial = torch.fft.fftshift(torch.fft.ifft2(radial * angular))
        c = n // 2
        crop = spatial[c - k // 2: c - k // 2 + k, c - k // 2: c - k // 2 + k]
        parts = [crop.real, crop.imag][: cfg.n_phase]
        for p in parts:
            p = p - p.mean()
            kernels.append((p / p.norm()).flatten())
    return torch.stack(kernels, 1).to(torch.float32)  # (k*k, n_theta*n_phase)


def mirror_indices(cfg: PeripheryConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """How the periphery's responses change when the scene is mirrored top to bottom about
    the fixation's row (y -> -y).

    A filter at azimuth psi goes to -psi, and its orientation relative to the azimuth
    theta to -theta, i.e. to the bank's ``pi - theta`` filter, whose odd (imaginary) part
    has the opposite sign.  Returns ``(channels (C,), signs (C,), azimuths (E, A))``, all
    involutions: the responses to the mirrored scene are :meth:`Periphery.mirror` of the
    responses (channel ``c`` read from ``channels[c]`` times ``signs[c]``, cell ``(e, a)``
    from ``(e, azimuths[e, a])``); channel ``c = t * n_phase + phase`` as the bank is built.
    """
    T, Ph, E, A = cfg.n_theta, cfg.n_phase, cfg.n_eccentricity, cfg.n_azimuth
    t, ph = torch.arange(T).repeat_interleave(Ph), torch.arange(Ph).repeat(T)
    channels = ((T - t) % T) * Ph + ph
    signs = torch.where((ph == 1) & (t != 0), -1.0, 1.0)
    a = torch.arange(A)
    azimuths = torch.stack([(-a - (e % 2)) % A for e in range(E)])  # odd rings: offset by half a step
    return channels, signs, azimuths


def mirror_responses(responses: torch.Tensor, channels: torch.Tensor, signs: torch.Tensor,
                     azimuths: torch.Tensor) -> torch.Tensor:
    """(..., C, E, A) responses or (..., E, A) maps (then pass ``channels=None``) moved to
    the mirrored scene's layout by :func:`mirror_indices`' ``channels, signs, azimuths``."""
    x = responses if channels is None else responses.index_select(-3, channels) * signs[:, None, None]
    return x.gather(-1, azimuths.expand_as(x))


class Periphery(torch.nn.Module):
    """Log-polar log-Gabor responses around the fixation.

    ``Periphery(cfg, scene_size)(scenes, fixations) -> (B, n_theta*n_phase, n_ecc, n_azimuth)``.
    The scenes are whitened once (:meth:`whiten`), then each read takes the eye-centred
    window of the whitened scene (:func:`eye_window`), builds its box pyramid, and applies
    a fixed sparse operator: every filter reads ``kernel**2`` bilinear samples from the
    pyramid level matching its sample spacing (weights precomputed), dotted with the
    local kernels.  For ``B`` scenes that costs ``B * (window**2 + 4 * E * A * kernel**2)``
    reads instead of a dense ``B * 2880 * S**2`` product.
    """

    def __init__(self, cfg: PeripheryConfig, scene_size: int) -> None:
        super().__init__()
        self.cfg, self.scene_size = cfg, scene_size
        E, A, k = cfg.n_eccentricity, cfg.n_azimuth, cfg.kernel
        half_diag = scene_size / math.sqrt(2)
        radius = half_diag * cfg.ecc_max * cfg.rho ** (torch.arange(E, dtype=torch.float64) - E)  # (E,) px
        sf = torch.clamp(cfg.sf_scale / radius, max=cfg.sf_max)  # cycles/px
        spacing = _SF_LOCAL / sf  # px between samples
        level = torch.clamp(torch.floor(torch.log2(spacing)), min=0).long()  # pyramid level per ring
        psi = (2 * math.pi / A) * (torch.arange(A, dtype=torch.float64)[None, :]
                                   + 0.5 * (torch.arange(E)[:, None] % 2))  # (E, A), odd rings offset
        q = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
        qy, qx = torch.meshgrid(q, q, indexing="ij")
        qx, qy = qx.flatten(), qy.flatten()  # (k*k,) local frame, x radial
        cos, sin = torch.cos(psi)[..., None], torch.sin(psi)[..., None]
        d = spacing[:, None, None]
        px = radius[:, None, None] * cos + d * (qx * cos - qy * sin)  # (E, A, k*k) px from the eye, y down
        py = radius[:, None, None] * sin + d * (qx * sin + qy * cos)
        self.levels = int(level.max()) + 1
        step = 1 << (self.levels - 1)
        reach = float(torch.maximum(px.abs().max(), py.abs().max())) + step + 1
        self.window = int(math.ceil(2 * reach / step)) * step  # even, a multiple of the coarsest pixel
        # bilinear taps into the concatenated flat pyramid of the window
        sizes = [(self.window >> lv) ** 2 for lv in range(self.levels)]
        base = [sum(sizes[:lv]) for lv in range(self.levels)]
        lv = level[:, None, None].expand_as(px)
        scale = (2.0 ** lv.double())
        u = (px + self.window / 2) / scale - 0.5  # level-pixel index coordinates
        v = (py + self.window / 2) / scale - 0.5
        u0, v0 = torch.floor(u), torch.floor(v)
        fu, fv = u - u0, v - v0
        n = (self.window >> lv)
        taps, weights = [], []
        for du, dv, w in ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)), (0, 1, (1 - fu) * fv), (1, 1, fu * fv)):
            uu, vv = (u0 + du).long(), (v0 + dv).long()
            assert bool(((uu >= 0) & (uu < n) & (vv >= 0) & (vv < n)).all())
            taps.append(torch.tensor(base)[lv] + vv * n + uu)
            weights.append(w)
        self.register_buffer("taps", torch.stack(taps, 0).reshape(-1), persistent=False)  # (4*E*A*k*k,)
        self.register_buffer("tap_weights", torch.stack(weights, 0).reshape(4, E * A * k * k).float(),
                             persistent=False)
        self.register_buffer("kernels", _local_kernels(cfg), persistent=False)  # (k*k, C)
        self.register_buffer("whitening", self._whitening(scene_size), persistent=False)
        # the gain on rfft2's half spectrum, complex (a complex-by-complex product is the fast one)
        self.register_buffer("whitening_half", self.whitening[:, : scene_size // 2 + 1].to(torch.complex64),
                             persistent=False)
        self.radius_px = radius.to(torch.float32)  # (E,) ring radii
        self.azimuth = psi.to(torch.float32)  # (E, A) azimuths, radians, y down
        self.sf = sf.to(torch.float32)  # (E,) peak frequencies, cycles/px
        self._init_grid_read()

    @staticmethod
    def _whitening(n: int) -> torch.Tensor:
        """(n, n) spectrum gain flattening a 1/f image spectrum, low-passed near Nyquist."""
        f = torch.fft.fftfreq(n, dtype=torch.float64)
        fy, fx = torch.meshgrid(f, f, indexing="ij")
        fr = torch.sqrt(fx**2 + fy**2)
        gain = fr * torch.exp(-((fr / 0.4) ** 4)) / 0.1  # unit gain around 0.1 cycles/px
        return gain.to(torch.float32)

    def whiten(self, scenes: torch.Tensor, *, pad: float = 0.0) -> torch.Tensor:
        """(B, S, S) scenes -> (B, S, S) the image the filters read (zero outside the scene)."""
        x = scenes - pad
        if self.cfg.whiten:
            x = torch.fft.irfft2(torch.fft.rfft2(x) * self.whitening_half, s=x.shape[-2:])
        return x

    chunk = 4096  # scenes read at once; bounds the memory of a read to ~2 GB

    def read(self, whitened: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
        """(B, S, S) whitened scenes, (B, 2) fixations -> (B, C, E, A), C = n_theta * n_phase."""
        B = fixations.shape[0]
        if B > self.chunk:
            return torch.cat([self.read(w, f) for w, f in zip(whitened.split(self.chunk), fixations.split(self.chunk))])
        E, A = self.cfg.n_eccentricity, self.cfg.n_azimuth
        pyr = _box_pyramid(eye_window(whitened, fixations, size=self.window), self.levels)
        flat = torch.cat([p.reshape(B, -1) for p in pyr], 1)  # (B, N)
        samples = (flat.index_select(1, self.taps).view(B, 4, -1) * self.tap_weights).sum(1)  # (B, E*A*k*k)
        return (samples.view(B, E * A, -1) @ self.kernels).view(B, E, A, -1).permute(0, 3, 1, 2)

    def forward(self, scenes: torch.Tensor, fixations: torch.Tensor, *, pad: float = 0.0) -> torch.Tensor:
        return self.read(self.whiten(scenes, pad=pad), fixations)

    def mirror(self, responses: torch.Tensor) -> torch.Tensor:
        """(..., C, E, A) responses at a fixation -> those the same filters give on the scene
        mirrored top to bottom about the fixation's row, i.e. ``self(scenes.flip(-2),
        fixations * (1, -1))`` for fixations on the pixel grid (:func:`mirror_indices`; to
        about 0.3% of their norm: the sampled kernels are mirror images of each other only to
        their sampling)."""
        return mirror_responses(responses, *(x.to(responses.device) for x in mirror_indices(self.cfg)))

    # ------------------------------------------------------------------ pixel-grid fast path
    # Where the environment's eye lands (on the pixel grid) every tap of :meth:`read` sits at
    # a fixed offset from the fixation pixel, on a full-resolution (stride-1) box-filtered map
    # of the whitened scene.  :meth:`prepare` computes those maps once per scene (the same
    # additions, in the same order, as the pyramid of :meth:`read`); :meth:`read_prepared`
    # gathers the 3,600 distinct tap positions of a fixation through two precomputed index
    # tables and combines them with the same bilinear weights and kernels, without the
    # window copy and the pyramid of every read.
    chunk_prepared = 256  # rows combined at once by read_prepared (keeps its working set in cache)
    chunk_maps = 32  # rows prepared at once

    def _init_grid_read(self) -> None:
        S, W, L = self.scene_size, self.window, self.levels
        P = 1 << (L - 1)  # the maps' frame holds scene rows/columns -P .. S (zero outside the scene)
        side = S + P + 1
        self.map_shape = (L, side, side)
        sizes = torch.tensor([(W >> lv) ** 2 for lv in range(L)])
        base = torch.cumsum(sizes, 0) - sizes
        lv = torch.searchsorted(base, self.taps, right=True) - 1  # each tap's pyramid level
        loc, n = self.taps - base[lv], W >> lv
        ry = (loc // n) * (1 << lv) - W // 2  # its box's top-left, px from the fixation pixel
        rx = (loc % n) * (1 << lv) - W // 2
        key = (lv * (4 * W) + ry + 2 * W) * (4 * W) + rx + 2 * W
        uniq, inv = torch.unique(key, return_inverse=True)  # (U,) distinct positions, (4*E*A*k*k,)
        ulv, ury, urx = uniq // (16 * W * W), (uniq // (4 * W)) % (4 * W) - 2 * W, uniq % (4 * W) - 2 * W
        p = torch.arange(S + 1)[:, None]  # fixation pixel index (offset + S/2), 0..S
        rows = ulv * side * side + (p + ury + P).clamp(0, side - 1) * side  # (S+1, U)
        cols = (p + urx + P).clamp(0, side - 1)
        self.register_buffer("grid_rows", rows, persistent=False)
        self.register_buffer("grid_cols", cols, persistent=False)
        self.register_buffer("grid_taps", inv, persistent=False)  # (4*E*A*k*k,) like taps, into the U positions
        # batches: one bag of 4 bilinear taps per sample, bags ordered sample-major (s, e, a)
        E, A, kk = self.cfg.n_eccentricity, self.cfg.n_azimuth, self.cfg.kernel ** 2
        t = torch.arange(E * A * kk)
        order = torch.argsort((t % kk) * (E * A) + t // kk)  # filter-major sample index of each bag
        self.register_buffer("grid_bags", inv.view(4, -1)[:, order].T.contiguous(), persistent=False)  # (E*A*kk, 4)
        self.register_buffer("grid_bag_weights", self.tap_weights[:, order].T.contiguous(), persistent=False)
        self.register_buffer("kernels_t", self.kernels.T.contiguous(), persistent=False)  # (C, kk)

    def prepare(self, whitened: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S, S) whitened scenes -> (B, L, S+P+1, S+P+1) their box-filtered maps, P = 2**(L-1)
        (written into ``out`` when given).

        ``maps[b, lv, y + P, x + P]`` is the mean of the ``2**lv`` x ``2**lv`` block of the
        scene whose top-left pixel is (x, y), for x, y in -P..S (zero outside the scene).
        """
        B, S, _ = whitened.shape
        L, side = self.levels, self.map_shape[1]
        P = 1 << (L - 1)
        if out is None:
            out = torch.empty(B, L, side, side, dtype=whitened.dtype, device=whitened.device)
        for i in range(0, B, self.chunk_maps):
            x = F.pad(whitened[i:i + self.chunk_maps], (P, P, P, P))  # (b, S+2P, S+2P)
            out[i:i + self.chunk_maps, 0] = x[:, :side, :side]
            for lv in range(1, L):
                h = 1 << (lv - 1)
                m = x.shape[-1] - h
                a = x[:, :m] + x[:, h:]  # row pairs first, then columns: the order of _box_pyramid
                x = (a[:, :, :m] + a[:, :, h:]).mul_(0.25)
                out[i:i + self.chunk_maps, lv] = x[:, :side, :side]
        return out

    def on_grid(self, fixations: torch.Tensor) -> bool:
        """Whether :meth:`read_prepared` can read at these (B, 2) fixations: on the pixel grid
        (within 1e-4 px: ``round(x * S/2) / (S/2)`` in float32 is not always an exact
        multiple of a pixel), inside [-1, 1], and not requiring a gradient."""
        if fixations.requires_grad:
            return False
        h = self.scene_size / 2
        if fixations.shape[0] == 1:
            return all(abs(v * h - round(v * h)) <= 1e-4 and abs(v) <= 1 for v in fixations[0].tolist())
        off = fixations * h
        return bool(((off - off.round()).abs().max() <= 1e-4) and (off.abs() <= h).all())

    def read_prepared(self, maps: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
        """(B, L, S+P+1, S+P+1) maps of :meth:`prepare`, (B, 2) fixations on the pixel grid
        (see :meth:`on_grid`) -> (B, C, E, A), the values :meth:`read` gives there (one eye:
        the same products summed in the same order; a batch: to float rounding)."""
        B, S = fixations.shape[0], self.scene_size
        E, A = self.cfg.n_eccentricity, self.cfg.n_azimuth
        if B == 1:  # one eye: index_select, no batch axis
            x, y = (int(round(v * (S / 2))) + S // 2 for v in fixations[0].tolist())
            taps = maps.reshape(-1).take(self.grid_rows[y] + self.grid_cols[x])
            samples = (taps.index_select(0, self.grid_taps).view(4, -1) * self.tap_weights).sum(0)
            return torch.mm(samples.view(E * A, -1), self.kernels).view(1, E, A, -1).permute(0, 3, 1, 2)
        out = []
        for m, f in zip(maps.split(self.chunk_prepared), fixations.split(self.chunk_prepared)):
            b = f.shape[0]
            p = torch.round(f * (S / 2)).long() + S // 2
            taps = m.reshape(b, -1).gather(1, self.grid_rows[p[:, 1]] + self.grid_cols[p[:, 0]])  # (b, U)
            # each sample: a bag of its 4 taps (rows of taps.T, b values each) summed with their weights
            samples = F.embedding_bag(self.grid_bags, taps.T.contiguous(), per_sample_weights=self.grid_bag_weights,
                                      mode="sum")  # (kk * E * A, b)
            resp = torch.mm(self.kernels_t, samples.view(self.kernels_t.shape[1], -1))  # (C, E*A*b)
            out.append(resp.view(-1, E, A, b).permute(3, 0, 1, 2))
        return out[0] if len(out) == 1 else torch.cat(out)

    def bound(self) -> float:
        """An upper bound of |response| for scenes within ``pad`` +- 1: the L1 norm of the
        whitening kernel times the largest L1 norm of a local kernel (bilinear reads and
        pyramid averages never leave the range of their inputs)."""
        w = torch.fft.ifft2(self.whitening.double()).real.abs().sum().item() if self.cfg.whiten else 1.0
        return float(w * self.kernels.abs().sum(0).max().item())
