"""SaccadeMNISTEnv and SaccadeMNISTVectorEnv: API conformance, determinism, vector == singles,
no label leaks, input validation, spaces, rewards and episode ends."""
from __future__ import annotations

import dataclasses
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import saccade_env
from saccade_env import SaccadeMNISTEnv, SaccadeMNISTVectorEnv

from conftest import PRESET_IDS, answer, assert_info_equal, assert_obs_equal, look

END_KEYS = {"label", "target_xy", "eccentricity", "n_saccades", "correct"}
SENSORS_OF = {p.id: tuple(p.kwargs["sensors"]) for p in saccade_env.PRESETS}


def np_obs(obs: dict) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in obs.items()}


def state_equal(a, b) -> bool:
    """Two EnvStates hold the same values."""
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x is None or y is None:
            if x is not y:
                return False
        elif not torch.equal(torch.nan_to_num(x, nan=-7.0), torch.nan_to_num(y, nan=-7.0)):
            return False
    return True


# =========================================================================== 1. API conformance
def test_registered_ids():
    assert PRESET_IDS == ["SaccadeMNIST-v0", "SaccadeMNIST-Centered28-v0", "SaccadeMNIST-Translated60-v0",
                          "SaccadeMNIST-Cluttered60-v0", "SaccadeMNIST-Cluttered100-v0"]
    for pid in PRESET_IDS:
        assert pid in gym.registry
    saccade_env.register_all()  # idempotent


@pytest.mark.parametrize("pid", PRESET_IDS)
def test_check_env_without_warnings(pid, fake_display):
    env = gym.make(pid)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)  # includes the render checks of both declared render modes
        # and the wrapped env gym.make gives (passive checker, order enforcing) is quiet too
        env.reset(seed=0)
        for t in range(3):
            env.step({"saccade": np.array([0.1 * t, -0.2], np.float32), "answer": 10})
        env.step(answer(4))
    assert [str(w.message) for w in caught] == []
    assert isinstance(env.unwrapped, SaccadeMNISTEnv)
    env.close()


def test_render_rgb_array_and_human(fake_display):
    env = gym.make("SaccadeMNIST-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    env.close()
    env = gym.make("SaccadeMNIST-Translated60-v0", render_mode="human")
    env.reset(seed=0)
    env.step(look(0.2, 0.2))
    assert len(env.unwrapped._viewer.frames) == 2  # one frame per reset / step
    env.close()


@pytest.mark.parametrize("pid", PRESET_IDS)
def test_make_vec(pid):
    venv = gym.make_vec(pid, num_envs=3, device="cpu")
    assert isinstance(venv, SaccadeMNISTVectorEnv) and venv.num_envs == 3
    single = gym.make(pid).unwrapped
    assert venv.single_observation_space == single.observation_space
    assert venv.single_action_space == single.action_space
    obs, info = venv.reset(seed=0)
    assert info == {}
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.shape[0] == 3 for v in obs.values())
    assert venv.observation_space.contains(np_obs(obs))
    act = {"saccade": torch.tensor([[0.5, -0.5], [0.0, 0.0], [1.0, -1.0]]), "answer": torch.tensor([10, 10, 2])}
    obs, rew, term, trunc, _ = venv.step(act)
    assert venv.observation_space.contains(np_obs(obs))
    assert rew.dtype == torch.float32 and term.dtype == torch.bool and trunc.dtype == torch.bool
    assert rew.shape == term.shape == trunc.shape == (3,)
    assert term.tolist() == [False, False, True]
    # NumPy actions work as well
    obs, *_ = venv.step({"saccade": np.zeros((3, 2), np.float32), "answer": np.array([10, 10, 10])})
    assert venv.observation_space.contains(np_obs(obs))
    venv.close()


# =========================================================================== 2. determinism
def _actions(n: int, seed: int = 0, p_look: float = 0.7):
    g = np.random.default_rng(seed)
    return [{"saccade": g.uniform(-1, 1, 2).astype(np.float32),
             "answer": 10 if g.random() < p_look else int(g.integers(0, 10))} for _ in range(n)]


def _rollout(env, seed, actions):
    out = [env.reset(seed=seed)]
    for act in actions:
        step = env.step(act)
        out.append(step)
        if step[2] or step[3]:
            out.append(env.reset())
    return out


def _same(run_a, run_b) -> bool:
    if len(run_a) != len(run_b):
        return False
    for a, b in zip(run_a, run_b):
        if len(a) != len(b):
            return False
        try:
            assert_obs_equal(a[0], b[0])
            assert_info_equal(a[-1], b[-1])
        except AssertionError:
            return False
        if tuple(a[1:-1]) != tuple(b[1:-1]):
            return False
    return True


