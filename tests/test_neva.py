"""NeVA (agents/neva.py): the foveation and its memory, the optimiser, and no label reaching the agent."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.checkpoint import CheckpointError
from agents.neva import (NevaAgent, NevaConfig, ViewClassifier, foveate, gaussian_blur, load_agent, memory, paste,
                         window)
from agents.rollout import make_env, run_episodes
from saccade_env.retina import fovea

CFG = NevaConfig()
S = CFG.scene_size


def xy(px_x: float, px_y: float) -> torch.Tensor:
    """Scene coordinates of a point ``px`` pixels right/down of the centre (a pixel centre at +0.5)."""
    return torch.tensor([px_x, px_y]) / (S / 2)


def at(img: torch.Tensor, px_x: float, px_y: float) -> float:
    """Value of a (S, S) image at the pixel whose centre is (px_x, px_y) from the scene's centre."""
    return float(img[int(px_y - 0.5 + S / 2), int(px_x - 0.5 + S / 2)])


def test_window_is_sharp_at_the_fixation_and_zero_outside_the_fovea():
    f = xy(10.5, -20.5)
    g = window(f[None], CFG)[0]
    assert at(g, 10.5, -20.5) == pytest.approx(1.0)
    assert at(g, 10.5 + 5, -20.5 + 5) == pytest.approx(1.0)  # amplitude 2: flat top within ~9 px
    assert 0.05 < at(g, 10.5 + 12, -20.5) < 0.95  # the Gaussian's flank
    assert at(g, 10.5 + 16, -20.5) < 0.02 and at(g, 10.5, -20.5 - 16) < 0.02  # past the fovea's edge
    assert at(g, -40.5, 30.5) < 1e-6
    assert g.min() >= 0 and g.max() <= 1


def test_memory_decays_by_forgetting_per_fixation():
    pts = torch.stack([xy(-40.5, 0.5), xy(0.5, 0.5), xy(40.5, 0.5)])[None]  # (1, 3, 2), far apart
    m = memory(pts, CFG, 0.5)[0]
    assert at(m, -40.5, 0.5) == pytest.approx(0.25, abs=1e-4)  # two fixations ago
    assert at(m, 0.5, 0.5) == pytest.approx(0.5, abs=1e-4)
    assert at(m, 40.5, 0.5) == pytest.approx(1.0, abs=1e-4)
    assert at(m, 0.5, 50.5) < 1e-6
    # the recurrence M <- forgetting * M + g(f) that the agent runs gives the same memory
    rec = torch.zeros(S, S)
    for t in range(3):
        rec = 0.5 * rec + window(pts[0, t][None], CFG)[0]
    assert torch.allclose(rec, m, atol=1e-5)
    # absent (NaN) fixations count for nothing, wherever they are
    nan = torch.full((1, 1, 2), float("nan"))
    assert torch.allclose(memory(torch.cat([pts, nan], 1), CFG, 0.5), m, atol=1e-6)
    assert torch.allclose(memory(torch.cat([pts[:, :1], nan, pts[:, 1:]], 1), CFG, 0.5), m, atol=1e-6)


def test_foveate_is_sharp_under_the_window_and_blurred_far_from_it():
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(2, S, S, generator=gen)
    blurred = gaussian_blur(img, CFG.blur)
    sharp = window(torch.stack([xy(0.5, 0.5), xy(30.5, -30.5)]), CFG)
    v = foveate(img, sharp, blurred)
    assert at(v[0], 0.5, 0.5) == pytest.approx(at(img[0], 0.5, 0.5))
    assert at(v[1], 30.5, -30.5) == pytest.approx(at(img[1], 30.5, -30.5))
    assert at(v[0], 40.5, 40.5) == pytest.approx(at(blurred[0], 40.5, 40.5))
    assert float(blurred.std()) < 0.5 * float(img.std())  # the blur removes detail


