"""SaccadeMNIST-v0's display is Daucé, Albiges & Perrinet (2020)'s: the digit lifted onto the noise's grey.

The reference formulas are written out here in NumPy, on one scene at a time, and the
batched sampler must agree with them pixel for pixel; the noise-free presets must keep
their pixels bit for bit.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from saccade_env import rng
from saccade_env.presets import PRESETS
from saccade_env.scene import DIGIT, SceneConfig, SceneSampler

V0 = SceneConfig()  # the v0 display
N = 48


def _uniforms(sampler: SceneSampler, n: int, first_key: int = 0) -> torch.Tensor:
    return rng.uniforms(torch.arange(first_key, first_key + n), torch.zeros(n, dtype=torch.int64), sampler.n_uniforms)


def _reference(digit: np.ndarray, offset: tuple[int, int], noise_field: np.ndarray, *, contrast: float,
               mask: bool) -> np.ndarray:
    """One display by the reference's steps: the digit placed on a black field scaled to [0, 1],
    mapped to 0.5 + contrast * (d - 0.5), pixels <= 0.5 dropped, maximum with the noise field
    (already 0.5 + noise * (z - 0.5)), clipped to [0, 1], min-max normalised, then outside the
    disc set to mid-grey."""
    s = noise_field.shape[0]
    field = np.zeros((s, s))
    x, y = offset
    r0, c0 = s // 2 - DIGIT // 2 + y, s // 2 - DIGIT // 2 + x
    field[r0:r0 + DIGIT, c0:c0 + DIGIT] = digit
    field = (field - field.min()) / (field.max() - field.min())
    field = 0.5 + contrast * (field - 0.5)
    field[field <= 0.5] = -np.inf
    out = np.clip(np.maximum(field, noise_field), 0.0, 1.0)
    out = (out - out.min()) / (out.max() - out.min())
    if mask:
        c = np.arange(s) + 0.5 - s / 2
        out[(c[None, :] ** 2 + c[:, None] ** 2) > (s / 2) ** 2] = 0.5
    return out


def _draw(cfg: SceneConfig, n: int = N):
    """Lifted scenes of ``cfg`` with known digits, the same scenes' noise alone, and the digits."""
    lifted = SceneSampler(cfg, split="test")
    noise_only = SceneSampler(dataclasses.replace(cfg, ink="absolute", contrast=0.0, mask=False), split="test")
    u = _uniforms(lifted, n, first_key=5)
    index = torch.arange(n) * 37
    b = lifted.sample(u, digit_index=index)
    z = noise_only.sample(u, digit_index=index).scene  # the noise levels 0.5 + noise * (z - 0.5)
    return b, z, lifted.digits[index].numpy().astype(np.float64)


@pytest.mark.parametrize("contrast", [0.3, 0.7])
def test_v0_display_is_the_reference_formula(contrast):
    cfg = dataclasses.replace(V0, contrast=contrast)
    b, z, digits = _draw(cfg)
    for i in range(N):
        want = _reference(digits[i], tuple(b.offset[i].tolist()), z[i].double().numpy(), contrast=contrast, mask=True)
        np.testing.assert_allclose(b.scene[i].numpy(), want, atol=2e-6)


def test_v0_display_statistics_at_low_contrast():
    """At contrast 0.3, noise 0.75 (numbers from the reference's formulas): strokes peak at
    0.65 before normalisation, and about 89% of them are brighter than the noise under them;
    in saccade-env 0.1's 'absolute' ink they peaked at 0.30 and about 1% were."""
    cfg = dataclasses.replace(V0, contrast=0.3, mask=False)
    b, z, digits = _draw(cfg, 200)
    s, above, values, above_abs = cfg.size, [], [], []
    for i in range(len(digits)):
        x, y = b.offset[i].tolist()
        r0, c0 = s // 2 - DIGIT // 2 + y, s // 2 - DIGIT // 2 + x
        d = digits[i] / digits[i].max()
        stroke = d > 0.5
        v = 0.5 + 0.3 * (d[stroke] - 0.5)
        under = z[i, r0:r0 + DIGIT, c0:c0 + DIGIT].double().numpy()[stroke]
        values.append(v)
        above.append(v > under)
        above_abs.append(0.3 * digits[i][stroke] / 255 > under)
        # the display is normalised per image: exactly 0 and 1 at its extremes
        assert float(b.scene[i].min()) == pytest.approx(0.0, abs=1e-6)
        assert float(b.scene[i].max()) == pytest.approx(1.0, abs=1e-6)
    values, above = np.concatenate(values), np.concatenate(above)
    assert values.max() == pytest.approx(0.65)
    assert 0.60 < values.mean() < 0.64
    assert 0.85 < above.mean() < 0.93
    assert np.concatenate(above_abs).mean() < 0.05


def test_v0_mask_is_mid_grey_and_display_spans_0_1():
    b, _, _ = _draw(V0, 16)
    s = V0.size
    c = torch.arange(s) + 0.5 - s / 2
    outside = (c[None, :] ** 2 + c[:, None] ** 2) > (s / 2) ** 2
    assert torch.all(b.scene[:, outside] == 0.5)
    assert float(b.scene.min()) >= 0.0 and float(b.scene.max()) <= 1.0


def test_lifted_digit_is_brighter_than_absolute():
    """The digit under a centred fovea: lifted strokes stand above the noise, absolute ones at 0.3 do not."""
    lifted = SceneSampler(dataclasses.replace(V0, contrast=0.3, placement="center"), split="test")
    absolute = SceneSampler(dataclasses.replace(V0, contrast=0.3, placement="center", ink="absolute"), split="test")
    u = _uniforms(lifted, 32)
    index = torch.arange(32)
    stroke = lifted.digits[index].float() > 200
    c = V0.size // 2 - DIGIT // 2
    centre = slice(c, c + DIGIT)

    def contrast_of(sampler):
        fov = sampler.sample(u, digit_index=index).scene[:, centre, centre]
        return float(fov[stroke].mean() - fov[~stroke].mean())

    assert contrast_of(lifted) > 0.15
    assert abs(contrast_of(absolute)) < 0.02  # the digit is not brighter than the noise around it


# The noise-free presets keep saccade-env 0.1's pixels bit for bit, and so does v0 with ink="absolute".
PINNED = {"SaccadeMNIST-v0": "0c3acf31e54e4530", "SaccadeMNIST-Centered28-v0": "2d1247e06bed3ed9",
          "SaccadeMNIST-Translated60-v0": "ae4eb4f261f8415b", "SaccadeMNIST-Cluttered60-v0": "3d75e2a3a3c67dea",
          "SaccadeMNIST-Cluttered100-v0": "49eaa8e6da08ad4f"}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.id)
def test_absolute_ink_and_noise_free_presets_keep_their_pixels(preset):
    cfg = dataclasses.replace(preset.kwargs["scene"], ink="absolute")
    if preset.kwargs["scene"].noise == 0:
        assert not preset.kwargs["scene"].lifted  # a noise-free preset draws the same with either ink
    sampler = SceneSampler(cfg, split="test")
    u = rng.uniforms(torch.arange(16), torch.zeros(16, dtype=torch.int64), sampler.n_uniforms)
    digest = hashlib.sha256(sampler.sample(u).scene.numpy().tobytes()).hexdigest()[:16]
    assert digest == PINNED[preset.id]


def test_ink_is_validated():
    with pytest.raises(ValueError, match="ink"):
        SceneConfig(ink="bright")
