"""RAM: the glimpse sensor against plain slicing, gradient isolation of the locations,
the agent in the environment, loading, and a short CPU training run that beats chance."""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import saccade_env  # noqa: F401
from agents.checkpoint import CheckpointError
from agents.ram import RAMConfig, build_agent, evaluate_mc, load_agent, widen_weights
from agents.rollout import evaluate, make_env, run_episodes
from saccade_env.retina import glimpse

ROOT = Path(__file__).resolve().parent.parent


def ref_glimpse(scene: np.ndarray, off: tuple[int, int], size: int, scales: int, pad: float) -> np.ndarray:
    """(scales, size, size) by NumPy slicing of the padded scene: patch j is the
    (size * 2**j)-px square centred at pixel offset ``off`` from the scene's centre,
    averaged over 2**j x 2**j blocks."""
    S = scene.shape[0]
    M = (size << scales) + S
    padded = np.pad(scene, M, constant_values=pad)
    out = []
    for j in range(scales):
        side, f = size << j, 1 << j
        top, left = M + S // 2 - side // 2 + off[1], M + S // 2 - side // 2 + off[0]
        patch = padded[top:top + side, left:left + side]
        out.append(patch.reshape(size, f, size, f).mean(axis=(1, 3)))
    return np.stack(out)


@pytest.mark.parametrize("S,size,scales", [(28, 8, 1), (60, 12, 3), (100, 12, 4), (128, 12, 4)])
def test_glimpse_equals_slices_of_padded_scene(S, size, scales):
    g = torch.Generator().manual_seed(S)
    h = S // 2
    offs = [(0, 0), (3, -5), (-h, h), (h - 1, -h + 2), (7, h - 3), (-h + 4, 0)]
    scenes = torch.rand(len(offs), S, S, generator=g)
    fix = torch.tensor(offs, dtype=torch.float64).div(h).float()
    got = glimpse(scenes, fix, size=size, scales=scales, pad=0.25).numpy()
    assert got.shape == (len(offs), scales, size, size)
    for i, o in enumerate(offs):
        np.testing.assert_allclose(got[i], ref_glimpse(scenes[i].numpy(), o, size, scales, 0.25), atol=1e-6, rtol=0)


@pytest.mark.parametrize("env_id,extra", [("SaccadeMNIST-Translated60-v0", {}),
                                          ("SaccadeMNIST-v0", {"glimpse_size": 12, "glimpse_scales": 4})])
def test_env_glimpse_observation_is_the_sliced_scene(env_id, extra):
    """What the environment hands RAM after random saccades == slices of its own scene."""
    venv = gym.make_vec(env_id, num_envs=5, device="cpu", sensors=("glimpse",), privileged=True, **extra)
    cfg = venv.unwrapped.cfg
    obs, info = venv.reset(seed=3)
    rng = torch.Generator().manual_seed(0)
    for _ in range(3):
        obs, _, _, _, info = venv.step({"saccade": torch.rand(5, 2, generator=rng) * 2 - 1,
                                        "answer": torch.full((5,), 10)})
        for i in range(5):
            off = tuple(int(v) for v in torch.round(obs["fixation"][i] * cfg.scene.size / 2))
            ref = ref_glimpse(info["scene"][i].numpy(), off, cfg.glimpse_size, cfg.glimpse_scales,
                              cfg.scene.background)
            np.testing.assert_allclose(obs["glimpse"][i].numpy(), ref, atol=1e-6, rtol=0)
    venv.close()


def _wave(policy_into_core: bool, B: int = 16):
    cfg = RAMConfig(glimpse_size=12, glimpse_scales=3, hidden=32, what_hidden=16, where_hidden=16,
                    policy_into_core=policy_into_core)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        agent = build_agent(cfg, deterministic=False)
    agent.seed(1)
    venv = make_env("SaccadeMNIST-Translated60-v0", agent=agent, num_envs=B, max_saccades=3, split="train")
    ep = run_episodes(venv, agent, seed=0, record=True, grad=True)
    venv.close()
    return agent, ep


