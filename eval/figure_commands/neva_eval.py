"""NeVA's accuracy versus saccade budget on SaccadeMNIST-v0's test split, beside the comparison
planners that share its classifier and its view (like with like):

- ``neva`` (causal), ``neva-privileged`` (published: gradients through the sharp scene);
- ``neva-random``: uniform random saccade targets in [-1, 1]^2;
- ``neva-oracle`` (privileged): every saccade straight to ``info["target_xy"]``.

Every row answers with the same frozen classifier on the same seen view (foveae pasted at
their fixations over the back-projected periphery, NeVA-foveated with its memory), so rows
differ only in where the eye went.  Numbers come from agents.rollout.evaluate.

    python eval/figures.py neva-eval --episodes 200 --budgets 0 1 2 3 --out runs/neva_eval.json
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

import torch

from agents.cli import check_ranges, output_file, resolve_device
from agents.neva import PLANNERS, load_agent
from agents.rollout import evaluate


@dataclass(frozen=True)
class Config:
    """NeVA's accuracy versus saccade budget beside the planners that share its classifier."""

    checkpoint: str = field(default="", metadata={"help": "NeVA checkpoint (default: the shipped one)"})
    variants: tuple[str, ...] = field(default=tuple(PLANNERS), metadata={"help": f"any of {', '.join(PLANNERS)}"})
    budgets: tuple[int, ...] = field(default=(0, 1, 2, 3), metadata={"min": 0, "help": "saccade budgets k"})
    episodes: int = field(default=200, metadata={"min": 1, "help": "test episodes per variant and budget"})
    batch_size: int = field(default=200, metadata={"min": 1, "help": "episodes run at once"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of the episodes"})
    steps: int | None = field(default=None, metadata={"min": 1, "help": "override NevaConfig.steps"})
    n_ring: int | None = field(default=None, metadata={"min": 1, "help": "override NevaConfig.n_ring"})
    from_current: bool | None = field(default=None, metadata={
        "help": "override NevaConfig.from_current (a descent also starts at the current fixation)"})
    device: str = field(default="cpu", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=1, metadata={"min": 1, "help": "torch CPU threads"})
    out: str = field(default="runs/neva_eval.json", metadata={"help": "the JSON file of the rows"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --out file"})

    def __post_init__(self) -> None:
        check_ranges(self)
        bad = [v for v in self.variants if v not in PLANNERS]
        if bad or not self.variants:
            raise ValueError(f"--variants must be among {', '.join(PLANNERS)}, got {list(self.variants)}")


def main(args: Config) -> None:
    out = output_file(args.out, overwrite=args.overwrite)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    opts = {k: v for k, v in (("steps", args.steps), ("n_ring", args.n_ring), ("from_current", args.from_current))
            if v is not None}
    rows = []
    for variant in args.variants:
        agent = load_agent(args.checkpoint or None, device=device, variant=variant, **opts)
        for k in args.budgets:
            t0 = time.perf_counter()
            r = evaluate(agent, budget=k, episodes=args.episodes, device=device, seed=args.seed,
                         batch_size=args.batch_size)
            starts = agent.starts(1, agent.device, torch.zeros(1, 2)).shape[1]  # descents per saccade
            row = {"agent": variant, "privileged": agent.privileged, "budget": k, "episodes": args.episodes,
                   "accuracy": r.accuracy, "interval": r.interval, "decisions_per_s": r.decisions_per_s,
                   "starts": starts, "steps_per_start": agent.cfg.steps,
                   "classifier_backwards_per_saccade": (agent.cfg.steps * starts
                                                        if variant in ("neva", "neva-privileged") else 0),
                   "wall_s": time.perf_counter() - t0}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out.write_text(json.dumps({"config": dataclasses.asdict(args), "rows": rows}, indent=1))
    print(f"wrote {out}")

