"""Where does a trained RAM look?  Mean distance (px) from each glimpse's fixation to the
digit's centre, and the share of fixations at the scene's edge, on test episodes played
with the mean locations (deterministic, as agents.rollout.evaluate plays them).

    python eval/figures.py ram-drift --env SaccadeMNIST-Centered28-v0         # checkpoints/ram-centered28.pt
    python eval/figures.py ram-drift --env SaccadeMNIST-Translated60-v0 --checkpoint runs/x/ram-translated60.pt --episodes 1000

A policy whose distances grow glimpse after glimpse and whose fixations sit at the edge
has drifted away from the digit (docs/agents/ram.md); one that learned to look stays near it.
*moved* near 0 after a glimpse means the policy stays put and re-reads the same patch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from agents.cli import check_ranges, resolve_device
from agents.ram import RAMAgent, load_agent
from agents.rollout import make_env, run_episodes


def fixation_distances(agent: RAMAgent, *, env_id: str, episodes: int = 500, seed: int = 0,
                       device: str = "cpu") -> dict:
    """Per glimpse t = 1..n, over ``episodes`` test episodes: mean fixation-to-digit distance
    (px); spread, the mean distance (px) of the fixations from their mean over the episodes
    (0: the same place whatever the scene); share of fixations with a coordinate at the
    scene's edge (|x| or |y| >= 0.95); moved, the mean distance (px) from the previous
    glimpse's fixation (0 for the first: a policy that stops moving re-reads one patch);
    and the episodes' accuracy."""
    venv = make_env(env_id, agent=agent, num_envs=episodes, device=device,
                    max_saccades=None, split="test")
    try:
        ep = run_episodes(venv, agent, seed=seed, record=True)
        half = venv.unwrapped.cfg.scene.size / 2
    finally:
        venv.close()
    fix = torch.stack([s["obs"]["fixation"] for s in ep.steps])  # (T, B, 2): the fixation of glimpse t
    dist = ((fix - ep.target_xy[None]).norm(dim=-1) * half).mean(1)  # (T,)
    spread = ((fix - fix.mean(1, keepdim=True)).norm(dim=-1) * half).mean(1)  # (T,)
    edge = (fix.abs().amax(-1) >= 0.95).float().mean(1)  # (T,)
    moved = torch.cat([fix.new_zeros(1), ((fix[1:] - fix[:-1]).norm(dim=-1) * half).mean(1)])  # (T,)
    return {"distance_px": dist.tolist(), "spread_px": spread.tolist(), "at_edge": edge.tolist(),
            "moved_px": moved.tolist(),
            "accuracy": float(ep.correct.float().mean())}


@dataclass(frozen=True)
class Config:
    """Where does a trained RAM look? Fixation-to-digit distances per glimpse on test episodes."""

    env: str = field(default="SaccadeMNIST-Centered28-v0", metadata={"help": "the preset", "aliases": ("--preset",)})
    checkpoint: str = field(default="", metadata={"help": "RAM checkpoint (default: the shipped one of --env)",
                                                  "aliases": ("--ckpt",)})
    episodes: int = field(default=500, metadata={"min": 1, "help": "test episodes"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of the episodes"})
    device: str = field(default="cpu", metadata={"help": "auto, cpu or cuda"})

    def __post_init__(self) -> None:
        check_ranges(self)


def main(a: Config) -> None:
    torch.set_num_threads(1)
    device = resolve_device(a.device)
    agent = load_agent(a.checkpoint or None, preset=a.env, device=device)
    r = fixation_distances(agent, env_id=a.env, episodes=a.episodes, seed=a.seed, device=device)
    print(f"{a.env}, {a.episodes} test episodes, accuracy {r['accuracy']:.4f}")
    print("glimpse     " + " ".join(f"{t + 1:>6d}" for t in range(len(r["distance_px"]))))
    print("distance px " + " ".join(f"{d:6.1f}" for d in r["distance_px"]))
    print("spread px   " + " ".join(f"{d:6.1f}" for d in r["spread_px"]))
    print("at edge     " + " ".join(f"{e:6.2f}" for e in r["at_edge"]))
    print("moved px    " + " ".join(f"{d:6.1f}" for d in r["moved_px"]))

