"""Pictures of an episode: the scene with the fixation trail, and what the eye sees.

:func:`render_frame` draws one RGB frame (pure NumPy + OpenCV): on the left the scene in
grey, upscaled, with the fixation trail (red), the current fixation (green), the fovea's
box (yellow) and, if given, the digit's centre (cyan); on the right, stacked, one panel
per sensor: the fovea, the periphery as a retinotopic map (each log-polar cell painted at
its place around the fixation with its energy, on the scene's pixel scale) and the
glimpse patches.  :class:`HumanViewer` shows frames in a window.

Coordinates follow the environment: (x, y), x right, y down, -1..1 spans the scene's
outer edges, so a point lies at continuous pixel column ``(x + 1) * S / 2`` (pixel ``i``
spans ``[i, i + 1)``), and on the frame at :func:`scene_to_frame`.
"""
from __future__ import annotations

import os
import sys

import cv2
import numpy as np

GAP = 6  # px around and between panels
CAPTION = 18  # px of the caption bar above each panel
BACKGROUND = (24, 24, 24)
TEXT = (230, 230, 230)
TRAIL = (255, 60, 60)  # past fixations and the saccades between them
CURRENT = (60, 255, 60)  # the current fixation
FOVEA_BOX = (255, 220, 0)
TARGET = (0, 200, 255)
_FONT, _FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45
_SHIFT = 4  # sub-pixel bits for cv2 drawing


def scene_to_frame(xy, scene_size: int, scale: int = 3) -> tuple[float, float]:
    """(x, y) scene coordinates -> continuous (column, row) in the frame of :func:`render_frame`
    (the left panel's scene image starts at column ``GAP``, row ``GAP + CAPTION``)."""
    x, y = float(xy[0]), float(xy[1])
    return GAP + (x + 1) * scene_size / 2 * scale, GAP + CAPTION + (y + 1) * scene_size / 2 * scale


def _pt(col: float, row: float) -> tuple[int, int]:
    """Continuous (column, row) -> cv2 fixed-point point (pixel i's centre is at i + 0.5)."""
    return int(round((col - 0.5) * (1 << _SHIFT))), int(round((row - 0.5) * (1 << _SHIFT)))


def _grey(img: np.ndarray, factor: int) -> np.ndarray:
    """(h, w) float in [0, 1] -> (h * factor, w * factor, 3) uint8 grey, nearest neighbour."""
    g = (np.clip(np.nan_to_num(np.asarray(img, np.float64)), 0, 1) * 255 + 0.5).astype(np.uint8)
    g = np.repeat(np.repeat(g, factor, 0), factor, 1)
    return np.ascontiguousarray(np.repeat(g[..., None], 3, 2))


def _text_width(text: str) -> int:
    return cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] + 4


def _captioned(img: np.ndarray, caption: str, *, below: str | None = None,
               below_color: tuple[int, int, int] = TEXT) -> np.ndarray:
    """(h, w, 3) panel -> (CAPTION + h [+ CAPTION], max(w, text widths), 3): caption bar above,
    optional text bar below, image at the left."""
    h, w = img.shape[:2]
    width = max(w, _text_width(caption), _text_width(below) if below else 0)
    out = np.full((CAPTION + h + (CAPTION if below else 0), width, 3), BACKGROUND, np.uint8)
    out[CAPTION:CAPTION + h, :w] = img
    cv2.putText(out, caption, (2, CAPTION - 5), _FONT, _FONT_SCALE, TEXT, 1, cv2.LINE_AA)
    if below:
        cv2.putText(out, below, (2, CAPTION + h + CAPTION - 5), _FONT, _FONT_SCALE, below_color, 1, cv2.LINE_AA)
    return out