@pytest.mark.parametrize("pid", ["SaccadeMNIST-v0", "SaccadeMNIST-Cluttered60-v0"])
def test_same_seed_same_episodes(pid):
    acts = _actions(40)
    e1, e2 = gym.make(pid, privileged=True), gym.make(pid, privileged=True)
    r1, r2 = _rollout(e1, 123, acts), _rollout(e2, 123, acts)
    assert sum(len(x) == 2 for x in r1) >= 6  # several episodes
    assert _same(r1, r2)
    assert _same(_rollout(e1, 123, acts), r1)  # re-seeding the same env replays it
    r3 = _rollout(e2, 124, acts)
    assert not np.array_equal(r3[0][1]["scene"], r1[0][1]["scene"])
    assert not _same(r3, r1)
    # successive unseeded episodes differ from each other
    scenes = [x[1]["scene"] for x in r1 if len(x) == 2]
    assert all(not np.array_equal(scenes[0], s) for s in scenes[1:])


# =========================================================================== 3. vector == singles
@pytest.mark.parametrize("pid", ["SaccadeMNIST-v0", "SaccadeMNIST-Cluttered60-v0"])
def test_vector_equals_single_envs(pid):
    N, T, seed = 4, 48, 1000
    kw = dict(max_saccades=2)
    venv = gym.make_vec(pid, num_envs=N, device="cpu", **kw)
    singles = [gym.make(pid, **kw).unwrapped for _ in range(N)]
    g = np.random.default_rng(7)
    vobs, vinfo = venv.reset(seed=seed)
    assert vinfo == {}
    for i, env in enumerate(singles):
        o, info = env.reset(seed=seed + i)
        assert info == {}
        assert_obs_equal({k: v[i] for k, v in np_obs(vobs).items()}, o, atol=1e-5)
    pending = [False] * N  # ended last step: the vector env resets it on this step
    ret, length = [0.0] * N, [0] * N
    n_term = n_trunc = n_correct = n_autoreset = 0
    episodes = [0] * N
    for t in range(T):
        sac = g.uniform(-1, 1, (N, 2)).astype(np.float32)
        ans = np.where(g.random(N) < 0.6, 10, g.integers(0, 10, N))
        vobs, vrew, vterm, vtrunc, vinfo = venv.step({"saccade": torch.from_numpy(sac),
                                                      "answer": torch.from_numpy(ans)})
        vobs = np_obs(vobs)
        for i, env in enumerate(singles):
            ended_here = "_label" in vinfo and bool(vinfo["_label"][i])
            if pending[i]:  # next-step autoreset: action ignored, reward 0, not ended
                o, info = env.reset()
                r, te, tr = 0.0, False, False
                pending[i], ret[i], length[i] = False, 0.0, 0
                n_autoreset += 1
                assert info == {} and not ended_here
            else:
                o, r, te, tr, info = env.step({"saccade": sac[i], "answer": int(ans[i])})
                ret[i] += r
                length[i] += 1
                if te or tr:
                    pending[i] = True
                    episodes[i] += 1
                    n_term, n_trunc, n_correct = n_term + te, n_trunc + tr, n_correct + (r == 1.0)
                    assert ended_here
                    assert set(info) == END_KEYS
                    for k in END_KEYS:
                        assert bool(vinfo["_" + k][i])
                        np.testing.assert_allclose(np.asarray(vinfo[k][i]), np.asarray(info[k]), atol=1e-5)
                    assert bool(vinfo["_episode"][i])
                    assert float(vinfo["episode"]["r"][i]) == pytest.approx(ret[i])
                    assert int(vinfo["episode"]["l"][i]) == length[i]
                else:
                    assert info == {} and not ended_here
            assert_obs_equal({k: v[i] for k, v in vobs.items()}, o, atol=1e-5)
            assert float(vrew[i]) == pytest.approx(r, abs=1e-7)
            assert bool(vterm[i]) == te and bool(vtrunc[i]) == tr
    # the schedule covered every case
    assert min(episodes) >= 3 and n_term >= 6 and n_trunc >= 2 and n_correct >= 1 and n_autoreset >= 8
    venv.close()


# =========================================================================== 4. vector specifics
@pytest.fixture(scope="module")
def venv4():
    venv = gym.make_vec("SaccadeMNIST-v0", num_envs=4, device="cpu", max_saccades=2, saccade_cost=0.25)
    yield venv
    venv.close()


def test_vector_metadata_and_spaces(venv4):
    assert venv4.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert venv4.action_space["saccade"].shape == (4, 2)
    assert venv4.observation_space["fovea"].shape == (4, 1, 28, 28)


