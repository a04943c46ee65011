"""The eye: fovea / eye_window / glimpse against plain slicing, and the log-polar periphery."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from saccade_env.retina import Periphery, PeripheryConfig, eye_window, fovea, glimpse, mirror_indices, mirror_responses


# --------------------------------------------------------------------------- references
def ref_window(scene: torch.Tensor, off: tuple[int, int], size: int, pad: float) -> torch.Tensor:
    """The size x size window of an (S, S) scene centred at integer pixel offset (dx, dy),
    by plain slicing of the scene padded with ``pad``: rows S/2 - size/2 + dy ..."""
    S = scene.shape[-1]
    M = size + S  # margin larger than any reach
    padded = F.pad(scene[None], (M, M, M, M), value=pad)[0]
    dx, dy = off
    top, left = M + S // 2 - size // 2 + dy, M + S // 2 - size // 2 + dx
    return padded[top:top + size, left:left + size]


def to_fix(offsets, S: int, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(offsets, dtype=torch.float64).div(S / 2).to(dtype)


def offsets_for(S: int):
    h = S // 2
    return [(0, 0), (5, -7), (-3, 11), (h - 14, 0), (h - 13, -(h - 13)), (h - 1, h - 2), (h, h), (-h, -h),
            (-h, 3), (2, h), (-h + 1, h - 1)]


# --------------------------------------------------------------------------- fovea / eye_window
@pytest.mark.parametrize("S,size", [(128, 28), (60, 12), (28, 8), (100, 28), (128, 200)])
@pytest.mark.parametrize("batched", [False, True], ids=["B1", "Bn"])
def test_fovea_is_a_padded_slice(S, size, batched):
    g = torch.Generator().manual_seed(S + size)
    pad = 0.37
    offs = offsets_for(S)
    scenes = torch.rand(len(offs), S, S, generator=g)
    expect = torch.stack([ref_window(scenes[i], o, size, pad) for i, o in enumerate(offs)])
    fix = to_fix(offs, S)
    if batched:
        got = fovea(scenes, fix, size=size, pad=pad)
        assert got.shape == (len(offs), 1, size, size)
        torch.testing.assert_close(got[:, 0], expect, atol=1e-6, rtol=0)
    else:
        for i in range(len(offs)):
            got = fovea(scenes[i:i + 1], fix[i:i + 1], size=size, pad=pad)
            assert got.shape == (1, 1, size, size)
            torch.testing.assert_close(got[0, 0], expect[i], atol=1e-6, rtol=0)


def test_fovea_edge_padding_values():
    """At the extreme fixation (1, 1) exactly the bottom-right quarter of a 28 fovea lies
    outside a 128 scene and holds the pad value; the rest is the scene's corner."""
    S = 128
    scene = torch.rand(1, S, S, generator=torch.Generator().manual_seed(0))
    for batch in (1, 3):
        sc = scene.expand(batch, S, S).contiguous()
        out = fovea(sc, torch.ones(batch, 2), size=28, pad=0.5)[:, 0]
        for b in range(batch):
            assert torch.equal(out[b, :14, :14], scene[0, S - 14:, S - 14:])
            assert (out[b, 14:, :] == 0.5).all() and (out[b, :, 14:] == 0.5).all()
        out = fovea(sc, -torch.ones(batch, 2), size=28, pad=0.0)[:, 0]
        for b in range(batch):
            assert torch.equal(out[b, 14:, 14:], scene[0, :14, :14])
            assert (out[b, :14, :] == 0).all() and (out[b, :, :14] == 0).all()


@pytest.mark.parametrize("S,size", [(128, 28), (60, 12), (128, 216)])
def test_bilinear_path_equals_slice_at_integer_offsets(S, size):
    g = torch.Generator().manual_seed(1)
    pad = 0.25
    offs = offsets_for(S)
    scenes = torch.rand(len(offs), S, S, generator=g)
    expect = torch.stack([ref_window(scenes[i], o, size, pad) for i, o in enumerate(offs)])
    fix = to_fix(offs, S).requires_grad_()
    got = eye_window(scenes, fix, size=size, pad=pad)
    assert got.requires_grad
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=0)
    for i in range(3):  # the one-eye call too
        f1 = to_fix(offs[i:i + 1], S).requires_grad_()
        torch.testing.assert_close(eye_window(scenes[i:i + 1], f1, size=size, pad=pad)[0], expect[i],
                                   atol=1e-5, rtol=0)


