"""eval/figures.py: one entry point for the figures and one-off measurements, a subcommand each."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents.checkpoint import save_checkpoint
from agents.cli import parse_config
from eval import figures

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ROOT / "eval" / "figure_commands"


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python eval/figures.py ARGS`` run as a user runs it, in ``cwd`` (a test's own folder: what a
    subcommand writes by default stays there)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "eval" / "figures.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand_with_one_line(tmp_path):
    proc = run_script("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = {}
    for line in proc.stdout.split("subcommands:\n", 1)[1].splitlines():
        name, _, text = line.strip().partition(" ")
        listed[name] = text.strip()
    assert list(listed) == list(figures.SUBCOMMANDS)
    assert all(listed.values()), listed  # each with its line
    assert {"episode", "scanpaths", "what-where", "stn", "neva", "neva-eval", "ram-curves", "ram-drift",
            "cards"} <= set(listed)


def test_every_subcommand_is_a_module_with_a_config_and_a_main():
    """The modules of eval/figure_commands/ are exactly the subcommands; none is a script of its own."""
    modules = {p.stem for p in COMMANDS.glob("*.py")} - {"__init__"}
    assert modules == {figures.module_name(n) for n in figures.SUBCOMMANDS}
    for name in figures.SUBCOMMANDS:
        module = figures.load(name)
        assert dataclasses.is_dataclass(module.Config) and callable(module.main), name
        parse_config(module.Config, [])  # its defaults parse
        assert "__main__" not in (COMMANDS / f"{figures.module_name(name)}.py").read_text(), name
    assert not [p.name for p in (ROOT / "eval").glob("*.py") if p.name not in ("figures.py", "compare_agents.py")]


@pytest.mark.parametrize("argv, said", [(["what_where"], "unknown subcommand 'what_where' (did you mean 'what-where'?)"),
                                        (["render_episode", "--out", "x.png"], "unknown subcommand 'render_episode'"),
                                        (["--out", "x.png", "episode"], "the subcommand comes first"),
                                        ([], "name a subcommand")])
def test_a_missing_or_unknown_subcommand_is_refused_with_the_list(argv, said, tmp_path):
    proc = run_script(*argv, cwd=tmp_path)
    assert proc.returncode == 2
    assert said in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert ", ".join(figures.SUBCOMMANDS) in proc.stderr  # the valid ones, listed


def test_a_subcommand_help_shows_its_own_flags(tmp_path):
    proc = run_script("stn", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: figures.py stn ") and "--stats" in proc.stdout
    assert "--quick" not in proc.stdout  # what-where's flag


@pytest.mark.parametrize("name", list(figures.SUBCOMMANDS))
def test_each_subcommand_help_lists_the_flags_of_its_config(name, capsys):
    with pytest.raises(SystemExit) as stop:
        figures.main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: figures.py {name} ")
    for f in dataclasses.fields(figures.config(name)):
        assert "--" + f.name.replace("_", "-") in out, (name, f.name)


def test_flags_renamed_to_the_convention_keep_their_old_spelling():
    neva = figures.config("neva")
    assert parse_config(neva, ["--scenes", "2", "--zoom", "4"]) == parse_config(neva, ["--episodes", "2", "--scale", "4"])
    assert parse_config(neva, ["--episodes", "2"]).episodes == 2


def test_a_bad_flag_is_a_usage_error_naming_the_subcommand(tmp_path):
    proc = run_script("episode", "--seed", "-1", cwd=tmp_path)
    assert proc.returncode == 2 and "figures.py episode: error:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cards_runs_from_the_dispatcher(tmp_path, capsys):
    folder = tmp_path / "ckpts"
    save_checkpoint(folder / "foveal.pt", agent="foveal", config={}, weights={"w": torch.zeros(1)},
                    meta={"command": "python train/foveal.py --steps 3", "seed": 4, "device": "cpu", "threads": 1,
                          "wall_s": 120.0, "scores": {"val_accuracy": 0.5}})
    out = tmp_path / "cards.md"
    table = figures.main(["cards", "--checkpoints", str(folder), "--out", str(out)])
    assert out.read_text() == table and table in capsys.readouterr().out
    assert "| `foveal.pt` (" in table and "`python train/foveal.py --steps 3`" in table and "val_accuracy 0.5" in table
    assert "seed 4" in table and "2.0 min" in table
    with pytest.raises(SystemExit, match="exists: pass --overwrite"):
        figures.main(["cards", "--checkpoints", str(folder), "--out", str(out)])
    figures.main(["cards", "--checkpoints", str(folder), "--out", str(out), "--overwrite"])


def test_episode_runs_as_a_script(tmp_path):
    out = tmp_path / "episode.png"
    proc = run_script("episode", "--seed", "2", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and out.stat().st_size > 1000
    proc = run_script("episode", "--out", str(out), cwd=tmp_path)  # an existing file without --overwrite
    assert proc.returncode != 0 and "exists: pass --overwrite" in proc.stderr


def test_learning_curves_read_both_trainers_logs(tmp_path, capsys):
    """learning-curves: PPO's held-out evaluations from its progress.csv, RAM's monitor from its
    TensorBoard log, RAM's env steps = iterations x batch x (saccades + 1); a log without held-out
    evaluations is refused with what to do."""
    from agents.cli import writer
    lc = figures.load("learning-curves")
    ppo = tmp_path / "ppo"
    ppo.mkdir()
    (ppo / "progress.csv").write_text("time/total_timesteps,val/accuracy,val/minutes,rollout/accuracy\n"
                                      "2048,,,0.3\n100000,0.6,5.0,0.5\n200000,0.8,10.0,0.7\n")
    save_checkpoint(ppo / "ppo.pt", agent="ppo", config={"train_config": {"monitor_budget": 3, "what": "shipped"}},
                    weights={}, meta={})
    ram = tmp_path / "ram"
    tb = writer(ram)
    for it, minutes, acc in ((250, 6.0, 0.7), (500, 12.5, 0.85)):
        tb.add_scalar("valid/accuracy", acc, it)
        tb.add_scalar("valid/accuracy_vs_minutes", acc, int(minutes * 100))
    tb.close()
    save_checkpoint(ram / "ram-v0.pt", agent="ram-v0", config={"train": {"batch_size": 128}, "max_saccades": 5},
                    weights={}, meta={})
    out = tmp_path / "curves.png"
    lc.main(lc.Config(ppo_runs=(str(ppo),), ram_runs=(str(ram),), out=str(out)))
    table = capsys.readouterr().out
    assert out.is_file() and out.stat().st_size > 1000
    assert "| PPO (k=3) | 200,000 | 10.0 | 0.800 |" in table
    assert "| RAM (k=5) | 384,000 | 12.5 | 0.850 |" in table  # 500 x 128 x 6
    assert "2,048" not in table  # rows without a held-out evaluation are not points
    (ppo / "progress.csv").write_text("time/total_timesteps,rollout/accuracy\n2048,0.3\n")
    with pytest.raises(SystemExit, match="--monitor-every"):
        lc.main(lc.Config(ppo_runs=(str(ppo),), ram_runs=(str(ram),), out=str(tmp_path / "x.png")))


def test_what_where_landings_splits_the_episodes_by_landing_error(tmp_path, capsys):
    """what-where-landings: the bands cover every episode, the shipped agent's near landings are read
    far better than its far ones, and the overall accuracy is the bands' weighted mean."""
    out = tmp_path / "landings.json"
    res = figures.main(["what-where-landings", "--episodes", "300", "--out", str(out)])
    assert "accuracy" in capsys.readouterr().out and json.loads(out.read_text())["accuracy"] == res["accuracy"]
    bands = res["bands"]
    assert sum(b["share"] for b in bands) == pytest.approx(1.0)
    assert res["mean_saccades"] == 1.0  # a 30-40 px digit is always worth the one saccade
    near, far = bands[0], bands[-1]
    assert near["accuracy"] > 0.9 and far["accuracy"] < 0.6
    weighted = sum(b["share"] * b["accuracy"] for b in bands if b["accuracy"] is not None)
    assert weighted == pytest.approx(res["accuracy"])