def test_vector_episode_infos_and_autoreset(venv4):
    venv4.reset(seed=3, options={"label": [0, 1, 2, 3]})
    L = torch.tensor

    def step(ans, sac=0.0):
        return venv4.step({"saccade": torch.full((4, 2), sac), "answer": L(ans)})

    # env 0 answers right at once; env 1 wrong after a look; env 2 truncates after 2 looks; env 3 looks
    obs, rew, term, trunc, info = step([0, 10, 10, 10], 0.5)
    assert rew.tolist() == [1.0, -0.25, -0.25, -0.25] and term.tolist() == [True, False, False, False]
    assert info["_label"].tolist() == [True, False, False, False] and int(info["label"][0]) == 0
    assert info["episode"]["r"][0].item() == 1.0 and info["episode"]["l"][0].item() == 1
    assert info["_episode"].tolist() == [True, False, False, False]
    assert bool(info["correct"][0])
    kept_fix = obs["fixation"][0].clone()
    assert kept_fix.tolist() == [0.0, 0.0]  # the ended episode's last observation
    obs, rew, term, trunc, info = step([10, 5, 10, 10], -0.5)
    assert rew.tolist() == [0.0, 0.0, -0.25, -0.25]  # env 0 autoresets: action ignored, reward 0
    assert not bool(term[0] | trunc[0]) and obs["fixation"][0].tolist() == [0.0, 0.0]
    assert obs["saccades_left"][:, 0].tolist() == [2.0, 1.0, 0.0, 0.0]
    assert info["_label"].tolist() == [False, True, False, False]
    assert int(info["label"][1]) == 1 and not bool(info["correct"][1])
    assert info["episode"]["r"][1].item() == pytest.approx(-0.25) and info["episode"]["l"][1].item() == 2
    obs, rew, term, trunc, info = step([10, 10, 10, 7], 0.25)
    assert trunc.tolist() == [False, False, True, False] and term.tolist() == [False, False, False, True]
    assert rew.tolist() == [-0.25, 0.0, 0.0, 0.0]  # a truncating look costs nothing
    assert info["_label"].tolist() == [False, False, True, True]
    assert info["episode"]["l"][2:].tolist() == [3, 3]
    assert info["episode"]["r"][2].item() == pytest.approx(-0.5)
    assert info["episode"]["r"][3].item() == pytest.approx(-0.5)
    assert info["n_saccades"][2:].tolist() == [2, 2]
    obs, rew, term, trunc, info = step([10, 10, 10, 10], 0.25)
    assert info == {}  # nothing ended
    assert rew.tolist() == [-0.25, -0.25, 0.0, 0.0]
    assert obs["saccades_left"][:, 0].tolist() == [0.0, 1.0, 2.0, 2.0]


def test_vector_reset_seed_list():
    kw = dict(sensors=("fovea",), max_saccades=1)
    a = gym.make_vec("SaccadeMNIST-v0", num_envs=3, device="cpu", **kw)
    b = gym.make_vec("SaccadeMNIST-v0", num_envs=3, device="cpu", **kw)
    oa, _ = a.reset(seed=[10, 11, 12])
    ob, _ = b.reset(seed=10)
    assert torch.equal(oa["fovea"], ob["fovea"])
    oc, _ = b.reset(seed=[12, 11, 10])
    assert torch.equal(oc["fovea"][0], oa["fovea"][2]) and torch.equal(oc["fovea"][2], oa["fovea"][0])
    od, _ = b.reset(seed=[5, 5, 5])
    assert torch.equal(od["fovea"][0], od["fovea"][1])
    with pytest.raises(ValueError, match="3 seeds"):
        a.reset(seed=[1, 2])
    a.close()
    b.close()


def test_vector_privileged_info_after_autoreset():
    venv = gym.make_vec("SaccadeMNIST-v0", num_envs=2, device="cpu", privileged=True)
    single = gym.make("SaccadeMNIST-v0", privileged=True).unwrapped
    venv.reset(seed=5)
    single.reset(seed=5)
    act = {"saccade": torch.zeros(2, 2), "answer": torch.tensor([3, 3])}
    venv.step(act)
    single.step(answer(3))
    obs, _, _, _, info = venv.step(act)  # env 0 restarts here
    o, sinfo = single.reset()
    np.testing.assert_array_equal(obs["fovea"][0].numpy(), o["fovea"])
    np.testing.assert_array_equal(info["target_xy"][0].numpy(), sinfo["target_xy"])
    np.testing.assert_array_equal(info["scene"][0].numpy(), sinfo["scene"])


