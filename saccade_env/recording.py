"""Recordings of people playing SaccadeMNIST: the file format, its checks, exact replay and scoring.

A recording (written by ``python -m saccade_env.play``) is a JSON Lines file:

- line 1, the header: ``{"kind": "header", "format": "saccade-env-recording", "version": 1,
  "env_id", "config" (the environment's full :class:`saccade_env.core.EnvConfig`, every
  field, as JSON), "seed", "budget" (its ``max_saccades``), "episodes" (how many were
  planned), "participant", "started" (ISO 8601 time), "saccade_env" (the package version)}``;
- then one line per finished episode, written (and flushed to disk) when its answer is
  given: ``{"kind": "episode", "index" j, "seed" (the reset seed: header seed + j),
  "started", "fixations" [[x, y], ...] (each saccade's target in scene coordinates, on the
  pixel grid, as the env takes it), "times" (seconds from the episode's first frame to each
  saccade and to the answer), "obs" (one digest per observation: after the reset and after
  each saccade), "answer" (0..9), "label", "correct", "eccentricity" (px)}``.

An observation's digest is, per key, its sum and its Euclidean norm (float64 of the float32
arrays). :func:`replay` rebuilds the environment from the header, replays every episode's
actions and compares each digest to what the env observes now to a relative 1e-5 (a replay
on another CPU, whose float rounding may differ in the last bits, still matches; a moved
fixation, another scene or another configuration does not), then the label and the score.
A file that fails any check is refused with a :class:`RecordingError` naming the file, the
line and what to do.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

FORMAT = "saccade-env-recording"
VERSION = 1
DIGEST_RTOL = 1e-5  # relative tolerance of a replayed observation's digest


class RecordingError(ValueError):
    """A recording that cannot be read or does not replay; the message names the file and line."""

    def __init__(self, path: str | os.PathLike, line: int | None, problem: str, fix: str) -> None:
        where = f"{path}" + (f", line {line}" if line is not None else "")
        super().__init__(f"{where}: {problem}; {fix}")
        self.path, self.line = str(path), line


# --------------------------------------------------------------------------- configuration as JSON
def config_to_json(cfg) -> dict[str, Any]:
    """An :class:`saccade_env.core.EnvConfig` as plain JSON values (every field, nested configs as dicts)."""
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(cfg))


def env_kwargs_from_json(config: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :class:`saccade_env.env.SaccadeMNISTEnv` that rebuild the config
    :func:`config_to_json` wrote (TypeError or ValueError when it does not describe one)."""
    from .core import EnvConfig
    from .retina import PeripheryConfig
    from .scene import SceneConfig

    if not isinstance(config, dict):
        raise TypeError(f"config must be a JSON object, got {type(config).__name__}")
    missing = {f.name for f in dataclasses.fields(EnvConfig)} - set(config)
    if missing:
        raise ValueError(f"config lacks {sorted(missing)}")
    kw = dict(config)
    for name, cls in (("scene", SceneConfig), ("periphery", PeripheryConfig)):
        if not isinstance(kw[name], dict) or set(kw[name]) != {f.name for f in dataclasses.fields(cls)}:
            raise ValueError(f"config's {name} must hold every field of {cls.__name__}")
        kw[name] = cls(**kw[name])
    kw["sensors"] = tuple(kw["sensors"]) if isinstance(kw["sensors"], list) else kw["sensors"]
    return kw


