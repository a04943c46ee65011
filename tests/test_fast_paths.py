"""The environment's fast paths give what the general code gives.

- the periphery read from precomputed box maps at pixel-grid fixations (one eye, batches,
  batches in several chunks) == :meth:`Periphery.read`,
  including fixations at and near the scene's edges and corners;
- the core's periphery with maps stored, maps computed at read time (batches over the
  memory budget) and fixations off the grid (general bilinear read);
- the counter-based RNG's one-stream path == the batched hash;
- a single env's action check == the batched check;
- the single env's shortcuts (an episode's last observation repeats the one before, resets
  drawn into the env's own tensors) hand out arrays that nothing changes afterwards.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import gymnasium as gym

import saccade_env  # noqa: F401  (registers the ids)
from saccade_env import rng, spaces
from saccade_env.core import SaccadeCore, make_config
from saccade_env.retina import Periphery, PeripheryConfig


def grid_offsets(S: int, n: int, seed: int) -> torch.Tensor:
    """(n, 2) integer pixel offsets in [-S/2, S/2]: corners, edges, centre, then random."""
    h = S // 2
    fixed = [(0, 0), (h, h), (-h, -h), (h, -h), (-h, h), (h - 1, 0), (0, -h + 1), (-h, 3), (5, h), (h - 13, -(h - 13))]
    g = torch.Generator().manual_seed(seed)
    rand = torch.randint(-h, h + 1, (max(n - len(fixed), 0), 2), generator=g)
    return torch.cat([torch.tensor(fixed), rand])[:n]


@pytest.mark.parametrize("cfg,S", [(PeripheryConfig(), 128), (PeripheryConfig(whiten=False, ecc_max=0.3), 60),
                                   (PeripheryConfig(), 100), (PeripheryConfig(n_phase=1, kernel=7), 64)])
def test_prepared_read_equals_general_read_on_the_grid(cfg, S):
    P = Periphery(cfg, S)
    n = 40
    g = torch.Generator().manual_seed(S)
    whitened = P.whiten(torch.rand(n, S, S, generator=g), pad=0.5)
    fix = grid_offsets(S, n, S).double().div(S / 2).float()
    assert P.on_grid(fix)
    expect = P.read(whitened, fix)
    maps = P.prepare(whitened)
    assert maps.shape == (n, *P.map_shape)
    # one eye: the same products summed in the same order, so the same values (where S/2 is
    # a power of two: elsewhere k / (S/2) is not exact in float32 and read() interpolates)
    same = torch.equal if S in (64, 128) else (lambda a, b: torch.allclose(a, b, atol=1e-6 * P.bound(), rtol=0))
    for i in range(n):
        assert same(P.read_prepared(maps[i:i + 1], fix[i:i + 1]), expect[i:i + 1])
    # batches (of every size, in several chunks too) sum the bilinear taps per sample first
    P.chunk_prepared = 16
    for rows in (slice(0, 2), slice(3, 8), slice(0, n)):
        torch.testing.assert_close(P.read_prepared(maps[rows], fix[rows]), expect[rows], atol=1e-6 * P.bound(), rtol=0)


def test_box_maps_are_the_block_means():
    P = Periphery(PeripheryConfig(), 128)
    w = torch.randn(2, 128, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()
    maps = P.prepare(w)
    pad = 1 << (P.levels - 1)
    padded = torch.nn.functional.pad(w.double(), (pad, 2 * pad, pad, 2 * pad))
    for lv in range(P.levels):
        s = 1 << lv
        for y, x in [(-pad, -pad), (-3, 5), (0, 0), (60, 127), (127, 127), (128, 128), (100, -7)]:
            block = padded[:, y + pad:y + pad + s, x + pad:x + pad + s].mean((1, 2)).float()
            torch.testing.assert_close(maps[:, lv, y + pad, x + pad], block, atol=1e-6, rtol=0)


def test_on_grid():
    P = Periphery(PeripheryConfig(), 128)
    assert P.on_grid(torch.tensor([[0.5, -1.0]])) and P.on_grid(torch.tensor([[0.5, -1.0], [1.0, 0.0]]))
    assert not P.on_grid(torch.tensor([[0.5 + 1 / 256, 0.0]]))  # half a pixel
    assert P.on_grid(torch.tensor([[0.5 + 1e-7, 0.0]]))  # float32 rounding of a multiple of a pixel
    assert not P.on_grid(torch.tensor([[0.0, 0.0], [0.0, 1 / 256]]))
    assert not P.on_grid(torch.tensor([[1.0 + 1 / 64, 0.0]]))  # outside the scene's square
    assert not P.on_grid(torch.tensor([[0.0, 0.0], [0.0, -1.0 - 1 / 64]]))
    assert not P.on_grid(torch.zeros(1, 2, requires_grad=True))


@pytest.mark.parametrize("B", [1, 3, 20])
def test_core_periphery_paths_agree(B):
    """Stored maps, maps computed at read time (over the memory budget) and the general
    read (fixations off the grid, or moved by the caller) give the same observations."""
    cfg = make_config(max_saccades=3)
    core = SaccadeCore(cfg)
    lean = SaccadeCore(cfg)
    lean.map_budget = 0
    keys = torch.arange(B) + 100
    st = core.reset(core.init_state(keys), torch.ones(B, dtype=torch.bool))
    st_lean = lean.reset(lean.init_state(keys), torch.ones(B, dtype=torch.bool))
    assert st.maps is not None and st_lean.maps is None
    sac = grid_offsets(128, B, B).float() / 64
    look = torch.full((B,), 10)
    st = core.step(st, sac, look)[0]
    st_lean = lean.step(st_lean, sac, look)[0]
    a, b = core.observe(st), lean.observe(st_lean)
    torch.testing.assert_close(a["periphery"], b["periphery"], atol=1e-5, rtol=0)
    torch.testing.assert_close(a["periphery"], core.periphery.read(st.whitened, st.fixation), atol=1e-5, rtol=0)
    assert torch.equal(a["fovea"], b["fovea"])
    # a caller's fixation off the pixel grid is read by the general bilinear read
    off = st.fixation + 0.3 / 64
    moved = core.observe(dataclasses.replace(st, fixation=off))
    assert torch.equal(moved["periphery"], core.periphery.read(st.whitened, off))
    assert not torch.allclose(moved["periphery"], a["periphery"])


def test_one_stream_uniforms_equal_the_batched_hash():
    g = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 2**32, (200,), generator=g, dtype=torch.int64)
    keys[:2] = torch.tensor([0, 2**32 - 1])
    episodes = torch.randint(0, 10**7, (200,), generator=g)
    for n in (1, 9, 59):
        batched = rng.uniforms(keys, episodes, n)
        one = torch.cat([rng.uniforms(keys[i:i + 1], episodes[i:i + 1], n) for i in range(200)])
        assert torch.equal(batched, one)


@pytest.mark.parametrize("sac,ans", [(np.array([0.3, -0.7], np.float32), 10), (np.array([1.0, -1.0], np.float32), 3),
                                     (np.array([1.0 + 5e-7, -1.0 - 9e-7]), np.int64(0)),
                                     (np.array([0.123456789, 0.9999999999]), np.int32(10))])
def test_single_action_check_equals_batched_check(sac, ans):
    one = spaces.check_action({"saccade": sac, "answer": ans}, None, torch.device("cpu"))
    batched = spaces.check_action({"saccade": sac[None], "answer": np.asarray(ans)[None]}, 1, torch.device("cpu"))
    for x, y in zip(one, batched):
        assert x.dtype == y.dtype and torch.equal(x, y)


def test_single_env_shortcuts_hand_out_arrays_nothing_changes():
    env = gym.make("SaccadeMNIST-v0", privileged=True, max_saccades=1).unwrapped
    obs0, info0 = env.reset(seed=4)
    kept0 = {k: v.copy() for k, v in obs0.items()}
    scene0 = info0["scene"].copy()
    obs1, *_ = env.step({"saccade": np.array([0.25, -0.5], np.float32), "answer": 10})
    kept1 = {k: v.copy() for k, v in obs1.items()}
    obs2, _, terminated, _, _ = env.step({"saccade": np.zeros(2, np.float32), "answer": 3})
    assert terminated
    for k in obs1:  # the eye did not move: the same observation, in arrays of its own
        assert np.array_equal(obs2[k], obs1[k]) and not np.shares_memory(obs2[k], obs1[k])
    obs2["fovea"][:] = -1.0  # the caller may write into what it got
    env.reset()  # the next scene is drawn into the env's own tensors
    for k in kept0:
        assert np.array_equal(obs0[k], kept0[k]) and np.array_equal(obs1[k], kept1[k])
    assert np.array_equal(info0["scene"], scene0)
    assert not np.array_equal(env.unwrapped.state.scene[0].numpy(), scene0)


def _play(env, episodes: int, seed: int, reseed_every: int = 0, options_every: int = 0) -> list:
    """Observations and end-of-episode infos of ``episodes`` episodes under a fixed action stream."""
    rng_ = np.random.default_rng(0)
    out = []
    obs, _ = env.reset(seed=seed)
    for i in range(episodes):
        out.append(obs)
        done = False
        while not done:
            look = obs["saccades_left"][0] > 0
            act = {"saccade": rng_.uniform(-1, 1, 2).astype(np.float32), "answer": 10 if look else int(rng_.integers(10))}
            obs, _, te, tr, info = env.step(act)
            out += [obs, info]
            done = te or tr
        opts = {"label": i % 10, "eccentricity": 10.0} if options_every and i % options_every == 1 else None
        obs, _ = env.reset(seed=seed + i if reseed_every and i % reseed_every == 0 else None, options=opts)
    return out


@pytest.mark.parametrize("pid", ["SaccadeMNIST-v0", "SaccadeMNIST-Cluttered60-v0"])
@pytest.mark.parametrize("reseed_every, options_every", [(0, 0), (0, 3), (7, 4)])
def test_single_env_read_ahead_gives_the_episodes_drawn_one_at_a_time(pid, reseed_every, options_every):
    """Episodes drawn ahead in batches (1, 2, 4, ... after each seed) are those drawn alone:
    the same scenes, labels and actions' effects; the periphery to float rounding."""
    runs = []
    for read_ahead in (0, 64):
        env = gym.make(pid, max_saccades=2).unwrapped
        env.read_ahead = read_ahead
        runs.append(_play(env, 40, seed=11, reseed_every=reseed_every, options_every=options_every))
        if read_ahead and not reseed_every:
            assert env._ahead[0].episode.shape[0] == 32  # grew 1, 2, 4, 8, 16, 32 over the 41 resets
    assert len(runs[0]) == len(runs[1])
    for a, b in zip(*runs):
        assert a.keys() == b.keys()
        for k in a:
            if k == "periphery":
                np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6)
            else:
                assert np.array_equal(a[k], b[k]), k


def test_single_env_reseeded_every_episode_draws_one_episode_at_a_time():
    env = gym.make("SaccadeMNIST-v0").unwrapped
    for s in range(3):
        env.reset(seed=s)
        assert env._ahead[0].episode.shape[0] == 1