# =========================================================================== 6. no label leaks
@pytest.mark.parametrize("pid", PRESET_IDS)
def test_obs_keys_are_the_declared_sensors(pid):
    env = gym.make(pid).unwrapped
    want = set(SENSORS_OF[pid]) | {"fixation", "saccades_left"}
    assert set(env.observation_space.spaces) == want
    obs, info = env.reset(seed=0)
    assert set(obs) == want and info == {}
    obs, *_, info = env.step(look(0.1, 0.1))
    assert set(obs) == want and info == {}
    obs, *_, info = env.step(answer(0))
    assert set(obs) == want and set(info) == END_KEYS


@pytest.mark.parametrize("sensors", [("glimpse",), ("fovea", "glimpse"), ("periphery",), "fovea"])
def test_obs_keys_custom_sensors(sensors):
    env = SaccadeMNISTEnv(sensors=sensors)
    names = (sensors,) if isinstance(sensors, str) else sensors
    obs, _ = env.reset(seed=0)
    assert set(obs) == set(names) | {"fixation", "saccades_left"} == set(env.observation_space.spaces)
    assert env.observation_space.contains(obs)


def test_info_before_the_end_never_holds_the_label():
    env = SaccadeMNISTEnv(max_saccades=3)
    penv = SaccadeMNISTEnv(max_saccades=3, privileged=True)
    for e, before in ((env, set()), (penv, {"scene", "target_xy"})):
        for ep in range(3):
            obs, info = e.reset(seed=ep)
            assert set(info) == before
            for t in range(3):  # three looks, then an answer, or (ep 1) a fourth look: truncated
                obs, r, term, trunc, info = e.step(look(0.2 * t, -0.1))
                assert not (term or trunc) and set(info) == before
                assert not any("label" in k for k in list(info) + list(obs))
            obs, r, term, trunc, info = e.step(answer(ep) if ep % 2 == 0 else look())
            assert (term or trunc) and set(info) == before | END_KEYS
    # vector: the label appears only in the infos of ended environments
    venv = SaccadeMNISTVectorEnv(3, max_saccades=3)
    _, info = venv.reset(seed=0)
    assert info == {}
    _, _, _, _, info = venv.step({"saccade": torch.zeros(3, 2), "answer": torch.tensor([10, 10, 10])})
    assert info == {}
    _, _, term, _, info = venv.step({"saccade": torch.zeros(3, 2), "answer": torch.tensor([10, 4, 10])})
    assert info["_label"].tolist() == [False, True, False] and term.tolist() == [False, True, False]
    pvenv = SaccadeMNISTVectorEnv(3, max_saccades=3, privileged=True)
    _, info = pvenv.reset(seed=0)
    assert set(info) == {"scene", "_scene", "target_xy", "_target_xy"}
    _, _, _, _, info = pvenv.step({"saccade": torch.zeros(3, 2), "answer": torch.tensor([10, 10, 10])})
    assert set(info) == {"scene", "_scene", "target_xy", "_target_xy"}


def test_observation_does_not_depend_on_label_given_the_scene():
    """The observation is a function of the scene and the fixation only: the same state with
    another label behind it reads the same (nothing label-specific is appended)."""
    env = SaccadeMNISTEnv(sensors=("fovea", "periphery", "glimpse"), privileged=True)
    env.reset(seed=1)
    obs = env.step(look(0.25, 0.25))[0]
    state = env.state
    relabelled = dataclasses.replace(state, label=(state.label + 1) % 10)
    a, b = env.core.observe(state), env.core.observe(relabelled)
    assert_obs_equal(np_obs(a), np_obs(b))
    assert_obs_equal({k: v[0] for k, v in np_obs(a).items()}, obs)