# --------------------------------------------------------------------------- observation digests
def digest(obs: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """``{key: [sum, norm]}`` of an observation dict (float64 sums of its float32 arrays)."""
    out = {}
    for k in sorted(obs):
        x = np.asarray(obs[k], np.float64)
        out[k] = [float(x.sum()), float(np.sqrt((x * x).sum()))]
    return out


def digest_mismatch(recorded: dict, now: dict, sizes: dict[str, int]) -> str | None:
    """None when the digests agree (each sum within ``DIGEST_RTOL * norm * sqrt(size)``, each
    norm within ``DIGEST_RTOL * norm``), else the first difference in words."""
    if set(recorded) != set(now):
        return f"keys {sorted(recorded)} recorded, the env observes {sorted(now)}"
    for k in sorted(now):
        (s0, n0), (s1, n1) = recorded[k], now[k]
        tol = DIGEST_RTOL * max(abs(n0), abs(n1)) + 1e-9
        if abs(n0 - n1) > tol or abs(s0 - s1) > tol * math.sqrt(sizes[k]):
            return f"{k}: sum {s0:.6g}, norm {n0:.6g} recorded; sum {s1:.6g}, norm {n1:.6g} now"
    return None


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Header:
    """The first line of a recording: what was played, by whom (see the module's docstring)."""

    env_id: str
    config: dict
    seed: int
    budget: int
    episodes: int
    participant: str
    started: str
    saccade_env: str
    format: str = FORMAT
    version: int = VERSION

    def to_json(self) -> dict:
        return {"kind": "header", **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Episode:
    """One finished episode of a recording.

    Attributes:
        index: j, the episode's place in its recording (0, 1, ...).
        seed: its reset seed, the header's seed + j.
        started: ISO 8601 time its first frame was shown.
        fixations: (n, 2) the saccades' targets, scene coordinates on the pixel grid.
        times: (n + 1,) seconds from the first frame to each saccade, then to the answer.
        obs: (n + 1) digests (:func:`digest`) of the observations: after reset, after each saccade.
        answer, label: 0..9; correct: answer == label.
        eccentricity: px, the digit's distance from the scene's centre.
    """

    index: int
    seed: int
    started: str
    fixations: tuple[tuple[float, float], ...]
    times: tuple[float, ...]
    obs: tuple[dict, ...]
    answer: int
    label: int
    correct: bool
    eccentricity: float

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["fixations"] = [list(f) for f in self.fixations]
        d["times"], d["obs"] = list(self.times), list(self.obs)
        return {"kind": "episode", **d}


@dataclass(frozen=True)
class Recording:
    """A recording read and checked by :func:`read_recording` (not yet replayed)."""

    path: str
    header: Header
    episodes: tuple[Episode, ...]
    lines: tuple[int, ...]  # the file line of each episode


def now_iso() -> str:
    """The local time, ISO 8601 with its UTC offset, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RecordingWriter:
    """Writes a recording line by line: the header at once, each episode as it finishes, each
    line flushed and synced to disk (a crash loses at most the episode being played).

    Args:
        path: the file; refused if it exists, unless ``overwrite``.
        header: its first line.
    """

    def __init__(self, path: str | os.PathLike, header: Header, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = open(self.path, "w" if overwrite else "x", encoding="utf-8")
        except FileExistsError:
            raise FileExistsError(f"{self.path} exists: pass --overwrite to replace it, or another --out") from None
        self.episodes = 0
        self._line(header.to_json())

    def _line(self, record: dict) -> None:
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def write(self, episode: Episode) -> None:
        """Append one finished episode."""
        self._line(episode.to_json())
        self.episodes += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- reading
_REDO = "record it again with `python -m saccade_env.play`"
_HEADER_TYPES = {"env_id": str, "config": dict, "seed": int, "budget": int, "episodes": int, "participant": str,
                 "started": str, "saccade_env": str, "format": str, "version": int}
_EPISODE_TYPES = {"index": int, "seed": int, "started": str, "fixations": list, "times": list, "obs": list,
                  "answer": int, "label": int, "correct": bool, "eccentricity": (int, float)}


def _fields(path: str, line: int, record: dict, types: dict, what: str) -> dict:
    """The record's fields, each of its declared type (bool is not an int here), no other keys."""
    keys = set(record) - {"kind"}
    if keys != set(types):
        missing, extra = sorted(set(types) - keys), sorted(keys - set(types))
        parts = ([f"missing fields {missing}"] if missing else []) + ([f"unknown fields {extra}"] if extra else [])
        raise RecordingError(path, line, f"{what} has " + ", ".join(parts),
                             "it was edited or written by another program; " + _REDO)
    for k, t in types.items():
        v = record[k]
        bad = isinstance(v, bool) and t is not bool or not isinstance(v, t)
        if bad:
            raise RecordingError(path, line, f"{what}'s {k!r} is {v!r}, not a {getattr(t, '__name__', 'number')}",
                                 "it was edited; " + _REDO)
    return {k: record[k] for k in types}


def _parse_lines(path: Path) -> Iterable[tuple[int, dict]]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text:
        raise RecordingError(path, None, "the file is empty, it holds no header", _REDO)
    lines = text.split("\n")
    if lines[-1] != "":
        raise RecordingError(path, len(lines), "the last line is unfinished (no newline: the program was stopped "
                             "while writing it)", "delete that line (the episodes before it are intact), e.g. "
                             "`sed -i '$ d' FILE`")
    for n, raw in enumerate(lines[:-1], 1):
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as err:
            raise RecordingError(path, n, f"not JSON ({err.msg} at column {err.colno})",
                                 "the file was cut or edited; restore it from a copy, or delete that line and the "
                                 "ones after it (each line is one episode)") from None
        if not isinstance(record, dict):
            raise RecordingError(path, n, f"a JSON {type(record).__name__}, not an object",
                                 "the file was edited; " + _REDO)
        yield n, record


def read_recording(path: str | os.PathLike) -> Recording:
    """Read and check a recording (its form; :func:`replay` checks its content against the env).

    Raises:
        RecordingError: the file, the line, what is wrong and what to do; FileNotFoundError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such recording (a .jsonl file of `python -m saccade_env.play`)")
    header, episodes, lines = None, [], []
    for n, record in _parse_lines(path):
        kind = record.get("kind")
        if header is None:
            if kind != "header" or record.get("format") != FORMAT:
                raise RecordingError(path, n, "the first line is not a recording's header (kind 'header', format "
                                     f"{FORMAT!r})", "this is not a file of `python -m saccade_env.play`, or its "
                                     "header was removed: restore it from a copy, or " + _REDO)
            if record.get("version") != VERSION:
                raise RecordingError(path, n, f"format version {record.get('version')!r}, this saccade-env reads "
                                     f"version {VERSION}", f"read it with the saccade-env that wrote it (version "
                                     f"{record.get('saccade_env')!r}, in its header)")
            header = Header(**_fields(str(path), n, record, _HEADER_TYPES, "the header"))
            _check_header(path, n, header)
            continue
        if kind != "episode":
            raise RecordingError(path, n, f"kind {kind!r}, where an episode line is expected", _REDO)
        ep = _episode(path, n, _fields(str(path), n, record, _EPISODE_TYPES, "the episode"), header, len(episodes))
        episodes.append(ep)
        lines.append(n)
    return Recording(path=str(path), header=header, episodes=tuple(episodes), lines=tuple(lines))


def _check_header(path: Path, n: int, h: Header) -> None:
    try:
        kw = env_kwargs_from_json(h.config)
        from .core import make_config
        cfg = make_config(**kw)
    except (TypeError, ValueError) as err:
        raise RecordingError(path, n, f"the header's config does not build an environment ({err})",
                             "it was edited; " + _REDO) from None
    if config_to_json(cfg) != h.config:
        raise RecordingError(path, n, "the header's config does not read back as written",
                             "it was edited; " + _REDO)
    if cfg.max_saccades != h.budget:
        raise RecordingError(path, n, f"budget {h.budget} but the config's max_saccades is {cfg.max_saccades}",
                             "it was edited; " + _REDO)
    if h.seed < 0 or h.episodes < 0 or not h.participant:
        raise RecordingError(path, n, "the seed and episode count must be >= 0 and the participant named",
                             "it was edited; " + _REDO)


def _episode(path: Path, n: int, d: dict, h: Header, count: int) -> Episode:
    edited = "it was edited; " + _REDO

    def bad(problem: str) -> RecordingError:
        return RecordingError(path, n, problem, edited)

    if d["index"] != count or d["seed"] != h.seed + count:
        raise bad(f"episode index {d['index']} with seed {d['seed']}, where episode {count} with seed "
                  f"{h.seed + count} (header seed + index) comes next")
    half = h.config["scene"]["size"] / 2
    fix = d["fixations"]
    if len(fix) > h.budget:
        raise bad(f"{len(fix)} saccades in an episode with a budget of {h.budget}")
    for f in fix:
        ok = (isinstance(f, list) and len(f) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                           for v in f))
        if not ok or not all(abs(v) <= 1 and float(v * half).is_integer() for v in f):
            raise bad(f"fixation {f!r} is not a point of the pixel grid in [-1, 1]^2 (multiples of 1/{half:g})")
    t = d["times"]
    if (len(t) != len(fix) + 1 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                           and v >= 0 for v in t) or any(b < a for a, b in zip(t, t[1:]))):
        raise bad(f"times {t!r} are not {len(fix) + 1} increasing seconds (one per saccade, then the answer)")
    obs = d["obs"]
    if len(obs) != len(fix) + 1 or not all(
            isinstance(o, dict) and all(isinstance(v, list) and len(v) == 2 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) for v in o.values()) for o in obs):
        raise bad(f"obs holds {len(obs)} digests, where {len(fix) + 1} ({{key: [sum, norm]}}) are expected")
    if not (0 <= d["answer"] <= 9 and 0 <= d["label"] <= 9):
        raise bad(f"answer {d['answer']} and label {d['label']} must be digits 0..9")
    if d["correct"] != (d["answer"] == d["label"]):
        raise bad(f"correct is {d['correct']} for answer {d['answer']} and label {d['label']}")
    return Episode(index=d["index"], seed=d["seed"], started=d["started"],
                   fixations=tuple((float(x), float(y)) for x, y in fix), times=tuple(float(v) for v in t),
                   obs=tuple(obs), answer=d["answer"], label=d["label"], correct=d["correct"],
                   eccentricity=float(d["eccentricity"]))


# --------------------------------------------------------------------------- replay and scoring
@dataclass(frozen=True)
class Replayed:
    """A recording replayed through a fresh environment, every check passed.

    Attributes:
        recording: what was read.
        correct: (n,) bool, the env's score of each recorded answer.
        n_saccades: (n,) int64; eccentricity: (n,) float64 px; seeds: (n,) int64 reset seeds.
        seconds: (n,) float64, each episode's time from its first frame to its answer.
    """

    recording: Recording
    correct: np.ndarray
    n_saccades: np.ndarray
    eccentricity: np.ndarray
    seeds: np.ndarray
    seconds: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.correct) else float("nan")


def replay(path: str | os.PathLike | Recording) -> Replayed:
    """Replay a recording's actions through a freshly built environment and re-score it.

    Every episode is reset with its seed, each saccade is stepped, and every observation's
    digest, the label, the saccade count, the eccentricity and the score must match what
    was recorded.

    Raises:
        RecordingError: the first mismatch (file, line, what differs, what to do).
    """
    rec = path if isinstance(path, Recording) else read_recording(path)
    from .core import LOOK
    from .env import SaccadeMNISTEnv

    h = rec.header
    env = SaccadeMNISTEnv(**env_kwargs_from_json(h.config))
    if config_to_json(env.cfg) != h.config:
        raise RecordingError(rec.path, 1, "the environment built from the header has another configuration",
                             f"replay it with the saccade-env that wrote it ({h.saccade_env})")
    sizes = {k: int(np.prod(s.shape)) for k, s in env.observation_space.spaces.items()}
    differs = (f"the fixations or the header were edited, or the environment changed since it was recorded "
               f"(with saccade-env {h.saccade_env}): replay it with that version, or " + _REDO)
    correct, n_sac, ecc = [], [], []
    try:
        for ep, n in zip(rec.episodes, rec.lines):
            obs, _ = env.reset(seed=ep.seed)
            for i, f in enumerate((None, *ep.fixations)):
                if f is not None:
                    obs, _, terminated, truncated, _ = env.step(
                        {"saccade": np.array(f, np.float32), "answer": LOOK})
                    assert not (terminated or truncated)  # read_recording bounds the saccades by the budget
                why = digest_mismatch(ep.obs[i], digest(obs), sizes)
                if why:
                    at = "after the reset" if f is None else f"after saccade {i} to {list(f)}"
                    raise RecordingError(rec.path, n, f"episode {ep.index}: the observation {at} differs ({why})",
                                         differs)
            _, reward, terminated, _, info = env.step({"saccade": np.zeros(2, np.float32), "answer": ep.answer})
            if info["label"] != ep.label:
                raise RecordingError(rec.path, n, f"episode {ep.index}: label {ep.label} recorded, the env shows "
                                     f"digit {info['label']}", differs)
            if info["correct"] != ep.correct or not math.isclose(info["eccentricity"], ep.eccentricity,
                                                                  rel_tol=1e-6, abs_tol=1e-6):
                raise RecordingError(rec.path, n, f"episode {ep.index}: correct {ep.correct} and eccentricity "
                                     f"{ep.eccentricity:g} recorded, the env scores {info['correct']} at "
                                     f"{info['eccentricity']:g} px", differs)
            correct.append(info["correct"])
            n_sac.append(info["n_saccades"])
            ecc.append(info["eccentricity"])
    finally:
        env.close()
    return Replayed(recording=rec, correct=np.array(correct, bool), n_saccades=np.array(n_sac, np.int64),
                    eccentricity=np.array(ecc, np.float64),
                    seeds=np.array([e.seed for e in rec.episodes], np.int64),
                    seconds=np.array([e.times[-1] for e in rec.episodes], np.float64))


@dataclass(frozen=True)
class HumanScores:
    """Recordings of one task pooled per saccade budget (a person's episode counts toward the
    budget it was played at).

    Attributes:
        by_budget: budget -> (correct (n,) bool, n_saccades (n,), eccentricity (n,) px,
            seconds (n,), seeds (n,)), the episodes of every recording at that budget.
        participants: the distinct participant ids, sorted.
        files: how many recordings.
    """

    by_budget: dict[int, tuple[np.ndarray, ...]]
    participants: tuple[str, ...]
    files: int

    @property
    def episodes(self) -> int:
        return sum(len(v[0]) for v in self.by_budget.values())


def score_recordings(paths: Iterable[str | os.PathLike], *, env_id: str, split: str = "test") -> HumanScores:
    """Replay and pool recordings of ``env_id`` on ``split`` (the task agents are compared on:
    the preset's configuration, any ``max_saccades``).

    Raises:
        RecordingError: a recording that does not replay, or that was played on another task.
    """
    from .core import make_config
    from .presets import PRESETS

    preset = {p.id: p for p in PRESETS}.get(env_id)
    if preset is None:
        raise ValueError(f"unknown env id {env_id!r}; known: {', '.join(p.id for p in PRESETS)}")
    parts: dict[int, list[Replayed]] = {}
    people = set()
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no recordings given")
    for p in paths:
        rec = read_recording(p)
        h = rec.header
        task = config_to_json(make_config(**{**preset.kwargs, "max_saccades": h.budget, "split": split}))
        if h.env_id != env_id or h.config != task:
            diff = [k for k in sorted(task) if k not in ("scene", "periphery") and task[k] != h.config.get(k)]
            diff += [f"{part}.{k}" for part in ("scene", "periphery") for k in sorted(task[part])
                     if task[part][k] != h.config[part].get(k)]
            raise RecordingError(p, 1, f"played on {h.env_id}" + (f" with {', '.join(diff)} set otherwise" if diff
                                                                   else "") +
                                 f", not on the task of {env_id} ({split} split, any budget)",
                                 "pool the recordings of one task: leave this one out (replay it alone with "
                                 "saccade_env.recording.replay), or compare on its --env")
        if rec.episodes:  # a recording stopped before its first answer adds nothing
            parts.setdefault(h.budget, []).append(replay(rec))
            people.add(h.participant)
    by_budget = {k: tuple(np.concatenate([getattr(r, f) for r in rs])
                          for f in ("correct", "n_saccades", "eccentricity", "seconds", "seeds"))
                 for k, rs in sorted(parts.items())}
    return HumanScores(by_budget=by_budget, participants=tuple(sorted(people)), files=len(paths))
