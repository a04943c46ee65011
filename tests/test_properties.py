"""Property-based tests of the public API (hypothesis): random constructor arguments, actions and
reset options give a valid transition or a clear ValueError/TypeError that names what was wrong;
never a NaN observation or an internal traceback; an env that refused an action is unchanged."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import saccade_env
from saccade_env.core import RESET_OPTIONS

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# values a careless user passes: good ones, NumPy scalars, and garbage
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.just(float("nan")), st.just(float("inf")),
                 st.just(-1), st.just(10**12), st.lists(st.integers(0, 3), max_size=2))


def numbers(lo: float, hi: float) -> st.SearchStrategy:
    """Floats around a range, as Python or NumPy scalars, and junk."""
    f = st.floats(lo - abs(hi - lo), hi + abs(hi - lo), allow_nan=False)
    return st.one_of(f, f.map(np.float32), f.map(np.float64), junk)


def ints(lo: int, hi: int) -> st.SearchStrategy:
    i = st.integers(lo - 2, hi + 2)
    return st.one_of(i, i.map(np.int64), i.map(np.int32), i.map(float), junk)


CONSTRUCTOR = {
    "size": st.one_of(st.sampled_from([28, 32, 48, 60]), ints(28, 64)),
    "contrast": numbers(0, 1),
    "noise": st.one_of(st.sampled_from([0.0, 0.5]), numbers(0, 1)),
    "sf_0": st.one_of(st.just(0.1), numbers(0.01, 0.5)),
    "B_sf": st.one_of(st.just(0.1), numbers(0.01, 1.0)),
    "placement": st.one_of(st.sampled_from(["radial", "uniform", "center"]), junk),
    "ecc_std": numbers(1, 30),
    "ecc_max": numbers(0, 30),
    "max_saccades": ints(0, 6),
    "saccade_cost": numbers(0, 1),
    "fovea_size": st.one_of(st.sampled_from([8, 28]), ints(2, 30)),
    "glimpse_size": st.one_of(st.sampled_from([4, 8]), ints(2, 16)),
    "glimpse_scales": ints(1, 6),
    "sensors": st.one_of(st.lists(st.sampled_from(["fovea", "glimpse", "periphery", "eye"]), min_size=1, max_size=3)
                         .map(tuple), junk),
    "privileged": st.one_of(st.booleans(), st.sampled_from([np.bool_(True), 1, "yes"])),
    "mask": st.one_of(st.booleans(), st.sampled_from([0, None])),
    "split": st.sampled_from(["train", "test", "train[:100]", "bogus", 3]),
}


def _first_line(err: Exception) -> str:
    return str(err).split(" was raised from the environment creator")[0]


def _finite(obs: dict) -> bool:
    return all(np.isfinite(np.asarray(v, dtype=np.float64)).all() for v in obs.values())


@FAST
@given(kwargs=st.dictionaries(st.sampled_from(sorted(CONSTRUCTOR)), st.none(), max_size=4).flatmap(
    lambda d: st.fixed_dictionaries({k: CONSTRUCTOR[k] for k in d})))
def test_random_constructor_arguments_give_a_working_env_or_a_clear_error(kwargs, tmp_path_factory):
    kw = {"n_textures": 2, "size": 32, "ecc_max": 2.0, "sensors": ("fovea", "glimpse"), **kwargs}
    try:
        env = saccade_env.SaccadeMNISTEnv(**kw)
    except (ValueError, TypeError) as err:
        msg = _first_line(err)
        assert any(k in msg for k in kw), (kw, msg)  # the message names the argument
        return
    obs, info = env.reset(seed=0)
    assert _finite(obs) and env.observation_space.contains(obs), kw
    for answer in (10, 3):  # a look (it may cost), then an answer
        obs, reward, terminated, truncated, info = env.step({"saccade": np.full(2, 0.25, np.float32),
                                                              "answer": answer})
        assert _finite(obs) and math.isfinite(reward), kw
        if terminated or truncated:
            break
    env.close()


VALID = {"size": st.sampled_from([32, 48]), "contrast": st.floats(0, 1), "noise": st.sampled_from([0.0, 0.5]),
         "sf_0": st.floats(0.05, 0.5), "B_sf": st.floats(0.05, 1.0), "ecc_std": st.floats(1, 30),
         "max_saccades": st.integers(0, 6), "saccade_cost": st.floats(0, 1), "glimpse_scales": st.integers(1, 3),
         "privileged": st.booleans(), "mask": st.booleans()}


def _numpy(v):
    return np.bool_(v) if isinstance(v, bool) else np.int64(v) if isinstance(v, int) else np.float64(v)


@FAST
@given(kwargs=st.fixed_dictionaries({}, optional=VALID))
def test_numpy_scalars_are_accepted_where_python_numbers_are(kwargs):
    kw = {"ecc_max": 2.0, **kwargs}
    assert saccade_env.make_config(**{k: _numpy(v) for k, v in kw.items()}) == saccade_env.make_config(**kw)


@pytest.fixture(scope="module")
def small_env():
    env = saccade_env.SaccadeMNISTEnv(size=32, ecc_max=2.0, n_textures=2, max_saccades=3,
                                      sensors=("fovea", "glimpse"), privileged=True)
    yield env
    env.close()


def _snapshot(env) -> dict:
    return {f.name: (None if getattr(env.state, f.name) is None else getattr(env.state, f.name).clone())
            for f in dataclasses.fields(env.state)}


def _same(a: dict, b: dict) -> bool:
    return all((a[k] is None and b[k] is None) or torch.equal(torch.nan_to_num(a[k], nan=-7.0),
                                                              torch.nan_to_num(b[k], nan=-7.0)) for k in a)


anyfloat = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([np.nan, np.inf]))
saccades = st.one_of(
    st.tuples(anyfloat, anyfloat).map(lambda v: np.array(v, np.float32)),
    st.lists(anyfloat, min_size=0, max_size=3).map(lambda v: np.array(v, np.float32)),
    st.tuples(st.floats(-1, 1), st.floats(-1, 1)).map(lambda v: np.array(v, np.float64)),
    st.tuples(st.integers(-2, 2), st.integers(-2, 2)).map(np.array), junk)
answers = st.one_of(st.integers(-3, 13), st.integers(0, 10).map(np.int64), st.floats(-1, 11), junk)


@FAST
@example(action={"saccade": np.array([np.nan, 0.0], np.float32), "answer": 10}, seed=0)
@example(action={"saccade": np.array([np.inf, 0.0]), "answer": 3}, seed=0)
@given(action=st.one_of(st.fixed_dictionaries({"saccade": saccades, "answer": answers}),
                        st.dictionaries(st.sampled_from(["saccade", "answer", "look"]), junk, max_size=3), junk),
       seed=st.integers(0, 3))
def test_random_actions_step_or_are_refused_leaving_the_env_unchanged(small_env, action, seed):
    env = small_env
    env.reset(seed=seed)
    before = _snapshot(env)
    try:
        obs, reward, terminated, truncated, info = env.step(action)
    except (ValueError, TypeError) as err:
        assert any(w in str(err) for w in ("saccade", "answer", "action")), str(err)
        assert _same(before, _snapshot(env))  # a refused action changes nothing
        obs, *_ = env.step({"saccade": np.zeros(2, np.float32), "answer": 10})  # and the env still works
        assert _finite(obs)
        return
    assert _finite(obs) and math.isfinite(reward) and env.observation_space.contains(obs)


option_values = st.one_of(st.integers(-2, 12), st.integers(0, 9).map(np.int64), numbers(0, 3),
                          st.tuples(numbers(-0.2, 0.2), numbers(-0.2, 0.2)), junk)


@FAST
@example(options={"eccentricity": float("nan")})
@example(options={"target_xy": (float("inf"), 0.0)})
@given(options=st.one_of(st.dictionaries(st.sampled_from([*RESET_OPTIONS, "colour"]), option_values, max_size=2),
                         junk))
def test_random_reset_options_reset_or_are_refused_by_name(small_env, options):
    try:
        obs, info = small_env.reset(seed=1, options=options)
    except (ValueError, TypeError) as err:
        assert "option" in str(err) and (not isinstance(options, dict) or any(k in str(err) for k in options)), \
            (options, str(err))
        return
    assert _finite(obs) and small_env.observation_space.contains(obs)
    if isinstance(options, dict) and "label" in options:
        assert int(small_env.state.label[0]) == int(options["label"])


@FAST
@example(saccade=[float("nan"), 0.0], answer=10)
@given(saccade=st.lists(anyfloat, min_size=2, max_size=2),
       answer=st.integers(-1, 11))
def test_vector_env_refuses_bad_actions_and_stays_as_it_was(saccade, answer):
    venv = _VENV
    venv.reset(seed=0)
    before = _snapshot(venv)
    act = {"saccade": torch.tensor([saccade, [0.0, 0.0]]), "answer": torch.tensor([answer, 10])}
    try:
        obs, reward, *_ = venv.step(act)
    except (ValueError, TypeError) as err:
        assert "saccade" in str(err) or "answer" in str(err), str(err)
        assert _same(before, _snapshot(venv))
        return
    assert all(torch.isfinite(v.double()).all() for v in obs.values()) and torch.isfinite(reward).all()


_VENV = saccade_env.SaccadeMNISTVectorEnv(2, size=32, ecc_max=2.0, n_textures=2, max_saccades=2,
                                          sensors=("fovea", "glimpse"))


@FAST
@example(seed=np.int64(3))
@example(seed=True)
@given(seed=st.one_of(st.none(), st.integers(0, 2**40), st.integers(0, 9).map(np.int64), junk))
def test_random_seeds_reset_or_are_refused_by_name(small_env, seed):
    for env in (small_env, _VENV):
        try:
            obs, info = env.reset(seed=seed)
        except (ValueError, TypeError) as err:
            assert "seed" in str(err), str(err)
            continue
        if seed is not None:  # a seed fixes the episode: NumPy and Python integers alike
            again, _ = env.reset(seed=[int(s) for s in seed] if isinstance(seed, list) else int(seed))
            assert all(np.array_equal(np.asarray(obs[k]), np.asarray(again[k])) for k in obs)
