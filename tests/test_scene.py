"""Scenes: where the digit goes, what the scene holds, reset options, the texture cache, global RNGs."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import saccade_env
from saccade_env import rng, scene as scene_mod
from saccade_env.data import load_mnist
from saccade_env.scene import CACHE_ENV, DIGIT, SceneConfig, SceneSampler, texture_bank

from conftest import answer, look

PRESETS = {p.id: p for p in saccade_env.PRESETS}


def preset_scene(pid: str) -> SceneConfig:
    return PRESETS[pid].kwargs["scene"]


def uniforms(sampler: SceneSampler, n: int, first_key: int = 0, episode: int = 0) -> torch.Tensor:
    keys = torch.arange(first_key, first_key + n, dtype=torch.int64)
    return rng.uniforms(keys, torch.full((n,), episode, dtype=torch.int64), sampler.n_uniforms)


def sample_offsets(sampler: SceneSampler, n: int, chunk: int = 1000) -> torch.Tensor:
    out = []
    for start in range(0, n, chunk):
        out.append(sampler.sample(uniforms(sampler, min(chunk, n - start), first_key=start)).offset)
    return torch.cat(out)


@pytest.fixture(scope="module")
def mnist_train():
    return load_mnist("train")


# --------------------------------------------------------------------------- rng
def test_uniforms_are_per_row_streams():
    keys = torch.tensor([5, 9, 5, 123456789], dtype=torch.int64)
    eps = torch.tensor([0, 0, 1, 3], dtype=torch.int64)
    u = rng.uniforms(keys, eps, 50)
    assert u.shape == (4, 50) and u.dtype == torch.float32
    assert bool((u >= 0).all() and (u < 1).all())
    # a row depends only on its own (key, episode): batch composition does not matter
    for i in range(4):
        assert torch.equal(rng.uniforms(keys[i:i + 1], eps[i:i + 1], 50)[0], u[i])
    assert not torch.equal(u[0], u[1]) and not torch.equal(u[0], u[2])
    assert torch.equal(rng.uniforms(keys, eps, 50), u)
    big = rng.uniforms(torch.arange(2000), torch.zeros(2000, dtype=torch.int64), 8)
    assert abs(float(big.mean()) - 0.5) < 0.01
    assert rng.key_from_seed(3) == rng.key_from_seed(3) != rng.key_from_seed(4)


# --------------------------------------------------------------------------- placement
@pytest.fixture(scope="module")
def v0_positions():
    """8000 digit offsets drawn with SaccadeMNIST-v0's placement (noise and mask off: they
    do not take part in the placement, and make the draw cheap)."""
    cfg = preset_scene("SaccadeMNIST-v0")
    cheap = SceneSampler(dataclasses.replace(cfg, noise=0.0, mask=False))
    # the placement really is the same as with the full config
    full = SceneSampler(cfg)
    assert torch.equal(full.sample(uniforms(full, 200)).offset, cheap.sample(uniforms(cheap, 200)).offset)
    return sample_offsets(cheap, 8000).float()


def test_v0_radius_distribution(v0_positions):
    r = v0_positions.norm(dim=1)
    # radius = min(|N(0,1)| * 30, 34), offsets rounded to whole pixels (error <= 0.71 px)
    assert float(r.max()) <= 34 + 0.75
    clipped = float((r > 34 - 0.75).float().mean())
    p_clip = math.erfc(34 / 30 / math.sqrt(2))  # P(|N| > 34/30) = 0.257
    assert abs(p_clip - 0.257) < 1e-3
    # (the band also catches unclipped radii in [33.25, 34): about 1 % more)
    assert abs(clipped - p_clip) < 0.03, clipped
    assert abs(float(r.median()) - 30 * 0.6745) < 1.0, float(r.median())
    # below the clip, the radius is a half-normal of scale 30: P(r < 10) = P(|N| < 1/3) = 0.261
    assert abs(float((r < 10).float().mean()) - math.erf(1 / 3 / math.sqrt(2))) < 0.03
    assert float(r.min()) < 2


def test_v0_angle_is_uniform(v0_positions):
    x, y = v0_positions[:, 0], v0_positions[:, 1]
    keep = (x.abs() + y.abs()) > 3  # angle of near-central (rounded) points is meaningless
    ang = torch.atan2(y[keep], x[keep])
    assert abs(float(torch.cos(ang).mean())) < 0.05 and abs(float(torch.sin(ang).mean())) < 0.05
    assert abs(float(torch.cos(2 * ang).mean())) < 0.05 and abs(float(torch.sin(2 * ang).mean())) < 0.05
    quadrants = torch.bincount(((ang + math.pi) // (math.pi / 2)).long().clamp(0, 3), minlength=4).float()
    frac = quadrants / quadrants.sum()
    assert bool(((frac - 0.25).abs() < 0.03).all()), frac


@pytest.mark.parametrize("pid,m", [("SaccadeMNIST-Translated60-v0", 16), ("SaccadeMNIST-Cluttered60-v0", 16),
                                   ("SaccadeMNIST-Cluttered100-v0", 36)])
def test_uniform_placement(pid, m):
    cfg = preset_scene(pid)
    assert cfg.placement == "uniform" and cfg.max_offset == m
    off = sample_offsets(SceneSampler(cfg), 4000)
    assert int(off.min()) == -m and int(off.max()) == m
    for axis in range(2):
        counts = torch.bincount(off[:, axis] + m, minlength=2 * m + 1).float()
        assert counts.shape[0] == 2 * m + 1
        expect = 4000 / (2 * m + 1)
        assert bool(((counts - expect).abs() < 5 * math.sqrt(expect) + 5).all()), counts
    c = np.corrcoef(off[:, 0].numpy(), off[:, 1].numpy())[0, 1]
    assert abs(c) < 0.06


def test_centered28_is_plain_mnist(mnist_train):
    cfg = preset_scene("SaccadeMNIST-Centered28-v0")
    sampler = SceneSampler(cfg)
    b = sampler.sample(uniforms(sampler, 12))
    assert b.scene.shape == (12, 28, 28) and bool((b.offset == 0).all())
    images, labels = mnist_train
    for i in range(12):  # each scene is exactly an MNIST digit of its label, at contrast 1
        assert _best_match(b.scene[i].numpy(), images, labels, int(b.label[i]), 1.0) < 1e-6


def test_sampler_label_option():
    sampler = SceneSampler(dataclasses.replace(preset_scene("SaccadeMNIST-v0"), noise=0.0))
    u = uniforms(sampler, 200)
    want = torch.arange(200) % 11 - 1  # -1: random
    b = sampler.sample(u, label=want)
    given = want >= 0
    assert torch.equal(b.label[given], want[given])
    assert len(set(b.label[~given].tolist())) > 5


# --------------------------------------------------------------------------- scene content
@pytest.mark.parametrize("pid", list(PRESETS))
def test_scene_values_in_unit_range(pid):
    cfg = preset_scene(pid)
    sampler = SceneSampler(cfg)
    b = sampler.sample(uniforms(sampler, 64, first_key=77))
    s = cfg.size
    assert b.scene.shape == (64, s, s) and b.scene.dtype == torch.float32
    assert float(b.scene.min()) >= 0.0 and float(b.scene.max()) <= 1.0
    assert b.offset.dtype == torch.int64 and b.label.dtype == torch.int64
    assert bool((b.offset.abs() <= cfg.max_offset).all())
    if cfg.mask:  # outside the disc of diameter `size`: the background level
        c = torch.arange(s) + 0.5 - s / 2
        outside = (c[None, :] ** 2 + c[:, None] ** 2) > (s / 2) ** 2
        assert bool((b.scene[:, outside] == cfg.background).all())
    if cfg.noise > 0:
        assert cfg.background == 0.5
        assert float(b.scene.std(dim=(1, 2)).min()) > 0.05  # textured


def _digit_box_mask(offset: torch.Tensor, s: int) -> torch.Tensor:
    B = offset.shape[0]
    inside = torch.zeros(B, s, s, dtype=torch.bool)
    for i in range(B):
        t, l = s // 2 - DIGIT // 2 + int(offset[i, 1]), s // 2 - DIGIT // 2 + int(offset[i, 0])
        inside[i, t:t + DIGIT, l:l + DIGIT] = True
    return inside


def test_clutter_only_where_asked():
    plain = SceneSampler(preset_scene("SaccadeMNIST-Translated60-v0"))
    clut = SceneSampler(preset_scene("SaccadeMNIST-Cluttered60-v0"))
    bp = plain.sample(uniforms(plain, 32))
    bc = clut.sample(uniforms(clut, 32))
    out_p = ~_digit_box_mask(bp.offset, 60)
    out_c = ~_digit_box_mask(bc.offset, 60)
    assert float(bp.scene[out_p].abs().max()) == 0.0  # nothing but the digit
    lit = [(bc.scene[i][out_c[i]] > 0.2).sum().item() for i in range(32)]
    assert sum(n > 0 for n in lit) >= 24, lit  # clutter outside the digit in most scenes


@pytest.mark.parametrize("pid,j", [("SaccadeMNIST-Centered28-v0", 3), ("SaccadeMNIST-Centered28-v0", 10),
                                   ("SaccadeMNIST-Cluttered60-v0", 4)])
def test_jitter_moves_the_digit_and_the_edge_crops_it(pid, j):
    """``jitter`` keeps every other draw (digit, clutter: a prefix-stable stream) and moves the
    digit by a uniform integer offset in [-j, j] per axis; past the scene's edge it is cropped."""
    base = preset_scene(pid)
    plain, moved = SceneSampler(base), SceneSampler(dataclasses.replace(base, jitter=j))
    u = uniforms(moved, 2000)
    a, b = plain.sample(u[:, :plain.n_uniforms]), moved.sample(u)
    assert torch.equal(a.label, b.label)
    shift = b.offset - a.offset
    assert int(shift.min()) == -j and int(shift.max()) == j
    counts = torch.bincount((shift + j).flatten(), minlength=2 * j + 1).float()
    assert float(counts.min()) > 0.6 * float(counts.mean())  # uniform
    s, m = base.size, base.max_offset
    lit = []  # clutter seen outside the digit boxes (there is something to compare)
    for i in range(40):
        dx, dy = (int(v) for v in shift[i])
        if base.n_clutter:  # the digit's box moved, the clutter stayed: equal outside both boxes
            boxes = _digit_box_mask(torch.stack([a.offset[i], b.offset[i].clamp(-m, m)]), s).any(0)
            assert torch.equal(a.scene[i][~boxes], b.scene[i][~boxes]), i
            lit.append(bool((a.scene[i][~boxes] > 0).any()))
            continue
        pad = F.pad(a.scene[i], (j, j, j, j))  # the unjittered scene moved by (dx, dy), zeros coming in
        want = pad[j - dy:j - dy + s, j - dx:j - dx + s]
        assert torch.equal(b.scene[i], want), (i, dx, dy)
    assert not base.n_clutter or sum(lit) >= 20, lit
    if j > m + 4:  # some digits lose ink over the edge
        assert bool((b.scene.sum((1, 2)) < a.scene.sum((1, 2)) - 1).any())