def _viridis(values: np.ndarray) -> np.ndarray:
    """(h, w) uint8 -> (h, w, 3) uint8 RGB viridis."""
    return cv2.cvtColor(cv2.applyColorMap(values, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)


def _energy(response: np.ndarray) -> np.ndarray:
    """(C, E, A) responses (or an (E, A) energy) -> (E, A) uint8 energy sum_c r**2 over its max."""
    r = np.nan_to_num(np.asarray(response, np.float64))
    energy = (r**2).sum(0) if r.ndim == 3 else r
    top = energy.max() if energy.size else 0.0
    return (np.clip(energy / top, 0, 1) * 255 + 0.5).astype(np.uint8) if top > 0 else np.zeros(energy.shape, np.uint8)


def draw_scene(scene: np.ndarray, trail: np.ndarray, *, fovea_size: int, target_xy=None, scale: int = 3) -> np.ndarray:
    """The scene panel: (S * scale, S * scale, 3) uint8 RGB, grey scene with the trail, the
    fovea box centred on the current (last valid) fixation, and the target marker."""
    S = scene.shape[0]
    img = _grey(scene, scale)
    k = S / 2 * scale  # display px per unit of scene coordinates

    def at(xy) -> tuple[float, float]:
        return (float(xy[0]) + 1) * k, (float(xy[1]) + 1) * k

    pts = np.asarray(trail, np.float64).reshape(-1, 2)
    pts = [at(p) for p in pts[np.isfinite(pts).all(1)]]
    if pts:  # fovea box: pixels [c - F/2, c + F/2) of the scene, edges drawn inside
        (cx, cy), half = pts[-1], fovea_size / 2 * scale
        x0, y0, x1, y1 = (int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), FOVEA_BOX, 1 if scale < 4 else 2, cv2.LINE_8)
    for a, b in zip(pts[:-1], pts[1:]):
        cv2.line(img, _pt(*a), _pt(*b), TRAIL, 1, cv2.LINE_AA, _SHIFT)
    for p in pts[:-1]:
        cv2.circle(img, _pt(*p), max(2, scale) << _SHIFT, TRAIL, -1, cv2.LINE_AA, _SHIFT)
    if target_xy is not None and np.isfinite(np.asarray(target_xy, np.float64)).all():
        (tx, ty), r = at(target_xy), max(3, 2 * scale)
        cv2.circle(img, _pt(tx, ty), r << _SHIFT, TARGET, 1, cv2.LINE_AA, _SHIFT)
        cv2.line(img, _pt(tx - r, ty), _pt(tx + r, ty), TARGET, 1, cv2.LINE_AA, _SHIFT)
        cv2.line(img, _pt(tx, ty - r), _pt(tx, ty + r), TARGET, 1, cv2.LINE_AA, _SHIFT)
    if pts:
        cv2.circle(img, _pt(*pts[-1]), max(3, scale + 1) << _SHIFT, CURRENT, -1, cv2.LINE_AA, _SHIFT)
    return img


