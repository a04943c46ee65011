"""Shared helpers for the environment, retina and scene tests."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import saccade_env  # noqa: F401  (registers the ids)

PRESET_IDS = [p.id for p in saccade_env.PRESETS]


def look(x: float = 0.0, y: float = 0.0) -> dict:
    """A single-env 'look' action at scene coordinates (x, y)."""
    return {"saccade": np.array([x, y], np.float32), "answer": 10}


def answer(k: int) -> dict:
    """A single-env answer action."""
    return {"saccade": np.zeros(2, np.float32), "answer": int(k)}


def assert_obs_equal(a: dict, b: dict, atol: float = 0.0) -> None:
    assert set(a) == set(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.shape == y.shape, k
        if atol:
            np.testing.assert_allclose(x, y, atol=atol, rtol=0, err_msg=k)
        else:
            np.testing.assert_array_equal(x, y, err_msg=k)


def assert_info_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


class _FakeViewer:
    """Stands in for the OpenCV window of render_mode='human' on headless machines."""

    def __init__(self, *args, **kwargs) -> None:
        self.frames = []

    def show(self, frame) -> None:
        assert frame.dtype == np.uint8 and frame.ndim == 3
        self.frames.append(frame)

    def close(self) -> None:
        pass


@pytest.fixture
def fake_display(monkeypatch):
    """render_mode='human' without a display: replace the viewer by a stub."""
    import saccade_env.render as render

    monkeypatch.setattr(render, "HumanViewer", _FakeViewer)
    return _FakeViewer


@pytest.fixture
def global_rng_guard():
    """Asserts the test left NumPy's and torch's global RNG states unchanged."""
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state().clone()
    yield
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:], \
        "NumPy's global RNG state changed"
    assert torch.equal(torch.random.get_rng_state(), torch_state), "torch's global RNG state changed"


@pytest.fixture(autouse=True)
def _sb3_logs_in_tmp(tmp_path, monkeypatch):
    """SB3 makes a log folder (SB3-<date>) in the system's temp dir for every learn() without
    a logger; point it at the test's own temporary folder instead."""
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3"))
