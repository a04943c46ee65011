"""Every agent the comparison knows: how to load it, which checkpoint it needs, which script trains it."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import torch

from .checkpoint import CheckpointError, default_path


@dataclass(frozen=True)
class Entry:
    """An agent of the comparison.

    Attributes:
        loader: "module:function"; called as ``function(*args, device=device, **options)``.
        checkpoints: the checkpoint names (``checkpoints/<name>.pt``) it needs.
        script: the command that trains it (named in errors).
        args: positional arguments of the loader.
        options: keyword arguments of the loader.
        env_id: the preset it was trained for and is compared on.
        cpu_episodes: at most this many episodes per budget when compared on a CPU (agents
            that plan with many gradient steps per saccade); None: no cap.
        mc_samples: > 0: Monte-Carlo evaluation (RAM): each scene is played this many times with
            sampled scanpaths and the answer is the arg-max of the averaged class probabilities
            (:func:`agents.ram.evaluate_mc`), i.e. this many times the glimpses; 0: one scanpath.
    """

    loader: str
    checkpoints: tuple[str, ...]
    script: str
    args: tuple = ()
    options: dict = field(default_factory=dict)
    env_id: str = "SaccadeMNIST-v0"
    cpu_episodes: int | None = None
    mc_samples: int = 0


AGENTS: dict[str, Entry] = {
    "center": Entry("agents.baselines:load_agent", ("foveal",), "train/foveal.py", ("center",)),
    "random": Entry("agents.baselines:load_agent", ("foveal",), "train/foveal.py", ("random",)),
    "oracle": Entry("agents.baselines:load_agent", ("foveal",), "train/foveal.py", ("oracle",)),
    "fullview": Entry("agents.baselines:load_agent", ("fullview",), "train/fullview.py", ("fullview",)),
    "what_where": Entry("agents.what_where:load_agent", ("what_where", "foveal"), "train/what_where.py"),
    # the same, Where's predicted accuracies averaged over the periphery and its mirror image
    "what_where-mirror": Entry("agents.what_where:load_agent", ("what_where", "foveal"), "train/what_where.py",
                               options={"mirror_views": True}),
    # Where reading the env's multi-scale glimpse instead of the periphery (not the paper's sensor)
    "what_where-glimpse": Entry("agents.what_where:load_agent", ("what_where_glimpse", "foveal"),
                                "train/what_where.py --arch glimpse",
                                options={"checkpoint": "what_where_glimpse"}),
    "ram": Entry("agents.ram:load_agent", ("ram-v0",), "train/ram.py", options={"preset": "SaccadeMNIST-v0"}),
    "stn": Entry("agents.stn:load_agent", ("stn-v0",), "train/stn.py"),
    "neva": Entry("agents.neva:load_agent", ("neva",), "train/neva.py", options={"variant": "neva"},
                  cpu_episodes=100),
    "neva-privileged": Entry("agents.neva:load_agent", ("neva",), "train/neva.py",
                             options={"variant": "neva-privileged"}, cpu_episodes=100),
    # NeVA's like-for-like baselines: its classifier and seen view, random / true-target saccades
    "neva-random": Entry("agents.neva:load_agent", ("neva",), "train/neva.py", options={"variant": "neva-random"},
                         cpu_episodes=100),
    "neva-oracle": Entry("agents.neva:load_agent", ("neva",), "train/neva.py", options={"variant": "neva-oracle"},
                         cpu_episodes=100),
    "ppo": Entry("agents.ppo:load_agent", ("ppo",), "train/ppo.py"),
    # the RAM / STN benchmarks, each on its own preset
    "ram-centered28": Entry("agents.ram:load_agent", ("ram-centered28",), "train/ram.py --env SaccadeMNIST-Centered28-v0",
                            options={"preset": "SaccadeMNIST-Centered28-v0"}, env_id="SaccadeMNIST-Centered28-v0"),
    "ram-translated60": Entry("agents.ram:load_agent", ("ram-translated60",),
                              "train/ram.py --env SaccadeMNIST-Translated60-v0",
                              options={"preset": "SaccadeMNIST-Translated60-v0"}, env_id="SaccadeMNIST-Translated60-v0"),
    "ram-cluttered60": Entry("agents.ram:load_agent", ("ram-cluttered60",), "train/ram.py --env SaccadeMNIST-Cluttered60-v0",
                             options={"preset": "SaccadeMNIST-Cluttered60-v0"}, env_id="SaccadeMNIST-Cluttered60-v0"),
    # the same RAMs read Monte-Carlo: 8 sampled scanpaths of each scene, probabilities averaged
    **{f"ram-{tag}-mc8": Entry("agents.ram:load_agent", (f"ram-{tag}",), f"train/ram.py --env {env}",
                               options={"preset": env}, env_id=env, mc_samples=8)
       for tag, env in (("centered28", "SaccadeMNIST-Centered28-v0"), ("translated60", "SaccadeMNIST-Translated60-v0"),
                        ("cluttered60", "SaccadeMNIST-Cluttered60-v0"))},
    "stn-cluttered60": Entry("agents.stn:load_agent", ("stn-cluttered60",), "train/stn.py --env SaccadeMNIST-Cluttered60-v0",
                             options={"env": "SaccadeMNIST-Cluttered60-v0"}, env_id="SaccadeMNIST-Cluttered60-v0"),
}


def has_checkpoints(name: str) -> bool:
    """True if every checkpoint ``name`` needs is on disk."""
    return all(default_path(c).is_file() for c in AGENTS[name].checkpoints)


def available(env_id: str | None = None) -> list[str]:
    """The agents whose checkpoints are on disk (for ``env_id`` if given), in table order."""
    return [n for n, e in AGENTS.items() if has_checkpoints(n) and (env_id is None or e.env_id == env_id)]


def load(name: str, *, device: str | torch.device = "cpu"):
    """Build agent ``name`` from its shipped checkpoints; a clear error if it cannot."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; known: {', '.join(AGENTS)}")
    entry = AGENTS[name]
    missing = [c for c in entry.checkpoints if not default_path(c).is_file()]
    if missing:
        raise CheckpointError(f"agent {name!r} needs {', '.join(str(default_path(c)) for c in missing)}: "
                              f"train it with `python {entry.script} --promote`")
    module, func = entry.loader.split(":")
    return getattr(importlib.import_module(module), func)(*entry.args, device=device, **entry.options)
