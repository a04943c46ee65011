"""NeVA's accuracy versus saccade budget on SaccadeMNIST-v0's test split, beside the comparison
planners that share its classifier and its view (like with like):

- ``neva`` (causal), ``neva-privileged`` (published: gradients through the sharp scene);
- ``neva-random``: uniform random saccade targets in [-1, 1]^2;
- ``neva-oracle`` (privileged): every saccade straight to ``info["target_xy"]``.

Every row answers with the same frozen classifier on the same seen view (foveae pasted at
their fixations over the back-projected periphery, NeVA-foveated with its memory), so rows
differ only in where the eye went.  Numbers come from agents.rollout.evaluate.

    python eval/neva_eval.py --episodes 200 --budgets 0 1 2 3 --out runs/neva_eval.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from agents.cli import at_least
from agents.neva import PLANNERS, load_agent
from agents.rollout import evaluate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="default checkpoints/neva.pt")
    p.add_argument("--variants", nargs="+", default=list(PLANNERS), choices=list(PLANNERS))
    p.add_argument("--budgets", nargs="+", type=at_least(0), default=[0, 1, 2, 3])
    p.add_argument("--episodes", type=at_least(1), default=200)
    p.add_argument("--batch-size", type=at_least(1), default=200)
    p.add_argument("--seed", type=at_least(0), default=0)
    p.add_argument("--steps", type=at_least(1), default=None, help="override NevaConfig.steps")
    p.add_argument("--n-ring", type=at_least(1), default=None, help="override NevaConfig.n_ring")
    p.add_argument("--from-current", action=argparse.BooleanOptionalAction, default=None,
                   help="override NevaConfig.from_current (a descent also starts at the current fixation)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=at_least(1), default=1)
    p.add_argument("--out", default="runs/neva_eval.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    opts = {k: v for k, v in (("steps", args.steps), ("n_ring", args.n_ring), ("from_current", args.from_current))
            if v is not None}
    rows = []
    for variant in args.variants:
        agent = load_agent(args.checkpoint, device=args.device, variant=variant, **opts)
        for k in args.budgets:
            t0 = time.perf_counter()
            r = evaluate(agent, budget=k, episodes=args.episodes, device=args.device, seed=args.seed,
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
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": "python eval/neva_eval.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if v is not None), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
