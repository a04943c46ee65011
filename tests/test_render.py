"""Frames drawn by saccade_env.render (pure NumPy + OpenCV, no environment needed)."""
import sys

import numpy as np
import pytest

from saccade_env import render
from saccade_env.render import HumanViewer, draw_periphery, render_frame, scene_to_frame

S, F, SCALE = 128, 28, 3
E, A, C = 10, 24, 12
NAN = float("nan")


def _scene(value=0.5):
    return np.full((S, S), value, np.float32)


def _geometry():
    radius = 51.0 * 1.41 ** (np.arange(E) - E + 1.0)  # (E,) about 2.3 .. 51 px, as the real retina
    azimuth = np.tile(2 * np.pi / A * np.arange(A), (E, 1))  # (E, A)
    return radius, azimuth


def _views(*names):
    all_ = {"fovea": np.full((1, F, F), 0.5, np.float32),
            "periphery": np.zeros((C, E, A), np.float32),
            "glimpse": np.full((2, 8, 8), 0.5, np.float32)}
    return {n: all_[n] for n in names}


def _is(pixel, color, tol=40):
    return np.abs(pixel.astype(int) - np.array(color)).max() <= tol


def _grey(pixel):
    return int(pixel.max()) - int(pixel.min()) <= 2


@pytest.mark.parametrize("names", [(), ("fovea",), ("periphery",), ("fovea", "periphery", "glimpse")])
@pytest.mark.parametrize("extras", [{}, {"answer": 7, "label": 3}])
def test_frame_shape_dtype_even(names, extras):
    trail = np.array([[0.0, 0.0], [0.3, 0.2], [NAN, NAN]])
    for scale in (1, 2, 3):
        fr = render_frame(scene=np.random.default_rng(0).random((S, S)), trail=trail, fovea_size=F,
                          views=_views(*names), periphery_geometry=_geometry(), scale=scale, **extras)
        assert fr.dtype == np.uint8 and fr.ndim == 3 and fr.shape[2] == 3
        assert fr.shape[0] % 2 == 0 and fr.shape[1] % 2 == 0
        assert fr.flags.c_contiguous
        assert fr.shape[0] >= S * scale and fr.shape[1] >= S * scale


def test_scene_to_frame_layout():
    col, row = scene_to_frame((0.5, -0.25), S, SCALE)
    assert (col, row) == (render.GAP + 1.5 * 64 * 3, render.GAP + render.CAPTION + 0.75 * 64 * 3)


def test_current_fixation_and_trail_colours():
    trail = np.array([[0.0, 0.0], [-0.5, 0.5], [0.5, -0.25]] + [[NAN, NAN]] * 3)
    fr = render_frame(scene=_scene(), trail=trail, fovea_size=F, views={}, scale=SCALE)
    col, row = scene_to_frame((0.5, -0.25), S, SCALE)  # pixel (288, 144) of the scene image
    for dc, dr in ((0, 0), (-1, -1), (1, 1), (-1, 0)):
        assert _is(fr[int(row) + dr, int(col) + dc], render.CURRENT), fr[int(row) + dr, int(col) + dc]
    for xy in ((0.0, 0.0), (-0.5, 0.5)):  # past fixations: trail colour
        c, r = scene_to_frame(xy, S, SCALE)
        assert _is(fr[int(r), int(c)], render.TRAIL)
    c, r = scene_to_frame((-0.25, 0.25), S, SCALE)  # midway on the first saccade: the line
    assert not _grey(fr[int(r), int(c)])
    c, r = scene_to_frame((-0.6, -0.6), S, SCALE)  # far from everything: the grey scene
    assert tuple(fr[int(r), int(c)]) == (128, 128, 128)


def test_fovea_box_edges():
    trail = np.array([[0.5, -0.25]])  # scene pixel (96, 48): box over pixels 82..109, 34..61
    fr = render_frame(scene=_scene(), trail=trail, fovea_size=F, views={}, scale=SCALE)
    x0, y0 = render.GAP, render.GAP + render.CAPTION  # the scene image's origin in the frame
    left, right, top, bottom = x0 + 82 * 3, x0 + 110 * 3 - 1, y0 + 34 * 3, y0 + 62 * 3 - 1
    for r, c in ((y0 + 120, left), (y0 + 120, right), (top, x0 + 270), (bottom, x0 + 270), (top, left)):
        assert _is(fr[r, c], render.FOVEA_BOX, tol=0), (r, c, fr[r, c])
    for r, c in ((y0 + 120, left - 1), (y0 + 120, left + 1), (y0 + 120, right + 1), (top - 1, x0 + 270),
                 (bottom + 1, x0 + 270), (top + 1, x0 + 270)):
        assert _grey(fr[r, c]), (r, c, fr[r, c])


