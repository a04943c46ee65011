"""The STN agent: identity initialisation, gradients through the retina, a short CPU run learns."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from agents.base import LOOK, check_agent
from agents.checkpoint import CheckpointError
from agents.rollout import make_env, run_episodes
from agents.stn import STNAgent, STNConfig, load_agent
from saccade_env.retina import fovea

ROOT = Path(__file__).resolve().parent.parent


def _train_module():
    spec = importlib.util.spec_from_file_location("train_stn", ROOT / "train" / "stn.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_stn", mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


V0_SHAPES = (("fovea", (1, 28, 28)), ("periphery", (12, 10, 24)))


def test_identity_initialisation_keeps_the_eye_at_the_centre():
    agent = STNAgent(config=STNConfig(shapes=V0_SHAPES))
    check_agent(agent)
    assert agent.sensors == ("fovea", "periphery")
    venv = make_env("SaccadeMNIST-v0", agent=agent, num_envs=6, max_saccades=2, split="test")
    obs, _ = venv.reset(seed=3)
    state = agent.reset(6, venv.unwrapped.device)
    action, state = agent.act(obs, state)
    assert torch.equal(action["answer"], torch.full((6,), LOOK))
    assert torch.equal(action["saccade"], torch.zeros(6, 2))  # the centre: identity transform
    obs, *_ = venv.step(action)
    assert torch.equal(obs["fixation"], torch.zeros(6, 2))
    action, _ = agent.act(obs, state)  # still a look (one saccade left), still the same place
    assert torch.equal(action["answer"], torch.full((6,), LOOK)) and torch.equal(action["saccade"], torch.zeros(6, 2))
    obs, *_ = venv.step(action)
    action, _ = agent.act(obs, state)  # budget spent: an answer
    assert bool((action["answer"] < 10).all())
    venv.close()


def test_classification_gradient_reaches_the_localiser_through_the_retina():
    train = _train_module()
    cfg = train.parse_config(train.Config, ["--env", "SaccadeMNIST-v0", "--start-weight", "0", "--jitter-fraction", "0"])
    where = train.default_where(cfg.env)
    assert where == ("periphery", "fovea")
    core = train.make_core(cfg, where, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    state = train.draw_scenes(core, gen, 16)
    start, centred = train.start_fixations(cfg, gen, 16, core.device)
    probe = core.observe(state)
    agent = STNAgent(config=STNConfig(where_sensors=where, background=core.pad,
                                      shapes=tuple((k, tuple(probe[k].shape[1:])) for k in ("fovea", "periphery"))))
    # at the identity initialisation the output layer gets a gradient (learning can start) ...
    out = train.step_losses(cfg, agent, core, state, start, centred, aux_weight=0.0)
    out["loss"].backward()
    assert agent.localiser.out.weight.grad.abs().sum() > 0
    assert agent.localiser.out.bias.grad.abs().sum() > 0
    # ... and once it is off zero, every layer down to the first of each branch does
    torch.nn.init.normal_(agent.localiser.out.weight, std=0.01, generator=torch.Generator().manual_seed(1))
    agent.zero_grad()
    train.step_losses(cfg, agent, core, state, start, centred, aux_weight=0.0)["loss"].backward()
    for k in where:
        first = agent.localiser.branches[k][2].weight.grad
        assert first is not None and first.abs().sum() > 0, k
    # the only path from the loss to the localiser is the fovea read at the regressed fixation:
    # reading it at a detached fixation leaves the localiser without a gradient
    agent.zero_grad()
    with torch.no_grad():
        views = core.observe(state)
    fix = (start + agent.locate(views)).detach()
    loss = torch.nn.functional.cross_entropy(agent.classify(fovea(state.scene, fix, size=28, pad=core.pad)), state.label)
    loss.backward()
    assert agent.localiser.out.weight.grad is None or agent.localiser.out.weight.grad.abs().sum() == 0


def test_short_cpu_run_beats_chance_and_moves_the_eye(tmp_path):
    """Translated 60x60 (contrast 1, no noise, digit centre up to 16 px off): a short run
    localises and reads the digit far better than chance (10%) on held-out test episodes.
    With the auxiliary pull to the digit beside the end-to-end loss: without it (or with it
    decaying to zero over the run), 250 small steps localise only on some seeds."""
    train = _train_module()
    ckpt = tmp_path / "stn.pt"
    res = train.main(["--env", "SaccadeMNIST-Translated60-v0", "--steps", "250", "--batch-size", "32",
                      "--lr", "3e-3", "--loc-lr", "2e-3", "--aux-weight", "1",
                      "--hidden", "64", "--channels", "8", "16", "--fc", "64",
                      "--eval-every", "0", "--final-episodes", "500", "--final-budgets", "0", "1",
                      "--runs-dir", str(tmp_path), "--out", str(ckpt), "--device", "cpu", "--threads", "1"])
    acc1 = res["scores"]["k1"]["accuracy"]
    print(res["scores"])
    assert acc1 > 0.4, res["scores"]  # chance is 0.1
    agent = load_agent(ckpt)
    # the localiser has learnt to look: its saccade lands nearer the digit than the centre is
    venv = make_env("SaccadeMNIST-Translated60-v0", agent=agent, num_envs=300, max_saccades=1, split="test")
    ep = run_episodes(venv, agent, seed=123, record=True)
    venv.close()
    look = ep.steps[0]["action"]["saccade"]
    err, off = (look - ep.target_xy).norm(dim=1).mean(), ep.target_xy.norm(dim=1).mean()
    print(f"mean distance to the digit: {float(err) * 30:.1f} px after the saccade, {float(off) * 30:.1f} px from the centre")
    assert err < 0.6 * off
    assert agent.sensors == ("fovea", "glimpse")
    for (k, v), (k2, v2) in zip(agent.state_dict().items(), res["agent"].state_dict().items()):
        assert k == k2 and torch.equal(v, v2.cpu())


def test_missing_checkpoint_names_the_command(tmp_path):
    with pytest.raises(CheckpointError, match="train/stn.py"):
        load_agent(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="train/stn.py --env SaccadeMNIST-Centered28-v0"):
        load_agent(env="SaccadeMNIST-Centered28-v0")


def test_resume_goes_on_from_the_step_it_stopped_at_with_the_rates_asked_for(tmp_path):
    train = _train_module()
    common = ["--env", "SaccadeMNIST-Translated60-v0", "--batch-size", "8", "--hidden", "16", "--channels", "4", "8",
              "--fc", "16", "--eval-every", "0", "--final-episodes", "20", "--final-budgets", "1", "--save-every", "5",
              "--runs-dir", str(tmp_path), "--out", str(tmp_path / "stn.pt"), "--device", "cpu",
              "--threads", "1"]
    first = train.main([*common, "--steps", "6"])
    assert first["steps"] == 6
    second = train.main([*common, "--steps", "9", "--resume", "--lr", "1e-5", "--loc-lr", "2e-6"])
    assert second["steps"] == 9
    saved = torch.load(tmp_path / "stn-SaccadeMNIST-Translated60-v0" / "resume.pt", weights_only=True)
    assert saved["step"] == 9
    assert [g["lr"] for g in saved["state"]["opt"]["param_groups"]] == [1e-5, 2e-6]
    # and --decay cosine anneals the rates given to zero by the end of this invocation's budget
    lrs = []
    opt_step = torch.optim.Adam.step

    def spy(self, *a, **k):
        lrs.append([g["lr"] for g in self.param_groups])
        return opt_step(self, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.Adam, "step", spy)
        third = train.main([*common, "--steps", "13", "--resume", "--lr", "1e-3", "--loc-lr", "1e-4",
                            "--decay", "cosine"])
    assert third["steps"] == 13 and len(lrs) == 4
    assert lrs[0] == pytest.approx([1e-3 * (1 + math.cos(math.pi / 4)) / 2, 1e-4 * (1 + math.cos(math.pi / 4)) / 2])
    assert lrs[1] == pytest.approx([5e-4, 5e-5]) and lrs[-1] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_a_new_vgg_classifier_behind_a_frozen_localiser(tmp_path, capsys):
    """--init-localiser copies a trained localiser, --freeze-localiser keeps it bit for bit
    while a batch-norm (vgg) classifier trains behind it; the agent reloads in eval mode."""
    train = _train_module()
    common = ["--env", "SaccadeMNIST-Translated60-v0", "--batch-size", "8", "--hidden", "16", "--fc", "16",
              "--eval-every", "0", "--final-episodes", "20", "--final-budgets", "1", "--runs-dir", str(tmp_path),
              "--device", "cpu", "--threads", "1"]
    first = train.main([*common, "--channels", "4", "8", "--steps", "4", "--out", str(tmp_path / "a.pt")])
    second = train.main([*common, "--classifier", "vgg", "--channels", "4", "8", "--steps", "4", "--run-name", "b",
                         "--init-localiser", str(tmp_path / "a.pt"), "--freeze-localiser",
                         "--out", str(tmp_path / "b.pt")])
    for (k, v), (k2, v2) in zip(first["agent"].localiser.state_dict().items(),
                                second["agent"].localiser.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    agent = load_agent(tmp_path / "b.pt")
    assert agent.config.classifier == "vgg" and not agent.training
    assert agent.classify(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in agent.classifier.modules())
    # a localiser of another shape is refused with the fix, a frozen one needs a source
    with pytest.raises(ValueError, match="hidden=16.*same --env"):
        train.main([*common, "--hidden", "32", "--steps", "1", "--run-name", "c",
                    "--init-localiser", str(tmp_path / "a.pt"), "--out", str(tmp_path / "c.pt")])
    for bad, fix in ((["--freeze-localiser"], "give it one with --init-localiser"),
                     (["--classifier", "resnet"], "--classifier must be 'lenet' or 'vgg'")):
        with pytest.raises(SystemExit):
            train.main([*common, *bad, "--steps", "1"])
        assert fix in capsys.readouterr().err


def test_init_starts_the_whole_agent_from_a_checkpoint(tmp_path, capsys):
    """--init copies localiser and classifier (and the classifier's architecture) of an STN
    checkpoint: with learning rates ~0 the fine-tune ends where its source ended."""
    train = _train_module()
    common = ["--env", "SaccadeMNIST-Translated60-v0", "--batch-size", "8", "--hidden", "16", "--fc", "16",
              "--eval-every", "0", "--final-episodes", "20", "--final-budgets", "1", "--runs-dir", str(tmp_path),
              "--device", "cpu", "--threads", "1"]
    first = train.main([*common, "--classifier", "vgg", "--channels", "4", "8", "--steps", "3",
                        "--out", str(tmp_path / "a.pt")])
    second = train.main([*common, "--steps", "1", "--lr", "1e-30", "--loc-lr", "1e-30", "--run-name", "b",
                         "--init", str(tmp_path / "a.pt"), "--out", str(tmp_path / "b.pt")])
    assert second["agent"].config.classifier == "vgg"
    for (k, v), (k2, v2) in zip(first["agent"].state_dict().items(), second["agent"].state_dict().items()):
        assert k == k2
        if v.is_floating_point() and "running" not in k:  # batch-norm statistics move in train mode
            assert torch.allclose(v, v2, atol=1e-6), k
    with pytest.raises(SystemExit):
        train.main([*common, "--steps", "1", "--init", str(tmp_path / "a.pt"), "--init-localiser",
                    str(tmp_path / "a.pt")])
    assert "without --init-classifier" in capsys.readouterr().err