def test_jitter_spares_an_imposed_position_and_is_validated():
    cfg = dataclasses.replace(preset_scene("SaccadeMNIST-Translated60-v0"), jitter=5)
    sampler = SceneSampler(cfg)
    off = torch.tensor([[3, -7]]).expand(50, 2)
    assert torch.equal(sampler.sample(uniforms(sampler, 50), offset=off).offset, off)
    for bad in (-1, 15, 2.5):
        with pytest.raises(ValueError, match="jitter must be an int in 0..14"):
            dataclasses.replace(cfg, jitter=bad)


@pytest.mark.parametrize("pid", ["SaccadeMNIST-Centered28-v0", "SaccadeMNIST-Cluttered60-v0"])
def test_rotate_turns_the_digit_about_its_centre_and_keeps_every_other_draw(pid):
    """``rotate`` adds one uniform after the others (jitter's included): the labels, positions and
    clutter stay; its middle value is no turn, its ends turn by -rotate / +rotate degrees; a
    random draw spreads the angles over the range."""
    base = dataclasses.replace(preset_scene(pid), jitter=2 if pid.endswith("Cluttered60-v0") else 0)
    plain, turned = SceneSampler(base), SceneSampler(dataclasses.replace(base, rotate=90.0))
    assert turned.n_uniforms == plain.n_uniforms + 1
    u = uniforms(turned, 64)
    u[:, -1] = 0.5  # no turn: the same scenes
    a, b = plain.sample(u[:, :plain.n_uniforms]), turned.sample(u)
    assert torch.equal(a.label, b.label) and torch.equal(a.offset, b.offset)
    assert torch.allclose(a.scene, b.scene, atol=1e-4)
    if not base.n_clutter:  # Centered28: the scene is the digit's 28x28 box, so a quarter turn is rot90 of it
        u[:, -1] = 0.0  # -90 degrees (clockwise on the display)
        assert torch.allclose(turned.sample(u).scene, torch.rot90(a.scene, -1, (1, 2)), atol=1e-4)
        u[:, -1] = 1.0 - 1e-7  # +90 degrees
        assert torch.allclose(turned.sample(u).scene, torch.rot90(a.scene, 1, (1, 2)), atol=1e-3)
    else:  # outside the digit's box, nothing changed
        keep = (a.offset.abs() <= base.max_offset).all(1)  # boxes the helper can draw (jitter may cross the edge)
        out = ~_digit_box_mask(a.offset[keep], base.size)
        u[:, -1] = 0.0
        assert int(keep.sum()) > 40 and torch.equal(turned.sample(u).scene[keep][out], a.scene[keep][out])
    small = SceneSampler(dataclasses.replace(base, rotate=10.0))
    u = uniforms(small, 400)
    c, d = plain.sample(u[:, :plain.n_uniforms]), small.sample(u)
    changed = (c.scene - d.scene).abs().flatten(1).amax(1) > 0.05
    assert float(changed.float().mean()) > 0.9  # nearly every digit turned
    for bad in (-1.0, 181.0, "10"):
        with pytest.raises(ValueError, match=r"rotate must be an angle in degrees in \[0, 180\]"):
            dataclasses.replace(base, rotate=bad)