def test_half_pixel_offset_is_the_mean_of_the_neighbouring_slices():
    """The interpolation convention: x offset 3.5 px reads the mean of the windows at 3 and 4."""
    S, size, pad = 64, 12, 0.1
    scene = torch.rand(2, S, S, generator=torch.Generator().manual_seed(2))
    fix = to_fix([(3.5, -2.0), (-31.5, 7.0)], S)
    got = eye_window(scene, fix, size=size, pad=pad)
    e0 = 0.5 * (ref_window(scene[0], (3, -2), size, pad) + ref_window(scene[0], (4, -2), size, pad))
    e1 = 0.5 * (ref_window(scene[1], (-32, 7), size, pad) + ref_window(scene[1], (-31, 7), size, pad))
    torch.testing.assert_close(got[0], e0, atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], e1, atol=1e-5, rtol=0)
    # single eye, no grad, fractional: the same interpolation
    torch.testing.assert_close(eye_window(scene[:1], fix[:1], size=size, pad=pad)[0], e0, atol=1e-5, rtol=0)


def test_eye_window_gradient_matches_finite_differences():
    S, size = 64, 10
    g = torch.Generator().manual_seed(3)
    scene = torch.rand(2, S, S, generator=g, dtype=torch.float64)
    weights = torch.randn(2, size, size, generator=g, dtype=torch.float64)
    fix0 = torch.tensor([[0.1234, -0.3071], [-0.551, 0.2023]], dtype=torch.float64)

    def loss(f):
        return (eye_window(scene, f, size=size, pad=0.2) * weights).sum()

    fix = fix0.clone().requires_grad_()
    loss(fix).backward()
    grad = fix.grad
    assert torch.isfinite(grad).all() and (grad.abs() > 1e-3).all(), grad
    h = 1e-4 / (S / 2)  # a tiny fraction of a pixel: stays inside the bilinear cell
    num = torch.zeros_like(fix0)
    for b in range(2):
        for c in range(2):
            d = torch.zeros_like(fix0)
            d[b, c] = h
            with torch.no_grad():
                num[b, c] = (loss(fix0 + d) - loss(fix0 - d)) / (2 * h)
    torch.testing.assert_close(grad, num, rtol=1e-4, atol=1e-6)
    # float32 fovea, one eye: differentiable too
    f32 = torch.tensor([[0.3, -0.11]], requires_grad=True)
    out = fovea(scene[:1].float(), f32, size=28)
    (out * weights[:1, :1, :1].float()).sum().backward()
    assert f32.grad is not None and bool((f32.grad != 0).any())


# --------------------------------------------------------------------------- glimpse
def block_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(x[None, None], k)[0, 0]


@pytest.mark.parametrize("S,size,scales", [(128, 8, 1), (60, 12, 3), (100, 12, 4), (128, 8, 3)])
def test_glimpse_scales_are_block_means_of_slices(S, size, scales):
    g = torch.Generator().manual_seed(S * scales)
    pad = 0.5
    offs = [(0, 0), (3, -5), (S // 2, -(S // 2)), (-S // 2 + 1, 7)]
    scenes = torch.rand(len(offs), S, S, generator=g)
    fix = to_fix(offs, S)
    got = glimpse(scenes, fix, size=size, scales=scales, pad=pad)
    assert got.shape == (len(offs), scales, size, size)
    for i, o in enumerate(offs):
        single = glimpse(scenes[i:i + 1], fix[i:i + 1], size=size, scales=scales, pad=pad)
        torch.testing.assert_close(single[0], got[i], atol=1e-6, rtol=0)
        assert torch.equal(got[i, 0], ref_window(scenes[i], o, size, pad))  # scale 0 is the slice
        for j in range(1, scales):
            expect = block_mean(ref_window(scenes[i], o, size << j, pad), 1 << j)
            torch.testing.assert_close(got[i, j], expect, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- periphery
S = 128


@pytest.fixture(scope="module")
def periph():
    return {True: Periphery(PeripheryConfig(whiten=True), S), False: Periphery(PeripheryConfig(whiten=False), S)}


def blob_scenes(P: Periphery, cells, fix_px):
    """One scene per (e, a): a Gaussian blob of sigma a quarter of ring e's wavelength,
    centred on the pixel nearest to cell (e, a)'s centre around the fixation fix_px."""
    ys, xs = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32),
                            indexing="ij")
    out, kept = [], []
    for e, a in cells:
        r, psi = float(P.radius_px[e]), float(P.azimuth[e, a])
        # pixel i's centre is at offset i + 0.5 - S/2 from the scene's centre
        px = round(S / 2 - 0.5 + fix_px[0] + r * math.cos(psi))
        py = round(S / 2 - 0.5 + fix_px[1] + r * math.sin(psi))
        if not (0 <= px < S and 0 <= py < S):
            continue
        kept.append((e, a))
        sigma = 0.25 / float(P.sf[e])
        out.append(torch.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma ** 2)))
    return torch.stack(out), kept