def draw_periphery(response: np.ndarray, geometry=None, *, size: int, scale: int = 3,
                   fovea_size: int | None = None) -> np.ndarray:
    """The periphery panel, uint8 RGB.

    With ``geometry = (radius_px (E,), azimuth (E, A) radians, y down)``: a (size, size, 3)
    retinotopic map centred on the fixation, cell (e, a) painted with its energy
    ``sum_c response[c, e, a]**2`` (normalised by the largest, viridis) over the sector from
    the geometric mean of radii e-1, e to that of e, e+1 (times ``scale``) and half an azimuth
    step each side; outside the cells stays background; the fovea box (if ``fovea_size``)
    is outlined at the centre.  Without geometry: the (E, A) energy as a heat map
    (rows: eccentricity, inner at the top; columns: azimuth), upscaled to about ``size`` wide.

    Args:
        response: (C, E, A) float responses.
    """
    energy = _energy(response)  # (E, A) uint8
    E, A = energy.shape
    if geometry is None:
        f = max(1, size // max(A, 1))
        return np.ascontiguousarray(_viridis(np.repeat(np.repeat(energy, f, 0), f, 1)))
    radius = np.asarray(geometry[0], np.float64).reshape(E)
    azimuth = np.asarray(geometry[1], np.float64).reshape(E, A)
    logr = np.log(radius)
    if E > 1:
        ext = np.concatenate([[2 * logr[0] - logr[1]], logr, [2 * logr[-1] - logr[-2]]])
    else:
        ext = np.concatenate([logr - 0.5 * np.log(2), logr, logr + 0.5 * np.log(2)])
    bounds = np.exp((ext[:-1] + ext[1:]) / 2) * scale  # (E + 1,) display px, ring e in [b[e], b[e+1]]
    half = np.pi / A
    colors = _viridis(energy.reshape(1, -1)).reshape(E, A, 3)
    img = np.full((size, size, 3), BACKGROUND, np.uint8)
    c = size / 2
    t = np.linspace(-1.0, 1.0, max(3, int(np.ceil(32 / A)) + 1))
    for e in range(E):
        for a in range(A):
            th = azimuth[e, a] + half * t
            outer = np.stack([c + bounds[e + 1] * np.cos(th), c + bounds[e + 1] * np.sin(th)], 1)
            inner = np.stack([c + bounds[e] * np.cos(th[::-1]), c + bounds[e] * np.sin(th[::-1])], 1)
            poly = np.round(np.concatenate([outer, inner]) * (1 << _SHIFT)).astype(np.int32)
            cv2.fillPoly(img, [poly], tuple(int(v) for v in colors[e, a]), cv2.LINE_AA, _SHIFT)
    if fovea_size:
        h = fovea_size / 2 * scale
        x0, x1 = int(round(c - h)), int(round(c + h))
        cv2.rectangle(img, (x0, x0), (x1 - 1, x1 - 1), FOVEA_BOX, 1, cv2.LINE_8)
    return img


def draw_glimpse(glimpse: np.ndarray, *, width: int) -> np.ndarray:
    """(k, g, g) patches in [0, 1] -> uint8 RGB, side by side, each upscaled by the same integer
    factor so that together they are about ``width`` px wide (at most ``width / 2`` each)."""
    g = np.asarray(glimpse, np.float64)
    g = g[None] if g.ndim == 2 else g
    k, gh, gw = g.shape
    f = max(1, min(width // 2, (width - (k - 1) * GAP) // k) // max(gh, gw))
    out = np.full((gh * f, k * gw * f + (k - 1) * GAP, 3), BACKGROUND, np.uint8)
    for i in range(k):
        out[:, i * (gw * f + GAP): i * (gw * f + GAP) + gw * f] = _grey(g[i], f)
    return out


def render_frame(*, scene: np.ndarray, trail: np.ndarray, fovea_size: int,
                 views: dict[str, np.ndarray], target_xy: np.ndarray | None = None,
                 periphery_geometry: tuple[np.ndarray, np.ndarray] | None = None,
                 answer: int | None = None, label: int | None = None, scale: int = 3) -> np.ndarray:
    """One RGB frame (H, W, 3) uint8, H and W even, contiguous.

    Args:
        scene: (S, S) float in [0, 1].
        trail: (T, 2) float fixations in scene coordinates in order; rows with NaN are unused
            (skipped); the last valid row is the current fixation.
        fovea_size: side of the fovea box in px, drawn centred on the current fixation.
        views: what the retina sees, any subset of "fovea" (1, F, F) in [0, 1],
            "periphery" (C, E, A) log-Gabor responses (C = orientations x phases,
            E eccentricity rings, A azimuths), "glimpse" (k, g, g) in [0, 1].
        target_xy: (2,) the digit's centre (privileged), drawn as a cyan marker if given.
        periphery_geometry: (radius_px (E,), azimuth (E, A) radians, y down), where the
            periphery's cells lie around the fixation; None draws an (E, A) heat map instead.
        answer, label: if given, written under the scene ("answer 7 (label 7)").
        scale: integer nearest-neighbour upscaling of the scene.

    Layout: the scene panel on the left (its image at column ``GAP``, row ``GAP + CAPTION``,
    see :func:`scene_to_frame`), then a column with one captioned panel per view present,
    in the order fovea, periphery, glimpse.
    """
    scene = np.asarray(scene, np.float64)
    scale = max(1, int(scale))
    side = scene.shape[0] * scale
    words = ([f"answer {int(answer)}"] if answer is not None else []) + \
            ([f"(label {int(label)})" if answer is not None else f"label {int(label)}"] if label is not None else [])
    ok = answer is None or label is None or int(answer) == int(label)
    left = _captioned(draw_scene(scene, trail, fovea_size=fovea_size, target_xy=target_xy, scale=scale), "scene",
                      below=" ".join(words) or None, below_color=TEXT if answer is None or label is None
                      else (CURRENT if ok else TRAIL))
    panels = []
    if "fovea" in views:
        fv = np.asarray(views["fovea"], np.float64)
        fv = fv.reshape(fv.shape[-2:]) if fv.ndim == 3 and fv.shape[0] == 1 else (fv.mean(0) if fv.ndim == 3 else fv)
        f = max(scale, (side // 2) // max(fv.shape))
        panels.append(_captioned(_grey(fv, f), f"fovea ({fv.shape[0]} px)"))
    if "periphery" in views:
        pr = np.asarray(views["periphery"])
        panels.append(_captioned(draw_periphery(pr, periphery_geometry, size=side, scale=scale,
                                                fovea_size=fovea_size if "fovea" in views else None),
                                 "periphery (energy)" if periphery_geometry is not None
                                 else "periphery (rows: eccentricity, cols: azimuth)"))
    if "glimpse" in views:
        panels.append(_captioned(draw_glimpse(views["glimpse"], width=side), "glimpse"))
    col_w = max((p.shape[1] for p in panels), default=0)
    col_h = sum(p.shape[0] for p in panels) + GAP * max(0, len(panels) - 1)
    H = 2 * GAP + max(left.shape[0], col_h)
    W = 2 * GAP + left.shape[1] + (GAP + col_w if panels else 0)
    frame = np.full((H + H % 2, W + W % 2, 3), BACKGROUND, np.uint8)
    frame[GAP:GAP + left.shape[0], GAP:GAP + left.shape[1]] = left
    x, y = 2 * GAP + left.shape[1], GAP
    for p in panels:
        frame[y:y + p.shape[0], x:x + p.shape[1]] = p
        y += p.shape[0] + GAP
    return np.ascontiguousarray(frame)


def frame_of(core, state, obs: dict, i: int, *, answer: int | None = None, scale: int = 3) -> np.ndarray:
    """The frame of row ``i`` of a batched ``SaccadeCore`` state and its observation dict.

    The target marker is drawn only when the config is ``privileged``; the label only
    alongside an ``answer`` (at the episode's end)."""
    cfg = core.cfg

    def np_(t):
        return t[i].detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t[i])

    views = {k: np_(obs[k]) for k in ("fovea", "periphery", "glimpse") if k in obs}
    per = getattr(core, "periphery", None)
    geometry = None
    if per is not None and hasattr(per, "radius_px"):
        geometry = (np.asarray(per.radius_px.cpu()), np.asarray(per.azimuth.cpu()))
    target = np_(core.target_xy(state)) if getattr(cfg, "privileged", False) else None
    return render_frame(scene=np_(state.scene), trail=np_(state.trail), fovea_size=cfg.fovea_size, views=views,
                        target_xy=target, periphery_geometry=geometry, answer=answer,
                        label=int(np_(state.label)) if answer is not None else None, scale=scale)


class HumanViewer:
    """Shows frames in a window (cv2.imshow), for ``render_mode="human"``.

    Raises RuntimeError at construction when there is no display (on Linux neither DISPLAY
    nor WAYLAND_DISPLAY is set, or OpenCV cannot open a window, e.g. a headless build)."""

    _HINT = ('render_mode="human" needs a display (a window, via cv2.imshow); '
             'use render_mode="rgb_array" to get frames instead')

    def __init__(self, title: str = "SaccadeMNIST", fps: int = 4) -> None:
        self.title, self.delay_ms = title, max(1, int(round(1000 / max(1, fps))))
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError(f"{self._HINT} (DISPLAY and WAYLAND_DISPLAY are unset)")
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
        except cv2.error as err:
            raise RuntimeError(f"{self._HINT} (OpenCV: {err})") from err
        self._open = True

    def show(self, frame: np.ndarray) -> None:
        """Display an (H, W, 3) uint8 RGB frame and wait 1 / fps seconds (processing window events)."""
        try:
            cv2.imshow(self.title, cv2.cvtColor(np.ascontiguousarray(frame, np.uint8), cv2.COLOR_RGB2BGR))
            cv2.waitKey(self.delay_ms)
        except cv2.error as err:
            raise RuntimeError(f"{self._HINT} (OpenCV: {err})") from err

    def close(self) -> None:
        if getattr(self, "_open", False):
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass
