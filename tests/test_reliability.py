"""What a user runs never destroys shipped work, loses a finished run, or passes bad data on silently:
output locations checked before work, files read without running code and verified, every
configuration value validated, non-finite actions refused."""
from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import cli
from agents.checkpoint import CheckpointError, atomic_save, load_checkpoint, safe_load, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "checkpoints").glob("*.pt"))


class _Marker:
    """Unpickling it would create a file: proof that loading ran code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@dataclasses.dataclass(frozen=True)
class _Run(cli.RunOptions):
    width: int = dataclasses.field(default=4, metadata={"min": 1})
    rate: float = dataclasses.field(default=0.5, metadata={"above": 0})
    flag: bool = False
    widths: tuple[int, ...] = (1, 2)
    steps: int = 3

    def __post_init__(self) -> None:
        cli.check_ranges(self)


# --------------------------------------------------------------------------- output locations
def test_outputs_are_checked_before_any_work(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setenv("SACCADE_ENV_CHECKPOINTS", str(shipped))
    runs = str(tmp_path / "runs")
    files = cli.prepare_run(_Run(runs=runs), default_name="toy", checkpoint="toy.pt")
    assert files.dir == tmp_path / "runs" / "toy" and files.dir.is_dir()
    assert files.out == files.dir / "toy.pt" and files.promote is None and not files.continuing
    with pytest.raises(SystemExit, match="no resume file .*--resume auto"):
        cli.prepare_run(_Run(runs=runs, resume="yes"), default_name="toy", checkpoint="toy.pt")
    assert not cli.prepare_run(_Run(runs=runs, resume="auto"), default_name="toy", checkpoint="toy.pt").continuing
    files.resume.write_bytes(b"x")  # a run is there: a new one does not replace it
    with pytest.raises(SystemExit, match="already holds a run: continue it with --resume.*--overwrite"):
        cli.prepare_run(_Run(runs=runs), default_name="toy", checkpoint="toy.pt")
    assert cli.prepare_run(_Run(runs=runs, resume="auto"), default_name="toy", checkpoint="toy.pt").continuing
    fresh = cli.prepare_run(_Run(runs=runs, overwrite=True), default_name="toy", checkpoint="toy.pt")
    assert not fresh.continuing and not fresh.resume.exists()
    # --out: an existing file, a shipped checkpoint, a folder
    (tmp_path / "mine.pt").write_bytes(b"x")
    with pytest.raises(SystemExit, match="exists: pass another --out, or --overwrite"):
        cli.prepare_run(_Run(runs=runs, name="b", out=str(tmp_path / "mine.pt")), default_name="toy", checkpoint="toy.pt")
    (shipped / "toy.pt").write_bytes(b"shipped")
    with pytest.raises(SystemExit, match="shipped checkpoint.*--promote"):
        cli.prepare_run(_Run(runs=runs, name="c", out=str(shipped / "toy.pt"), resume="auto"), default_name="toy",
                        checkpoint="toy.pt")
    with pytest.raises(SystemExit, match="is a folder"):
        cli.prepare_run(_Run(runs=runs, name="d", out=str(tmp_path)), default_name="toy", checkpoint="toy.pt")
    # a folder that cannot be written (here: below a file) is refused with the option to change
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match="--runs: cannot write into"):
        cli.prepare_run(_Run(runs=str(blocker / "runs")), default_name="toy", checkpoint="toy.pt")
    with pytest.raises(SystemExit, match="--out: cannot write into"):
        cli.prepare_run(_Run(runs=runs, name="e", out=str(blocker / "x.pt")), default_name="toy", checkpoint="toy.pt")
    with pytest.raises(SystemExit, match="one folder name"):
        cli.prepare_run(_Run(runs=runs, name="a/b"), default_name="toy", checkpoint="toy.pt")
    # --promote copies the run's checkpoint over the shipped one, and only then
    files = cli.prepare_run(_Run(runs=runs, name="p", promote=True), default_name="toy", checkpoint="toy.pt")
    files.out.write_bytes(b"new weights")
    assert (shipped / "toy.pt").read_bytes() == b"shipped"
    cli.finish_run(files)
    assert (shipped / "toy.pt").read_bytes() == b"new weights"


def test_a_training_script_with_default_options_leaves_checkpoints_alone(tmp_path, monkeypatch):
    """The shipped checkpoint is the same file, byte for byte, after a default run; the run's
    own checkpoint lands in runs/<name>/."""
    shipped = tmp_path / "shipped"
    shutil.copytree(ROOT / "checkpoints", shipped, ignore=shutil.ignore_patterns("*.md", "ram*", "stn*", "ppo*"))
    monkeypatch.setenv("SACCADE_ENV_CHECKPOINTS", str(shipped))
    monkeypatch.chdir(tmp_path)
    before = (shipped / "fullview.pt").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "train" / "fullview.py"), "--steps", "2", "--batch-size", "2",
                           "--width", "2", "--eval-scenes", "2", "--device", "cpu"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (shipped / "fullview.pt").read_bytes() == before
    assert (tmp_path / "runs" / "fullview" / "fullview.pt").is_file()
    again = subprocess.run([sys.executable, str(ROOT / "train" / "fullview.py"), "--steps", "2", "--device", "cpu"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "already holds a run" in again.stderr and "Traceback" not in again.stderr


# --------------------------------------------------------------------------- reading files back
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_checkpoint_reads_without_running_code(path):
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["agent"] and ckpt["weights"]


def test_a_file_carrying_a_pickled_callable_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "saccade-env-checkpoint/1", "agent": "foveal", "config": {"x": _Marker(str(marker))},
                "weights": {}, "meta": {}}, path)
    with pytest.raises(CheckpointError, match="refused to read .*pickled Python object.*could run code"):
        load_checkpoint(path, agent="foveal", script="train/foveal.py")
    run = cli.prepare_run(_Run(runs=str(tmp_path / "runs")), default_name="t", checkpoint="t.pt")
    shutil.copy(path, run.resume)
    with pytest.raises(SystemExit, match="--resume: refused to read"):
        cli.load_resume(run.resume, device=torch.device("cpu"))
    assert not marker.exists()


def test_resume_files_damaged_or_of_another_configuration_are_refused_with_the_fix(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    cfg = _Run(width=4)
    path = tmp_path / "resume.pt"
    cli.save_resume(path, step=7, elapsed=1.5, config=cfg, extra={"best": 0.5}, net=net, opt=opt)
    extra: dict = {}
    assert cli.load_resume(path, device=torch.device("cpu"), config=_Run(width=4, steps=9), extra=extra,
                           net=net, opt=opt) == (7, 1.5)
    assert extra == {"best": 0.5}
    with pytest.raises(SystemExit, match="another configuration \\(--width 4 there, 8 here\\).*--overwrite"):
        cli.load_resume(path, device=torch.device("cpu"), config=_Run(width=8), net=net, opt=opt)
    with pytest.raises(SystemExit, match="does not fit this run's net"):
        cli.load_resume(path, device=torch.device("cpu"), net=torch.nn.Linear(3, 5))
    with pytest.raises(SystemExit, match="another script"):
        cli.load_resume(path, device=torch.device("cpu"), where=net)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(SystemExit, match="--resume: cannot read the resume file .*damaged.*start a new run"):
        cli.load_resume(path, device=torch.device("cpu"), net=net)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    atomic_save({"v": 1}, path)
    real = torch.save

    def half_then_fail(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"v": 2}, path)
    monkeypatch.setattr(torch, "save", real)
    assert torch.load(path, weights_only=True) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    # a temporary file left by a killed writer (a process that is gone) goes at the next write
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"c.pt.{dead.stdout.strip()}.abcd.tmp"
    orphan.write_bytes(b"x" * 100)
    atomic_save({"v": 3}, path)
    assert not orphan.exists() and torch.load(path, weights_only=True) == {"v": 3}


def test_a_shipped_checkpoint_put_in_another_agents_place_is_refused(tmp_path, monkeypatch):
    from agents import registry
    from agents.stn import load_agent as load_stn
    from agents.what_where import load_agent as load_ww
    for name in ("foveal.pt", "what_where_glimpse.pt", "stn-cluttered60.pt"):
        shutil.copy(ROOT / "checkpoints" / name, tmp_path / name)
    shutil.copy(ROOT / "checkpoints" / "what_where_glimpse.pt", tmp_path / "what_where.pt")
    shutil.copy(ROOT / "checkpoints" / "stn-cluttered60.pt", tmp_path / "stn-v0.pt")
    monkeypatch.setenv("SACCADE_ENV_CHECKPOINTS", str(tmp_path))
    with pytest.raises(CheckpointError, match="reads the glimpse.*not a what_where Where.*git checkout"):
        registry.load("what_where")
    assert registry.load("what_where-glimpse").where.cfg.sensor == "glimpse"
    # the STN agent reads the checkpoint folder setting too, and checks the file's env
    with pytest.raises(CheckpointError, match="trained on SaccadeMNIST-Cluttered60-v0, not SaccadeMNIST-v0"):
        load_stn()
    assert load_stn(env="SaccadeMNIST-Cluttered60-v0") is not None
    (tmp_path / "stn-cluttered60.pt").unlink()
    with pytest.raises(CheckpointError, match=f"no STN checkpoint at {tmp_path}"):
        load_stn(env="SaccadeMNIST-Cluttered60-v0")
    assert load_ww(tmp_path / "what_where.pt").where.cfg.sensor == "glimpse"  # by path: any Where


# --------------------------------------------------------------------------- configuration values
def test_every_configuration_value_is_checked_by_type_and_range():
    cfg = _Run(width=np.int64(5), rate=np.float32(0.25), flag=np.bool_(True), widths=[np.int32(3)])
    assert (cfg.width, cfg.rate, cfg.flag, cfg.widths) == (5, 0.25, True, (3,))
    assert type(cfg.width) is int and type(cfg.rate) is float and type(cfg.flag) is bool
    for kw, err, msg in [({"rate": float("nan")}, ValueError, "--rate must be a finite number"),
                         ({"rate": float("inf")}, ValueError, "--rate must be a finite number"),
                         ({"width": 2.5}, TypeError, "--width must be an integer"),
                         ({"width": True}, TypeError, "--width must be an integer"),
                         ({"flag": 1}, TypeError, "--flag is a boolean"),
                         ({"widths": (1, "2")}, TypeError, "--widths must be an integer"),
                         ({"name": 3}, TypeError, "--name must be a string"),
                         ({"resume": True}, TypeError, "--resume must be a string"),
                         ({"resume": "maybe"}, ValueError, "--resume must be one of"),
                         ({"width": 0}, ValueError, "--width must be >= 1")]:
        with pytest.raises(err, match=msg):
            _Run(**kw)


def test_resume_and_old_flag_spellings_on_the_command_line():
    assert cli.parse_config(_Run, ["--resume"]).resume == "yes"
    assert cli.parse_config(_Run, ["--resume", "auto"]).resume == "auto"
    assert cli.parse_config(_Run, []).resume == ""
    assert cli.parse_config(_Run, ["--run-name", "x", "--runs-dir", "r"]) == _Run(name="x", runs="r")


def test_scene_parameters_are_validated():
    from saccade_env.scene import SceneConfig
    for kw, msg in [({"sf_0": float("nan")}, "sf_0 must be a finite number"), ({"sf_0": 1e9}, "sf_0 is a spatial"),
                    ({"B_sf": float("inf")}, "B_sf must be a finite"), ({"B_sf": 1e-6}, "B_sf is a frequency"),
                    ({"sf_0": 0.0}, "sf_0 is a spatial"), ({"mask": 1}, "mask must be True or False"),
                    ({"texture_seed": -1}, "texture_seed must be an int >= 0"), ({"size": True}, "size must be an int")]:
        with pytest.raises((TypeError, ValueError), match=msg):
            SceneConfig(**kw)
    cfg = SceneConfig(size=np.int64(64), contrast=np.float32(0.5), sf_0=np.float64(0.1), mask=np.bool_(False),
                      ecc_max=10)
    assert cfg == SceneConfig(size=64, contrast=0.5, sf_0=0.1, mask=False, ecc_max=10.0)
    assert type(cfg.size) is int and type(cfg.sf_0) is float and type(cfg.mask) is bool


def test_env_config_values_are_validated():
    from saccade_env import make_config
    assert make_config(max_saccades=np.int64(3), saccade_cost=np.float32(0.5), privileged=np.bool_(True)) == \
        make_config(max_saccades=3, saccade_cost=0.5, privileged=True)
    for kw, msg in [({"saccade_cost": float("inf")}, "saccade_cost must be a finite"),
                    ({"max_saccades": True}, "max_saccades must be an int"), ({"privileged": 1}, "privileged must be")]:
        with pytest.raises((TypeError, ValueError), match=msg):
            make_config(**kw)


# --------------------------------------------------------------------------- texture cache
def test_texture_cache_is_verified_and_rebuilt(tmp_path, monkeypatch):
    from saccade_env import scene as scene_mod
    from saccade_env.scene import CACHE_ENV, SceneConfig, texture_bank
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    cfg = SceneConfig(size=32, ecc_max=2.0, n_textures=2, texture_seed=7)
    bank = texture_bank(cfg)
    (path,) = tmp_path.glob("motionclouds_*.npz")
    assert path.name == f"motionclouds_{scene_mod.hashlib.sha1(repr(sorted({'size': 32, 'sf_0': 0.1, 'B_sf': 0.1, 'n_textures': 2, 'texture_seed': 7}.items())).encode() + b'v1').hexdigest()[:16]}.npz"
    good = path.read_bytes()
    saved = dict(np.load(path))
    # valid shape and finite values, other content (a texture but the first), the old checksum: rebuilt
    changed = saved["bank"].copy()
    changed[1] = changed[1][::-1]
    np.savez(path, bank=changed, sha256=saved["sha256"])
    with pytest.warns(UserWarning, match="does not match"):
        np.testing.assert_array_equal(texture_bank(cfg), bank)
    assert path.read_bytes() == good
    # other textures with a checksum of their own (a file of other parameters put in its place): rebuilt
    other = np.ascontiguousarray(saved["bank"][::-1])
    np.savez(path, bank=other, sha256=np.array(scene_mod._checksum(repr(sorted({
        "size": 32, "sf_0": 0.1, "B_sf": 0.1, "n_textures": 2, "texture_seed": 7}.items())), other)))
    with pytest.warns(UserWarning, match="does not match"):
        np.testing.assert_array_equal(texture_bank(cfg), bank)
    # an empty or a partial file is just rebuilt
    for content in (b"", good[: len(good) // 2]):
        path.write_bytes(content)
        with pytest.warns(UserWarning, match="rebuilding"):
            np.testing.assert_array_equal(texture_bank(cfg), bank)
        assert path.read_bytes() == good
    # a failed write leaves no temporary file (and the bank is still returned)
    path.unlink()

    def fail(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", fail)
    with pytest.warns(UserWarning, match="could not cache"):
        np.testing.assert_array_equal(texture_bank(cfg), bank)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- actions
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_flat_actions_are_refused_and_leave_the_env_as_it_was(bad):
    import gymnasium as gym

    from saccade_env.sb3 import make_sb3_vec_env
    from saccade_env.wrappers import flat_actions
    venv = make_sb3_vec_env("SaccadeMNIST-v0", num_envs=2, form="continuous", sensors=("fovea",))
    obs = venv.reset()
    before = venv.get_state()
    act = np.zeros((2, 13), np.float32)
    act[1, 2 + 4] = bad  # an answer score
    venv.step_async(act)
    with pytest.raises(ValueError, match="non-finite.*answer score"):
        venv.step_wait()
    after = venv.get_state()
    for k in before["state"]:
        if torch.is_tensor(before["state"][k]):
            torch.testing.assert_close(after["state"][k], before["state"][k], rtol=0, atol=0, equal_nan=True)
    act[1, 6] = 0.0
    assert venv.step(act)[0]["fovea"].shape == obs["fovea"].shape
    env = flat_actions(gym.make("SaccadeMNIST-v0", sensors=("fovea",)), "continuous")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.full(13, bad, np.float32))
    disc = flat_actions(gym.make("SaccadeMNIST-v0", sensors=("fovea",)), "discrete")
    disc.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        disc.step(np.array([bad, 3.0]))


# --------------------------------------------------------------------------- compare_agents outputs
def test_compare_agents_checks_its_output_first_and_writes_rows_as_they_finish(tmp_path, monkeypatch):
    from eval import compare_agents as ca
    monkeypatch.chdir(tmp_path)
    loaded = []
    monkeypatch.setattr(ca.registry, "load", lambda n, **k: loaded.append(n) or (_ for _ in ()).throw(AssertionError))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "table.md").write_text("committed")
    with pytest.raises(SystemExit, match="already holds files: pass --overwrite"):
        ca.main(ca.Config(agents=("center",), out=str(tmp_path / "full"), device="cpu"))
    with pytest.raises(SystemExit, match="is a file"):
        ca.main(ca.Config(agents=("center",), out=str(tmp_path / "full" / "table.md"), device="cpu"))
    with pytest.raises(SystemExit, match="cannot write there"):
        ca.main(ca.Config(agents=("center",), out=str(tmp_path / "full" / "table.md" / "x"), device="cpu"))
    assert loaded == [] and (tmp_path / "full" / "table.md").read_text() == "committed"
    # by default: a new folder under runs/compare; each agent's rows are written when it finishes
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    calls = []
    real = ca.evaluate

    def evaluate(agent, **kw):
        calls.append(agent)
        if len({id(a) for a in calls}) > 1:
            raise KeyboardInterrupt  # the second agent is interrupted
        return real(agent, **kw)
    monkeypatch.setattr(ca, "evaluate", evaluate)
    with pytest.raises(KeyboardInterrupt):
        ca.main(ca.Config(agents=("center", "random"), budgets=(0, 1), episodes=8, batch_size=8, device="cpu"))
    (out,) = (tmp_path / "runs" / "compare").iterdir()
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [(r["agent"], r["budget"]) for r in rows] == [("center", "0"), ("center", "1")]


# --------------------------------------------------------------------------- one command-line convention
# every script with options, and every subcommand of eval/figures.py (the dispatcher itself has none)
SCRIPTS = sorted(p for p in [*(ROOT / "train").glob("*.py"), *(ROOT / "eval").glob("*.py"),
                             *(ROOT / "eval" / "figure_commands").glob("*.py")]
                 if p.name not in ("__init__.py", "figures.py"))
OLD_NAMES = {"max_minutes", "run_name", "runs_dir", "learning_rate", "checkpoint_every", "ckpt", "ckpts", "preset",
             "zoom"}  # display px per scene px is --scale


def _module(path: Path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"_cli_{path.parent.name}_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", SCRIPTS, ids=[f"{p.parent.name}/{p.name}" for p in SCRIPTS])
def test_every_script_takes_the_shared_option_names(path, monkeypatch):
    mod = _module(path, monkeypatch)
    names = {f.name for f in dataclasses.fields(mod.Config)}
    assert not names & OLD_NAMES, f"{path.name}: {sorted(names & OLD_NAMES)} (documented names: --minutes, --name, ...)"
    cfg = cli.parse_config(mod.Config, [])  # the shared parser builds it
    if "out" in names:
        assert not str(cfg.out).startswith(("docs", "checkpoints")), f"{path.name} writes {cfg.out} by default"
        assert "overwrite" in names


def test_a_figure_script_refuses_to_replace_a_file_before_any_work(tmp_path, monkeypatch):
    mod = _module(ROOT / "eval" / "figure_commands" / "episode.py", monkeypatch)
    out = tmp_path / "episode.png"
    out.write_bytes(b"committed")
    monkeypatch.setattr(mod.gym, "make", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit, match="exists: pass --overwrite"):
        mod.main(mod.Config(out=str(out)))
    assert out.read_bytes() == b"committed"


def test_an_sb3_zip_is_read_without_unpickling_anything(tmp_path):
    import base64
    import json
    import zipfile

    import cloudpickle
    from stable_baselines3 import PPO

    from agents.ppo import load_agent
    from saccade_env.sb3 import make_sb3_vec_env
    env_kwargs = {"sensors": ("fovea",), "max_saccades": 1}
    venv = make_sb3_vec_env("SaccadeMNIST-v0", num_envs=2, **env_kwargs)
    model = PPO("MultiInputPolicy", venv, n_steps=4, batch_size=8, seed=0, device="cpu",
                policy_kwargs={"net_arch": [8], "activation_fn": torch.nn.Tanh})
    model.save(tmp_path / "model.zip")
    agent = load_agent(tmp_path / "model.zip", **env_kwargs)
    for (k, v), (k2, v2) in zip(model.policy.state_dict().items(), agent.policy.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert isinstance(agent.policy.mlp_extractor.policy_net[1], torch.nn.Tanh)
    # a zip whose data carries another pickled object is refused, and the object never built
    marker = tmp_path / "ran"
    with zipfile.ZipFile(tmp_path / "model.zip") as z:
        files = {n: z.read(n) for n in z.namelist()}
    data = json.loads(files["data"])
    data["extra"] = {":type:": "x", ":serialized:": base64.b64encode(cloudpickle.dumps(_Marker(str(marker)))).decode()}
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    with pytest.raises(CheckpointError, match="pickled 'extra', which could run code"):
        load_agent(tmp_path / "evil.zip", **env_kwargs)
    assert not marker.exists()