def _slice(scene: np.ndarray, target_xy, size: int = DIGIT) -> np.ndarray:
    S = scene.shape[-1]
    dx, dy = (int(round(v * S / 2)) for v in target_xy)
    top, left = S // 2 - size // 2 + dy, S // 2 - size // 2 + dx
    return scene[top:top + size, left:left + size]


def _best_match(patch: np.ndarray, images: np.ndarray, labels: np.ndarray, label: int, contrast: float) -> float:
    cand = images[labels == label].astype(np.float32) * np.float32(contrast / 255.0)
    return float(np.abs(cand - patch[None]).max(axis=(1, 2)).min())


@pytest.mark.parametrize("pid,kw", [("SaccadeMNIST-v0", dict(noise=0.0, mask=False)),
                                    ("SaccadeMNIST-v0", dict(noise=0.0, mask=False, contrast=0.35)),
                                    ("SaccadeMNIST-Translated60-v0", {})])
def test_digit_visible_at_target(pid, kw, mnist_train):
    """With no noise, the 28x28 slice at the target is contrast * mnist / 255 of a digit of the
    label revealed at the end; and the fovea, once the eye is there, shows exactly that."""
    images, labels = mnist_train
    env = gym.make(pid, privileged=True, sensors=("fovea",), **kw).unwrapped
    contrast = env.cfg.scene.contrast
    for ep in range(4):
        obs, info = env.reset(seed=100 + ep)
        sc = info["scene"]
        patch = _slice(sc, info["target_xy"])
        assert abs(float(patch.max()) - contrast) < 0.01  # MNIST digits reach 255
        outside = sc.copy()
        S = sc.shape[0]
        dx, dy = (int(round(v * S / 2)) for v in info["target_xy"])
        outside[S // 2 - 14 + dy:S // 2 + 14 + dy, S // 2 - 14 + dx:S // 2 + 14 + dx] = 0
        assert float(outside.max()) == 0.0
        obs, *_ = env.step(look(*info["target_xy"]))
        np.testing.assert_array_equal(obs["fovea"][0], patch)
        *_, end = env.step(answer(0))
        assert _best_match(patch, images, labels, end["label"], contrast) < 1e-6
    env.close()


def test_digit_under_noise_is_kept_by_the_maximum(mnist_train):
    images, labels = mnist_train
    env = gym.make("SaccadeMNIST-v0", privileged=True, sensors=("fovea",)).unwrapped
    env.reset(seed=7)
    _, info = env.reset(options={"target_xy": (0.25, -0.125), "label": 4})
    obs, *_ = env.step(look(0.25, -0.125))
    fov = obs["fovea"][0]
    np.testing.assert_array_equal(fov, _slice(info["scene"], (0.25, -0.125)))
    cand = images[labels == 4].astype(np.float32) * np.float32(0.7 / 255.0)
    # the digit is max-mixed with the texture: some digit of label 4 lies under the fovea everywhere
    assert bool((fov[None] >= cand - 1e-6).all(axis=(1, 2)).any())
    assert fov.max() >= 0.7 - 1e-6


# --------------------------------------------------------------------------- reset options
@pytest.fixture(scope="module")
def env_v0():
    env = gym.make("SaccadeMNIST-v0", privileged=True).unwrapped
    yield env
    env.close()


def test_reset_option_label(env_v0):
    env_v0.reset(seed=11)
    for k in range(10):
        env_v0.reset(options={"label": k})
        *_, info = env_v0.step(answer(k))
        assert info["label"] == k and info["correct"]
    seen = set()
    for _ in range(12):  # the option holds for one episode only
        env_v0.reset()
        seen.add(env_v0.step(answer(0))[-1]["label"])
    assert len(seen) > 3


@pytest.mark.parametrize("ecc", [0, 3.3, 12.0, 20.5, 34, 50])
def test_reset_option_eccentricity(env_v0, ecc):
    env_v0.reset(seed=12)
    angles = []
    for _ in range(5):
        _, info0 = env_v0.reset(options={"eccentricity": ecc})
        *_, info = env_v0.step(answer(1))
        assert abs(info["eccentricity"] - ecc) <= 1.0
        x, y = info["target_xy"] * 64
        assert abs(math.hypot(x, y) - info["eccentricity"]) < 1e-4
        np.testing.assert_array_equal(info0["target_xy"], info["target_xy"])
        angles.append(round(math.atan2(y, x), 2))
    if ecc >= 12:
        assert len(set(angles)) >= 3  # the angle is still random


@pytest.mark.parametrize("xy,expect", [((0.25, -0.125), (0.25, -0.125)), ((0.0, 0.0), (0.0, 0.0)),
                                       ((0.1, 0.2), (6 / 64, 13 / 64)), ((-0.78125, 0.78125), (-0.78125, 0.78125))])
def test_reset_option_target_xy(env_v0, xy, expect):
    _, info0 = env_v0.reset(seed=13, options={"target_xy": xy})
    np.testing.assert_array_equal(info0["target_xy"], np.array(expect, np.float32))
    *_, info = env_v0.step(answer(2))
    np.testing.assert_array_equal(info["target_xy"], np.array(expect, np.float32))
    assert abs(info["eccentricity"] - math.hypot(*expect) * 64) < 1e-4


def test_reset_options_on_uniform_and_vector():
    env = gym.make("SaccadeMNIST-Translated60-v0").unwrapped
    env.reset(seed=0, options={"eccentricity": 10})
    *_, info = env.step(answer(0))
    assert abs(info["eccentricity"] - 10) <= 1.0
    env.reset(options={"target_xy": (-0.5, 0.5)})
    *_, info = env.step(answer(0))
    np.testing.assert_array_equal(info["target_xy"], np.array([-0.5, 0.5], np.float32))
    venv = gym.make_vec("SaccadeMNIST-Cluttered60-v0", num_envs=6, device="cpu")
    labels = np.array([0, 9, 3, 3, 5, 1])
    xy = np.array([[0.5, 0.0]] * 3 + [[-0.2, 0.3]] * 3, np.float32)
    venv.reset(seed=5, options={"label": labels, "target_xy": xy})
    act = {"saccade": torch.zeros(6, 2), "answer": torch.tensor(labels)}
    _, rew, term, _, info = venv.step(act)
    assert bool(term.all()) and torch.equal(info["label"], torch.as_tensor(labels))
    assert bool((rew == 1).all()) and bool(info["correct"].all())
    torch.testing.assert_close(info["target_xy"], torch.round(torch.as_tensor(xy) * 30) / 30, atol=1e-6, rtol=0)
    venv.close()


# --------------------------------------------------------------------------- texture cache & global RNGs
def test_texture_bank_cache(monkeypatch, tmp_path, global_rng_guard):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    cfg = SceneConfig(n_textures=3, texture_seed=4242)
    bank = texture_bank(cfg)
    assert bank.shape == (3, 128, 128) and bank.dtype == np.float32
    assert float(bank.min()) >= 0 and float(bank.max()) <= 1 and float(bank.std()) > 0.05
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    np.testing.assert_array_equal(np.load(files[0])["bank"], bank)
    real_build = scene_mod._make_textures

    def no_build(_cfg):  # a load rebuilds the first texture only, to compare it
        if _cfg.n_textures == 1:
            return real_build(_cfg)
        raise AssertionError("the texture bank was rebuilt instead of loaded from the cache")

    with monkeypatch.context() as m:
        m.setattr(scene_mod, "_make_textures", no_build)
        np.testing.assert_array_equal(texture_bank(cfg), bank)
    # another texture seed: another file, other textures
    other = texture_bank(dataclasses.replace(cfg, texture_seed=4243))
    assert len(list(tmp_path.glob("*.npz"))) == 2 and not np.array_equal(other, bank)
    # an unreadable cache file is rebuilt, with a warning, not trusted
    files[0].write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="texture cache"):
        np.testing.assert_array_equal(texture_bank(cfg), bank)
    np.testing.assert_array_equal(np.load(files[0])["bank"], bank)


