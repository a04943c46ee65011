"""The human baseline: playing through the agents' eye (saccade_env.play), its recordings
(saccade_env.recording: written as episodes finish, replayed exactly, damaged files refused),
and the human row of eval/compare_agents.py --human.  No display is needed."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from saccade_env.play import (Click, HumanEye, Key, Layout, PlayConfig, ScriptedEvents, make_env, play, play_frame,
                              screenshot)
from saccade_env.recording import RecordingError, read_recording, replay
from saccade_env.render import _grey

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = Layout.of(size=128, scale=4)


def click(x: float, y: float, t: float) -> Click:
    """A click that sends the eye to (x, y), scene coordinates on the pixel grid."""
    return Click(*LAYOUT.to_frame((x, y)), t=t)


# episode 0: one saccade, answer 3; episode 1: an answer at once; episode 2: a click off the view
# (ignored), two saccades, a third click with none left (ignored), answer 1; then the budget of 3 ends it
SCRIPT = [click(0.25, -0.125, 1.0), Key("3", 2.5),
          Key("7", 3.0),
          Click(1, 1, 3.5), click(0.5, 0.5, 4.0), click(-0.5, 0.5, 5.0), click(0.0, 0.0, 6.0), Key("1", 7.25)]


def record(path: Path, events=SCRIPT, **kw) -> tuple[object, ScriptedEvents]:
    cfg = PlayConfig(**{"budget": 2, "episodes": 3, "participant": "p01", **kw})
    source = ScriptedEvents(list(events))
    return play(cfg, source, path=path), source


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "p01.jsonl"
    record(path)
    return path


# --------------------------------------------------------------------------- the play loop and its recording
def test_scripted_play_writes_a_recording_that_replays_exactly(recording):
    lines = [json.loads(x) for x in recording.read_text().splitlines()]
    header = lines[0]
    assert header["kind"] == "header" and header["env_id"] == "SaccadeMNIST-v0" and header["version"] == 1
    assert header["budget"] == 2 and header["config"]["max_saccades"] == 2 and header["config"]["split"] == "test"
    assert header["seed"] == 0 and header["participant"] == "p01" and header["config"]["scene"]["contrast"] == 0.7
    eps = lines[1:]
    assert [e["index"] for e in eps] == [0, 1, 2] and [e["seed"] for e in eps] == [0, 1, 2]
    assert eps[0]["fixations"] == [[0.25, -0.125]] and eps[1]["fixations"] == []
    assert eps[2]["fixations"] == [[0.5, 0.5], [-0.5, 0.5]]  # the off-view click and the one past the budget: ignored
    assert eps[0]["times"] == [1.0, 2.5] and eps[1]["times"] == [0.5] and eps[2]["times"] == [1.0, 2.0, 4.25]
    assert [e["answer"] for e in eps] == [3, 7, 1] and [len(e["obs"]) for e in eps] == [2, 1, 3]

    # the env itself, stepped with the recorded actions, shows those labels and observations
    env = make_env(PlayConfig(budget=2))
    for e in eps:
        obs, _ = env.reset(seed=e["seed"])
        for f in e["fixations"]:
            obs, *_ = env.step({"saccade": np.array(f, np.float32), "answer": 10})
        assert obs["fixation"].tolist() == (e["fixations"][-1] if e["fixations"] else [0.0, 0.0])
        *_, info = env.step({"saccade": np.zeros(2, np.float32), "answer": e["answer"]})
        assert info["label"] == e["label"] and info["correct"] == e["correct"] == (e["answer"] == e["label"])

    done = replay(recording)
    assert done.correct.tolist() == [e["correct"] for e in eps]
    assert done.n_saccades.tolist() == [1, 0, 2] and done.seconds.tolist() == [2.5, 0.5, 4.25]
    assert done.accuracy == np.mean([e["correct"] for e in eps])


def test_stopping_keeps_the_finished_episodes_and_nothing_is_overwritten(tmp_path):
    path = tmp_path / "r.jsonl"
    result, _ = record(path, [Key("5", 1.0), click(0.25, 0.25, 2.0), Key("quit", 3.0)])
    assert result.stopped and result.episodes == 1
    assert len(read_recording(path).episodes) == 1 and len(replay(path).correct) == 1
    with pytest.raises(FileExistsError, match="--overwrite"):
        record(path, [Key("quit", 1.0)])
    assert len(read_recording(path).episodes) == 1  # untouched
    result, _ = record(path, [Key("quit", 1.0)], overwrite=True)
    assert result.path is None and not path.exists()  # nothing finished: no file left behind


def test_a_crash_loses_only_the_episode_being_played(tmp_path):
    """The process dies (no clean-up at all) in its second episode: the first is on disk."""
    path = tmp_path / "r.jsonl"
    code = f"""if True:
        import os
        from saccade_env.play import Click, Key, Layout, PlayConfig, ScriptedEvents, play

        class Dying(ScriptedEvents):
            def next_event(self):
                if len(self.events) == 1:
                    os._exit(3)
                return super().next_event()

        click = Layout.of(size=128, scale=4).to_frame((0.25, 0.0))
        play(PlayConfig(budget=2, episodes=3), Dying([Key("2", 1.0), Click(*click, 2.0), Key("4", 3.0)]),
             path={str(path)!r})
    """
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert len(replay(path).correct) == 1


def test_clicks_map_to_the_pixel_grid():
    for xy in [(0.0, 0.0), (0.25, -0.125), (-1.0, -1.0), (63 / 64, 1 / 64)]:
        assert LAYOUT.to_scene(*LAYOUT.to_frame(xy)) == xy
    assert LAYOUT.to_scene(LAYOUT.left - 1, LAYOUT.top) is None
    assert LAYOUT.to_scene(LAYOUT.left, LAYOUT.top + 128 * 4) is None
    # a click anywhere in a scene pixel's screen square targets one of its corners
    x, y = LAYOUT.to_scene(LAYOUT.left + 4 * 70 + 3, LAYOUT.top + 4 * 20)
    assert (x * 64 + 64, y * 64 + 64) == (71, 20)


# --------------------------------------------------------------------------- what the window shows
def test_the_view_is_sharp_only_in_the_fovea():
    env = make_env(PlayConfig())
    eye = HumanEye(env)
    env.reset(seed=1)
    obs, *_ = env.step({"saccade": np.array([0.25, -0.125], np.float32), "answer": 10})
    scene = env.state.scene[0].numpy().astype(np.float64)
    view = eye.view(scene, obs)
    cx, cy = eye.fixation_px(obs["fixation"])
    assert (cx, cy) == (80, 56)
    fov = (slice(cy - 14, cy + 14), slice(cx - 14, cx + 14))
    np.testing.assert_array_equal(view[fov], scene[fov])  # the fovea: the scene's own pixels
    rows, cols = np.indices(scene.shape) + 0.5
    d = np.hypot(cols - cx, rows - cy)
    in_disc = np.hypot(cols - 64, rows - 64) < 62
    inside = np.zeros(scene.shape, bool)
    inside[fov] = True
    far = ~inside & in_disc & (d >= 20)
    assert far.sum() > 3000 and np.mean(np.abs(view[far] - scene[far]) < 1e-3) < 0.01  # never the sharp scene
    # blurred: far less fine detail than the scene (horizontal differences inside the far region)
    pair = far[:, 1:] & far[:, :-1]
    assert np.abs(np.diff(view, axis=1))[pair].mean() < 0.3 * np.abs(np.diff(scene, axis=1))[pair].mean()
    beyond = d > eye.reach
    assert beyond.any() and (view[beyond] == env.cfg.scene.background).all()  # past the outermost ring: nothing

    frame, layout = play_frame(view, box=(cx, cy, 28), lines=("a", "b"), hint="c", scale=4)
    top, left = layout.top + 4 * (cy - 14), layout.left + 4 * (cx - 14)
    np.testing.assert_array_equal(frame[top:top + 112, left:left + 112], _grey(scene[fov], 4))


def test_the_glimpse_view_shows_the_patches_as_the_agent_gets_them():
    env = make_env(PlayConfig(env="SaccadeMNIST-Translated60-v0"))
    eye = HumanEye(env)
    obs, _ = env.reset(seed=2)
    scene = env.state.scene[0].numpy().astype(np.float64)
    view = eye.view(scene, obs)
    g = obs["glimpse"]  # (3, 12, 12): 12, 24 and 48 px
    np.testing.assert_array_equal(view[24:36, 24:36], g[0])
    coarse = np.repeat(np.repeat(g[2], 4, 0), 4, 1)
    np.testing.assert_array_equal(view[6:12, 6:54], coarse[:6])  # the coarsest patch, where no finer one covers it
    assert (view[:6] == 0).all() and (view[:, 54:] == 0).all()  # outside the glimpse: background


def test_screenshot_is_offscreen_and_never_overwrites_by_accident(tmp_path):
    path = tmp_path / "shot.png"
    frame = screenshot(PlayConfig(seed=1), path)
    import cv2
    assert cv2.imread(str(path)).shape == frame.shape
    with pytest.raises(FileExistsError, match="--overwrite"):
        screenshot(PlayConfig(seed=1), path)
    committed = cv2.imread(str(ROOT / "docs" / "human_screen.png"))
    assert committed is not None and committed.shape == frame.shape  # docs/human.md gives its command


def test_without_a_display_the_command_says_so_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = tmp_path / "r.jsonl"
    proc = subprocess.run([sys.executable, "-m", "saccade_env.play", "--out", str(out)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "needs a display" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    proc = subprocess.run([sys.executable, "-m", "saccade_env.play", "--participant", "a b"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "pseudonym" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- damaged recordings
def damage(src: Path, dst: Path, edit) -> Path:
    lines = src.read_text().split("\n")
    dst.write_text("\n".join(edit(lines)))
    return dst


def edit_json(n: int, change):
    def edit(lines):
        record = json.loads(lines[n])
        change(record)
        lines[n] = json.dumps(record)
        return lines
    return edit


DAMAGES = {
    "bad JSON": (lambda ls: ls[:2] + [ls[2][:40]] + ls[3:], "line 3: not JSON", "delete that line"),
    "missing header": (lambda ls: ls[1:], "line 1: the first line is not a recording's header", "restore it"),
    "wrong version": (edit_json(0, lambda r: r.update(version=2)), "line 1: format version 2",
                      "saccade-env that wrote it"),
    "unfinished last line": (lambda ls: ls[:3] + [ls[3][:30]], "line 4: the last line is unfinished",
                             "delete that line"),
    "fixation off the grid": (edit_json(1, lambda r: r["fixations"][0].__setitem__(0, 0.2501)),
                              "line 2: fixation .* is not a point of the pixel grid", "record it again"),
    "inconsistent score": (edit_json(2, lambda r: r.update(correct=not r["correct"])), "line 3: correct is",
                           "record it again"),
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_damaged_recordings_are_refused_on_reading(recording, tmp_path, name):
    edit, problem, fix = DAMAGES[name]
    path = damage(recording, tmp_path / "bad.jsonl", edit)
    with pytest.raises(RecordingError, match=problem) as err:
        read_recording(path)
    assert str(path) in str(err.value) and fix in str(err.value)


def test_tampered_fixations_and_labels_are_refused_on_replay(recording, tmp_path):
    moved = damage(recording, tmp_path / "moved.jsonl",
                   edit_json(1, lambda r: r["fixations"][0].__setitem__(0, 0.265625)))  # one pixel to the right
    read_recording(moved)  # well-formed ...
    with pytest.raises(RecordingError, match=r"line 2: episode 0: the observation after saccade 1 to "
                                             r"\[0.265625, -0.125\] differs") as err:
        replay(moved)  # ... but not what the env shows there
    assert str(moved) in str(err.value) and "record it again" in str(err.value)

    def relabel(r):
        r["label"] = (r["label"] + 1) % 10
        r["correct"] = r["answer"] == r["label"]
    relabelled = damage(recording, tmp_path / "label.jsonl", edit_json(3, relabel))
    with pytest.raises(RecordingError, match=r"line 4: episode 2: label \d recorded, the env shows digit \d"):
        replay(relabelled)

    other = damage(recording, tmp_path / "config.jsonl", edit_json(0, lambda r: r["config"]["scene"].update(noise=0.5)))
    with pytest.raises(RecordingError, match="line 2: episode 0: the observation after the reset differs"):
        replay(other)


# --------------------------------------------------------------------------- compare_agents --human
@pytest.fixture()
def foveal_checkpoint(tmp_path, monkeypatch):
    from agents.checkpoint import save_checkpoint
    from agents.nets import FovealClassifier
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "foveal.pt", agent="foveal", config={"width": 24},
                    weights={"net": FovealClassifier().state_dict()})
    monkeypatch.setenv("SACCADE_ENV_CHECKPOINTS", str(tmp_path))


def test_compare_agents_adds_a_human_row_on_the_agents_episodes(foveal_checkpoint, tmp_path):
    from agents.baselines import load_agent
    from agents.rollout import evaluate
    from eval import compare_agents as ca

    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    record(a, [click(0.25, 0.0, 1.0), Key("3", 2.0), Key("7", 3.0), Key("1", 4.0)], budget=1)  # p01: episodes 0-2
    record(b, [Key("4", 1.0), click(-0.25, 0.0, 2.0), Key("0", 3.0)], budget=1, episodes=2, seed=3,
           participant="p02")  # episodes 3-4
    record(c, [Key("2", 1.0)], budget=4, episodes=1, participant="p02")  # a budget the comparison leaves out
    played = [replay(p) for p in (a, b, c)]
    cfg = ca.Config(agents=("center",), budgets=(0, 1), episodes=8, batch_size=8, device="cpu",
                    out=str(tmp_path / "out"), human=(str(a), str(b), str(c)))
    table = ca.main(cfg)
    human = [line for line in table.splitlines() if line.startswith("| human")]
    assert human[0].startswith("| human (2 people, 5 episodes) | - | ")
    expect = np.concatenate([played[0].correct, played[1].correct]).mean() * 100
    assert f"{expect:.1f} [" in human[0] and human[0].endswith("(n=5) |")
    rows = list(csv.DictReader(open(tmp_path / "out" / "table.csv")))
    (row,) = [r for r in rows if r["agent"] == "human"]
    assert row["budget"] == "1" and row["episodes"] == "5" and float(row["accuracy"]) == pytest.approx(expect / 100)
    assert float(row["ci_low"]) < float(row["accuracy"]) < float(row["ci_high"]) or row["accuracy"] in ("0.0", "1.0")
    md = (tmp_path / "out" / "table.md").read_text()
    assert "5 of them are episodes the agents played too" in md and "budgets [4]" in md
    assert (tmp_path / "out" / "accuracy_vs_eccentricity.png").stat().st_size > 0
    # the same episodes: the agents' episode j is the recordings' episode with seed j
    agent = evaluate(load_agent("center"), budget=1, episodes=5, seed=0, batch_size=5)
    np.testing.assert_allclose(np.concatenate([played[0].eccentricity, played[1].eccentricity]),
                               agent.eccentricity, rtol=1e-6)

    easy = tmp_path / "easy.jsonl"
    record(easy, [Key("1", 1.0)], budget=1, episodes=1, contrast=1.0)
    with pytest.raises(SystemExit, match=rf"--human: {easy}, line 1: played on SaccadeMNIST-v0 with "
                                         r"scene.contrast set otherwise.*leave this one out"):
        ca.main(ca.Config(**{**cfg.__dict__, "out": str(tmp_path / "out2"), "human": (str(a), str(easy))}))