# =========================================================================== 7. bad inputs
NAN = float("nan")
BAD_ACTIONS = [
    ({"saccade": np.array([NAN, 0.0], np.float32), "answer": 10}, ValueError, "NaN"),
    ({"saccade": np.array([0.0, np.inf], np.float32), "answer": 10}, ValueError, "[-1, 1]"),
    ({"saccade": np.array([1.5, 0.0], np.float32), "answer": 10}, ValueError, "[-1, 1]"),
    ({"saccade": np.array([0.0, -1.01], np.float32), "answer": 3}, ValueError, "[-1, 1]"),
    ({"saccade": np.zeros(2, np.float32), "answer": 11}, ValueError, "0..10"),
    ({"saccade": np.zeros(2, np.float32), "answer": -1}, ValueError, "0..10"),
    ({"saccade": np.zeros(2, np.float32), "answer": 3.0}, TypeError, "0..10"),
    ({"saccade": np.zeros(2, np.float32), "answer": np.float32(10)}, TypeError, "integer"),
    ({"saccade": np.zeros(2, np.float32), "answer": True}, TypeError, "integer"),
    ({"saccade": np.zeros(2, np.float32), "answer": np.array([10])}, ValueError, "0..10"),
    ({"saccade": np.zeros(3, np.float32), "answer": 10}, ValueError, "(2,)"),
    ({"saccade": np.zeros((1, 2), np.float32), "answer": 10}, ValueError, "(2,)"),
    ({"saccade": np.array([0, 1]), "answer": 10}, TypeError, "float"),
    ({"saccade": torch.tensor([0, 1]), "answer": 10}, TypeError, "float"),
    ({"saccade": torch.tensor([NAN, 0.0]), "answer": 10}, ValueError, "NaN"),
    ({"saccade": torch.tensor([0.0, 2.0]), "answer": 10}, ValueError, "[-1, 1]"),
    ({"saccade": torch.zeros(2), "answer": torch.tensor(12)}, ValueError, "0..10"),
    ({"saccade": np.zeros(2, np.float32)}, TypeError, "answer"),
    ({"answer": 10}, TypeError, "saccade"),
    ({"saccade": np.zeros(2, np.float32), "answer": 10, "extra": 1}, TypeError, "0..10"),
    ((np.zeros(2, np.float32), 10), TypeError, "0..10"),
    (10, TypeError, "0..10"),
    ({"saccade": "up", "answer": 10}, (TypeError, ValueError), "0..10"),
]


@pytest.fixture(scope="module")
def twins():
    """Two identical environments: one gets the bad calls, the other never does."""
    return SaccadeMNISTEnv(max_saccades=3), SaccadeMNISTEnv(max_saccades=3)


def _continue_identically(a, b, n_eps: int = 2):
    """Drive both environments on with the same actions; they must behave identically."""
    acts = [look(0.25, -0.5), look(-0.75, 0.125), answer(3), look(0.5, 0.5), look(), look(), look(), look()]
    done = 0
    for act in acts:
        ra, rb = a.step(act), b.step(act)
        assert_obs_equal(ra[0], rb[0])
        assert ra[1:4] == rb[1:4]
        assert_info_equal(ra[4], rb[4])
        if ra[2] or ra[3]:
            done += 1
            assert_obs_equal(a.reset()[0], b.reset()[0])
    assert done == n_eps


@pytest.mark.parametrize("bad,exc,fragment", BAD_ACTIONS)
def test_bad_action_is_rejected_and_changes_nothing(twins, bad, exc, fragment):
    a, b = twins
    a.reset(seed=21)
    b.reset(seed=21)
    a.step(look(0.5, 0.25))
    b.step(look(0.5, 0.25))
    before = a.state
    with pytest.raises(exc) as err:
        a.step(bad)
    assert fragment in str(err.value), str(err.value)
    assert a.state is before and state_equal(a.state, b.state)
    _continue_identically(a, b)


def test_good_action_forms_are_accepted(twins):
    """Lists, Python floats, float64, NumPy ints and tensors all mean the same look."""
    a, b = twins
    forms = [{"saccade": [0.25, -0.5], "answer": 10},
             {"saccade": np.array([0.25, -0.5], np.float64), "answer": np.int64(10)},
             {"saccade": torch.tensor([0.25, -0.5]), "answer": torch.tensor(10)},
             {"saccade": (0.25, -0.5), "answer": np.uint8(10)}]
    a.reset(seed=2)
    ref = a.step(look(0.25, -0.5))[0]
    for f in forms:
        a.reset(seed=2)
        assert_obs_equal(a.step(f)[0], ref)


def test_step_after_end_and_before_reset(twins):
    a, b = twins
    for e in twins:
        e.reset(seed=4)
        e.step(answer(5))
    with pytest.raises(RuntimeError, match="reset"):
        a.step(look())
    with pytest.raises(RuntimeError, match="reset"):
        a.step(answer(1))
    assert state_equal(a.state, b.state)
    assert_obs_equal(a.reset()[0], b.reset()[0])
    _continue_identically(a, b)
    # truncated episodes too
    a.reset(seed=4)
    for _ in range(4):
        *_, trunc, _ = a.step(look())
    assert trunc
    with pytest.raises(RuntimeError, match="reset"):
        a.step(look())
    fresh = SaccadeMNISTEnv(sensors=("fovea",))
    with pytest.raises(RuntimeError, match="reset"):
        fresh.step(look())
    assert fresh.state is None
    with pytest.raises(RuntimeError, match="reset"):
        SaccadeMNISTVectorEnv(2, sensors=("fovea",)).step({"saccade": np.zeros((2, 2), np.float32),
                                                           "answer": np.array([10, 10])})
    with pytest.raises(gym.error.ResetNeeded):  # gym.make's order enforcing says so too
        gym.make("SaccadeMNIST-Centered28-v0").step(look())