@pytest.mark.parametrize("policy_into_core", [False, True])
def test_classification_loss_does_not_reach_the_location_network(policy_into_core):
    agent, ep = _wave(policy_into_core)
    st = ep.state
    assert all(not s["action"]["saccade"].requires_grad for s in ep.steps)  # detached locations
    ce = sum(F.cross_entropy(lg, ep.label) for lg in st.logits)
    loc_params = list(agent.net.locator.parameters())
    grads = torch.autograd.grad(ce, loc_params + [agent.net.what[1].weight], allow_unused=True,
                                retain_graph=True)
    assert all(g is None or float(g.abs().max()) == 0.0 for g in grads[:-1])
    assert grads[-1] is not None and float(grads[-1].abs().max()) > 0  # it does train the glimpse network
    # REINFORCE does reach the location network (so the check above can fail)
    adv = ep.correct.float() - 0.5
    rl = -(torch.stack(st.log_pi) * adv).sum()
    g_rl = torch.autograd.grad(rl, loc_params[0], allow_unused=True, retain_graph=True)[0]
    assert g_rl is not None and float(g_rl.abs().max()) > 0
    # the policy gradient reaches the core only when asked to
    g_core = torch.autograd.grad(rl, agent.net.core.weight_hh, allow_unused=True)[0]
    reaches = g_core is not None and float(g_core.abs().max()) > 0
    assert reaches == policy_into_core


@pytest.mark.parametrize("location", ["tanh", "clamp"])
def test_reinforce_moves_the_policy_toward_rewarded_locations(monkeypatch, location):
    """A bandit: reward 1 where the sampled location lies right of the mean. One descent step
    on train/ram.py's loss must move the mean location right (the sign of REINFORCE)."""
    from agents.rollout import Episodes
    tr = _train_module(monkeypatch)
    B = 4096
    cfg = RAMConfig(glimpse_size=8, glimpse_scales=1, hidden=16, what_hidden=8, where_hidden=8, std=0.1,
                    location=location)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        agent = build_agent(cfg, deterministic=False)
    agent.seed(0)
    g = torch.Generator().manual_seed(1)
    obs = {"glimpse": torch.rand(B, 1, 8, 8, generator=g), "fixation": torch.zeros(B, 2)}
    state = agent.reset(B, torch.device("cpu"))
    a0, state = agent.act({**obs, "saccades_left": torch.ones(B, 1)}, state)
    mu0 = agent.net.mean_location(state.h).detach()
    _, state = agent.act({**obs, "saccades_left": torch.zeros(B, 1)}, state)
    correct = a0["saccade"][:, 0] > mu0[:, 0]
    z = torch.zeros(B)
    ep = Episodes(correct=correct, label=torch.zeros(B, dtype=torch.int64), n_saccades=z.long(), eccentricity=z,
                  target_xy=torch.zeros(B, 2), reward=correct.float(), length=z.long() + 2, state=state)
    tcfg = tr.Config(every_step_weight=0.0, reward="correct")
    loss = tr.losses(ep, tcfg)["reinforce"]
    params = list(agent.net.locator.parameters())
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p_, g_ in zip(params, grads):
            p_ -= 0.05 * g_
        mu1 = agent.net.mean_location(state.h)
    # moved right by a clear margin, and (almost) not in y
    assert float((mu1 - mu0)[:, 0].mean()) > 4 * abs(float((mu1 - mu0)[:, 1].mean()))
    assert float((mu1 - mu0)[:, 0].mean()) > 0


def test_clamped_mean_keeps_its_gradient_past_the_edge():
    """location="clamp": the mean stays in [-1, 1] and, unlike tanh's, its gradient does not
    vanish where the pre-activation has wandered past the scene's edge (no absorbing edge)."""
    cfgs = {m: RAMConfig(hidden=4, what_hidden=4, where_hidden=4, location=m) for m in ("tanh", "clamp")}
    h = torch.ones(3, 4)
    grads = {}
    for m, cfg in cfgs.items():
        net = build_agent(cfg).net
        with torch.no_grad():
            net.locator.weight.zero_()
            net.locator.bias.copy_(torch.tensor([4.0, -0.3]))  # x far past the right edge, y inside
        mu = net.mean_location(h)
        y = torch.tensor(-0.3)
        assert float(mu.detach().abs().max()) <= 1.0
        assert torch.allclose(mu.detach()[:, 1], torch.tanh(y) if m == "tanh" else y)
        grads[m] = torch.autograd.grad(mu[:, 0].sum(), net.locator.bias)[0][0]
    assert float(grads["clamp"]) == 3.0  # identity per sample
    assert float(grads["tanh"]) < 3 * 1e-2  # 1 - tanh(4)^2 ~ 1.3e-3 per sample