def test_texture_bank_is_a_pure_function_of_its_config(monkeypatch, tmp_path):
    np.random.seed(1)
    torch.manual_seed(1)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "a"))
    a = texture_bank(SceneConfig(n_textures=2, texture_seed=9))
    np.random.seed(2)
    torch.manual_seed(2)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "b"))
    b = texture_bank(SceneConfig(n_textures=2, texture_seed=9))
    np.testing.assert_array_equal(a, b)
    assert Path(tmp_path / "a").is_dir() and Path(tmp_path / "b").is_dir()


def test_envs_leave_global_rngs_alone(monkeypatch, tmp_path, global_rng_guard):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))  # a cold cache: the bank is built here
    env = saccade_env.SaccadeMNISTEnv(n_textures=2, max_saccades=2)
    assert list(tmp_path.glob("*.npz"))
    env.reset()
    env.reset(seed=3)
    for t in range(12):
        _, _, term, trunc, _ = env.step(look(0.1, -0.2) if t % 4 else answer(3))
        if term or trunc:
            env.reset(options={"eccentricity": 5} if t % 2 else None)
    venv = saccade_env.SaccadeMNISTVectorEnv(4, n_textures=2, max_saccades=2, privileged=True)
    venv.reset()
    venv.reset(seed=[1, 2, 3, 4], options={"label": 2})
    for t in range(8):
        venv.step({"saccade": torch.full((4, 2), 0.25), "answer": torch.tensor([10, 10, 10, t % 10])})
    venv.close()
    env.close()