@pytest.mark.parametrize("whiten", [True, False])
@pytest.mark.parametrize("fix_px", [(0, 0), (10, -6), (-20, 15)])
def test_periphery_blob_lights_up_its_cell(periph, whiten, fix_px):
    P = periph[whiten]
    E, A = P.cfg.n_eccentricity, P.cfg.n_azimuth
    cells = [(e, a) for e in range(E) for a in (0, 5, 11, 17, 23)]
    scenes, cells = blob_scenes(P, cells, fix_px)
    assert len(cells) >= 40
    fix = to_fix([fix_px] * len(cells), S)
    energy = (P(scenes, fix) ** 2).sum(1)  # (B, E, A)
    for i, (e, a) in enumerate(cells):
        best_a = int(energy[i, e].argmax())
        d = min((best_a - a) % A, (a - best_a) % A)
        # below ~1.7 px between neighbouring cells (rings 0-2) a pixel-snapped blob can only
        # be located to within one cell; further out it must be exact
        assert d <= (1 if e < 3 else 0), (e, a, best_a)
        best_e = int(energy[i, :, a].argmax())
        assert abs(best_e - e) <= 1, (e, a, best_e)


def test_periphery_shape_and_geometry(periph):
    P = periph[True]
    assert P.cfg.shape == (12, 10, 24)
    out = P(torch.rand(3, S, S), torch.zeros(3, 2), pad=0.5)
    assert out.shape == (3, 12, 10, 24) and out.dtype == torch.float32
    r = P.radius_px
    assert r.shape == (10,) and bool((r[1:] > r[:-1]).all())
    torch.testing.assert_close(r[1:] / r[:-1], torch.full((9,), 1.41), rtol=1e-4, atol=0)
    assert 2.0 < float(r[0]) < 3.0 and 48 < float(r[-1]) < 54  # about 2.3 .. 51 px in a 128 px scene
    assert P.azimuth.shape == (10, 24)


@pytest.mark.parametrize("whiten", [True, False])
def test_periphery_zero_response_to_constant(whiten):
    # a retina small enough that its window stays inside the scene, so only the filters'
    # zero mean is tested (no scene edge in view)
    P = Periphery(PeripheryConfig(whiten=whiten, ecc_max=0.3), S)
    assert P.window <= S - 40
    scenes = torch.stack([torch.full((S, S), v) for v in (0.0, 0.3, 1.0)])
    fix = to_fix([(0, 0), (10, -12), (-15, 5)], S)
    out = P(scenes, fix, pad=0.5)
    assert out.abs().max() < 1e-4 * P.bound()
    # control: the same retina does respond to a non-constant scene
    assert P(torch.rand(1, S, S), fix[:1], pad=0.5).abs().max() > 1e-2


@pytest.mark.parametrize("whiten", [True, False])
def test_periphery_full_retina_constant_scene(periph, whiten):
    """The paper's retina reads beyond the scene's edges (outside: the pad level): a scene at
    the pad level gives exactly nothing; with whitening any constant scene gives nothing."""
    P = periph[whiten]
    fix = to_fix([(0, 0), (30, -20)], S)
    assert P(torch.full((2, S, S), 0.5), fix, pad=0.5).abs().max() < 1e-6
    if whiten:
        assert P(torch.full((2, S, S), 0.9), fix, pad=0.5).abs().max() < 1e-4 * P.bound()


@pytest.mark.parametrize("whiten", [True, False])
def test_periphery_translation_covariance_small_retina(whiten):
    """Shift scene and fixation together by whole pixels (window inside the scene): same response."""
    P = Periphery(PeripheryConfig(whiten=whiten, ecc_max=0.3), S)
    g = torch.Generator().manual_seed(4)
    base = F.avg_pool2d(torch.rand(1, 1, S + 3, S + 3, generator=g), 4, stride=1)[0]  # smooth-ish texture
    shifts = [(0, 0), (7, -3), (-9, 10), (12, 12)]
    scenes = torch.cat([torch.roll(base, shifts=(dy, dx), dims=(1, 2)) for dx, dy in shifts])
    fix = to_fix([(2 + dx, -4 + dy) for dx, dy in shifts], S)
    out = P(scenes, fix, pad=0.5)
    assert out[0].abs().max() > 1e-2
    for i in range(1, len(shifts)):
        torch.testing.assert_close(out[i], out[0], atol=1e-4 * P.bound(), rtol=0)
    # and it does move with the fixation: the unshifted scene read at a shifted fixation differs
    moved = P(scenes[:1], fix[1:2], pad=0.5)
    assert (moved - out[:1]).abs().max() > 1e-2


