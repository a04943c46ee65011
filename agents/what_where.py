"""The What/Where greedy saccader of Daucé, Albiges & Perrinet (2020), J. Vision 20(8):22.

Two pathways share the eye:

- **What** reads the 28x28 fovea and names the digit (:class:`agents.nets.FovealClassifier`,
  trained by ``train/foveal.py`` on fovea crops at growing shifts from the digit, shipped as
  ``checkpoints/foveal.pt``);
- **Where** reads the log-polar periphery (B, 12, 10, 24) and predicts, for each of the
  10 x 24 cells of the *same* log-polar grid, the accuracy What would reach after a saccade
  to that cell (:class:`WhereNet`, trained by ``train/what_where.py``).

The greedy policy (:class:`WhatWhereAgent`): What's confidence (its max softmax probability)
is compared with the best predicted peripheral accuracy; the agent answers when the former
wins or when no saccade is left, else it saccades to the arg-max cell (relative to the
current fixation, clipped to where a digit's centre can be).  Options, off by default:
inhibition of return (cells landing near a past fixation are never chosen), evidence
accumulation (What's log-probabilities summed across fixations) and mirrored views (Where's
map averaged with its reading of the periphery mirrored top to bottom, mapped back).

Saccade targets are the centres of the periphery's own cells: ring radii and azimuths are
read from :class:`saccade_env.retina.Periphery` (:func:`saccade_grid`), so a cell of the
Where map and the periphery column that sees it are the same place.

Where targets (:func:`where_targets`): the What accuracy map ``acc(shift)`` (What's accuracy
as a function of the shift between fixation and digit centre, measured on a grid of shifts),
read at ``landing(cell) - digit centre`` for every cell; the landing is the saccade the policy
would make (rounded to the pixel grid and clipped exactly as the policy does).  The paper
pastes the map into the full field and integrates it over each cell's filter footprint;
we read it at the cell's centre, because that is where the saccade lands.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from saccade_env.retina import mirror_indices, mirror_responses
from saccade_env.scene import DIGIT

from .base import make_action, must_answer
from .checkpoint import CheckpointError, load_checkpoint

NAME = "what_where"
SCRIPT = "train/what_where.py"
GLIMPSE_SCRIPT = "train/what_where.py --arch glimpse"


# ---------------------------------------------------------------------------------------
# the log-polar grid of saccade targets, and the targets of Where
# ---------------------------------------------------------------------------------------
def saccade_grid(periphery) -> torch.Tensor:
    """(E, A, 2) pixel offsets (x right, y down) of the periphery's cell centres from the
    fixation: ring ``e`` at ``periphery.radius_px[e]``, azimuth ``periphery.azimuth[e, a]``."""
    r = periphery.radius_px.double()[:, None]
    psi = periphery.azimuth.double()
    return torch.stack([r * torch.cos(psi), r * torch.sin(psi)], -1).float()


def landings(fixation: torch.Tensor, grid: torch.Tensor, *, scene_size: int, reach: float) -> torch.Tensor:
    """Where each cell's saccade lands, in pixel offsets from the scene's centre.

    Args:
        fixation: (B, 2) scene coordinates of the eye.
        grid: (E, A, 2) cell offsets from the fixation, px (:func:`saccade_grid`).
        scene_size: side of the scene, px.
        reach: landings are clipped to ``[-reach, reach]`` px on each axis.

    Returns:
        (B, E, A, 2) float32 pixel offsets, rounded to the pixel grid as the env does.
    """
    fix_px = fixation.to(grid.dtype) * (scene_size / 2)
    return torch.round((fix_px[:, None, None, :] + grid.to(fix_px.device)).clamp(-reach, reach))


def lookup_accuracy(acc_map: torch.Tensor, shifts_px: torch.Tensor, *, spacing: float,
                    floor: float) -> torch.Tensor:
    """Bilinear read of an accuracy map at (..., 2) shifts (x, y) px -> (...).

    ``acc_map`` (M, M) is indexed ``[y, x]`` with its centre (shift 0) at index (M-1)/2 and
    ``spacing`` px between samples; shifts beyond the map read ``floor`` (What at chance)."""
    M = acc_map.shape[-1]
    half = (M - 1) / 2 * spacing
    g = (shifts_px / half).reshape(1, -1, 1, 2)  # grid_sample's [-1, 1], align_corners=True
    val = F.grid_sample((acc_map - floor)[None, None], g.to(acc_map.dtype), mode="bilinear",
                        padding_mode="zeros", align_corners=True)
    return (val.reshape(shifts_px.shape[:-1]) + floor)


def map_floor(acc_map: torch.Tensor) -> float:
    """What's accuracy far from any digit: the mean of the map's outermost samples."""
    edge = torch.cat([acc_map[0], acc_map[-1], acc_map[1:-1, 0], acc_map[1:-1, -1]])
    return float(edge.mean())


def where_targets(acc_map: torch.Tensor, offset: torch.Tensor, fixation: torch.Tensor, grid: torch.Tensor, *,
                  spacing: float, floor: float, scene_size: int, reach: float) -> torch.Tensor:
    """(B, E, A) the accuracy What would reach after a saccade to each cell.

    Args:
        acc_map: (M, M) What accuracy vs shift (fixation - digit centre), ``[y, x]``.
        offset: (B, 2) the digit's centre, px from the scene's centre.
        fixation: (B, 2) the eye, scene coordinates.
        grid: (E, A, 2) the saccade grid (:func:`saccade_grid`).
    """
    land = landings(fixation, grid, scene_size=scene_size, reach=reach)
    shifts = land - offset.to(land.dtype)[:, None, None, :]
    return lookup_accuracy(acc_map.to(land.device), shifts, spacing=spacing, floor=floor)


@torch.no_grad()
def what_accuracy_map(what: nn.Module, scenes: torch.Tensor, labels: torch.Tensor, offsets: torch.Tensor, *,
                      radius: int, spacing: int, pad: float, chunk: int = 2048) -> torch.Tensor:
    """What's accuracy as a function of the shift between fixation and digit centre.

    Args:
        what: fovea (B, 1, 28, 28) -> logits (B, 10).
        scenes: (N, S, S) scenes; labels: (N,); offsets: (N, 2) digit centres, px.
        radius, spacing: shifts from ``-radius`` to ``radius`` px every ``spacing`` px on each axis.
        pad: the scene's background level (outside the scene).

    Returns:
        (M, M) accuracy, indexed ``[y, x]``, M = 2 * radius // spacing + 1; every scene is
        read at every shift (the map's noise is the scenes', shared across shifts).
    """
    from saccade_env.retina import fovea

    N, S, _ = scenes.shape
    s = torch.arange(-radius, radius + 1, spacing, device=scenes.device, dtype=torch.float32)
    M = s.numel()
    sy, sx = torch.meshgrid(s, s, indexing="ij")
    shifts = torch.stack([sx.flatten(), sy.flatten()], 1)  # (M*M, 2) px, row-major [y, x]
    correct = torch.zeros(M * M, device=scenes.device)
    rows = torch.arange(N * M * M, device=scenes.device)
    for part in rows.split(chunk):
        i, k = part % N, part // N  # scene, shift
        fix = (offsets[i].float() + shifts[k]) * (2.0 / S)
        pred = what(fovea(scenes[i], fix, size=DIGIT, pad=pad)).argmax(-1)
        correct.index_add_(0, k, (pred == labels[i]).float())
    return (correct / N).view(M, M)


# ---------------------------------------------------------------------------------------
# the Where network
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WhereConfig:
    """Where's architecture.

    Attributes:
        arch: "conv" (default: convolutions on the periphery's (eccentricity, azimuth) grid,
            circular in azimuth, so a rotated scene gives the rotated map; few weights, learns
            from few scenes), "mlp" (the paper's fully connected 2880 -> hidden -> hidden -> 240
            on the periphery) or "glimpse" (not the paper's sensor: reads the env's multi-scale
            ``glimpse`` instead of the periphery; a small conv net per scale gives a heat map of
            What's accuracy over the patch, read at every cell's landing point, so a shifted
            scene gives the shifted map).
        channels, layers: the conv nets' width and depth (3x3 convolutions).
        hidden: the MLP's hidden width (the paper's 1000).
        glimpse_size, glimpse_scales: the glimpse "glimpse" reads (the env's ``glimpse_size``,
            ``glimpse_scales``): patch ``j`` covers ``glimpse_size * 2**j`` px.
    """

    arch: str = "conv"
    channels: int = 48
    layers: int = 5
    hidden: int = 1000
    glimpse_size: int = 16
    glimpse_scales: int = 4

    def __post_init__(self) -> None:
        if self.arch not in ("conv", "mlp", "glimpse"):
            raise ValueError(f"WhereConfig.arch must be 'conv', 'mlp' or 'glimpse', got {self.arch!r}")

    @property
    def sensor(self) -> str:
        """The observation Where reads: "periphery" or "glimpse"."""
        return "glimpse" if self.arch == "glimpse" else "periphery"


class WhereNet(nn.Module):
    """Periphery (B, C, E, A) (or, ``arch="glimpse"``, glimpse (B, k, g, g)) and fixation
    (B, 2) -> logits (B, E, A) of What's accuracy after a saccade to each cell (sigmoid them
    for probabilities); ``cfg.sensor`` names the observation.

    The input is normalised from data before training (:meth:`fit_input`): the periphery
    scaled per (channel, ring) by ``in_scale`` (ring responses differ ten-fold), a glimpse per
    scale, less its mean.  The conv net also gets, at each cell, where the saccade would land
    (x, y, normalised) and the ring's index: the only non-equivariant facts (clipping at the
    scene's edge, the cell's size).

    ``mirror``: the periphery's :func:`saccade_env.retina.mirror_indices`, for
    ``forward(..., mirrored=True)``."""

    def __init__(self, cfg: WhereConfig, *, grid: torch.Tensor, in_channels: int, scene_size: int,
                 reach: float, mirror: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__()
        E, A, _ = grid.shape
        self.cfg, self.scene_size, self.reach = cfg, scene_size, float(reach)
        self.register_buffer("grid", grid.clone())
        for name, value in zip(("mirror_channels", "mirror_signs", "mirror_azimuths"), mirror or (None,) * 3):
            self.register_buffer(name, value, persistent=False)  # rebuilt from the periphery, not saved
        if cfg.arch == "glimpse":
            k, w = cfg.glimpse_scales, cfg.channels
            self.register_buffer("in_scale", torch.ones(k, 1, 1))
            self.register_buffer("in_shift", torch.zeros(k, 1, 1))
            self.scale_nets = nn.ModuleList([nn.Sequential(
                *[m for i in range(cfg.layers) for m in (nn.Conv2d(1 if i == 0 else w, w, 3, padding=1), nn.ReLU())],
                nn.Conv2d(w, 1, 1)) for _ in range(k)])
            self.cell_bias = nn.Parameter(torch.zeros(E, A))
            return
        self.register_buffer("in_scale", torch.ones(in_channels, E))
        if cfg.arch == "conv":
            w, extra = cfg.channels, 3
            self.convs = nn.ModuleList([nn.Conv2d(in_channels + extra if i == 0 else w, w, 3, padding=(1, 0))
                                        for i in range(cfg.layers)])
            self.out = nn.Conv2d(w, 1, 1)
        else:
            n = in_channels * E * A
            self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(n + 2, cfg.hidden), nn.ReLU(),
                                     nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, E * A))

    def forward(self, periphery: torch.Tensor, fixation: torch.Tensor, *, mirrored: bool = False) -> torch.Tensor:
        """``mirrored=True``: Where's reading of the scene mirrored top to bottom about the
        fixation's row (the periphery as :meth:`saccade_env.retina.Periphery.mirror` gives it,
        the fixation's y negated), mapped back cell by cell: a second view of the same scene
        for a network that was not trained to be mirror-symmetric."""
        if mirrored:
            if self.mirror_azimuths is None:
                raise ValueError("this WhereNet was built without the periphery's mirror_indices; build it with "
                                 "build_where(...) to read mirrored views")
            x = mirror_responses(periphery, self.mirror_channels, self.mirror_signs, self.mirror_azimuths)
            out = self(x, fixation * fixation.new_tensor([1.0, -1.0]))
            return mirror_responses(out, None, None, self.mirror_azimuths)  # back to the scene's cells
        if self.cfg.arch == "glimpse":
            return self._glimpse_forward(periphery, fixation)
        B, _, E, A = periphery.shape
        x = periphery / self.in_scale[None, :, :, None]
        if self.cfg.arch == "mlp":
            return self.mlp(torch.cat([x.flatten(1), fixation], 1)).view(B, E, A)
        land = landings(fixation, self.grid, scene_size=self.scene_size, reach=self.reach) / self.reach
        ring = torch.linspace(-1, 1, E, device=x.device)[None, None, :, None].expand(B, 1, E, A)
        x = torch.cat([x, land.permute(0, 3, 1, 2), ring], 1)
        for conv in self.convs:
            x = F.relu(conv(F.pad(x, (1, 1, 0, 0), mode="circular")))  # circular in azimuth
        return self.out(x)[:, 0]

    def _glimpse_forward(self, glimpse: torch.Tensor, fixation: torch.Tensor) -> torch.Tensor:
        """Every scale's heat map, read bilinearly at each cell's landing point (its offset
        from the fixation, after clipping at the scene's edge), summed over the scales that
        cover it, plus a per-cell bias."""
        B, k, g, _ = glimpse.shape
        if k != self.cfg.glimpse_scales or g != self.cfg.glimpse_size:
            g0, k0 = self.cfg.glimpse_size, self.cfg.glimpse_scales
            raise ValueError(f"this Where reads a glimpse of {k0} scales of {g0}x{g0}, got {tuple(glimpse.shape[1:])}: "
                             f"build the env with glimpse_size={g0}, glimpse_scales={k0}")
        E, A, _ = self.grid.shape
        x = (glimpse - self.in_shift) / self.in_scale
        fix_px = fixation * (self.scene_size / 2)
        rel = landings(fixation, self.grid, scene_size=self.scene_size, reach=self.reach) - fix_px[:, None, None]
        out = self.cell_bias.expand(B, E, A)
        for j, net in enumerate(self.scale_nets):
            heat = net(x[:, j:j + 1])  # (B, 1, g, g)
            where_in_patch = rel / (g * 2 ** j / 2)  # -1..1 spans the patch
            out = out + F.grid_sample(heat, where_in_patch, align_corners=False)[:, 0]  # zero outside the patch
        return out

    @torch.no_grad()
    def fit_input(self, views: torch.Tensor) -> None:
        """Set the input normalisation from a sample of Where's observations (n, ...)."""
        v = views.float()
        if self.cfg.arch == "glimpse":
            self.in_shift.copy_(v.mean(dim=(0, 2, 3))[:, None, None])
            self.in_scale.copy_(v.std(dim=(0, 2, 3)).clamp_min(1e-6)[:, None, None])
        else:
            self.in_scale.copy_(v.std(dim=(0, 3)).clamp_min(1e-6))


# ---------------------------------------------------------------------------------------
# the greedy agent
# ---------------------------------------------------------------------------------------
class WhatWhereAgent:
    """The greedy What/Where saccader (agents/base.py protocol).

    Args:
        what: (B, 1, 28, 28) fovea -> (B, 10) logits (eval mode).
        where: a :class:`WhereNet`.
        inhibition_of_return: never choose a cell whose landing is within ``ior_radius`` px
            of a past (or the current) fixation.
        ior_radius: px.
        accumulate: sum What's log-probabilities over the fixations of an episode (the answer
            and the confidence come from the sum) instead of using the current fovea alone.
        mirror_views: Where's predicted accuracies averaged over the periphery and its mirror
            image (top to bottom about the fixation's row; :meth:`WhereNet.forward`): a
            second view of the scene, at twice Where's cost.
        stop_margin: answer when What's confidence + stop_margin >= the best peripheral
            predicted accuracy (0: the paper's rule).

    State: dict with ``evidence`` (B, 10) summed log-probs, ``past`` (B, T, 2) px fixations
    (NaN: unused), ``t`` the step count.
    """

    name = NAME
    sensors = ("fovea", "periphery")
    privileged = False

    def __init__(self, *, what: nn.Module, where: WhereNet, inhibition_of_return: bool = False,
                 ior_radius: float = 8.0, accumulate: bool = False, stop_margin: float = 0.0,
                 mirror_views: bool = False) -> None:
        self.what, self.where = what.eval(), where.eval()
        self.sensors = ("fovea", where.cfg.sensor)
        # the glimpse Where was trained on: make_env builds the env with it
        self.env_kwargs = ({"glimpse_size": where.cfg.glimpse_size, "glimpse_scales": where.cfg.glimpse_scales}
                           if where.cfg.sensor == "glimpse" else {})
        self.mirror_views = bool(mirror_views)
        if self.mirror_views and where.cfg.sensor != "periphery":
            raise ValueError(f"mirror_views=True reads the periphery's mirror image; this Where reads the "
                             f"{where.cfg.sensor}: pass mirror_views=False")
        if self.mirror_views and where.mirror_azimuths is None:
            raise ValueError("mirror_views=True needs a WhereNet built by build_where (it knows the periphery's "
                             "mirror); or pass mirror_views=False")
        self.inhibition_of_return, self.ior_radius = bool(inhibition_of_return), float(ior_radius)
        self.accumulate, self.stop_margin = bool(accumulate), float(stop_margin)
        self.scene_size = where.scene_size

    def reset(self, batch_size: int, device: torch.device) -> dict:
        return {"evidence": torch.zeros(batch_size, 10, device=device),
                "past": torch.empty(batch_size, 0, 2, device=device)}

    @torch.no_grad()
    def predicted_accuracy(self, periphery: torch.Tensor, fixation: torch.Tensor) -> torch.Tensor:
        """(B, E, A) Where's predicted What accuracy after a saccade to each cell, from what it
        reads (the periphery, or the glimpse for ``arch="glimpse"``)."""
        acc = torch.sigmoid(self.where(periphery, fixation))
        if self.mirror_views:
            acc = 0.5 * (acc + torch.sigmoid(self.where(periphery, fixation, mirrored=True)))
        return acc

    def act(self, obs: dict[str, torch.Tensor], state: dict, *, info: dict | None = None
            ) -> tuple[dict[str, torch.Tensor], dict]:
        with torch.no_grad():
            logp = F.log_softmax(self.what(obs["fovea"]), -1)  # (B, 10)
            evidence = state["evidence"] + logp if self.accumulate else logp
            post = F.softmax(evidence, -1)
            confidence, answer = post.max(-1)
            fix = obs["fixation"]
            fix_px = fix * (self.scene_size / 2)
            past = torch.cat([state["past"], fix_px[:, None]], 1)  # (B, T, 2)
            acc = self.predicted_accuracy(obs[self.where.cfg.sensor], fix)  # (B, E, A)
            land = landings(fix, self.where.grid, scene_size=self.scene_size, reach=self.where.reach)
            if self.inhibition_of_return:
                d = (land[:, :, :, None, :] - past[:, None, None, :, :]).norm(dim=-1)  # (B, E, A, T)
                acc = acc.masked_fill((d < self.ior_radius).any(-1), -1.0)
            best, idx = acc.flatten(1).max(-1)
            target = land.flatten(1, 2)[torch.arange(idx.shape[0], device=idx.device), idx]  # (B, 2) px
            look = (best > confidence + self.stop_margin) & ~must_answer(obs)
            action = make_action(saccade=target / (self.scene_size / 2), answer=answer, look=look)
        return action, {"evidence": evidence, "past": past}


# ---------------------------------------------------------------------------------------
# building and loading
# ---------------------------------------------------------------------------------------
def default_reach(scene_size: int) -> float:
    """px: the farthest a digit's centre can sit from the scene's centre on an axis."""
    return float(scene_size // 2 - DIGIT // 2)


def build_where(cfg: WhereConfig, *, periphery, scene_size: int) -> WhereNet:
    """A fresh :class:`WhereNet` on ``periphery``'s grid (its saccade targets, whichever
    sensor it reads)."""
    return WhereNet(cfg, grid=saccade_grid(periphery), in_channels=periphery.cfg.shape[0],
                    scene_size=scene_size, reach=default_reach(scene_size),
                    mirror=mirror_indices(periphery.cfg) if cfg.sensor == "periphery" else None)


# the sensor the Where of each shipped checkpoint reads (a file put in another's place is refused)
SENSORS = {NAME: "periphery", "what_where_glimpse": "glimpse"}


def load_agent(path=None, *, device: str | torch.device = "cpu", foveal_path=None, checkpoint: str = NAME,
               **options) -> WhatWhereAgent:
    """The shipped agent: Where from ``checkpoints/<checkpoint>.pt`` (default
    ``checkpoints/what_where.pt``; the glimpse-reading Where: ``checkpoint="what_where_glimpse"``)
    or ``path``, What from ``checkpoints/foveal.pt`` (or ``foveal_path``); ``options`` go to
    :class:`WhatWhereAgent`."""
    from saccade_env.retina import Periphery, PeripheryConfig

    from .baselines import load_foveal
    from .checkpoint import default_path

    script = {NAME: SCRIPT, "what_where_glimpse": GLIMPSE_SCRIPT}.get(checkpoint, SCRIPT)
    ckpt = load_checkpoint(path if path is not None else default_path(checkpoint), agent=NAME, script=script,
                           map_location=device)
    conf = ckpt["config"]
    where_cfg = WhereConfig(**conf["where"])
    expected = SENSORS.get(checkpoint)
    if path is None and expected is not None and where_cfg.sensor != expected:
        other = next(k for k, v in SENSORS.items() if v == where_cfg.sensor)
        raise CheckpointError(f"{default_path(checkpoint)} holds a Where that reads the {where_cfg.sensor} "
                              f"(arch {where_cfg.arch!r}), the file of {other}.pt, not a {checkpoint} Where (it reads "
                              f"the {expected}): restore the shipped file (git checkout -- checkpoints/{checkpoint}.pt) "
                              f"or train one with `python {script} --promote`")
    periphery = Periphery(PeripheryConfig(**conf["periphery"]), conf["scene_size"])
    where = build_where(where_cfg, periphery=periphery, scene_size=conf["scene_size"])
    where.load_state_dict(ckpt["weights"]["where"])
    what = load_foveal(foveal_path, device=device)
    return WhatWhereAgent(what=what, where=where.to(device), **options)


def checkpoint_config(where: WhereNet, periphery_cfg) -> dict:
    """What :func:`load_agent` needs to rebuild Where."""
    return {"where": asdict(where.cfg), "periphery": asdict(periphery_cfg), "scene_size": where.scene_size}