def test_paste_puts_the_fovea_where_the_eye_was():
    gen = torch.Generator().manual_seed(1)
    scene = torch.rand(3, S, S, generator=gen)
    fix = torch.stack([xy(0, 0), xy(-60, 50), xy(64, -64)])  # on the grid, incl. half outside the scene
    fov = fovea(scene, fix, size=CFG.fovea, pad=0.5)
    canvas, seen = paste(torch.zeros(3, S, S), torch.zeros(3, S, S, dtype=torch.bool), fov, fix)
    assert torch.equal(canvas[seen], scene[seen])
    assert int(seen[0].sum()) == CFG.fovea**2 and int(seen[2].sum()) == (CFG.fovea // 2) ** 2


class Sharpness(nn.Module):
    """A hand-built differentiable 'classifier': class 0's logit is the view's energy
    (sum of squares), so the loss of class 0 falls where the window uncovers bright detail."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.05))

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        e = (view**2).sum((1, 2)) * self.scale
        return torch.stack([e] + [torch.zeros_like(e)] * 9, 1)


def test_one_step_moves_the_fixation_toward_a_lone_bright_target():
    cfg = NevaConfig(background=0.0, steps=1, n_ring=0, lr=0.05)
    agent = NevaAgent(classifier=Sharpness(), config=cfg, planner="causal")
    for tx, ty in ((10, 0), (-8, 6), (0, -11)):
        scene = torch.zeros(1, S, S)
        r, c = int(ty + S / 2), int(tx + S / 2)
        scene[0, r - 2:r + 2, c - 2:c + 2] = 1.0  # a lone bright square, off the start (the centre)
        pos = agent.plan(scene, torch.zeros(1, S, S), torch.zeros(1, dtype=torch.long))[0]
        assert torch.sign(pos[0]) == torch.sign(torch.tensor(float(tx))) or tx == 0
        assert torch.sign(pos[1]) == torch.sign(torch.tensor(float(ty))) or ty == 0
        assert pos.abs().max() == pytest.approx(cfg.lr)  # exactly one sign step was taken (and kept)
        old = torch.zeros(2)
        assert (pos - xy(tx, ty)).norm() < (old - xy(tx, ty)).norm()


def test_a_descent_from_the_current_fixation_can_keep_the_eye_on_the_target():
    """A bright target far from the centre and the ring: the descents from there never reach
    it, so only the start at the current fixation (``from_current``) finds it again."""
    scene = torch.zeros(1, S, S)
    r, c = int(-40 + S / 2), int(44 + S / 2)
    scene[0, r - 2:r + 2, c - 2:c + 2] = 1.0
    here = xy(44, -40)[None]
    picked = {}
    for flag in (True, False):
        cfg = NevaConfig(background=0.0, steps=2, n_ring=4, lr=0.05, from_current=flag)
        agent = NevaAgent(classifier=Sharpness(), config=cfg, planner="causal")
        assert agent.starts(1, torch.device("cpu"), here).shape == (1, 5 + flag, 2)
        picked[flag] = agent.plan(scene, torch.zeros(1, S, S), torch.zeros(1, dtype=torch.long), current=here)[0]
    assert (picked[True] - here[0]).norm() < 0.125  # stays on the target (within 8 px: the window is flat there)
    assert (picked[False] - here[0]).norm() > 0.3  # without it, the eye leaves the target


def small_agent(planner: str) -> NevaAgent:
    torch.manual_seed(0)  # the untrained classifier's weights only (the agent's own RNG is seeded)
    return NevaAgent(classifier=ViewClassifier(width=4), config=NevaConfig(steps=2, n_ring=2), planner=planner)


@pytest.mark.parametrize("planner", ["causal", "privileged"])
def test_no_label_reaches_the_agent(planner):
    """Changing the env's label after reset changes nothing the agent does before it answers."""
    agent = small_agent(planner)
    runs = []
    for shift in (0, 3):
        venv = make_env("SaccadeMNIST-v0", agent=agent, num_envs=3, max_saccades=2)
        reset = venv.reset

        def relabel(*a, _reset=reset, _shift=shift, **k):
            out = _reset(*a, **k)
            st = venv.unwrapped.state
            st.label = (st.label + _shift) % 10
            return out

        venv.reset = relabel
        agent.seed(0)
        ep = run_episodes(venv, agent, seed=5, record=True)
        runs.append(ep)
        venv.close()
    a, b = runs
    assert not torch.equal(a.label, b.label)
    assert len(a.steps) == len(b.steps) == 3
    for sa, sb in zip(a.steps, b.steps):
        assert torch.equal(sa["action"]["saccade"], sb["action"]["saccade"])
        assert torch.equal(sa["action"]["answer"], sb["action"]["answer"])


def test_privileged_variant_refuses_an_unprivileged_env_and_missing_checkpoint_says_how(tmp_path):
    agent = small_agent("privileged")
    assert agent.privileged and agent.name == "neva-privileged"
    assert not small_agent("causal").privileged
    with pytest.raises(ValueError, match="privileged=True"):
        agent.next_fixation(recon=torch.zeros(1, S, S), memory=torch.zeros(1, S, S),
                            answer=torch.zeros(1, dtype=torch.long), info=None)
    with pytest.raises(CheckpointError, match="train/neva.py"):
        load_agent(tmp_path / "none.pt")