def test_agent_episode_structure_and_shape_error():
    agent, ep = _wave(False, B=8)
    st = ep.state
    assert len(st.logits) == 4 and (ep.n_saccades == 3).all() and (ep.length == 4).all()
    assert [bool(lk.all()) for lk in st.look] == [True, True, True, False]
    assert float(st.log_pi[-1].detach().abs().max()) == 0.0
    venv = gym.make_vec("SaccadeMNIST-Translated60-v0", num_envs=2, sensors=("glimpse",), glimpse_size=8)
    with pytest.raises(ValueError, match="glimpse_size=12, glimpse_scales=3"):
        run_episodes(venv, agent, seed=0)
    venv.close()


def test_evaluate_mc_refuses_bad_arguments():
    agent, _ = _wave(False, B=2)
    for kw in ({"episodes": 0}, {"budget": -1}, {"samples": 0}, {"batch_size": 0}, {"seed": -1}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            evaluate_mc(agent, **{"env_id": "SaccadeMNIST-Translated60-v0", "budget": 1, "episodes": 4, **kw})


def test_load_agent_errors(tmp_path, monkeypatch):
    import agents.checkpoint as ck
    monkeypatch.setattr(ck, "ROOT", tmp_path)  # an empty checkpoints/ folder
    monkeypatch.setattr(ck, "CHECKPOINTS", tmp_path / "checkpoints")
    with pytest.raises(CheckpointError, match=r"train/ram.py --env SaccadeMNIST-Cluttered60-v0.*ram-cluttered60"):
        load_agent(preset="SaccadeMNIST-Cluttered60-v0")
    with pytest.raises(ValueError, match="presets"):
        load_agent(preset="SaccadeMNIST-Nope-v0")


def _train_module(monkeypatch):
    spec = importlib.util.spec_from_file_location("train_ram", ROOT / "train" / "ram.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_ram", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_drift_measure_on_centred_digits(monkeypatch):
    """eval/figures.py ram-drift: Centered28 starts on the digit's centre (distance 0), and a policy
    whose mean is pinned right of the centre is measured there for every later glimpse."""
    spec = importlib.util.spec_from_file_location("ram_drift", ROOT / "eval" / "figure_commands" / "ram_drift.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ram_drift", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    agent = build_agent(RAMConfig(hidden=8, what_hidden=4, where_hidden=4))
    with torch.no_grad():
        agent.net.locator.weight.zero_()
        agent.net.locator.bias.copy_(torch.atanh(torch.tensor([0.5, 0.0])))  # mean (0.5, 0): 7 px right
    r = mod.fixation_distances(agent, env_id="SaccadeMNIST-Centered28-v0", episodes=20)
    assert len(r["distance_px"]) == 6 and r["distance_px"][0] == 0.0
    assert r["distance_px"][1:] == pytest.approx([7.0] * 5) and max(r["spread_px"]) == 0.0
    assert max(r["at_edge"]) == 0.0 and 0.0 <= r["accuracy"] <= 1.0
    assert r["moved_px"] == pytest.approx([0.0, 7.0, 0.0, 0.0, 0.0, 0.0])  # one saccade, then it stays put


def test_short_cpu_training_beats_chance(tmp_path, monkeypatch):
    """A short run on Centered28 (6 glimpses 8x8), then held-out test episodes: well above 10%."""
    monkeypatch.chdir(tmp_path)
    tr = _train_module(monkeypatch)
    out = tmp_path / "ram-centered28.pt"
    cfg = tr.Config(env="SaccadeMNIST-Centered28-v0", steps=60, batch_size=64, hidden=128, lr=2e-3,
                    eval_every=10**6, final_episodes=100, device="cpu", out=str(out), save_every=30, threads=1)
    threads = torch.get_num_threads()
    try:
        tr.main(cfg)
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "runs" / "ram-centered28" / "resume.pt").is_file()
    agent = load_agent(out, preset="SaccadeMNIST-Centered28-v0")
    with pytest.raises(CheckpointError, match="trained on SaccadeMNIST-Centered28-v0"):
        load_agent(out, preset="SaccadeMNIST-v0")
    res = evaluate(agent, env_id="SaccadeMNIST-Centered28-v0", budget=5, episodes=600, seed=777)
    assert res.accuracy > 0.30, res.accuracy
    assert (res.n_saccades == 5).all()
    early = evaluate(agent, env_id="SaccadeMNIST-Centered28-v0", budget=1, episodes=300, seed=777)
    assert early.accuracy > 0.2 and (early.n_saccades == 1).all()  # readable at a smaller budget
    mc = evaluate_mc(agent, env_id="SaccadeMNIST-Centered28-v0", budget=5, episodes=300, samples=4, seed=777)
    assert mc.correct.shape == (300,) and mc.accuracy > 0.30
    assert agent.deterministic  # evaluate_mc restores the evaluation mode
    # --resume continues from the resume file and trains the remaining iterations
    try:
        tr.main(tr.Config(**{**cfg.__dict__, "steps": 70, "resume": "yes", "final_episodes": 50}))
    finally:
        torch.set_num_threads(threads)
    assert torch.load(out, weights_only=True)["meta"]["iterations"] == 70
    # --init starts a new run from those weights (and their pixel normalisation): with a
    # vanishing lr the new checkpoint holds the same network
    src = torch.load(out, weights_only=True)
    out2 = tmp_path / "ram-centered28-ft.pt"
    ft = {**cfg.__dict__, "steps": 1, "lr": 1e-12, "final_episodes": 20, "name": "ft", "out": str(out2),
          "init": str(out), "hidden": 128}
    try:
        tr.main(tr.Config(**ft))
    finally:
        torch.set_num_threads(threads)
    new = torch.load(out2, weights_only=True)
    assert new["config"]["net"]["obs_mean"] == src["config"]["net"]["obs_mean"]
    for name, w in src["weights"]["net"].items():
        torch.testing.assert_close(new["weights"]["net"][name], w, atol=1e-8, rtol=0)
    with pytest.raises(SystemExit, match="--hidden 128"):  # a narrower one: refused, with the flag to pass
        tr.main(tr.Config(**{**ft, "hidden": 64, "overwrite": True}))
    # wider ones grow the checkpoint's network without changing what it computes
    out3 = tmp_path / "ram-centered28-wide.pt"
    try:
        tr.main(tr.Config(**{**ft, "hidden": 160, "what_hidden": 192, "what_conv": 4, "name": "wide",
                             "out": str(out3)}))
    finally:
        torch.set_num_threads(threads)
    wide, narrow = (load_agent(f, preset="SaccadeMNIST-Centered28-v0") for f in (out3, out))
    assert (wide.cfg.hidden, wide.cfg.what_hidden, wide.cfg.where_hidden, wide.cfg.what_conv) == (160, 192, 128, 4)
    for k in (0, 5):
        a = evaluate(narrow, env_id="SaccadeMNIST-Centered28-v0", budget=k, episodes=200, seed=5)
        b = evaluate(wide, env_id="SaccadeMNIST-Centered28-v0", budget=k, episodes=200, seed=5)
        assert np.array_equal(a.correct, b.correct)
    out4 = tmp_path / "ram-centered28-deep.pt"  # a second convolutional layer added to that branch
    try:
        tr.main(tr.Config(**{**ft, "init": str(out3), "hidden": 160, "what_hidden": 192, "what_conv": 4,
                             "what_conv2": 3, "name": "deep", "out": str(out4)}))
    finally:
        torch.set_num_threads(threads)
    deep = load_agent(out4, preset="SaccadeMNIST-Centered28-v0")
    assert (deep.cfg.what_conv, deep.cfg.what_conv2) == (4, 3)
    a = evaluate(narrow, env_id="SaccadeMNIST-Centered28-v0", budget=5, episodes=200, seed=5)
    b = evaluate(deep, env_id="SaccadeMNIST-Centered28-v0", budget=5, episodes=200, seed=5)
    assert np.array_equal(a.correct, b.correct)
    with pytest.raises(SystemExit, match="--what-conv 4"):  # a branch is added, never resized
        tr.main(tr.Config(**{**ft, "init": str(out3), "hidden": 160, "what_hidden": 192, "what_conv": 8,
                              "overwrite": True}))
    with pytest.raises(SystemExit, match="ram-centered28"):  # another preset's checkpoint
        tr.main(tr.Config(**{**ft, "env": "SaccadeMNIST-Translated60-v0", "out": str(tmp_path / "x.pt"),
                              "overwrite": True}))


def test_dropout_acts_in_training_only_and_is_validated():
    agent = build_agent(RAMConfig(dropout=0.5), deterministic=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        glimpse_ = torch.rand(64, 1, 8, 8)
        obs = {"glimpse": glimpse_, "fixation": torch.zeros(64, 2), "saccades_left": torch.zeros(64, 1, dtype=torch.long)}
        agent.net.train()
        a1 = agent.act(obs, agent.reset(64, torch.device("cpu")))[1].logits[-1]
        a2 = agent.act(obs, agent.reset(64, torch.device("cpu")))[1].logits[-1]
        assert not torch.allclose(a1, a2)  # masks differ between calls in training mode
        agent.net.eval()
        e1 = agent.act(obs, agent.reset(64, torch.device("cpu")))[1].logits[-1]
        e2 = agent.act(obs, agent.reset(64, torch.device("cpu")))[1].logits[-1]
        assert torch.equal(e1, e2)
    with pytest.raises(ValueError, match="dropout"):
        RAMConfig(dropout=1.0)


@pytest.mark.parametrize("bad,match", [({"what_conv": -1}, "what_conv must be >= 0"),
                                       ({"what_conv": 4, "glimpse_size": 1}, "what_conv must be >= 0"),
                                       ({"what_conv": 4, "what_conv2": -1}, "what_conv2 must be >= 0"),
                                       ({"what_conv2": 8}, "needs the first")])
def test_conv_branch_settings_are_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        RAMConfig(**bad)


def test_second_conv_layer_shapes_and_cli(monkeypatch):
    """--what-conv2: a second 3x3/2 layer on the first's (B, C, 6, 6) output, (B, C2, 3, 3) read out
    into the what layer; the CLI refuses it without --what-conv, with the fix."""
    net = build_agent(RAMConfig(glimpse_size=12, glimpse_scales=3, what_conv=4, what_conv2=6)).net
    c1 = net.what_conv[:2](torch.rand(5, 3, 12, 12))
    assert c1.shape == (5, 4, 6, 6) and net.what_conv2[:2](c1).shape == (5, 6, 3, 3)
    assert net.what_conv2[3].weight.shape == (net.cfg.what_hidden, 6 * 3 * 3)
    assert net.glimpse_features(torch.rand(5, 3, 12, 12), torch.zeros(5, 2)).shape == (5, net.cfg.hidden)
    tr = _train_module(monkeypatch)
    with pytest.raises(ValueError, match="pass --what-conv C too"):
        tr.Config(env="SaccadeMNIST-Centered28-v0", what_conv2=8)


def test_logprob_reward_is_the_clipped_log_probability_of_the_label(monkeypatch):
    """--reward logprob: REINFORCE's reward is log p(label) at the last step (clipped at -5),
    its baseline regresses on that, and the classification loss is the same as with 0/1."""
    mod = _train_module(monkeypatch)
    agent, ep = _wave(False)
    st = ep.state
    L01 = mod.losses(ep, mod.Config(env="SaccadeMNIST-Translated60-v0"))
    Llp = mod.losses(ep, mod.Config(env="SaccadeMNIST-Translated60-v0", reward="logprob"))
    R = F.log_softmax(st.logits[-1].detach(), -1).gather(1, ep.label[:, None])[:, 0].clamp(min=-5.0)
    assert float(Llp["reward"]) == pytest.approx(float(R.mean()), rel=1e-5)
    assert float(L01["reward"]) == pytest.approx(float(ep.correct.float().mean()))
    assert float(Llp["ce"].detach()) == pytest.approx(float(L01["ce"].detach())) and float(Llp["accuracy"]) == float(L01["accuracy"])
    look = torch.stack(st.look).float()
    b = torch.stack(st.baseline)
    want = (((b - R.detach()) ** 2) * look).sum() / look.sum()
    assert float(Llp["baseline"].detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    assert float(R.max()) <= 0.0 and float(R.min()) >= -5.0


def test_valid_holds_out_training_digits_and_keeps_the_best_weights(tmp_path, monkeypatch):
    """--valid N: the waves draw from the first 60000 - N training digits, the monitor reads the
    last N (never the test split), and the checkpoint holds the weights of the best monitor
    score; --weight-decay decays every weight but the location network's."""
    monkeypatch.chdir(tmp_path)
    tr = _train_module(monkeypatch)
    real_evaluate, real_make_env = tr.evaluate, tr.make_env
    scripted = iter([0.2, 0.9, 0.5, 0.3])  # the monitor scores of iterations 4, 8, 12, 16
    seen: list[tuple[str, dict]] = []

    def fake_evaluate(agent, *, split="test", **kw):
        assert split != "test"  # --valid: neither the monitor nor the final scores read the test split
        if kw.get("seed") == 0:  # the final scores
            return real_evaluate(agent, split=split, **kw)
        seen.append((split, {k: v.detach().clone() for k, v in agent.net.state_dict().items()}))
        return type("R", (), {"accuracy": next(scripted)})()

    splits = []
    monkeypatch.setattr(tr, "evaluate", fake_evaluate)
    monkeypatch.setattr(tr, "make_env", lambda *a, split, **kw: splits.append(split) or real_make_env(*a, split=split, **kw))
    out = tmp_path / "c.pt"
    cfg = tr.Config(env="SaccadeMNIST-Centered28-v0", steps=16, batch_size=16, hidden=32, valid=2000, eval_every=4,
                    eval_episodes=20, final_episodes=20, device="cpu", out=str(out), threads=1)
    threads = torch.get_num_threads()
    try:
        tr.main(cfg)
    finally:
        torch.set_num_threads(threads)
    assert splits == ["train[:58000]"] and [s for s, _ in seen] == ["train[58000:]"] * 4
    ck = torch.load(out, weights_only=True)
    assert ck["meta"]["selected_iteration"] == 8 and ck["meta"]["valid_accuracy"] == 0.9
    for name, w in seen[1][1].items():  # iteration 8's weights, not the last ones
        torch.testing.assert_close(ck["weights"]["net"][name], w, atol=0, rtol=0)
    assert any(not torch.equal(seen[1][1][n], w) for n, w in seen[3][1].items())

    # --weight-decay: with a vanishing lr, one step multiplies the weights by 1 - lr * wd
    monkeypatch.setattr(tr, "evaluate", real_evaluate)
    out2 = tmp_path / "wd.pt"
    wd = {**cfg.__dict__, "valid": 0, "steps": 1, "lr": 1e-12, "weight_decay": 1e10, "init": str(out),
          "out": str(out2), "name": "wd"}
    try:
        tr.main(tr.Config(**wd))
    finally:
        torch.set_num_threads(threads)
    after = torch.load(out2, weights_only=True)["weights"]["net"]
    for name, w in ck["weights"]["net"].items():
        want = w if name.startswith("locator.") else 0.99 * w
        torch.testing.assert_close(after[name], want, atol=1e-6, rtol=1e-5)
    for bad in ({"weight_decay": -1.0}, {"valid": 40000}):
        with pytest.raises(ValueError, match="--weight-decay|--valid"):
            tr.Config(env="SaccadeMNIST-Centered28-v0", **bad)


def test_jitter_and_rotate_change_the_training_digits_only(tmp_path, monkeypatch):
    """--jitter N, --rotate D: the training waves' digits move by up to N px (cropped at the edge)
    and turn by up to D degrees; the final scores are read on the preset unchanged; bad values
    say the range."""
    monkeypatch.chdir(tmp_path)
    tr = _train_module(monkeypatch)
    real_make_env = tr.make_env
    calls = []  # the training env's arguments: main() closes the env it built, so the check builds its twin
    monkeypatch.setattr(tr, "make_env", lambda *a, **kw: calls.append((a, kw)) or real_make_env(*a, **kw))
    evaluated = []
    real_evaluate = tr.evaluate
    monkeypatch.setattr(tr, "evaluate", lambda agent, **kw: evaluated.append(kw) or real_evaluate(agent, **kw))
    cfg = tr.Config(env="SaccadeMNIST-Centered28-v0", steps=2, batch_size=64, hidden=32, jitter=2, rotate=15.0, eval_every=100,
                    final_episodes=20, device="cpu", out=str(tmp_path / "j.pt"), threads=1)
    threads = torch.get_num_threads()
    try:
        tr.main(cfg)
    finally:
        torch.set_num_threads(threads)
    ((args, kwargs),) = calls
    venv = real_make_env(*args, **kwargs)
    try:
        assert venv.unwrapped.cfg.scene.jitter == 2 and venv.unwrapped.cfg.scene.rotate == 15.0
        venv.reset(seed=0)
        off = venv.unwrapped.state.offset
        assert int(off.abs().max()) == 2 and len(torch.unique(off[:, 0])) == 5
    finally:
        venv.close()
    assert evaluated and all("scene" not in kw for kw in evaluated)  # the preset's own scenes
    for bad in (-1, 15):
        with pytest.raises(ValueError, match="--jitter is a shift in px in 0..14"):
            tr.Config(env="SaccadeMNIST-Centered28-v0", jitter=bad)
    for bad in (-5.0, 200.0):
        with pytest.raises(ValueError, match=r"--rotate is an angle in degrees in \[0, 180\]"):
            tr.Config(env="SaccadeMNIST-Centered28-v0", rotate=bad)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"--dropout must be >= 0 and < 1"):
            tr.Config(env="SaccadeMNIST-Centered28-v0", dropout=bad)


@pytest.mark.parametrize("core,old_conv,conv,conv2", [("gru", 0, 0, 0), ("lstm", 0, 0, 0), ("gru", 0, 5, 0),
                                                      ("gru", 0, 5, 3), ("gru", 5, 5, 3)])
def test_widening_keeps_what_the_network_computes(core, old_conv, conv, conv2):
    """widen_weights: the grown network's logits, locations and baseline are the old one's, at every
    step of a scanpath; the new units (and an added convolutional what branch, or its added second
    layer) are alive but unread; narrowing is refused."""
    old = RAMConfig(glimpse_size=6, glimpse_scales=2, what_hidden=8, where_hidden=8, hidden=16, core=core,
                    locator_hidden=4, what_conv=old_conv)
    new = dataclasses.replace(old, what_hidden=24, where_hidden=12, hidden=20, what_conv=conv, what_conv2=conv2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        small = build_agent(old)
        big = build_agent(new)
        big.net.load_state_dict(widen_weights(small.net.state_dict(), old, new,
                                              generator=torch.Generator().manual_seed(0)))
        B = 7
        s_state, b_state = small.reset(B, torch.device("cpu")), big.reset(B, torch.device("cpu"))
        fix = torch.zeros(B, 2)
        for t in range(4):
            obs = {"glimpse": torch.rand(B, 2, 6, 6), "fixation": fix,
                   "saccades_left": torch.full((B, 1), 3 - t, dtype=torch.long)}
            a_s, s_state = small.act(obs, s_state)
            a_b, b_state = big.act(obs, b_state)
            torch.testing.assert_close(b_state.logits[-1], s_state.logits[-1], atol=1e-5, rtol=0)
            torch.testing.assert_close(b_state.baseline[-1], s_state.baseline[-1], atol=1e-5, rtol=0)
            torch.testing.assert_close(big.net.mean_location(b_state.h), small.net.mean_location(s_state.h),
                                       atol=1e-5, rtol=0)
            torch.testing.assert_close(b_state.h[:, :16], s_state.h, atol=1e-5, rtol=0)
            fix = a_s["saccade"]
        assert b_state.h[:, 16:].abs().max() > 0  # the new core units run, unread
    x = torch.rand(B, 2, 6, 6)
    b_state.logits[-1].sum().backward()
    if conv and not old_conv:  # the added branch computes features, read by nothing yet, and training reaches it
        assert big.net.what_conv[:3](x).abs().max() > 0
        assert not big.net.what_conv[3].weight.any()
        assert big.net.what_conv[3].weight.grad.abs().max() > 0
    if conv2:  # likewise the added second layer, on the first layer's output
        assert big.net.what_conv2[:3](big.net.what_conv[:2](x)).abs().max() > 0
        assert not big.net.what_conv2[3].weight.any()
        assert big.net.what_conv2[3].weight.grad.abs().max() > 0
    if conv:
        with pytest.raises(ValueError, match="added .* not widened"):
            widen_weights(big.net.state_dict(), new, dataclasses.replace(new, what_conv=conv + 1))
    with pytest.raises(ValueError, match="only grow"):
        widen_weights(big.net.state_dict(), new, old)
    with pytest.raises(ValueError, match="core"):
        widen_weights(small.net.state_dict(), old, dataclasses.replace(new, core="lstm" if core == "gru" else "gru"))


def _retina_agent(**kw):
    from agents.nets import FovealClassifier
    cfg = RAMConfig(sensor="retina", location="logpolar", what_net=FovealClassifier().config, hidden=32,
                    what_hidden=16, where_hidden=16, where_width=4, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_agent(cfg, deterministic=False, env_id="SaccadeMNIST-v0")


def test_retina_ram_looks_at_log_polar_targets_and_keeps_its_what_frozen():
    """RAM on the retina: each saccade goes to one of the periphery's log-polar targets (relative to
    the fixation, as the discrete actions'), log pi is the categorical's at the chosen target, the
    frozen What gets no gradient and stays in eval mode when the network trains."""
    from saccade_env.wrappers import ActionMapping
    agent = _retina_agent()
    agent.net.train()
    assert not agent.net.what_net.training and agent.sensors == ("fovea", "periphery")
    venv = make_env("SaccadeMNIST-v0", agent=agent, num_envs=16, max_saccades=2, split="train")
    obs, _ = venv.reset(seed=0)
    state = agent.reset(16, torch.device("cpu"))
    action, state = agent.act(obs, state)
    grid = ActionMapping(saccade_env.make_config(**gym.spec("SaccadeMNIST-v0").kwargs), grid="logpolar").targets
    offsets = action["saccade"] - obs["fixation"]
    dist = (offsets[:, None, :] - grid[None]).abs().amax(-1)  # (B, T): the target each saccade went to
    unclipped = (obs["fixation"][:, None, :] + grid[None]).abs().amax(-1) <= 1  # targets inside the scene
    assert bool(((dist < 1e-5) & unclipped).any(1).all())
    x, scores, _ = agent.net.retina_features(obs["fovea"], obs["periphery"], obs["fixation"])
    cell_logits = scores + agent.net.locator(state.h.detach())
    cell = (dist < 1e-5).float().argmax(1)
    torch.testing.assert_close(state.log_pi[0], torch.log_softmax(cell_logits, -1).gather(1, cell[:, None])[:, 0])
    loss = -(state.log_pi[0].sum()) + torch.nn.functional.cross_entropy(state.logits[0], torch.zeros(16).long())
    loss.backward()
    assert all(p.grad is None for p in agent.net.what_net.parameters())
    assert agent.net.maps.score.weight.grad is not None and agent.net.classifier.weight.grad is not None
    with pytest.raises(ValueError, match="location must be one of"):
        RAMConfig(sensor="retina", location="tanh", what_net={})


def test_retina_ram_trains_and_round_trips(tmp_path, monkeypatch):
    """`python train/ram.py` on v0 takes the retina by default; a short run writes a checkpoint whose
    agent (frozen What included) plays as the trained one did, and well above chance."""
    monkeypatch.chdir(tmp_path)
    tr = _train_module(monkeypatch)
    out = tmp_path / "ram-v0.pt"
    cfg = tr.Config(steps=40, batch_size=32, lr=3e-3, hidden=32, what_hidden=16, where_hidden=16, where_width=4,
                    eval_every=10**6, valid=500, eval_episodes=100, final_episodes=100, device="cpu", out=str(out),
                    threads=1)
    threads = torch.get_num_threads()
    try:
        tr.main(cfg)
    finally:
        torch.set_num_threads(threads)
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["config"]["net"]["sensor"] == "retina" and ckpt["meta"]["fit_split"] == "train[:59500]"
    agent = load_agent(out)
    res = evaluate(agent, env_id="SaccadeMNIST-v0", budget=2, episodes=200, seed=3, split="train[59500:]")
    assert res.accuracy > 0.18 and (res.n_saccades == 2).all()  # chance: 0.10 (sd 0.02 over 200 episodes)
    assert res.accuracy == pytest.approx(ckpt["meta"]["scores"]["accuracy_k2"], abs=0.1)
    with pytest.raises(ValueError, match="--sensor retina"):
        tr.Config(sensor="glimpse", what="x.pt")


def test_fovea_reward_pays_each_saccade_what_it_brings_under_the_fovea(monkeypatch):
    """--reward fovea: REINFORCE weighs the look at step t by the frozen What's probability of the true
    label at step t + 1 (minus the baseline), and the answer step is no look."""
    from agents.ram import RAMState
    from agents.rollout import Episodes
    tr = _train_module(monkeypatch)
    B, T = 5, 3
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 10, (B,), generator=g)
    what_logp = [torch.log_softmax(torch.randn(B, 10, generator=g), -1) for _ in range(T)]
    log_pi = [torch.zeros(B, requires_grad=True) for _ in range(T)]
    look = [torch.ones(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)]
    state = RAMState(h=torch.zeros(B, 4), c=None, logits=[torch.zeros(B, 10)] * T, log_pi=log_pi,
                     baseline=[torch.zeros(B)] * T, look=look, what_logp=what_logp)
    z = torch.zeros(B)
    ep = Episodes(correct=z.bool(), label=label, n_saccades=z.long() + 2, eccentricity=z, target_xy=torch.zeros(B, 2),
                  reward=z, length=z.long() + 3, state=state)
    loss = tr.losses(ep, tr.Config(reward="fovea"))["reinforce"]
    grads = torch.autograd.grad(loss, log_pi, allow_unused=True)
    n_looks = 2 * B
    for t in range(2):
        phi_next = what_logp[t + 1].gather(1, label[:, None])[:, 0].exp()
        torch.testing.assert_close(grads[t], -phi_next / n_looks)
    assert grads[2] is None or float(grads[2].abs().max()) == 0.0
    with pytest.raises(ValueError, match="--reward fovea"):
        tr.Config(env="SaccadeMNIST-Translated60-v0", reward="fovea")