@pytest.mark.parametrize("options,fragment", [({"label": 12}, "0..9"), ({"label": -1}, "0..9"),
                                              ({"label": 2.0}, "0..9"), ({"eccentricity": 100}, "[0, 50]"),
                                              ({"eccentricity": -1}, "[0, 50]"),
                                              ({"eccentricity": NAN}, "[0, 50]"),
                                              ({"target_xy": (0.9, 0.0)}, "inside the scene"),
                                              ({"target_xy": (0.1, 0.2, 0.3)}, "shape"),
                                              ({"eccentricity": 5, "target_xy": (0, 0)}, "either"),
                                              ({"colour": "red"}, "unknown")])
def test_bad_reset_options(twins, options, fragment):
    a, b = twins
    a.reset(seed=8)
    b.reset(seed=8)
    a.step(look(0.5, 0.5))
    b.step(look(0.5, 0.5))
    with pytest.raises(ValueError) as err:
        a.reset(options=options)
    assert fragment in str(err.value), str(err.value)
    with pytest.raises(ValueError):
        a.reset(seed=99, options=options)
    assert state_equal(a.state, b.state)  # the running episode goes on
    _continue_identically(a, b)


def test_bad_reset_options_do_not_reseed():
    env = SaccadeMNISTEnv(sensors=("fovea",))
    env.reset(seed=3)
    with pytest.raises(ValueError):
        env.reset(seed=4, options={"label": 12})
    assert env.np_random_seed == 3


# ---- vector env
@pytest.fixture(scope="module")
def vtwins():
    kw = dict(num_envs=3, max_saccades=2, sensors=("fovea", "periphery"))
    return SaccadeMNISTVectorEnv(**kw), SaccadeMNISTVectorEnv(**kw)


def _vact(sac, ans):
    return {"saccade": torch.as_tensor(sac, dtype=torch.float32), "answer": torch.as_tensor(ans)}


def _vcontinue_identically(a, b):
    g = np.random.default_rng(0)
    for _ in range(8):
        act = {"saccade": torch.from_numpy(g.uniform(-1, 1, (3, 2)).astype(np.float32)),
               "answer": torch.from_numpy(np.where(g.random(3) < 0.6, 10, g.integers(0, 10, 3)))}
        ra, rb = a.step(act), b.step(act)
        assert_obs_equal(np_obs(ra[0]), np_obs(rb[0]))
        for x, y in zip(ra[1:4], rb[1:4]):
            assert torch.equal(x, y)
        assert set(ra[4]) == set(rb[4])


BAD_VECTOR_ACTIONS = [
    (_vact(np.zeros((4, 2)), [10, 10, 10]), ValueError, "(3, 2)"),
    (_vact(np.zeros((3,)), [10, 10, 10]), ValueError, "(3, 2)"),
    (_vact(np.zeros((2, 3)), [10, 10, 10]), ValueError, "(3, 2)"),
    (_vact(np.zeros((3, 2)), [10, 10]), ValueError, "(3,)"),
    (_vact(np.zeros((3, 2)), 10), ValueError, "(3,)"),
    (_vact([[0, 0], [NAN, 0], [0, 0]], [10, 10, 10]), ValueError, "NaN"),
    (_vact([[0, 0], [0, 0], [0, 1.5]], [10, 10, 10]), ValueError, "[-1, 1]"),
    (_vact(np.zeros((3, 2)), [10, 11, 10]), ValueError, "0..10"),
    (_vact(np.zeros((3, 2)), [-1, 10, 10]), ValueError, "0..10"),
    ({"saccade": torch.zeros(3, 2), "answer": torch.tensor([10.0, 10.0, 10.0])}, TypeError, "integer"),
    ({"saccade": torch.zeros(3, 2, dtype=torch.int64), "answer": torch.tensor([10, 10, 10])}, TypeError, "float"),
    ({"saccade": np.zeros((3, 2), np.int32), "answer": np.array([10, 10, 10])}, TypeError, "float"),
    ({"saccade": np.zeros((3, 2), np.float32), "answer": np.array([1.0, 2.0, 3.0])}, TypeError, "integer"),
    ({"saccade": np.zeros((3, 2), np.float32)}, TypeError, "answer"),
]


@pytest.mark.parametrize("bad,exc,fragment", BAD_VECTOR_ACTIONS)
def test_vector_bad_action_is_rejected_and_changes_nothing(vtwins, bad, exc, fragment):
    a, b = vtwins
    a.reset(seed=31)
    b.reset(seed=31)
    first = _vact([[0.5, 0.5], [0, 0], [0, 0]], [10, 10, 4])  # env 2 ends: autoreset pending
    a.step(first)
    b.step(first)
    before = a.state
    with pytest.raises(exc) as err:
        a.step(bad)
    assert fragment in str(err.value), str(err.value)
    assert a.state is before and state_equal(a.state, b.state)
    _vcontinue_identically(a, b)


