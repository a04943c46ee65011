"""Every training script stops cleanly on SIGINT/SIGTERM with a resume point, and a run that
was interrupted and resumed ends with the same weights as one that never stopped."""
from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

import pytest
import torch

from agents import cli

ROOT = Path(__file__).resolve().parent.parent
FOVEAL = str(ROOT / "checkpoints" / "foveal.pt")

# tiny configurations (a few seconds each); the stop comes before step ``at`` (PPO: env steps)
CASES = {
    "foveal": (dict(steps=4, batch_size=8, width=4, eval_scenes=8, eval_shifts=(5.0,), contrasts=(0.7,)), 2),
    "fullview": (dict(steps=4, batch_size=4, width=4, eval_scenes=4), 2),
    "what_where": (dict(scenes=64, val_scenes=32, map_radius=4, map_spacing=4, map_scenes=4, channels=4, layers=2,
                        batch_size=8, steps=4, eval_episodes=0, noise=0.0, foveal=FOVEAL, log_every=2), 2),
    "ram": (dict(env="SaccadeMNIST-Centered28-v0", steps=4, batch_size=8, hidden=8, what_hidden=4, where_hidden=4,
                 final_episodes=10, eval_every=10**6), 2),
    "stn": (dict(env="SaccadeMNIST-Translated60-v0", steps=4, batch_size=8, hidden=16, channels=(4, 8), fc=16,
                 eval_every=0, final_episodes=10, final_budgets=(1,)), 2),
    "neva": (dict(steps=4, batch_size=4, width=4, eval_every=2, val_scenes=8), 2),
    "ppo": (dict(sensors=("fovea",), max_saccades=1, num_envs=8, n_steps=4, batch_size=16, n_epochs=2, width=4,
                 code=8, hidden=8, total_timesteps=128, eval_episodes=0, progress_bar=False), 64),
}


def _script(name: str, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"train_{name}_resume", ROOT / "train" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _run(mod, cfg):
    threads = torch.get_num_threads()
    try:
        return (mod.train if hasattr(mod, "train") else mod.main)(cfg)
    finally:
        torch.set_num_threads(threads)


def _config(mod, script: str, tmp_path: Path, **over):
    kw, _ = CASES[script]
    cfg = {**kw, "device": "cpu", "threads": 1, "runs": str(tmp_path / "runs"), **over}
    if script == "stn":  # its main() parses a command line
        argv = []
        for k, v in cfg.items():
            flag = "--" + k.replace("_", "-")
            if isinstance(v, bool):
                argv += [flag] if v else []
            elif isinstance(v, tuple):
                argv += [flag, *map(str, v)]
            elif v != "":
                argv += [flag, str(v)]
        return argv
    return mod.Config(**cfg)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    flat = {}

    def walk(prefix, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}{k}.", v)
        elif torch.is_tensor(obj):
            flat[prefix] = obj
    walk("", torch.load(path, weights_only=True)["weights"])
    return flat


def interrupt_before(monkeypatch, at: int, signum: int) -> None:
    """Send ``signum`` to this process (a real signal, through the real handler) once the training
    loop asks whether to stop before step ``at``."""
    real = cli.GracefulExit.requested

    def requested(self, step):
        if step >= at and self.signum is None:
            signal.raise_signal(signum)
        return real(self, step)
    monkeypatch.setattr(cli.GracefulExit, "requested", requested)


@pytest.mark.parametrize("name", list(CASES))
def test_interrupted_and_resumed_run_ends_with_the_same_weights(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mod = _script(name, monkeypatch)
    _run(mod, _config(mod, name, tmp_path, name="straight", out=str(tmp_path / "straight.pt")))
    signum = signal.SIGINT if name in ("foveal", "ram", "neva", "ppo") else signal.SIGTERM
    with monkeypatch.context() as mp:
        interrupt_before(mp, CASES[name][1], signum)
        with pytest.raises(SystemExit) as stopped:
            _run(mod, _config(mod, name, tmp_path, name="stopped", out=str(tmp_path / "stopped.pt")))
    assert stopped.value.code == 128 + signum  # a clean exit, not a traceback
    err = capsys.readouterr().err
    assert f"{signal.Signals(signum).name}: stopped at step {CASES[name][1]}" in err and "--resume" in err
    run = tmp_path / "runs" / "stopped"
    assert (run / "resume.pt").is_file() and not (tmp_path / "stopped.pt").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    _run(mod, _config(mod, name, tmp_path, name="stopped", out=str(tmp_path / "stopped.pt"), resume="yes"))
    a, b = _weights(tmp_path / "straight.pt"), _weights(tmp_path / "stopped.pt")
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k