@pytest.mark.parametrize("cfg", [PeripheryConfig(), PeripheryConfig(whiten=False),
                                 PeripheryConfig(n_theta=5, n_phase=1, n_azimuth=16, n_eccentricity=7)],
                         ids=["paper", "unwhitened", "5x1x16x7"])
def test_periphery_mirror_is_the_mirrored_scenes_response(cfg):
    """Periphery.mirror of the responses = the responses to the scene flipped top to bottom,
    read at the fixation with its y negated (to the kernels' sampling: ~0.3% of the norm)."""
    P = Periphery(cfg, S)
    g = torch.Generator().manual_seed(1)
    scenes = F.avg_pool2d(torch.rand(3, 1, S + 3, S + 3, generator=g), 4, stride=1)[:, 0]
    fix = to_fix([(0, 0), (10, -6), (-20, 15)], S)
    out = P(scenes, fix, pad=0.5)
    want = P(scenes.flip(-2), fix * torch.tensor([1.0, -1.0]), pad=0.5)
    assert float((P.mirror(out) - want).norm() / want.norm()) < 0.01
    torch.testing.assert_close(P.mirror(P.mirror(out)), out)  # an involution
    # the odd filters' signs matter: without them the match is lost (where there are odd filters)
    channels, signs, azimuths = mirror_indices(cfg)
    unsigned = mirror_responses(out, channels, torch.ones_like(signs), azimuths)
    assert (signs < 0).any() == (float((unsigned - want).norm() / want.norm()) > 0.3)


def test_periphery_translation_covariance_full_retina(periph):
    """The default retina (window larger than the scene): a localised pattern in an empty
    whitened image, moved with the fixation, reads the same."""
    P = periph[True]
    g = torch.Generator().manual_seed(5)
    patch = torch.rand(30, 30, generator=g) - 0.5
    shifts = [(0, 0), (11, -7), (-20, 25)]
    imgs, offs = [], []
    for dx, dy in shifts:
        img = torch.zeros(S, S)
        img[40 + dy:70 + dy, 45 + dx:75 + dx] = patch
        imgs.append(img)
        offs.append((-5 + dx, 3 + dy))
    out = P.read(torch.stack(imgs), to_fix(offs, S))
    assert out[0].abs().max() > 1e-2
    for i in range(1, len(shifts)):
        torch.testing.assert_close(out[i], out[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("whiten", [True, False])
@pytest.mark.parametrize("pad", [0.0, 0.5])
def test_periphery_bound(periph, whiten, pad):
    P = periph[whiten]
    b = P.bound()
    assert math.isfinite(b) and b > 0
    g = torch.Generator().manual_seed(6)
    scenes = torch.cat([torch.rand(4, S, S, generator=g),
                        (torch.rand(2, S, S, generator=g) > 0.5).float(),  # harsh binary scenes
                        torch.zeros(1, S, S), torch.ones(1, S, S)])
    fix = (torch.rand(scenes.shape[0], 2, generator=g) * 2 - 1)
    fix = torch.round(fix * S / 2) / (S / 2)
    out = P(scenes, fix, pad=pad)
    assert torch.isfinite(out).all()
    assert out.abs().max() <= b, (out.abs().max(), b)


@pytest.mark.parametrize("whiten,tightness", [(True, 0.25), (False, 0.9)])
def test_periphery_bound_against_worst_case_scenes(periph, whiten, tightness):
    """The response is linear in the scene, so the worst scene within pad +- 1 for an output
    is pad + sign(its weights): its response is the weights' L1 norm, which must stay
    within bound() (and bound() must not be wildly loose)."""
    P = periph[whiten]
    x = torch.zeros(1, S, S, requires_grad=True)
    fix = torch.zeros(1, 2)
    out = P(x, fix)
    idx = [(c, e, a) for c in (0, 3, 7, 10) for e in (0, 4, 9) for a in (0, 13)]
    g = torch.zeros(len(idx), *out.shape)
    for k, (c, e, a) in enumerate(idx):
        g[k, 0, c, e, a] = 1
    (jac,) = torch.autograd.grad(out, x, g, is_grads_batched=True)  # (K, 1, S, S)
    l1 = jac.abs().sum((1, 2, 3))
    k = int(l1.argmax())
    worst = torch.sign(jac[k])  # pad 0: a scene in [-1, 1]
    c, e, a = idx[k]
    r = float(P(worst, fix)[0, c, e, a])
    assert r == pytest.approx(float(l1[k]), rel=1e-3)
    assert r <= P.bound()
    assert r >= tightness * P.bound()
