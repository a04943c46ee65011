"""NeVA (Schwinn et al. 2022): scanpaths by sign-gradient descent through a differentiable fovea.

The foveation (:func:`foveate`) shows an image blurred everywhere except under a Gaussian
window at each fixation; a memory of past fixations decays by ``forgetting`` at each new
one (``M <- forgetting * M + g(f)``, sharpness ``clip(M, 0, 1)``).  The next fixation is
found by a few steps of sign-gradient descent of a FROZEN classifier's loss with respect
to the window's position, the target being the classifier's own prediction (never the
label), keeping the best position found (:meth:`NevaAgent.plan`).

Two variants act through the environment; they differ only in the image they plan on:

- ``"neva-privileged"``: the published algorithm, planning on the full sharp scene
  (``info["scene"]``, so it runs only with ``privileged=True``), target = the classifier's
  prediction on that sharp scene;
- ``"neva"`` (causal): plans on its own *reconstruction* of the scene (:func:`reconstruct`):
  the foveae it has received, pasted at their fixations, over a coarse image back-projected
  from its latest peripheral reading (the adjoint of the linear ``Periphery.read``, ring-weighted
  and un-whitened), target = the classifier's prediction on what it has seen.

Both (and the ``"neva-random"`` / ``"neva-oracle"`` comparison planners, same classifier,
same view) answer with the classifier on the *seen* view ``foveate(reconstruction, memory)``:
under the fixations it is exactly the scene; elsewhere only what the periphery conveyed.
The window is a Gaussian truncated (smoothly) to the 28x28 fovea, so nothing unseen is shown.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from saccade_env.retina import Periphery, PeripheryConfig
from saccade_env.core import EnvConfig
from saccade_env.scene import GREY, SceneConfig

from .base import make_action, must_answer
from .checkpoint import load_checkpoint

PLANNERS = {"neva": "causal", "neva-privileged": "privileged", "neva-random": "random",
            "neva-oracle": "oracle"}


@dataclass(frozen=True)
class NevaConfig:
    """The foveation and the optimiser.  Lengths in scene pixels, steps in scene coordinates.

    Attributes:
        scene_size: side of the scene (SaccadeMNIST-v0: 128); fovea: side of the fovea (28).
        background: grey level outside the scene (the env's ``pad``: 0.5 with noise).
        sigma, amplitude: the window ``clip(amplitude * exp(-d^2 / 2 sigma^2))``, cut
            (smoothly, over ``edge`` px) at the fovea's square.
        blur: std (px) of the Gaussian blur outside the windows.
        forgetting: memory decay per fixation (published example: 0.1).
        steps, lr: sign-gradient steps per start and their size (published: 20 steps of 0.1).
        ring, n_ring: extra starts on a ring of this radius around the centre (0: centre only).
        from_current: also start a descent at the current fixation, so that looking again
            where the eye already is (refreshing a fading memory of the digit) can win; without
            it, once the digit is fixated the loss is low everywhere near it and the next
            descents wander off while the memory of the digit decays.
        recon_gain, wiener: scale of the back-projected periphery and the un-whitening's
            regulariser.
        pool: the classifier reads the view average-pooled by this factor (CPU budget).
    """

    scene_size: int = SceneConfig().size
    fovea: int = EnvConfig.fovea_size
    background: float = GREY
    sigma: float = 8.0
    amplitude: float = 2.0
    edge: float = 0.5
    blur: float = 3.0
    forgetting: float = 0.5
    steps: int = 5
    lr: float = 0.0625
    ring: float = 0.375
    n_ring: int = 6
    from_current: bool = True
    recon_gain: float = 0.175
    wiener: float = 0.05
    pool: int = 2


# ---------------------------------------------------------------------------------------
# foveation: pure batched functions
# ---------------------------------------------------------------------------------------
def pixel_centres(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(size,) pixel centres as offsets (px) from the scene's centre."""
    return torch.arange(size, device=device, dtype=torch.float32) + 0.5 - size / 2


def window(fixations: torch.Tensor, cfg: NevaConfig) -> torch.Tensor:
    """The sharpness window of each fixation: (..., 2) scene coordinates -> (..., S, S) in [0, 1].

    ``clip(a * exp(-d^2 / 2 sigma^2)) * box``, box a smooth step at the fovea's edge; it is
    differentiable in the fixation.
    """
    S = cfg.scene_size
    c = pixel_centres(S, fixations.device)
    off = fixations * (S / 2)  # (..., 2) px
    dx = c - off[..., 0:1]  # (..., S) along x
    dy = c - off[..., 1:2]
    half = cfg.fovea / 2
    gx = torch.exp(-dx**2 / (2 * cfg.sigma**2)) * torch.sigmoid((half - dx.abs()) / cfg.edge)
    gy = torch.exp(-dy**2 / (2 * cfg.sigma**2)) * torch.sigmoid((half - dy.abs()) / cfg.edge)
    return (cfg.amplitude * gy[..., :, None] * gx[..., None, :]).clamp(max=1.0)


def memory(fixations: torch.Tensor, cfg: NevaConfig, forgetting: torch.Tensor | float | None = None
           ) -> torch.Tensor:
    """The memory after fixations (B, T, 2) in order: ``sum_j forgetting^(T-1-j) g(f_j)``, (B, S, S).

    ``forgetting``: a float or (B,) per row (default ``cfg.forgetting``).  NaN rows of
    ``fixations`` (no fixation) count as absent: ages count present fixations only.
    """
    B, T, _ = fixations.shape
    phi = torch.as_tensor(cfg.forgetting if forgetting is None else forgetting, dtype=torch.float32,
                          device=fixations.device).expand(B)
    present = ~torch.isnan(fixations[..., 0])  # (B, T)
    age = (present.sum(1, keepdim=True) - present.cumsum(1)).float()  # present fixations since
    w = phi[:, None] ** age * present  # (B, T)
    g = window(torch.nan_to_num(fixations), cfg)  # (B, T, S, S)
    return (w[..., None, None] * g).sum(1)


def gaussian_blur(images: torch.Tensor, sigma: float, *, background: float = GREY) -> torch.Tensor:
    """(B, S, S) -> (B, S, S) Gaussian blur (std ``sigma`` px), by FFT of ``images - background``
    (so the edges wrap only where the display is background: SaccadeMNIST's disc mask)."""
    S = images.shape[-1]
    f = torch.fft.fftfreq(S, device=images.device)
    fr = torch.fft.rfftfreq(S, device=images.device)
    gain = torch.exp(-2 * (math.pi * sigma) ** 2 * (f[:, None] ** 2 + fr[None, :] ** 2))
    return torch.fft.irfft2(torch.fft.rfft2(images - background) * gain, s=(S, S)) + background


def foveate(image: torch.Tensor, sharpness: torch.Tensor, blurred: torch.Tensor) -> torch.Tensor:
    """NeVA's view: ``blurred + clip(sharpness) * (image - blurred)``; all (B, S, S)."""
    return blurred + sharpness.clamp(0.0, 1.0) * (image - blurred)


# ---------------------------------------------------------------------------------------
# the causal agent's reconstruction: pasted foveae over a back-projected periphery
# ---------------------------------------------------------------------------------------
def paste(canvas: torch.Tensor, seen: torch.Tensor, foveae: torch.Tensor, fixations: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste (B, 1, F, F) foveae at (B, 2) fixations (on the pixel grid, as the env's eye)
    into (B, S, S) canvas and seen mask; returns new tensors."""
    B, S, _ = canvas.shape
    Fz = foveae.shape[-1]
    top = torch.round(fixations * (S / 2)).long() + (S // 2 - Fz // 2) + Fz  # (B, 2) in the padded frame
    ar = torch.arange(Fz, device=canvas.device)
    cols = (top[:, 0:1] + ar)[:, None, :].expand(B, Fz, Fz)
    rows = (top[:, 1:2] + ar)[:, :, None].expand(B, Fz, Fz)
    b = torch.arange(B, device=canvas.device)[:, None, None].expand(B, Fz, Fz)
    big = F.pad(canvas, (Fz, Fz, Fz, Fz))
    bigseen = F.pad(seen, (Fz, Fz, Fz, Fz))
    big = big.index_put((b, rows, cols), foveae[:, 0])
    bigseen = bigseen.index_put((b, rows, cols), torch.ones_like(foveae[:, 0], dtype=torch.bool))
    return big[:, Fz:Fz + S, Fz:Fz + S], bigseen[:, Fz:Fz + S, Fz:Fz + S]


class BackProjector(nn.Module):
    """A coarse image from peripheral readings: the adjoint of the (linear) ``Periphery.read``
    applied to ring-weighted responses (weight = squared sample spacing, so every ring
    spreads the same energy per pixel), then un-whitened by a Wiener filter.

    ``forward(readings (B, C, E, A), fixations (B, 2)) -> (B, S, S)`` zero-mean image.
    """

    def __init__(self, cfg: NevaConfig, periphery: PeripheryConfig = PeripheryConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.periphery = Periphery(periphery, cfg.scene_size)
        spacing = 0.25 / self.periphery.sf  # (E,) px between a filter's samples
        self.register_buffer("ring_weight", (spacing**2)[None, None, :, None], persistent=False)
        g = self.periphery.whitening[:, : cfg.scene_size // 2 + 1]
        self.register_buffer("unwhiten", g / (g**2 + cfg.wiener), persistent=False)

    def forward(self, readings: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
        S = self.cfg.scene_size
        with torch.enable_grad():
            w = torch.zeros(readings.shape[0], S, S, device=readings.device, requires_grad=True)
            out = self.periphery.read(w, fixations.detach())
            (bp,) = torch.autograd.grad((out * (readings.detach() * self.ring_weight)).sum(), w)
        return torch.fft.irfft2(torch.fft.rfft2(bp) * self.unwhiten, s=(S, S)) * self.cfg.recon_gain


def reconstruct(canvas: torch.Tensor, seen: torch.Tensor, backprojected: torch.Tensor, cfg: NevaConfig
                ) -> torch.Tensor:
    """The agent's image of the scene, (B, S, S): the pixels of the foveae where seen, else the
    background plus the back-projection of the latest peripheral reading (it covers the whole
    display; one back-projection per saccade keeps training affordable on CPU)."""
    return torch.where(seen, canvas, (cfg.background + backprojected).clamp(0.0, 1.0))


# ---------------------------------------------------------------------------------------
# the frozen downstream classifier
# ---------------------------------------------------------------------------------------
class ViewClassifier(nn.Module):
    """CNN of a foveated scene: ``forward(view (B, S, S) in [0, 1]) -> logits (B, 10)``.

    The view is average-pooled by ``pool`` first (128 -> 64 on SaccadeMNIST-v0: CPU budget);
    a global max pool makes it indifferent to where the digit is.
    """

    def __init__(self, *, width: int = 16, pool: int = 2) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int, k: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.pool = pool
        self.net = nn.Sequential(
            *block(1, w, 5), nn.MaxPool2d(2),              # S/(2 pool): strokes stay >= 1 px before it
            *block(w, 2 * w, 3), nn.MaxPool2d(2),
            *block(2 * w, 4 * w, 3), nn.MaxPool2d(2),
            *block(4 * w, 4 * w, 3),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * w, 10))
        self.config = {"width": width, "pool": pool}

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        x = view[:, None] - 0.5
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        return self.net(x * 4.0)


# ---------------------------------------------------------------------------------------
# the agent
# ---------------------------------------------------------------------------------------
class NevaAgent:
    """NeVA acting in SaccadeMNIST: see the module docstring.

    Args:
        classifier: the frozen :class:`ViewClassifier` (train/neva.py).
        config: foveation and optimiser (:class:`NevaConfig`).
        planner: "causal" (name "neva"), "privileged" ("neva-privileged"), or the comparison
            planners "random" ("neva-random": uniform saccade targets) and "oracle"
            ("neva-oracle", privileged: straight to ``info["target_xy"]``).
        periphery: the env's periphery configuration (for the back-projection).

    State (dict of (B, ...) tensors): ``canvas``, ``seen`` (B, S, S) the foveae received;
    ``memory`` (B, S, S) NeVA's decaying sharpness memory.
    """

    sensors = ("fovea", "periphery")

    def __init__(self, *, classifier: ViewClassifier, config: NevaConfig = NevaConfig(), planner: str = "causal",
                 periphery: PeripheryConfig = PeripheryConfig()) -> None:
        names = {v: k for k, v in PLANNERS.items()}
        if planner not in names:
            raise ValueError(f"planner must be one of {sorted(names)}, got {planner!r}")
        self.cfg, self.planner, self.name = config, planner, names[planner]
        self.privileged = planner in ("privileged", "oracle")
        self.classifier = classifier.eval().requires_grad_(False)
        self.backproject = BackProjector(config, periphery)
        self.device = next(classifier.parameters()).device
        self.backproject.to(self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(0)
        self.grad_passes = 0  # classifier backward passes (one per start and step) since the last seed

    def seed(self, seed: int) -> None:
        self.gen.manual_seed(int(seed))
        self.grad_passes = 0

    def reset(self, batch_size: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        device = torch.device(device)
        if device != self.device:
            raise ValueError(f"the NeVA agent lives on {self.device}, the env on {device}: load it with "
                             f"load_agent(device={str(device)!r})")
        S = self.cfg.scene_size
        return {"canvas": torch.zeros(batch_size, S, S, device=device),
                "seen": torch.zeros(batch_size, S, S, dtype=torch.bool, device=device),
                "memory": torch.zeros(batch_size, S, S, device=device)}

    def view(self, image: torch.Tensor, sharpness: torch.Tensor) -> torch.Tensor:
        """NeVA's foveation of (B, S, S) ``image`` with (B, S, S) sharpness -> (B, S, S)."""
        return foveate(image, sharpness, gaussian_blur(image, self.cfg.blur, background=self.cfg.background))

    def act(self, obs: dict[str, torch.Tensor], state: dict[str, torch.Tensor], *, info: dict | None = None
            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        cfg, fix = self.cfg, obs["fixation"]
        with torch.no_grad():
            canvas, seen = paste(state["canvas"], state["seen"], obs["fovea"], fix)
            mem = cfg.forgetting * state["memory"] + window(fix, cfg)
            recon = reconstruct(canvas, seen, self.backproject(obs["periphery"], fix), cfg)
            logits = self.classifier(self.view(recon, mem))
        answer = logits.argmax(1)
        look = ~must_answer(obs)
        saccade = fix
        if bool(look.any()):
            saccade = self.next_fixation(recon=recon, memory=mem, answer=answer, info=info, current=fix)
        return make_action(saccade=saccade, answer=answer, look=look), {"canvas": canvas, "seen": seen, "memory": mem}

    def next_fixation(self, *, recon: torch.Tensor, memory: torch.Tensor, answer: torch.Tensor,
                      info: dict | None, current: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 2) the next saccade target of this agent's planner (``current``: (B, 2) the fixation now)."""
        B, dev = recon.shape[0], recon.device
        if self.planner == "random":
            return torch.rand(B, 2, generator=self.gen, device=dev) * 2 - 1
        if self.planner in ("privileged", "oracle") and (info is None or "scene" not in info):
            raise ValueError(f"{self.name} is privileged: run it on an env made with privileged=True "
                             f"(agents.rollout.make_env does)")
        if self.planner == "oracle":
            return info["target_xy"].to(dev)
        if self.planner == "privileged":  # published: the sharp scene, target = prediction on it
            image = info["scene"].to(dev)
            with torch.no_grad():
                target = self.classifier(image).argmax(1)
        else:  # causal: what it has seen, target = its current answer
            image, target = recon, answer
        return self.plan(image, memory, target, current=current)

    def starts(self, B: int, device: torch.device, current: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, 2) where the descents start: the centre (published), ``n_ring`` on a ring, and
        with ``from_current`` the (B, 2) ``current`` fixation."""
        a = 2 * math.pi * torch.arange(self.cfg.n_ring, device=device) / max(self.cfg.n_ring, 1)
        ring = self.cfg.ring * torch.stack([torch.cos(a), torch.sin(a)], 1)
        fixed = torch.cat([torch.zeros(1, 2, device=device), ring])[None].expand(B, -1, -1)
        if self.cfg.from_current and current is not None:
            return torch.cat([fixed, current.to(device)[:, None]], 1)
        return fixed

    def plan(self, image: torch.Tensor, memory: torch.Tensor, target: torch.Tensor,
             current: torch.Tensor | None = None) -> torch.Tensor:
        """Sign-gradient descent of the classifier's loss in the next fixation.

        Args:
            image: (B, S, S) what is foveated (the sharp scene or the reconstruction).
            memory: (B, S, S) sharpness memory including the current fixation.
            target: (B,) int64 the class whose loss is minimised (a prediction, never a label).
            current: (B, 2) the fixation now (one more start with ``from_current``).

        Returns:
            (B, 2) the best position found over ``steps`` steps from every start (the loss is
            evaluated *before* each step, so the kept position is the one that had that loss).
        """
        cfg = self.cfg
        B, S = image.shape[0], cfg.scene_size
        blurred = gaussian_blur(image, cfg.blur, background=cfg.background)
        base = cfg.forgetting * memory
        pos = self.starts(B, image.device, current).clone()
        K = pos.shape[1]
        best_loss = torch.full((B, K), float("inf"), device=image.device)
        best_pos = pos.clone()
        tk = target.repeat_interleave(K)
        with torch.enable_grad():
            for step in range(cfg.steps + 1):
                pos.requires_grad_(True)
                sharp = base[:, None] + window(pos, cfg)  # (B, K, S, S)
                view = foveate(image[:, None], sharp, blurred[:, None]).reshape(B * K, S, S)
                loss = F.cross_entropy(self.classifier(view), tk, reduction="none").view(B, K)
                better = loss.detach() < best_loss
                best_loss = torch.where(better, loss.detach(), best_loss)
                best_pos = torch.where(better[..., None], pos.detach(), best_pos)
                if step == cfg.steps:
                    break
                (grad,) = torch.autograd.grad(loss.sum(), pos)
                self.grad_passes += 1
                jitter = (torch.rand(pos.shape, generator=self.gen, device=pos.device) - 0.5) * cfg.lr
                pos = (pos.detach() - cfg.lr * torch.sign(grad) + jitter * (~better)[..., None]).clamp(-1, 1)
        pick = best_loss.argmin(1)
        return best_pos[torch.arange(B, device=image.device), pick]


def load_agent(path=None, *, device: str | torch.device = "cpu", variant: str = "neva", **options) -> NevaAgent:
    """The NeVA agent from checkpoints/neva.pt (written by train/neva.py).

    ``variant``: "neva" (causal), "neva-privileged", "neva-random" or "neva-oracle" (all share
    the classifier); ``options`` override :class:`NevaConfig` fields (e.g. ``steps=10``).
    """
    if variant not in PLANNERS:
        raise ValueError(f"variant must be one of {sorted(PLANNERS)}, got {variant!r}")
    ckpt = load_checkpoint(path, agent="neva", script="train/neva.py", map_location=device)
    cfg = NevaConfig(**{**ckpt["config"]["neva"], **options})
    clf = ViewClassifier(**ckpt["config"]["classifier"])
    clf.load_state_dict(ckpt["weights"]["classifier"])
    return NevaAgent(classifier=clf.to(device), config=cfg, planner=PLANNERS[variant])