def test_vector_bad_reset_options_without_seed(vtwins):
    a, b = vtwins
    a.reset(seed=32)
    b.reset(seed=32)
    for opts in ({"label": 12}, {"label": [1, 2, 10]}, {"eccentricity": [1, 2, 100]}, {"nope": 1}):
        with pytest.raises(ValueError):
            a.reset(options=opts)
    assert state_equal(a.state, b.state)
    _vcontinue_identically(a, b)


@pytest.mark.parametrize("opts", [{"label": [1, 2]}, {"eccentricity": [1.0, 2.0]},
                                  {"target_xy": [[0.0, 0.0], [0.1, 0.1]]}])
def test_vector_reset_options_of_wrong_length(vtwins, opts):
    a, _ = vtwins
    a.reset(seed=32)
    with pytest.raises(ValueError, match="3"):
        a.reset(options=opts)


def test_vector_bad_reset_options_with_seed_change_nothing(vtwins):
    a, b = vtwins
    a.reset(seed=33)
    b.reset(seed=33)
    with pytest.raises(ValueError):
        a.reset(seed=34, options={"label": 12})
    assert state_equal(a.state, b.state)


# ---- configuration
BAD_CONFIGS = [
    (dict(contrast=1.5), ValueError, "contrast"),
    (dict(contrast=-0.1), ValueError, "contrast"),
    (dict(noise=-0.1), ValueError, "noise"),
    (dict(fovea_size=200), ValueError, "fovea_size"),
    (dict(fovea_size=27), ValueError, "even"),
    (dict(fovea_size=0), ValueError, "fovea_size"),
    (dict(max_saccades=-1), ValueError, "max_saccades"),
    (dict(max_saccades=2.5), ValueError, "max_saccades"),
    (dict(saccade_cost=-1.0), ValueError, "saccade_cost"),
    (dict(sensors=("eyes",)), ValueError, "sensors"),
    (dict(sensors=()), ValueError, "sensors"),
    (dict(sensors=("fovea", "fovea")), ValueError, "sensors"),
    (dict(split="val"), ValueError, "split"),
    (dict(placement="nowhere"), ValueError, "placement"),
    (dict(size=129), ValueError, "even"),
    (dict(glimpse_scales=0), ValueError, "glimpse_scales"),
    (dict(glimpse_size=7), ValueError, "glimpse_size"),
    (dict(ecc_max=60.0), ValueError, "ecc_max"),
    (dict(render_mode="window"), ValueError, "render_mode"),
    (dict(colour="red"), TypeError, "colour"),
    (dict(fovea=28), TypeError, "fovea"),
]


