"""The SB3 adapter (saccade_env/sb3.py) against SB3's expectations, the extractor, and PPO learning."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import saccade_env  # noqa: F401
from agents.sb3_extractors import CircularConv, RetinaExtractor
from saccade_env.sb3 import SB3VecEnv, make_sb3_vec_env
from saccade_env.wrappers import FlattenSensors, flat_actions, sensor_shapes

ROOT = Path(__file__).resolve().parent.parent
LOOK = 10
FAST = dict(sensors=("fovea",), split="test")  # where the test needs no periphery: cheaper to build


def _dummy(n, form="discrete", seed=0, **kw):
    env = DummyVecEnv([lambda: flat_actions(gym.make("SaccadeMNIST-v0", **kw), form) for _ in range(n)])
    env.seed(seed)
    return env


def test_adapter_matches_dummy_vec_env_of_single_envs():
    """Same seeds, same actions: the adapter returns what SB3's DummyVecEnv of wrapped single envs returns
    (observations, rewards, dones, terminal observations, TimeLimit.truncated), autoresets included."""
    n, kw = 2, dict(max_saccades=1, **FAST)
    ours = make_sb3_vec_env("SaccadeMNIST-v0", num_envs=n, **kw)
    ours.seed(7)
    ref = _dummy(n, seed=7, **kw)
    a, b = ours.reset(), ref.reset()
    for k in b:
        np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)
    rng = np.random.default_rng(0)
    for _ in range(6):
        act = np.stack([rng.integers(0, 240, n), rng.choice([3, LOOK, LOOK], n)], 1)
        oa, ra, da, ia = ours.step(act)
        ob, rb, db, ib = ref.step(act)
        for k in ob:
            np.testing.assert_allclose(oa[k], ob[k], atol=1e-5, err_msg=k)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(da, db)
        for i in np.flatnonzero(db):
            assert ia[i]["TimeLimit.truncated"] == ib[i]["TimeLimit.truncated"]
            for k in ob:
                np.testing.assert_allclose(ia[i]["terminal_observation"][k], ib[i]["terminal_observation"][k],
                                           atol=1e-5)
            for k in ("label", "n_saccades", "correct", "eccentricity"):
                assert ia[i][k] == ib[i][k], k


def test_adapter_types_autoreset_and_infos():
    n = 4
    venv = make_sb3_vec_env("SaccadeMNIST-v0", num_envs=n, max_saccades=2, **FAST)
    assert venv.observation_space == venv.venv.single_observation_space
    assert venv.action_space == gym.spaces.MultiDiscrete([240, 11])
    obs = venv.reset()
    for k, space in venv.observation_space.spaces.items():
        assert isinstance(obs[k], np.ndarray) and obs[k].shape == (n, *space.shape) and obs[k].dtype == np.float32
    look = np.array([[9 * 24, LOOK]] * n)  # a far look to the right
    obs, rew, done, infos = venv.step(look)
    assert rew.dtype == np.float32 and rew.shape == (n,) and done.dtype == bool and done.shape == (n,)
    assert isinstance(infos, list) and len(infos) == n and not done.any()
    assert infos == [{"TimeLimit.truncated": False}] * n
    moved = obs["fixation"].copy()
    assert (moved[:, 0] > 0.5).all()
    answer = np.array([[0, 3], [0, 3], [0, LOOK], [0, LOOK]])  # two answer, two look again
    obs, rew, done, infos = venv.step(answer)
    assert done.tolist() == [True, True, False, False]
    for i in (0, 1):  # the returned obs is the new episode's; the old one's is terminal_observation
        np.testing.assert_array_equal(obs["fixation"][i], [0, 0])
        assert obs["saccades_left"][i, 0] == 2
        np.testing.assert_array_equal(infos[i]["terminal_observation"]["fixation"], moved[i])
        assert infos[i]["terminal_observation"]["saccades_left"][0] == 1
        assert infos[i]["TimeLimit.truncated"] is False
        assert rew[i] == float(infos[i]["label"] == 3) and infos[i]["correct"] == (infos[i]["label"] == 3)
    obs, rew, done, infos = venv.step(np.array([[0, 5], [0, 5], [0, LOOK], [0, LOOK]]))  # 2, 3: past the budget
    assert done.tolist() == [True, True, True, True]
    assert [d["TimeLimit.truncated"] for d in infos] == [False, False, True, True]
    assert rew[2:].tolist() == [0.0, 0.0] and (obs["saccades_left"] == 2).all()


def test_truncation_can_be_reported_as_a_plain_end():
    venv = make_sb3_vec_env("SaccadeMNIST-v0", num_envs=2, max_saccades=0, bootstrap_truncated=False, **FAST)
    venv.reset()
    _, _, done, infos = venv.step(np.array([[0, LOOK], [0, LOOK]]))
    assert done.all() and [d["TimeLimit.truncated"] for d in infos] == [False, False]


def test_reset_rows_step_normally_and_vecmonitor_counts_episodes():
    """After a same-step reset, the next action of that env is played (not ignored as in next-step
    autoreset), and VecMonitor sees the right returns and lengths."""
    venv = VecMonitor(make_sb3_vec_env("SaccadeMNIST-v0", num_envs=2, max_saccades=3, **FAST))
    venv.reset()
    venv.step(np.array([[0, 4], [5, LOOK]]))  # env 0 ends at length 1
    obs, _, done, _ = venv.step(np.array([[100, LOOK], [5, LOOK]]))  # env 0 looks in its new episode
    assert not done.any() and obs["saccades_left"].ravel().tolist() == [2, 1]
    _, rew, done, infos = venv.step(np.array([[0, 7], [0, 7]]))
    assert done.all()
    assert [d["episode"]["l"] for d in infos] == [2, 3]
    assert [d["episode"]["r"] for d in infos] == pytest.approx([float(d["correct"]) for d in infos])
    assert rew.tolist() == [float(d["correct"]) for d in infos]


def test_vec_env_api_seed_options_attrs():
    venv = make_sb3_vec_env("SaccadeMNIST-v0", num_envs=3, form="continuous", **FAST)
    assert venv.action_space == gym.spaces.Box(-1, 1, (13,), np.float32)
    venv.seed(5)
    a = venv.reset()
    venv.seed(5)
    np.testing.assert_array_equal(venv.reset()["fovea"], a["fovea"])  # seeded: the same scenes
    venv.set_options({"label": 4, "eccentricity": 0.0})
    venv.reset()
    act = np.zeros((3, 13), np.float32)
    act[:, 2 + 4] = 1.0  # answer 4
    _, rew, done, infos = venv.step(act)
    assert done.all() and rew.tolist() == [1.0] * 3 and [d["eccentricity"] for d in infos] == [0.0] * 3
    assert venv.get_attr("render_mode") == [None] * 3
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * 3
    assert venv.env_method("reset_done", indices=None)[0]["fovea"].shape == (3, 1, 28, 28)
    with pytest.raises(NotImplementedError, match="indices=None"):
        venv.env_method("reset_done", indices=[0])
    with pytest.raises(TypeError, match="SaccadeMNISTVectorEnv"):
        SB3VecEnv(gym.make_vec("CartPole-v1", num_envs=2))


def test_render_tiles_the_frames():
    venv = make_sb3_vec_env("SaccadeMNIST-Centered28-v0", num_envs=2, render_mode="rgb_array")
    venv.reset()
    img = venv.render(mode="rgb_array")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_adapter_on_cuda_matches_cpu():
    out = []
    for dev in ("cpu", "cuda"):
        venv = make_sb3_vec_env("SaccadeMNIST-v0", num_envs=8, device=dev)
        venv.seed(0)
        venv.reset()
        obs, rew, done, _ = venv.step(np.array([[17, LOOK]] * 8))
        assert all(isinstance(v, np.ndarray) for v in obs.values())
        out.append(obs)
    for k in out[0]:
        np.testing.assert_allclose(out[0][k], out[1][k], atol=1e-4)


def test_extractor_reads_every_presets_sensors_flat_or_not():
    flat_v0 = None
    for env_id, sensors in [("SaccadeMNIST-v0", ("fovea", "periphery", "glimpse")),
                            ("SaccadeMNIST-Cluttered100-v0", ("glimpse",))]:
        env = gym.make(env_id, sensors=sensors)
        obs, _ = env.reset(seed=0)
        ext = RetinaExtractor(env.observation_space, width=4, fovea_dim=8, periphery_dim=8, glimpse_dim=8)
        batch = {k: torch.as_tensor(v)[None].repeat(2, *[1] * v.ndim) for k, v in obs.items()}
        assert ext(batch).shape == (2, ext.features_dim) == (2, 8 * len(sensors) + 3)
        flat = FlattenSensors(env)
        fext = RetinaExtractor(flat.observation_space, width=4, fovea_dim=8, periphery_dim=8, glimpse_dim=8,
                               shapes=sensor_shapes(flat))
        fext.load_state_dict(ext.state_dict())
        fbatch = {k: v.reshape(2, -1) for k, v in batch.items()}
        torch.testing.assert_close(fext(fbatch), ext(batch))
        flat_v0 = flat_v0 or flat
    with pytest.raises(ValueError, match="shapes="):
        RetinaExtractor(flat_v0.observation_space)


def test_circular_conv_wraps_the_azimuth():
    conv = CircularConv(2, 3)
    x = torch.randn(1, 2, 10, 24)
    torch.testing.assert_close(conv(x.roll(5, dims=3)), conv(x).roll(5, dims=3))  # equivariant to rotations
    assert not torch.allclose(conv(x.roll(1, dims=2)), conv(x).roll(1, dims=2))  # eccentricity: not circular


def _train_module():
    spec = importlib.util.spec_from_file_location("train_ppo", ROOT / "train" / "ppo.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_ppo"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_recurrent_without_sb3_contrib_says_how_to_install(monkeypatch):
    mod = _train_module()
    monkeypatch.setitem(sys.modules, "sb3_contrib", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "sb3_contrib.common.recurrent.policies", None)
    with pytest.raises(ImportError, match="pip install sb3-contrib"):
        mod.algorithm(True)


def test_ppo_learns_an_easy_configuration(tmp_path):
    """PPO through the adapter, on a centred, clean, high-contrast digit answered at once (max_saccades=0):
    a bandit on the fovea.  Test accuracy (agents.rollout.evaluate on the test split) must beat
    chance (10%) by far; then the shipped-checkpoint path (save -> load_agent) gives the same agent."""
    mod = _train_module()
    cfg = mod.Config(sensors=("fovea",), what="none", shaping=0.0, max_saccades=0, contrast=1.0, noise=0.0, placement="center",
                     num_envs=128, n_steps=4, batch_size=128, n_epochs=4, lr=2e-3, ent_coef=0.0, total_timesteps=8192,
                     width=8, code=64, hidden=64, eval_budgets=(0,), eval_episodes=300, progress_bar=False,
                     threads=1, runs=str(tmp_path), out=str(tmp_path / "ppo.pt"))
    result = mod.train(cfg)
    assert result["accuracy"][0] > 0.4, result
    from agents.ppo import load_agent
    from agents.rollout import evaluate
    agent = load_agent(tmp_path / "ppo.pt")
    assert agent.sensors == ("fovea",)
    res = evaluate(agent, env_id="SaccadeMNIST-v0", budget=0, episodes=300, seed=0, split=cfg.val_split, **cfg.env_kwargs())
    assert res.accuracy == pytest.approx(result["accuracy"][0])
    zip_agent = load_agent(tmp_path / "ppo" / "final.zip", **cfg.env_kwargs())
    assert evaluate(zip_agent, env_id="SaccadeMNIST-v0", budget=0, episodes=300, seed=0, split=cfg.val_split,
                    **cfg.env_kwargs()).accuracy == pytest.approx(res.accuracy)


def test_recurrent_ppo_learns_an_easy_configuration(tmp_path):
    """`--recurrent` (sb3-contrib's RecurrentPPO, an LSTM policy) on the same easy bandit: it
    learns well above chance, and the shipped checkpoint acts the same through load_agent."""
    pytest.importorskip("sb3_contrib", reason="the test extra installs sb3-contrib")
    mod = _train_module()
    cfg = mod.Config(recurrent=True, sensors=("fovea",), what="none", shaping=0.0, max_saccades=0, contrast=1.0, noise=0.0, placement="center",
                     num_envs=128, n_steps=4, batch_size=128, n_epochs=4, lr=2e-3, ent_coef=0.0,
                     total_timesteps=8192, width=8, code=64, hidden=64, eval_budgets=(0,), eval_episodes=300,
                     progress_bar=True, threads=1, runs=str(tmp_path), out=str(tmp_path / "ppo.pt"))
    result = mod.train(cfg)
    assert result["accuracy"][0] > 0.4, result
    from agents.ppo import load_agent
    from agents.rollout import evaluate
    agent = load_agent(tmp_path / "ppo.pt")
    assert agent.recurrent
    res = evaluate(agent, env_id="SaccadeMNIST-v0", budget=0, episodes=300, seed=0, split=cfg.val_split, **cfg.env_kwargs())
    assert res.accuracy == pytest.approx(result["accuracy"][0])


def _retinotopic_setup(num_envs=4, **kw):
    from agents.nets import FovealClassifier
    from agents.sb3_extractors import WhatObservation
    venv = make_sb3_vec_env("SaccadeMNIST-v0", num_envs=num_envs, split="test", **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        what = FovealClassifier().eval()
    return venv, what, WhatObservation


def test_retinotopic_policy_scores_each_target_at_its_place():
    """Turning the periphery's map by one azimuth step turns every ring's target logits by one step
    (the scores are computed on the map itself, with circular padding along the azimuth); the answer
    logits are the head's own; a grid other than the log-polar one is refused."""
    from agents.sb3_extractors import RetinotopicPolicy
    venv, what, WhatObservation = _retinotopic_setup()
    env = WhatObservation(venv, what)
    obs = {k: torch.as_tensor(v) for k, v in env.reset().items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policy = RetinotopicPolicy(env.observation_space, env.action_space, lambda _: 1e-3)
    with torch.no_grad():
        policy.action_net.cell_bias.zero_()
        logits = policy.action_net(policy.extract_features(obs, policy.features_extractor))
        turned = {**obs, "periphery": obs["periphery"].roll(1, dims=-1)}
        logits_t = policy.action_net(policy.extract_features(turned, policy.features_extractor))
    E, A = obs["periphery"].shape[-2:]
    cells, cells_t = logits[:, :E * A].view(-1, E, A), logits_t[:, :E * A].view(-1, E, A)
    torch.testing.assert_close(cells_t, cells.roll(1, dims=-1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cells, cells.roll(1, dims=-1))  # the scores do depend on the place
    probs = torch.softmax(logits[:, E * A:], -1)
    assert float(probs[:, LOOK].mean()) == pytest.approx(0.5, abs=0.05)  # a fresh policy looks half the time
    uniform = WhatObservation(make_sb3_vec_env("SaccadeMNIST-v0", num_envs=2, split="test", grid="uniform"), what)
    with pytest.raises(ValueError, match="grid='logpolar'"):
        RetinotopicPolicy(uniform.observation_space, uniform.action_space, lambda _: 1e-3)


def test_what_observation_reads_the_fovea_and_shaping_telescopes():
    """obs["what"] is the frozen classifier's log-probabilities of the fovea, terminal observations
    included; with shaping (gamma 1) the shaped rewards of an episode add up to its plain rewards
    minus the potential of its first observation (the probability of the true label then)."""
    from agents.sb3_extractors import what_readout
    n = 4
    plain_env, what, WhatObservation = _retinotopic_setup(n, max_saccades=2)
    shaped_env = WhatObservation(make_sb3_vec_env("SaccadeMNIST-v0", num_envs=n, split="test", max_saccades=2),
                                 what, shaping=1.0, gamma=1.0)
    plain_env = WhatObservation(plain_env, what)
    plain_env.seed(3)
    shaped_env.seed(3)
    obs, obs_s = plain_env.reset(), shaped_env.reset()
    np.testing.assert_allclose(obs["what"], what_readout(what, torch.as_tensor(obs["fovea"])).numpy(), atol=1e-6)
    phi0 = np.exp(obs["what"][np.arange(n), shaped_env.venv.unwrapped.venv.state.label.numpy()])
    rng = np.random.default_rng(0)
    total_plain, total_shaped, firsts = np.zeros(n), np.zeros(n), phi0.copy()
    checked = 0
    for _ in range(12):
        act = np.stack([rng.integers(0, 240, n), np.where(rng.random(n) < 0.6, LOOK, rng.integers(0, 10, n))], 1)
        obs, r, done, infos = plain_env.step(act)
        obs_s, r_s, done_s, _ = shaped_env.step(act)
        np.testing.assert_array_equal(done, done_s)
        total_plain += r
        total_shaped += r_s
        for i in np.flatnonzero(done):
            term = infos[i]["terminal_observation"]
            np.testing.assert_allclose(term["what"], what_readout(what, torch.as_tensor(term["fovea"][None])).numpy()[0],
                                       atol=1e-6)
            assert total_shaped[i] == pytest.approx(total_plain[i] - firsts[i], abs=1e-5)
            checked += 1
            total_plain[i] = total_shaped[i] = 0.0
            label = shaped_env.venv.unwrapped.venv.state.label[i].item()
            firsts[i] = np.exp(obs["what"][i, label])
    assert checked >= n
    with pytest.raises(ValueError, match="shaping >= 0"):
        WhatObservation(plain_env.venv, what, shaping=-1.0)


def test_ppo_refuses_torchrun(monkeypatch, tmp_path):
    """SB3 has no DDP: under torchrun (WORLD_SIZE > 1) train/ppo.py stops with the fix, writing nothing."""
    mod = _train_module()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit, match="one process"):
        mod.train(mod.Config(runs=str(tmp_path), progress_bar=False))
    assert not any(tmp_path.iterdir())
