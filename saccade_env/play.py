"""Play SaccadeMNIST yourself, through the agents' eye: a human baseline.

    python -m saccade_env.play --participant p01 --budget 3 --episodes 40
    python -m saccade_env.play --screenshot docs/human_screen.png --overwrite   # the docs' picture, offscreen

A window (OpenCV HighGUI) shows only what the retina shows (:class:`HumanEye`): the sharp
fovea at the fixation and, around it, the periphery, drawn as the scene low-passed at each
eccentricity to the periphery's own resolution there (its log-Gabor filters' peak frequency,
ring by ring) and fading out beyond its outermost ring; RAM's glimpse, where the preset has
one, as its nested patches.  A click sends a saccade there, keys 0-9 answer, q or Esc stops.
Each finished episode is appended to a recording (:mod:`saccade_env.recording`), which
:func:`saccade_env.recording.replay` replays exactly and ``eval/compare_agents.py --human``
scores beside the agents.

Episode ``j`` is the env's reset with seed ``--seed + j`` on the test split at
``max_saccades = --budget``: the episode ``j`` that ``eval/compare_agents.py --seed`` plays
with every agent, so people and agents see the same scenes.

The loop reads its input from an :class:`EventSource`: :class:`WindowEvents` (the window) or
:class:`ScriptedEvents` (a list of clicks and keys, for tests and offscreen pictures).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import cv2
import numpy as np
import torch

from . import __version__, rng
from .core import LOOK
from .env import SaccadeMNISTEnv
from .presets import PRESETS
from .recording import Episode, Header, RecordingWriter, config_to_json, digest, now_iso
from .render import BACKGROUND, CAPTION, FOVEA_BOX, GAP, TEXT, TRAIL, _grey

TITLE = "SaccadeMNIST - which digit is it?"
INSTRUCTIONS = "click: look there    keys 0-9: answer    q or Esc: stop (finished episodes are saved)"
HINT = "sharp inside the yellow box (the fovea); blurred around it (the periphery)"
GLIMPSE_HINT = "finest inside the yellow box; coarser patches around it (the glimpse)"
NO_SACCADE_LEFT = "no saccade left: answer with a key 0-9"
_FONT, _FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45
REFERENCE_SCENES = 16  # scenes that set the periphery view's contrast gains
MAX_GAIN = 3.0  # the largest of those gains
_PARTICIPANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class PlayConfig:
    """Play SaccadeMNIST through the agents' eye, and record it.

    Attributes:
        env: the preset played.
        budget: saccades per episode (the env's ``max_saccades``); None: the preset's.
        contrast: the digit's contrast; None: the preset's.
        episodes: episodes in the recording.
        seed: episode j is reset with seed ``seed + j`` (compare_agents' episodes at its --seed).
        participant: who plays (a pseudonym: letters, digits, ``_ . -``).
        split: the digits shown ("test": the agents' test episodes; "train" for practice).
        out: the recording's path (default: runs/human/<participant>-k<budget>-seed<seed>-<date-time>.jsonl).
        overwrite: replace an existing ``out``.
        scale: screen pixels per scene pixel.
        screenshot: write a PNG of the window (after one saccade) to this path, offscreen, and play nothing.
    """

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "the preset played"})
    budget: int | None = field(default=None, metadata={"help": "saccades per episode (default: the preset's "
                                                                "max_saccades)"})
    contrast: float | None = field(default=None, metadata={"help": "the digit's contrast (default: the preset's)"})
    episodes: int = field(default=40, metadata={"help": "episodes to play"})
    seed: int = field(default=0, metadata={"help": "episode j is reset with seed + j (the episodes "
                                                   "compare_agents plays at this --seed)"})
    participant: str = field(default="anonymous", metadata={"help": "who plays: a pseudonym (letters, digits, "
                                                                    "_ . -); compare_agents counts distinct ids"})
    split: str = field(default="test", metadata={"help": "test (the agents' episodes) or train (practice)"})
    out: str = field(default="", metadata={"help": "the recording (default: runs/human/<participant>-k<budget>-"
                                                   "seed<seed>-<date-time>.jsonl)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out"})
    scale: int = field(default=4, metadata={"help": "screen pixels per scene pixel"})
    screenshot: str = field(default="", metadata={"help": "write a PNG of the window after one saccade to this "
                                                          "path (offscreen) and play nothing"})

    def __post_init__(self) -> None:
        ids = [p.id for p in PRESETS]
        if self.env not in ids:
            raise ValueError(f"--env {self.env!r} is not a preset; choose one of {', '.join(ids)}")
        ints = {"episodes": 1, "seed": 0, "scale": 1} | ({"budget": 0} if self.budget is not None else {})
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"--{name} must be an integer >= {low}, got {v!r}")
        if self.scale > 16:
            raise ValueError(f"--scale must be at most 16 screen pixels per scene pixel, got {self.scale}")
        if self.contrast is not None and not (isinstance(self.contrast, (int, float)) and 0 <= self.contrast <= 1):
            raise ValueError(f"--contrast must be a number in [0, 1], got {self.contrast!r}")
        if not _PARTICIPANT.fullmatch(self.participant):
            raise ValueError(f"--participant {self.participant!r}: use a pseudonym of 1-64 letters, digits, "
                             f"'_', '.' or '-' (starting with a letter or digit), e.g. p01")
        if self.split not in ("test", "train"):
            raise ValueError(f"--split must be 'test' (the agents' episodes) or 'train' (practice), got {self.split!r}")


def env_kwargs(cfg: PlayConfig) -> dict:
    """The keyword arguments of the played environment: the preset's, with the budget, contrast and split."""
    kw = dict({p.id: p for p in PRESETS}[cfg.env].kwargs, split=cfg.split)
    if cfg.budget is not None:
        kw["max_saccades"] = cfg.budget
    if cfg.contrast is not None:
        kw["contrast"] = float(cfg.contrast)
    return kw


# --------------------------------------------------------------------------- what a person sees
class HumanEye:
    """What the retina of an environment shows, as an image a person can look at.

    - fovea (when a sensor): its observation, pasted at the fixation (the scene's own pixels);
    - periphery (when a sensor): the scene minus the background level, low-passed by a
      Gaussian whose half-amplitude frequency is the periphery's peak frequency at that
      eccentricity (``sigma = sqrt(ln 2 / 2) / (pi * sf)`` px, ``sf`` of each ring,
      interpolated between rings in log radius; rings nearer than the first use the first),
      each ring's blur scaled by a fixed contrast gain (the standard deviation of
      :data:`REFERENCE_SCENES` scenes of the config over that of their blur, at most
      :data:`MAX_GAIN`: the periphery's unit-norm filters on the whitened scene answer with
      the same contrast at every eccentricity, where a plain blur fades), fading linearly to
      the background from the outermost ring's radius to its outer edge (``radius *
      sqrt(rho)``), background beyond;
    - glimpse (when a sensor): its patches, the coarsest first, each upscaled to the pixels
      it covers (patch j: ``2**j`` scene pixels per sample);
    - the background level everywhere else.

    Args:
        env: the environment (its config and periphery give the geometry).
    """

    def __init__(self, env: SaccadeMNISTEnv) -> None:
        cfg = env.cfg
        self.cfg, self.size, self.background = cfg, cfg.scene.size, float(cfg.scene.background)
        per = env.core.periphery
        if per is not None:
            self.radius = per.radius_px.double().numpy()  # (E,) px
            self.sigma = math.sqrt(math.log(2) / 2) / (math.pi * per.sf.double().numpy())  # (E,) px
            self.reach = float(self.radius[-1] * math.sqrt(cfg.periphery.rho))
            self.gain = self._gains(env)
        else:
            self.radius = self.sigma = self.gain = None
        S = self.size
        self._yx = np.mgrid[0:S, 0:S].astype(np.float64) + 0.5  # pixel centres (row, col)

    def _gains(self, env: SaccadeMNISTEnv) -> np.ndarray:
        """(E,) each ring's contrast gain, from scenes drawn with stream keys 0..REFERENCE_SCENES-1
        (the env's own streams are untouched)."""
        sampler, n = env.core.sampler, REFERENCE_SCENES
        keys = torch.arange(n, dtype=torch.int64)
        scenes = sampler.sample(rng.uniforms(keys, torch.zeros_like(keys), sampler.n_uniforms)).scene
        ref = (scenes.cpu().numpy() - self.background).astype(np.float32)
        raw = float(ref.std())
        blurred = np.array([[cv2.GaussianBlur(r, (0, 0), float(s), borderType=cv2.BORDER_CONSTANT).std()
                             for s in self.sigma] for r in ref]).mean(0)
        return np.clip(raw / np.maximum(blurred, 1e-12), 1.0, MAX_GAIN) if raw > 0 else np.ones(len(self.sigma))

    def fixation_px(self, fixation: np.ndarray) -> tuple[int, int]:
        """(x, y) scene coordinates on the pixel grid -> the fixation's (column, row) pixel corner."""
        half = self.size / 2
        return int(round(float(fixation[0]) * half + half)), int(round(float(fixation[1]) * half + half))

    def view(self, scene: np.ndarray, obs: dict[str, np.ndarray]) -> np.ndarray:
        """(S, S) float64 in [0, 1]: the scene as the eye at ``obs["fixation"]`` shows it.

        Args:
            scene: (S, S) the sharp scene (used only through the periphery's blur).
            obs: the observation at that fixation (its fovea and glimpse are pasted as they are).
        """
        S, bg = self.size, self.background
        cx, cy = self.fixation_px(obs["fixation"])
        out = np.full((S, S), bg, np.float64)
        if self.radius is not None and "periphery" in obs:
            out = self._periphery(np.asarray(scene, np.float64), cx, cy)
        if "glimpse" in obs:
            g = np.asarray(obs["glimpse"], np.float64)
            for j in reversed(range(g.shape[0])):
                f = 1 << j
                patch = np.repeat(np.repeat(g[j], f, 0), f, 1)
                _paste(out, patch, cx - patch.shape[1] // 2, cy - patch.shape[0] // 2)
        if "fovea" in obs:
            fv = np.asarray(obs["fovea"], np.float64)[0]
            _paste(out, fv, cx - fv.shape[1] // 2, cy - fv.shape[0] // 2)
        return out

    def _periphery(self, scene: np.ndarray, cx: int, cy: int) -> np.ndarray:
        bg = self.background
        zero_mean = (scene - bg).astype(np.float32)
        levels = np.stack([g * cv2.GaussianBlur(zero_mean, (0, 0), float(s), borderType=cv2.BORDER_CONSTANT)
                           for s, g in zip(self.sigma, self.gain)]).astype(np.float64)  # (E, S, S)
        d = np.hypot(self._yx[1] - cx, self._yx[0] - cy)
        pos = np.interp(np.log(np.maximum(d, self.radius[0])), np.log(self.radius), np.arange(len(self.radius)))
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, len(self.radius) - 1)
        w = pos - lo
        rows, cols = np.indices(d.shape)
        blend = (1 - w) * levels[lo, rows, cols] + w * levels[hi, rows, cols]
        fade = np.clip((self.reach - d) / (self.reach - self.radius[-1]), 0.0, 1.0)
        return np.clip(bg + fade * blend, 0.0, 1.0)


def _paste(out: np.ndarray, patch: np.ndarray, left: int, top: int) -> None:
    """Write ``patch`` into ``out`` with its top-left pixel at (left, top), cropped to ``out``."""
    h, w = patch.shape
    S0, S1 = out.shape
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, S0), min(left + w, S1)
    if t1 > t0 and l1 > l0:
        out[t0:t1, l0:l1] = patch[t0 - top:t1 - top, l0 - left:l1 - left]


@dataclass(frozen=True)
class Layout:
    """Where the view lies in the window's frame: its top-left (column, row), pixels per scene pixel, scene size."""

    left: int
    top: int
    scale: int
    size: int

    @classmethod
    def of(cls, *, size: int, scale: int, lines: int = 2) -> "Layout":
        """The layout of :func:`play_frame` for an (size, size) view with ``lines`` text lines above it."""
        return cls(left=GAP, top=GAP + CAPTION * lines, scale=scale, size=size)

    def to_scene(self, col: int, row: int) -> tuple[float, float] | None:
        """A click on frame pixel (col, row) -> the saccade target: the pixel-grid point (scene
        coordinates) nearest to the click, or None off the view."""
        u, v = (col + 0.5 - self.left) / self.scale, (row + 0.5 - self.top) / self.scale
        if not (0 <= u < self.size and 0 <= v < self.size):
            return None
        half = self.size // 2
        return math.floor(u - half + 0.5) / half, math.floor(v - half + 0.5) / half

    def to_frame(self, xy: Sequence[float]) -> tuple[int, int]:
        """Scene coordinates on the pixel grid -> a frame pixel whose click targets them (:meth:`to_scene`)."""
        half = self.size // 2
        col = self.left + int(round((float(xy[0]) + 1) * half)) * self.scale
        row = self.top + int(round((float(xy[1]) + 1) * half)) * self.scale
        return min(col, self.left + self.size * self.scale - 1), min(row, self.top + self.size * self.scale - 1)


def play_frame(view: np.ndarray, *, box: tuple[int, int, int] | None, lines: Sequence[str], hint: str,
               hint_alert: bool = False, scale: int) -> tuple[np.ndarray, Layout]:
    """The window's frame: (H, W, 3) uint8 RGB, text lines above the view, a hint below.

    Args:
        view: (S, S) float in [0, 1], :meth:`HumanEye.view`.
        box: (column, row, side) in scene pixels of the sharp region (the fovea), outlined just
            outside it (its own pixels are left as they are), or None.
        lines: text lines above the view; hint: one line below it (red when ``hint_alert``).
        scale: screen pixels per scene pixel (nearest neighbour).

    Returns:
        the frame, and the view's :class:`Layout` in it (to read clicks).
    """
    S = view.shape[0]
    img = _grey(view, scale)
    if box is not None:
        c, r, side = box
        x0, y0 = (c - side // 2) * scale - 1, (r - side // 2) * scale - 1
        x1, y1 = (c + side // 2) * scale, (r + side // 2) * scale
        cv2.rectangle(img, (x0, y0), (x1, y1), FOVEA_BOX, 1, cv2.LINE_8)
    texts = [*lines, hint]
    width = max(S * scale, *(cv2.getTextSize(t, _FONT, _FONT_SCALE, 1)[0][0] + 4 for t in texts))
    layout = Layout.of(size=S, scale=scale, lines=len(lines))
    top = layout.top
    H, W = top + S * scale + CAPTION + GAP, 2 * GAP + width
    frame = np.full((H + H % 2, W + W % 2, 3), BACKGROUND, np.uint8)
    frame[top:top + S * scale, GAP:GAP + S * scale] = img
    for i, t in enumerate(lines):
        cv2.putText(frame, t, (GAP + 2, GAP + CAPTION * (i + 1) - 5), _FONT, _FONT_SCALE, TEXT, 1, cv2.LINE_AA)
    cv2.putText(frame, hint, (GAP + 2, top + S * scale + CAPTION - 4), _FONT, _FONT_SCALE,
                TRAIL if hint_alert else TEXT, 1, cv2.LINE_AA)
    return np.ascontiguousarray(frame), layout


# --------------------------------------------------------------------------- input
@dataclass(frozen=True)
class Click:
    """A left click on frame pixel (col, row) at time t (seconds, the source's clock)."""

    col: int
    row: int
    t: float


@dataclass(frozen=True)
class Key:
    """A key at time t: "0".."9" (an answer) or "quit"."""

    key: str
    t: float


class EventSource(Protocol):
    """Where the play loop shows its frames and reads clicks and keys."""

    def show(self, frame: np.ndarray) -> None:
        """Display an (H, W, 3) uint8 RGB frame."""

    def next_event(self) -> Click | Key:
        """Wait for the next click or key (a click is in the last frame shown)."""

    def clock(self) -> float:
        """Now, in seconds, on the clock of the events' ``t``."""

    def close(self) -> None:
        """Release the display."""


class ScriptedEvents:
    """An :class:`EventSource` from a list of events: no display. Every frame shown is kept in
    ``frames``; the clock is the time of the last event read (0 before any)."""

    def __init__(self, events: Sequence[Click | Key]) -> None:
        self.events, self.frames, self._now = list(events), [], 0.0

    def show(self, frame: np.ndarray) -> None:
        self.frames.append(frame)

    def next_event(self) -> Click | Key:
        if not self.events:
            raise RuntimeError("the scripted events ran out before the play loop ended: end the script with "
                               "Key('quit', t)")
        ev = self.events.pop(0)
        self._now = ev.t
        return ev

    def clock(self) -> float:
        return self._now

    def close(self) -> None:
        pass


class NoDisplay(RuntimeError):
    """No window can be opened here."""


class WindowEvents:
    """An :class:`EventSource` on an OpenCV HighGUI window: left clicks, keys 0-9, q or Esc (or
    closing the window) to stop. Clicks made before the current frame was shown are dropped.

    Raises:
        NoDisplay: on Linux neither DISPLAY nor WAYLAND_DISPLAY is set, or OpenCV cannot open a window.
    """

    _HINT = ("python -m saccade_env.play needs a display to open its window: run it on a desktop "
             "(or over ssh -X)")

    def __init__(self, title: str = TITLE) -> None:
        self.title = title
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise NoDisplay(f"{self._HINT}; DISPLAY and WAYLAND_DISPLAY are unset here")
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
            cv2.setMouseCallback(self.title, self._on_mouse)
        except cv2.error as err:
            raise NoDisplay(f"{self._HINT}; OpenCV cannot open a window here ({str(err).strip()})") from None
        self._clicks: list[Click] = []
        self._closable = False  # whether the backend reports the window's visibility

    def _on_mouse(self, event: int, x: int, y: int, flags: int, param) -> None:
        if event == cv2.EVENT_LBUTTONDOWN:
            self._clicks.append(Click(int(x), int(y), time.monotonic()))

    def show(self, frame: np.ndarray) -> None:
        cv2.imshow(self.title, cv2.cvtColor(np.ascontiguousarray(frame, np.uint8), cv2.COLOR_RGB2BGR))
        cv2.waitKey(1)
        self._clicks.clear()
        self._closable = self._closable or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def next_event(self) -> Click | Key:
        while True:
            if self._clicks:
                return self._clicks.pop(0)
            k = cv2.waitKey(15)
            if k >= 0:
                k &= 0xFF
                if ord("0") <= k <= ord("9"):
                    return Key(chr(k), time.monotonic())
                if k in (27, ord("q"), ord("Q")):
                    return Key("quit", time.monotonic())
            if self._closable and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                return Key("quit", time.monotonic())

    def clock(self) -> float:
        return time.monotonic()

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass  # the window is already gone (closed by its user)


# --------------------------------------------------------------------------- the loop
def make_env(cfg: PlayConfig) -> SaccadeMNISTEnv:
    """The environment people play (CPU; the preset with ``cfg``'s budget, contrast and split)."""
    return SaccadeMNISTEnv(**env_kwargs(cfg))


def play_episode(env: SaccadeMNISTEnv, eye: HumanEye, source: EventSource, *, index: int, seed: int,
                 of: int, scale: int) -> Episode | None:
    """One episode, reset with ``seed``: frames to ``source`` until an answer (the episode's
    record) or "quit" (None)."""
    obs, _ = env.reset(seed=seed)
    scene = env.state.scene[0].cpu().numpy()  # the eye's input; only HumanEye's view of it is shown
    fixations, times, digests = [], [], [digest(obs)]
    started, t0 = now_iso(), source.clock()

    def elapsed(ev: Click | Key) -> float:  # seconds since the first frame, never less than the last time
        return round(max(times[-1] if times else 0.0, ev.t - t0), 3)

    usual = HINT if "fovea" in obs else GLIMPSE_HINT
    hint, alert = usual, False
    F = env.cfg.fovea_size if "fovea" in obs else (env.cfg.glimpse_size if "glimpse" in obs else None)
    while True:
        left = int(obs["saccades_left"][0])
        lines = (f"Which digit is it?    episode {index + 1} of {of}    saccades left: {left}", INSTRUCTIONS)
        cx, cy = eye.fixation_px(obs["fixation"])
        frame, layout = play_frame(eye.view(scene, obs), box=(cx, cy, F) if F else None, lines=lines, hint=hint,
                                   hint_alert=alert, scale=scale)
        source.show(frame)
        ev = source.next_event()
        if isinstance(ev, Key) and ev.key == "quit":
            return None
        if isinstance(ev, Click):
            target = layout.to_scene(ev.col, ev.row)
            if target is None:
                continue
            if left == 0:
                hint, alert = NO_SACCADE_LEFT, True
                continue
            obs, _, terminated, truncated, _ = env.step({"saccade": np.array(target, np.float32), "answer": LOOK})
            assert not (terminated or truncated)  # a look with a saccade left moves the eye
            fixations.append(target)
            times.append(elapsed(ev))
            digests.append(digest(obs))
            hint, alert = usual, False
            continue
        if isinstance(ev, Key) and ev.key in "0123456789" and len(ev.key) == 1:
            *_, info = env.step({"saccade": np.zeros(2, np.float32), "answer": int(ev.key)})
            times.append(elapsed(ev))
            return Episode(index=index, seed=seed, started=started, fixations=tuple(fixations), times=tuple(times),
                           obs=tuple(digests), answer=int(ev.key), label=int(info["label"]),
                           correct=bool(info["correct"]), eccentricity=float(info["eccentricity"]))
        raise ValueError(f"unknown event {ev!r}: an EventSource gives Click(col, row, t) or Key('0'..'9' or "
                         f"'quit', t)")


@dataclass(frozen=True)
class PlayResult:
    """What a play ended with: the recording's path (None when nothing was finished and it was
    removed), the episodes finished and answered correctly, and whether the player stopped early."""

    path: Path | None
    episodes: int
    correct: int
    stopped: bool


def play(cfg: PlayConfig, source: EventSource, *, path: str | os.PathLike) -> PlayResult:
    """Play ``cfg.episodes`` episodes from ``source`` and record them in ``path`` (JSON Lines,
    :mod:`saccade_env.recording`), each episode written as it is answered.  A recording left with
    no finished episode (stopped at once) is removed."""
    env = make_env(cfg)
    eye = HumanEye(env)
    header = Header(env_id=cfg.env, config=config_to_json(env.cfg), seed=cfg.seed, budget=env.cfg.max_saccades,
                    episodes=cfg.episodes, participant=cfg.participant, started=now_iso(), saccade_env=__version__)
    correct, stopped = 0, False
    try:
        with RecordingWriter(path, header, overwrite=cfg.overwrite) as writer:
            for j in range(cfg.episodes):
                ep = play_episode(env, eye, source, index=j, seed=cfg.seed + j, of=cfg.episodes, scale=cfg.scale)
                if ep is None:
                    stopped = True
                    break
                writer.write(ep)
                correct += ep.correct
    finally:
        env.close()
    if writer.episodes == 0:
        Path(path).unlink()
        return PlayResult(path=None, episodes=0, correct=0, stopped=stopped)
    return PlayResult(path=Path(path), episodes=writer.episodes, correct=correct, stopped=stopped)


def screenshot(cfg: PlayConfig, path: str | os.PathLike, *, short: float = 24.0) -> np.ndarray:
    """Write the window as it looks after one saccade towards the digit of episode 0 of ``cfg``,
    landing ``short`` px before it (so that it lies in the periphery; at the centre when it is
    nearer), to the PNG ``path``, offscreen (nothing is recorded). Returns the (H, W, 3) RGB frame."""
    path = Path(path)
    if path.exists() and not cfg.overwrite:
        raise FileExistsError(f"{path} exists: pass --overwrite to replace it")
    env = make_env(cfg)
    eye = HumanEye(env)
    env.reset(seed=cfg.seed)
    half = env.cfg.scene.size // 2
    target = env.core.target_xy(env.state)[0].cpu().numpy().astype(np.float64) * half  # px from the centre
    look = target * max(0.0, 1 - short / max(float(np.hypot(*target)), 1e-9))
    layout = Layout.of(size=2 * half, scale=cfg.scale)
    source = ScriptedEvents([Click(*layout.to_frame(np.round(look) / half), t=1.0), Key("quit", 2.0)])
    play_episode(env, eye, source, index=0, seed=cfg.seed, of=cfg.episodes, scale=cfg.scale)
    env.close()
    frame = source.frames[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}: pass another path ending in .png")
    return frame


# --------------------------------------------------------------------------- command line
def parse_args(argv: Sequence[str] | None = None) -> PlayConfig:
    """A :class:`PlayConfig` from ``--field value`` options (the flag names of agents.cli.parse_config)."""
    parser = argparse.ArgumentParser(prog="python -m saccade_env.play", description=PlayConfig.__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    types = {"budget": int, "contrast": float, "episodes": int, "seed": int, "scale": int}
    for f in PlayConfig.__dataclass_fields__.values():
        name = "--" + f.name.replace("_", "-")
        if f.name == "overwrite":
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
        else:
            parser.add_argument(name, type=types.get(f.name, str), default=f.default, help=f.metadata["help"])
    args = parser.parse_args(argv)
    try:
        return PlayConfig(**vars(args))
    except ValueError as err:
        parser.error(str(err))


def output_path(cfg: PlayConfig) -> Path:
    """The recording's path, checked before the window opens."""
    if cfg.out:
        path = Path(cfg.out)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / "human" / f"{cfg.participant}-k{make_budget(cfg)}-seed{cfg.seed}-{stamp}.jsonl"
    if path.is_dir():
        raise SystemExit(f"--out {path} is a folder: pass a file name ending in .jsonl")
    if path.exists() and not cfg.overwrite:
        raise SystemExit(f"--out {path} exists: pass --overwrite to replace it, or another --out")
    return path


def make_budget(cfg: PlayConfig) -> int:
    """The saccade budget played: ``--budget`` or the preset's ``max_saccades``."""
    return cfg.budget if cfg.budget is not None else int(env_kwargs(cfg)["max_saccades"])


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.screenshot:
        try:
            screenshot(cfg, cfg.screenshot)
        except (FileExistsError, OSError) as err:
            raise SystemExit(str(err)) from None
        print(f"wrote {cfg.screenshot}")
        return 0
    path = output_path(cfg)
    try:
        source = WindowEvents()
    except NoDisplay as err:
        raise SystemExit(str(err)) from None
    try:
        result = play(cfg, source, path=path)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the episodes answered so far are in {path}")
        return 130
    finally:
        source.close()
    if result.path is None:
        print("no episode was finished: nothing recorded")
        return 0
    print(f"{result.episodes} episodes ({result.correct} right) recorded in {result.path}"
          f"{' (stopped early)' if result.stopped else ''}\nscore beside the agents with: "
          f"python eval/compare_agents.py --human {result.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