@pytest.mark.parametrize("kw,exc,fragment", BAD_CONFIGS)
def test_bad_config(kw, exc, fragment):
    with pytest.raises(exc) as err:
        SaccadeMNISTEnv(**kw)
    assert fragment in str(err.value), str(err.value)
    with pytest.raises(exc), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym.make's own note about an undeclared render_mode
        gym.make("SaccadeMNIST-v0", **kw)
    if "render_mode" not in kw:
        with pytest.raises(exc):
            gym.make_vec("SaccadeMNIST-v0", num_envs=2, device="cpu", **kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where CUDA is absent")
def test_cuda_without_cuda_says_what_to_pass():
    for make in (lambda: SaccadeMNISTEnv(device="cuda"), lambda: SaccadeMNISTVectorEnv(2, device="cuda"),
                 lambda: gym.make_vec("SaccadeMNIST-v0", num_envs=2, device="cuda")):
        with pytest.raises(ValueError, match="device='cpu'"):
            make()


def test_a_device_torch_does_not_know_says_what_to_pass():
    with pytest.raises(ValueError, match="not a torch device; pass 'cpu'"):
        SaccadeMNISTEnv(device="gpu")


def test_bad_vector_construction():
    for n in (0, -3, 2.0):
        with pytest.raises(ValueError, match="num_envs"):
            SaccadeMNISTVectorEnv(n)
    with pytest.raises(ValueError, match="rgb_array"):
        SaccadeMNISTVectorEnv(2, render_mode="human")


# =========================================================================== 8. spaces, rewards, episode end
@pytest.mark.parametrize("pid,n_steps", [("SaccadeMNIST-v0", 300), ("SaccadeMNIST-Cluttered60-v0", 300)])
def test_observations_stay_in_space(pid, n_steps):
    env = gym.make(pid).unwrapped
    space = env.observation_space
    g = np.random.default_rng(1)
    obs, _ = env.reset(seed=1)
    assert space.contains(obs)
    eps = 0
    for t in range(n_steps):
        # mostly looks, aimed anywhere, edges included
        s = g.choice([-1.0, 1.0], 2) if t % 10 == 0 else g.uniform(-1, 1, 2)
        act = {"saccade": s.astype(np.float32), "answer": 10 if g.random() < 0.85 else int(g.integers(0, 10))}
        assert env.action_space.contains(act)
        obs, r, term, trunc, _ = env.step(act)
        assert space.contains(obs), {k: (v.min(), v.max()) for k, v in obs.items()}
        assert all(v.dtype == np.float32 for v in obs.values())
        if term or trunc:
            eps += 1
            obs, _ = env.reset()
            assert space.contains(obs)
    assert eps >= 20


@pytest.fixture(scope="module")
def env_small():
    return SaccadeMNISTEnv(max_saccades=3, sensors=("fovea", "periphery", "glimpse"))


def test_saccades_left_and_fixation_snap(env_small):
    env = env_small
    obs, _ = env.reset(seed=0)
    assert obs["saccades_left"].tolist() == [3.0] and obs["fixation"].tolist() == [0.0, 0.0]
    targets = [(0.3, -0.2), (1.0, -1.0), (-0.999, 0.4567)]
    for k, (x, y) in enumerate(targets):
        obs, r, term, trunc, info = env.step(look(x, y))
        expect = np.round(np.array([x, y], np.float32) * 64) / 64
        np.testing.assert_array_equal(obs["fixation"], expect.astype(np.float32))
        assert obs["saccades_left"].tolist() == [3.0 - k - 1]
        assert (r, term, trunc, info) == (0.0, False, False, {})
        assert env.observation_space.contains(obs)
    obs, r, term, trunc, info = env.step(look(0.5, 0.5))  # one look too many: truncated
    assert (r, term, trunc) == (0.0, False, True)
    assert info["n_saccades"] == 3 and info["correct"] is False
    np.testing.assert_array_equal(obs["fixation"], np.round(np.array(targets[-1], np.float32) * 64) / 64)
    assert obs["saccades_left"].tolist() == [0.0]
    # the fovea really is centred on the snapped fixation
    env.reset(seed=0)
    obs, *_ = env.step(look(0.3, -0.2))
    sc = env.state.scene[0].numpy()
    dx, dy = round(0.3 * 64), round(-0.2 * 64)
    np.testing.assert_array_equal(obs["fovea"][0], sc[50 + dy:78 + dy, 50 + dx:78 + dx])


def test_answer_rewards(env_small):
    env = env_small
    for k in (0, 4, 9):
        env.reset(seed=k, options={"label": k})
        env.step(look(0.1, 0.1))
        _, r, term, trunc, info = env.step(answer(k))
        assert (r, term, trunc) == (1.0, True, False) and info["correct"] is True and info["label"] == k
        assert info["n_saccades"] == 1
        env.reset(options={"label": k})
        _, r, term, trunc, info = env.step(answer((k + 1) % 10))
        assert (r, term, trunc) == (0.0, True, False) and info["correct"] is False and info["n_saccades"] == 0
        assert isinstance(info["eccentricity"], float) and info["target_xy"].shape == (2,)


def test_saccade_cost():
    env = SaccadeMNISTEnv(max_saccades=2, saccade_cost=0.125, sensors=("fovea",))
    env.reset(seed=0, options={"label": 6})
    rewards = [env.step(look(0.1 * t, 0.0))[1] for t in range(2)]
    assert rewards == [-0.125, -0.125]
    _, r, _, trunc, _ = env.step(look())
    assert (r, trunc) == (0.0, True)
    env.reset(options={"label": 6})
    assert env.step(look())[1] == -0.125
    _, r, term, _, _ = env.step(answer(6))
    assert (r, term) == (1.0, True)


def test_zero_saccades_allowed():
    env = SaccadeMNISTEnv(max_saccades=0, sensors=("fovea",))
    obs, _ = env.reset(seed=0)
    assert obs["saccades_left"].tolist() == [0.0]
    _, r, term, trunc, info = env.step(look(0.5, 0.5))
    assert (r, term, trunc) == (0.0, False, True) and info["n_saccades"] == 0


def test_periphery_space_bound_is_the_retina_bound():
    env = SaccadeMNISTEnv()
    box = env.observation_space["periphery"]
    assert box.shape == (12, 10, 24)
    b = env.core.periphery.bound()
    assert b <= float(box.high.max()) <= b * 1.01 and np.all(box.low == -box.high)
    assert math.isfinite(b)
