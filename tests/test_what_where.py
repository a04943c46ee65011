"""The What/Where saccader: shapes, the log-polar targets, the greedy policy, and a short
training run of Where that beats chance at choosing cells."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from agents import what_where as ww
from agents.rollout import make_env
from saccade_env.retina import Periphery, PeripheryConfig

ROOT = Path(__file__).resolve().parent.parent
S = 128


@pytest.fixture(scope="module")
def periphery():
    return Periphery(PeripheryConfig(), S)


def gaussian_map(radius=40, spacing=2, width=6.0, floor=0.1, peak=0.95):
    """A known accuracy map: ``peak`` at shift 0 falling to ``floor``, (M, M) [y, x]."""
    s = torch.arange(-radius, radius + 1, spacing, dtype=torch.float32)
    d2 = s[None, :] ** 2 + s[:, None] ** 2
    return floor + (peak - floor) * torch.exp(-d2 / (2 * width**2))


def test_grid_is_the_periphery_grid(periphery):
    g = ww.saccade_grid(periphery)
    assert g.shape == (10, 24, 2)
    torch.testing.assert_close(g.norm(dim=-1), periphery.radius_px[:, None].expand(10, 24), rtol=1e-5, atol=1e-5)
    ang = torch.atan2(g[..., 1], g[..., 0])
    diff = torch.remainder(ang - periphery.azimuth + math.pi, 2 * math.pi) - math.pi
    assert diff.abs().max() < 1e-4
    # odd rings sit half an azimuth step off the even ones, as the periphery's filters do
    assert abs(float(periphery.azimuth[1, 0] - periphery.azimuth[0, 0]) - math.pi / 24) < 1e-5


@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_where_shapes(periphery, arch):
    net = ww.build_where(ww.WhereConfig(arch=arch, channels=8, layers=2, hidden=32), periphery=periphery, scene_size=S)
    out = net(torch.randn(3, 12, 10, 24), torch.zeros(3, 2))
    assert out.shape == (3, 10, 24) and torch.isfinite(out).all()


def test_glimpse_where_shapes_and_wrong_glimpse(periphery):
    cfg = ww.WhereConfig(arch="glimpse", channels=4, layers=2, glimpse_size=8, glimpse_scales=3)
    net = ww.build_where(cfg, periphery=periphery, scene_size=S)
    assert cfg.sensor == "glimpse" and net.mirror_azimuths is None
    out = net(torch.randn(3, 3, 8, 8), torch.tensor([[0.0, 0.0], [0.9, -0.9], [-0.3, 0.5]]))
    assert out.shape == (3, 10, 24) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="glimpse_size=8, glimpse_scales=3"):
        net(torch.randn(3, 4, 8, 8), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="mirror_views=False"):
        ww.WhatWhereAgent(what=Unsure(), where=net, mirror_views=True)


def identity_glimpse_where(periphery, *, background: float):
    """A glimpse Where whose heat maps are the glimpse itself less the background: a cell's
    logit is the brightness at its landing point, summed over the scales."""
    net = ww.build_where(ww.WhereConfig(arch="glimpse", glimpse_size=16, glimpse_scales=4), periphery=periphery,
                         scene_size=S)
    net.scale_nets = nn.ModuleList([nn.Identity() for _ in range(4)])
    net.in_shift.fill_(background)
    return net


@pytest.mark.parametrize("fix_px", [(0, 0), (-20, 10)])
def test_glimpse_where_reads_each_cell_at_its_landing(periphery, fix_px):
    """A bright square 20 px right of and 12 px above the eye: the brightest cell is the one
    whose saccade lands on it (x right, y down, as the env's actions)."""
    from saccade_env.retina import glimpse
    net = identity_glimpse_where(periphery, background=0.0)
    fx, fy = fix_px
    spot = (64 + fx + 20, 64 + fy - 12)  # (x, y) pixel of the square's centre
    scene = torch.zeros(1, S, S)
    scene[0, spot[1] - 3:spot[1] + 4, spot[0] - 3:spot[0] + 4] = 1.0
    fix = torch.tensor([[fx, fy]], dtype=torch.float32) / (S / 2)
    with torch.no_grad():
        logits = net(glimpse(scene, fix, size=16, scales=4), fix)
    land = ww.landings(fix, net.grid, scene_size=S, reach=net.reach).flatten(1, 2)[0]  # (E*A, 2) px
    best = land[logits.flatten().argmax()]
    want = torch.tensor([spot[0] - 64.0, spot[1] - 64.0])
    assert float((best - want).norm()) < 5.0, (best, want)


def test_conv_where_is_rotation_equivariant(periphery):
    """Rotating the periphery by one azimuth step (eye at the centre, nothing clipped)
    rotates the map by one step: the circular padding makes it so."""
    net = ww.build_where(ww.WhereConfig(channels=8, layers=3), periphery=periphery, scene_size=S)
    net.reach = 1e6  # no clipping: the landing channels rotate too
    x = torch.randn(2, 12, 10, 24)
    # the landing channels are not rolled with the input: zero their weights
    with torch.no_grad():
        net.convs[0].weight[:, 12:14] = 0
    a, b = net(x, torch.zeros(2, 2)), net(torch.roll(x, 1, dims=-1), torch.zeros(2, 2))
    torch.testing.assert_close(torch.roll(a, 1, dims=-1), b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fix_px", [(0, 0), (-10, 6)])
def test_targets_peak_at_the_cell_on_the_digit(periphery, fix_px):
    """A known map shifted to a digit placed on cell (8, 5) lands its maximum on that cell."""
    grid = ww.saccade_grid(periphery)
    fixation = torch.tensor([fix_px], dtype=torch.float32) / (S / 2)
    land = ww.landings(fixation, grid, scene_size=S, reach=ww.default_reach(S))
    e, a = 8, 5
    offset = land[0, e, a].round().long()[None]  # the digit's centre, px
    t = ww.where_targets(gaussian_map(), offset, fixation, grid, spacing=2, floor=0.1, scene_size=S,
                         reach=ww.default_reach(S))
    assert t.shape == (1, 10, 24)
    assert divmod(int(t.flatten().argmax()), 24) == (e, a)
    assert abs(float(t[0, e, a]) - 0.95) < 1e-4  # zero shift reads the map's centre
    assert float(t.min()) >= 0.1 - 1e-6  # far cells read the floor


def test_lookup_matches_the_map_on_its_grid():
    m = torch.rand(41, 41)
    sy, sx = 7, -12  # map indices from the centre: shift (x, y) = (2 * sx, 2 * sy) px
    v = ww.lookup_accuracy(m, torch.tensor([[2.0 * sx, 2.0 * sy]]), spacing=2, floor=0.0)
    assert abs(float(v[0]) - float(m[20 + sy, 20 + sx])) < 1e-5
    far = ww.lookup_accuracy(m, torch.tensor([[500.0, 0.0]]), spacing=2, floor=0.1)
    assert abs(float(far[0]) - 0.1) < 1e-6


class EnergyWhere(nn.Module):
    """A hand-built Where: the predicted accuracy of a cell grows with the periphery's energy there."""

    cfg = ww.WhereConfig()  # reads the periphery

    def __init__(self, periphery):
        super().__init__()
        self.register_buffer("grid", ww.saccade_grid(periphery))
        self.scene_size, self.reach = S, ww.default_reach(S)

    def forward(self, periphery, fixation):
        energy = periphery.pow(2).sum(1)  # (B, E, A)
        return 10 * (energy / energy.flatten(1).amax(1)[:, None, None] - 0.5)


class Unsure(nn.Module):
    def forward(self, fovea):
        return torch.zeros(fovea.shape[0], 10)


@pytest.mark.parametrize("sensor", ["periphery", "glimpse"])
def test_greedy_policy_looks_toward_a_bright_digit(periphery, sensor):
    """The agent asks make_env for the sensor its Where reads, and looks toward the digit."""
    if sensor == "periphery":
        where = EnergyWhere(periphery)
    else:
        from agents.scenes import preset_scene
        where = identity_glimpse_where(periphery, background=preset_scene("SaccadeMNIST-v0").background)
    agent = ww.WhatWhereAgent(what=Unsure(), where=where)
    assert agent.sensors == ("fovea", sensor)
    venv = make_env("SaccadeMNIST-v0", agent=agent, num_envs=16, max_saccades=2, noise=0.0, contrast=1.0)
    obs, info = venv.reset(seed=3, options={"eccentricity": 30.0})
    other = {"periphery": "glimpse", "glimpse": "periphery"}[sensor]
    assert sensor in obs and other not in obs
    if sensor == "glimpse":
        assert obs["glimpse"].shape == (16, 4, 16, 16)
    u = venv.unwrapped
    target = u.core.target_xy(u.state)  # (B, 2) the digits' centres
    action, state = agent.act(obs, agent.reset(16, torch.device("cpu")))
    assert (action["answer"] == 10).all()  # unsure of a blank fovea: it looks
    # the saccade lands near the digit (30 px from the start)
    dist = (action["saccade"] - target).norm(dim=1) * (S / 2)
    assert float(dist.median()) < 12, dist
    assert float((dist < 20).float().mean()) >= 0.75, dist
    venv.close()


def test_greedy_policy_answers_when_confident(periphery):
    class Sure(nn.Module):
        def forward(self, fovea):
            out = torch.zeros(fovea.shape[0], 10)
            out[:, 3] = 50.0
            return out

    agent = ww.WhatWhereAgent(what=Sure(), where=EnergyWhere(periphery))
    obs = {"fovea": torch.rand(4, 1, 28, 28), "periphery": torch.randn(4, 12, 10, 24),
           "fixation": torch.zeros(4, 2), "saccades_left": torch.ones(4, 1)}
    action, _ = agent.act(obs, agent.reset(4, torch.device("cpu")))
    assert (action["answer"] == 3).all()


def test_inhibition_of_return_never_picks_the_current_place(periphery):
    agent = ww.WhatWhereAgent(what=Unsure(), where=EnergyWhere(periphery), inhibition_of_return=True, ior_radius=5.0)
    obs = {"fovea": torch.rand(4, 1, 28, 28), "periphery": torch.zeros(4, 12, 10, 24),
           "fixation": torch.zeros(4, 2), "saccades_left": torch.ones(4, 1)}
    obs["periphery"][:, :, 0] = 5.0  # innermost ring brightest: it lands within 5 px of the eye
    action, state = agent.act(obs, agent.reset(4, torch.device("cpu")))
    assert ((action["saccade"] * (S / 2)).norm(dim=1) >= 5.0).all()
    assert state["past"].shape == (4, 1, 2)


def test_mirrored_view_reads_the_mirrored_scene(periphery):
    """Where's mirrored view of a scene is its plain view of the scene flipped top to bottom
    (fixation's y negated), mapped back cell by cell to the flipped scene's cells."""
    torch.manual_seed(0)
    net = ww.build_where(ww.WhereConfig(channels=8, layers=3), periphery=periphery, scene_size=S)
    fix = torch.tensor([[0.1, 0.2], [-0.2, -0.1]])
    flip = fix * torch.tensor([1.0, -1.0])
    g = torch.Generator().manual_seed(2)
    scenes = torch.nn.functional.avg_pool2d(torch.rand(2, 1, S + 3, S + 3, generator=g), 4, stride=1)[:, 0]
    with torch.no_grad():
        p, p_flip = periphery(scenes, fix, pad=0.5), periphery(scenes.flip(-2), flip, pad=0.5)
        net.in_scale.copy_(p.std(dim=(0, 3)))  # the responses, not the landing channels, drive the net
        plain = net(p, fix)
        _, _, azimuths = ww.mirror_indices(periphery.cfg)
        want = plain.gather(-1, azimuths.expand_as(plain))  # plain's cell (e, a) is the flipped scene's (e, az)
        spread = float(plain.std())
        assert float((net(p_flip, flip, mirrored=True) - want).abs().max()) < 0.1 * spread  # wrong maps: ~4
        assert float((net(p_flip, flip) - want).abs().max()) > 0.3 * spread  # the net is not mirror-symmetric
        # the agent's mirror_views averages the two views' predicted accuracies
        agent = ww.WhatWhereAgent(what=Unsure(), where=net, mirror_views=True)
        both = 0.5 * (torch.sigmoid(plain) + torch.sigmoid(net(p, fix, mirrored=True)))
        torch.testing.assert_close(agent.predicted_accuracy(p, fix), both)
    bare = ww.WhereNet(ww.WhereConfig(channels=8, layers=3), grid=net.grid, in_channels=12, scene_size=S, reach=50.0)
    with pytest.raises(ValueError, match="build_where"):
        ww.WhatWhereAgent(what=Unsure(), where=bare, mirror_views=True)


def _train_module():
    spec = importlib.util.spec_from_file_location("train_what_where", ROOT / "train" / "what_where.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("arch", ["conv", "glimpse"])
def test_short_training_beats_chance(periphery, arch):
    """A few seconds of training on a known accuracy map, on clean scenes (no noise: the
    noisy preset needs minutes, see docs/agents/what-where.md): on held-out test digits the
    cell Where picks beats a random cell (chance) and the best fixed cell (the prior of a
    Where blind to its input) by wide margins."""
    tr = _train_module()
    torch.manual_seed(0)
    cfg = tr.Config(scenes=768, val_scenes=256, steps=200, batch_size=32, channels=12, layers=3, lr=3e-3,
                    centre=0.6, near=0.2, noise=0.0, arch=arch, glimpse_size=8, glimpse_scales=4)
    gen = torch.Generator().manual_seed(0)
    acc_map = gaussian_map(width=8.0)
    train = tr.make_dataset(tr.make_sampler(cfg, "train", torch.device("cpu")), periphery, cfg.scenes, cfg, gen)
    val = tr.make_dataset(tr.make_sampler(cfg, "test", torch.device("cpu")), periphery, cfg.val_scenes, cfg, gen)
    where = ww.build_where(tr.where_config(cfg), periphery=periphery, scene_size=S)
    sensor = where.cfg.sensor
    where.fit_input(train[sensor])
    before = tr.choice_quality(where, val, acc_map, cfg)
    opt = torch.optim.Adam(where.parameters(), lr=cfg.lr)
    for _ in range(cfg.steps):
        idx = torch.randint(cfg.scenes, (cfg.batch_size,), generator=gen)
        loss = nn.functional.binary_cross_entropy_with_logits(
            where(train[sensor][idx].float(), train["fixation"][idx]), tr.targets(train, idx, acc_map, where, cfg))
        opt.zero_grad(); loss.backward(); opt.step()
    after = tr.choice_quality(where, val, acc_map, cfg)
    assert after["picked"] > after["chance"] + 0.3, (before, after)
    assert after["picked"] > after["prior"] + 0.2, (before, after)


def test_wall_clock_budget_stops_and_resumes(tmp_path):
    """``--minutes`` ends training early with a checkpoint and a resume file at the step
    reached; ``--resume`` without the budget then trains the remaining steps."""
    tr = _train_module()
    small = dict(scenes=64, val_scenes=32, map_radius=4, map_spacing=4, map_scenes=4, channels=4, layers=2,
                 batch_size=8, steps=5, eval_episodes=0, noise=0.0, runs=str(tmp_path), name="ww",
                 out=str(tmp_path / "ww.pt"), foveal=str(ROOT / "checkpoints" / "foveal.pt"), device="cpu")
    tr.main(tr.Config(**small, minutes=1e-9))  # spent before the first step
    assert torch.load(tmp_path / "ww" / "resume.pt", weights_only=True)["step"] == 0
    assert (tmp_path / "ww.pt").is_file()
    tr.main(tr.Config(**small, resume="yes"))
    assert torch.load(tmp_path / "ww" / "resume.pt", weights_only=True)["step"] == 5
