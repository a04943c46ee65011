"""The evaluation harness: the rollout loop, the baselines, the confidence intervals, compare_agents."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from agents import registry
from agents.base import check_agent
from agents.baselines import CenterAgent, OracleAgent, RandomAgent, load_agent
from agents.checkpoint import CheckpointError, save_checkpoint
from agents.nets import FovealClassifier, SceneClassifier
from agents.rollout import evaluate, make_env, run_episodes, wilson_interval
from saccade_env.data import load_mnist

EASY = dict(noise=0.0, contrast=1.0)  # digits on black: a template classifier reads them


class Templates(torch.nn.Module):
    """Nearest class mean of centred training digits: a classifier without training."""

    def __init__(self):
        super().__init__()
        images, labels = load_mnist("train")
        x = torch.tensor(images[:20000], dtype=torch.float32).view(-1, 784) / 255
        y = torch.tensor(labels[:20000])
        means = torch.stack([x[y == c].mean(0) for c in range(10)])
        self.register_buffer("means", means)

    def forward(self, fovea):
        return -torch.cdist(fovea.reshape(fovea.shape[0], -1), self.means) * 10


@pytest.fixture(scope="module")
def templates():
    return Templates()


def test_baselines_follow_the_protocol(templates):
    for agent in (CenterAgent(templates), RandomAgent(templates), OracleAgent(templates)):
        check_agent(agent)
    with pytest.raises(TypeError, match="not an agent"):
        check_agent(object())


def test_oracle_beats_random_and_center_on_an_easy_configuration(templates):
    kw = dict(budget=2, episodes=300, batch_size=150, seed=3, **EASY)
    oracle = evaluate(OracleAgent(templates), **kw)
    random = evaluate(RandomAgent(templates), **kw)
    center = evaluate(CenterAgent(templates), **kw)
    assert oracle.accuracy > 0.6, oracle.accuracy
    assert oracle.accuracy > random.accuracy + 0.2
    assert oracle.accuracy > center.accuracy + 0.2
    assert (oracle.n_saccades == 1).all() and (random.n_saccades == 2).all() and (center.n_saccades == 0).all()


def test_privileged_agents_need_a_privileged_env(templates):
    import gymnasium as gym
    venv = gym.make_vec("SaccadeMNIST-v0", num_envs=4, sensors=("fovea",))
    with pytest.raises(ValueError, match="privileged=True"):
        run_episodes(venv, OracleAgent(templates), seed=0)


def test_episodes_do_not_depend_on_the_batch_size(templates):
    a = evaluate(CenterAgent(templates), budget=1, episodes=50, batch_size=50, seed=7)
    b = evaluate(CenterAgent(templates), budget=1, episodes=50, batch_size=16, seed=7)
    np.testing.assert_array_equal(a.eccentricity, b.eccentricity)
    np.testing.assert_array_equal(a.correct, b.correct)


def test_run_episodes_records_steps_and_ends_every_episode(templates):
    agent = RandomAgent(templates)
    venv = make_env("SaccadeMNIST-v0", agent=agent, num_envs=8, max_saccades=3, split="train")
    ep = run_episodes(venv, agent, seed=0, record=True)
    assert len(ep.steps) == 4  # 3 looks and the answer
    assert (ep.length == 4).all() and (ep.n_saccades == 3).all()
    assert torch.equal(ep.reward, ep.correct.float())
    assert ep.steps[0]["obs"]["fovea"].shape == (8, 1, 28, 28)
    assert "label" not in ep.steps[0]["obs"]


def test_evaluate_refuses_bad_arguments(templates):
    agent = CenterAgent(templates)
    for kw in ({"episodes": 0}, {"budget": -1}, {"batch_size": 0}, {"seed": -1}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            evaluate(agent, **{"budget": 1, "episodes": 10, **kw})


def test_wilson_interval_known_values_and_coverage():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(81, 100)
    assert lo == pytest.approx(0.7222, abs=1e-4) and hi == pytest.approx(0.8749, abs=1e-4)
    # coverage: the interval holds the true p in about 95% of binomial draws
    rng = np.random.default_rng(0)
    for p in (0.1, 0.5, 0.9):
        draws = rng.binomial(200, p, size=4000)
        covered = np.mean([lo <= p <= hi for lo, hi in (wilson_interval(int(d), 200) for d in draws)])
        assert 0.93 < covered < 0.975, (p, covered)


@pytest.fixture()
def checkpoint_dir(tmp_path, monkeypatch):
    torch.manual_seed(0)
    fov, scene = FovealClassifier(), SceneClassifier()
    save_checkpoint(tmp_path / "foveal.pt", agent="foveal", config={"width": 24}, weights={"net": fov.state_dict()})
    save_checkpoint(tmp_path / "fullview.pt", agent="fullview", config={"net": scene.config},
                    weights={"net": scene.state_dict()})
    monkeypatch.setenv("SACCADE_ENV_CHECKPOINTS", str(tmp_path))
    return tmp_path


def test_compare_agents_end_to_end_and_reproducible(checkpoint_dir, tmp_path):
    from eval import compare_agents as ca
    cfg = ca.Config(agents=("center", "random", "oracle", "fullview"), budgets=(0, 1), episodes=24,
                    batch_size=12, device="cpu", out=str(tmp_path / "a"))
    first = ca.main(cfg)
    second = ca.main(ca.Config(**{**cfg.__dict__, "out": str(tmp_path / "b")}))
    accuracy = lambda t: t.split("Mean saccades")[0]  # noqa: E731  (decisions/s are timings)
    assert accuracy(first) == accuracy(second)
    assert "oracle (privileged)" in first and "fullview (privileged)" in first
    for name in ("table.md", "table.csv", "table.json", "accuracy_vs_saccades.png", "accuracy_vs_eccentricity.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    rows = list(csv.DictReader(open(tmp_path / "a" / "table.csv")))
    assert len(rows) == 8 and {r["agent"] for r in rows} == {"center", "random", "oracle", "fullview"}
    data = json.loads((tmp_path / "a" / "table.json").read_text())
    assert all(0 <= r["ci_low"] <= r["accuracy"] <= r["ci_high"] <= 1 for r in data["rows"])


def test_missing_or_wrong_checkpoint_names_the_script(tmp_path, monkeypatch):
    monkeypatch.setenv("SACCADE_ENV_CHECKPOINTS", str(tmp_path))
    assert registry.available() == []
    with pytest.raises(CheckpointError, match="python train/foveal.py"):
        load_agent("center")
    with pytest.raises(CheckpointError, match="python train/fullview.py"):
        registry.load("fullview")
    (tmp_path / "foveal.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="damaged.*train/foveal.py"):
        load_agent("oracle")
    save_checkpoint(tmp_path / "foveal.pt", agent="fullview", config={}, weights={})
    with pytest.raises(CheckpointError, match="holds a 'fullview' agent"):
        load_agent("oracle")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where CUDA is absent")
def test_cuda_agents_without_cuda_say_what_to_pass(tmp_path):
    from agents.ppo import from_sb3_zip
    for name in registry.available():
        with pytest.raises(ValueError, match="device='cpu'"):
            registry.load(name, device="cuda")
    with pytest.raises(ValueError, match="device='cpu'"):  # SB3 alone would quietly load it on the CPU
        from_sb3_zip(tmp_path / "model.zip", device="cuda")


def test_compare_agents_rejects_bad_arguments():
    from eval import compare_agents as ca
    with pytest.raises(ValueError, match="unknown agent"):
        ca.Config(agents=("nobody",))
    with pytest.raises(ValueError, match="budgets"):
        ca.Config(budgets=(-1,))


def test_cap_flag_parses_both_ways_and_negative_boolean_names_are_refused():
    """``--no-cap`` lifts the CPU cap of the slow planners (argparse reads any ``--no-x`` as
    x=False, so a field named ``no_cap`` silently did the opposite; such names are refused)."""
    from dataclasses import dataclass

    from agents.cli import parse_config
    from eval import compare_agents as ca
    assert parse_config(ca.Config, []).cap is True
    assert parse_config(ca.Config, ["--no-cap"]).cap is False

    @dataclass(frozen=True)
    class Bad:
        no_cap: bool = False

    with pytest.raises(TypeError, match="positively"):
        parse_config(Bad, [])


def test_scanpaths_gif(checkpoint_dir, tmp_path):
    from PIL import Image

    from eval.figure_commands import scanpaths
    out = scanpaths.main(scanpaths.Config(agents=("random", "oracle"), episodes=2, budget=2, device="cpu",
                                          out=str(tmp_path / "s.gif")))
    im = Image.open(out)
    assert im.n_frames >= 3 and im.size[0] > 2 * 256
    with pytest.raises(ValueError, match=".gif"):
        scanpaths.Config(out="x.mp4")


def test_monte_carlo_entries_match_evaluate_mc(tmp_path, monkeypatch):
    """A registry entry with mc_samples is compared through agents.ram.evaluate_mc, on the same
    episodes and with the same answers as calling it directly."""
    from agents.ram import RAMConfig, build_agent, config_dict, evaluate_mc, load_agent
    from eval import compare_agents as ca
    env = "SaccadeMNIST-Centered28-v0"
    torch.manual_seed(0)
    net = RAMConfig(hidden=16, what_hidden=8, where_hidden=8, std=0.3)
    save_checkpoint(tmp_path / "ram-centered28.pt", agent="ram-centered28",
                    config={"env_id": env, "net": config_dict(net), "max_saccades": 5},
                    weights={"net": build_agent(net).net.state_dict()})
    monkeypatch.setenv("SACCADE_ENV_CHECKPOINTS", str(tmp_path))
    assert registry.AGENTS["ram-centered28-mc8"].mc_samples == 8
    import agents.ram
    calls = []
    monkeypatch.setattr(agents.ram, "evaluate_mc", lambda *a, **k: calls.append(k["samples"]) or evaluate_mc(*a, **k))
    ca.main(ca.Config(env=env, agents=("ram-centered28-mc8",), budgets=(2,), episodes=30, batch_size=80,
                      device="cpu", out=str(tmp_path / "out")))
    row = json.loads((tmp_path / "out" / "table.json").read_text())["rows"][0]
    direct = evaluate_mc(load_agent(preset=env), env_id=env, budget=2, episodes=30, samples=8, seed=0,
                         batch_size=10)
    assert calls == [8] and row["episodes"] == 30 and row["mean_saccades"] == 2.0
    assert row["accuracy"] == pytest.approx(direct.accuracy)