def test_target_marker_only_if_given():
    trail = np.array([[0.0, 0.0]])
    a = render_frame(scene=_scene(), trail=trail, fovea_size=F, views={})
    b = render_frame(scene=_scene(), trail=trail, fovea_size=F, views={}, target_xy=np.array([-0.5, 0.5]))
    c, r = scene_to_frame((-0.5, 0.5), S, SCALE)
    assert _grey(a[int(r), int(c)]) and _is(b[int(r), int(c)], render.TARGET)
    assert (a != b).any(axis=2).sum() < 200


def test_panels_only_for_given_views():
    trail = np.array([[0.0, 0.0]])
    geo = _geometry()
    w = {}
    for names in [(), ("fovea",), ("fovea", "periphery"), ("glimpse",), ("fovea", "periphery", "glimpse")]:
        w[names] = render_frame(scene=_scene(), trail=trail, fovea_size=F, views=_views(*names),
                                periphery_geometry=geo).shape
    assert w[()][1] < w[("fovea",)][1] < w[("fovea", "periphery")][1]
    assert w[()][1] < w[("glimpse",)][1]
    assert w[("fovea", "periphery", "glimpse")][0] > w[("fovea", "periphery")][0]  # stacked
    # without geometry, the periphery is still drawn (as an (E, A) heat map)
    fr = render_frame(scene=_scene(), trail=trail, fovea_size=F, views=_views("periphery"))
    assert fr.shape[1] > w[()][1]


def test_bright_periphery_cell_is_painted_at_its_place():
    radius, azimuth = _geometry()
    resp = np.zeros((C, E, A), np.float32)
    e = 7
    for a, sign in ((0, 1), (A // 4, 1j)):  # a = 0: right of centre; a = A/4: below (y down)
        resp[:] = 0
        resp[3, e, a] = 2.0
        size = S * SCALE
        img = draw_periphery(resp, (radius, azimuth), size=size, scale=SCALE)
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        d = radius[e] * SCALE * sign
        here = img[int(size / 2 + d.imag), int(size / 2 + d.real)].astype(int).sum()
        there = img[int(size / 2 - d.imag), int(size / 2 - d.real)].astype(int).sum()
        assert here > there + 200, (here, there)
        # neighbouring ring at the same azimuth: not bright
        d2 = radius[e - 2] * SCALE * sign
        assert img[int(size / 2 + d2.imag), int(size / 2 + d2.real)].astype(int).sum() < here - 200
    # in the frame: the periphery panel changes where the cell is, and nowhere near the scene
    a = render_frame(scene=_scene(), trail=np.array([[0.0, 0.0]]), fovea_size=F,
                     views={"periphery": np.zeros_like(resp)}, periphery_geometry=(radius, azimuth))
    b = render_frame(scene=_scene(), trail=np.array([[0.0, 0.0]]), fovea_size=F,
                     views={"periphery": resp}, periphery_geometry=(radius, azimuth))
    diff = np.argwhere((a != b).any(2))
    assert len(diff) and diff[:, 1].min() > render.GAP + S * SCALE


def test_nan_rows_ignored():
    base = np.array([[0.0, 0.0], [0.5, -0.25]])
    with_nan = np.array([[0.0, 0.0], [NAN, NAN], [0.5, -0.25], [NAN, NAN], [NAN, NAN]])
    kw = dict(scene=_scene(), fovea_size=F, views=_views("fovea"))
    a, b = render_frame(trail=base, **kw), render_frame(trail=with_nan, **kw)
    assert np.array_equal(a, b)
    # an all-NaN trail draws no fixation at all
    empty = render_frame(trail=np.full((3, 2), NAN), **kw)
    c, r = scene_to_frame((0.0, 0.0), S, SCALE)
    assert _grey(empty[int(r), int(c)])


def test_answer_label_text_under_scene():
    kw = dict(scene=_scene(), trail=np.array([[0.0, 0.0]]), fovea_size=F, views={})
    plain, text = render_frame(**kw), render_frame(answer=7, label=7, **kw)
    assert text.shape[0] > plain.shape[0]
    below = text[render.GAP + render.CAPTION + S * SCALE:, : S * SCALE]
    assert (below > 100).any()


def test_glimpse_and_fovea_show_their_content():
    views = {"fovea": np.zeros((1, F, F), np.float32), "glimpse": np.ones((3, 8, 8), np.float32)}
    views["fovea"][0, :, : F // 2] = 1.0
    fr = render_frame(scene=_scene(), trail=np.array([[0.0, 0.0]]), fovea_size=F, views=views)
    right = fr[:, render.GAP + S * SCALE + render.GAP:]
    assert (right == 255).all(2).sum() > 3 * 8 * 8 and (right == 0).all(2).sum() > F * F // 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the DISPLAY check is Linux's")
def test_human_viewer_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="rgb_array") as err:
        HumanViewer()
    assert 'render_mode="human"' in str(err.value) and "display" in str(err.value)
