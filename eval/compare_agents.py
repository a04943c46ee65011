"""Accuracy versus saccade count for every agent: which way of looking finds and reads the digit best.

    python eval/compare_agents.py                          # every agent with a checkpoint but OPT_IN, k = 0..5
    python eval/compare_agents.py --agents center oracle --budgets 0 1 2 --episodes 500
    python eval/compare_agents.py --out docs/compare --overwrite   # rewrites the committed table and figures
    python eval/compare_agents.py --human runs/human/*.jsonl       # adds people's recordings as a human row

Each agent plays ``--episodes`` test episodes of ``--env`` at each budget k (the env's
``max_saccades=k``); the episodes are fixed by ``--seed``, so two runs print the same
table. Prints a Markdown table (accuracy with its 95% Wilson interval per k, mean
saccades used, decisions per second, a mark on privileged agents) and writes it with
CSV, JSON and two figures into ``--out`` (default: a new folder runs/compare/<date-time>/):
accuracy vs saccade count, and accuracy vs the target's eccentricity per k (Daucé et al.
2020's figures). Each agent's rows are printed, and the CSV and JSON rewritten, as soon as
it finishes: an interrupted comparison keeps what it measured.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from agents import distributed as dist
from agents import registry
from agents.checkpoint import CheckpointError
from agents.cli import check_ranges, parse_config, resolve_device
from agents.rollout import BudgetResult, evaluate, split_size

ECC_BINS = np.arange(0, 45, 5)  # 0-5, 5-10, ..., 35-40 px
# Left out of the default run, so that it ends within 3 minutes on a 2-core CPU: the gradient-based
# planners (NeVA, 1-4 decisions/s on a CPU) and What/Where's mirrored-periphery variant.
OPT_IN = ("what_where-mirror",) + tuple(n for n, e in registry.AGENTS.items() if e.cpu_episodes)


@dataclass(frozen=True)
class Config:
    """Compare agents on a preset's test split: accuracy vs saccade budget."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "the preset to evaluate on"})
    agents: tuple[str, ...] = field(default=(), metadata={"help": "agents to compare (default: every agent "
                                                                   "of --env with a checkpoint, but OPT_IN)"})
    budgets: tuple[int, ...] = field(default=(0, 1, 2, 3, 4, 5), metadata={"help": "saccade budgets k"})
    episodes: int = field(default=1000, metadata={"min": 1, "help": "test episodes per agent and budget"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of the episodes (and of agents' own randomness)"})
    batch_size: int = field(default=500, metadata={"min": 1, "help": "episodes run at once"})
    threads: int = field(default=1, metadata={"min": 0, "help": "torch CPU threads (0: torch's default); one is "
                                                                "the fastest for these small networks on a 2-core CPU"})
    out: str = field(default="", metadata={"help": "folder for the table and figures (default: a new "
                                                   "runs/compare/<date-time>/)"})
    overwrite: bool = field(default=False, metadata={
        "help": "write into an --out folder that already holds files (e.g. the committed docs/compare)"})
    full_test: bool = field(default=False, metadata={
        "help": "play every test digit exactly once per budget, in order (10,000 episodes; --episodes is "
                "ignored): the papers' way of scoring, used for every number set beside a paper's"})
    cap: bool = field(default=True, metadata={"help": "on a CPU, the slow gradient-based planners (NeVA) play at "
                                                     "most 100 episodes per budget; --no-cap plays --episodes"})
    human: tuple[str, ...] = field(default=(), metadata={
        "help": "recordings of people playing --env (.jsonl of python -m saccade_env.play), replayed and pooled "
                "into a human row: each episode counts at the budget it was played at"})

    def __post_init__(self):
        check_ranges(self)
        unknown = [a for a in self.agents if a not in registry.AGENTS]
        if unknown:
            raise ValueError(f"unknown agent(s) {unknown}; known: {', '.join(registry.AGENTS)}")
        if not self.budgets or min(self.budgets) < 0:
            raise ValueError(f"--budgets must be saccade counts >= 0, got {self.budgets}")
        if self.episodes < 1 or self.batch_size < 1:
            raise ValueError("--episodes and --batch-size must be >= 1")


def fmt(acc: float, lo: float, hi: float) -> str:
    return f"{100 * acc:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def rows_of(name: str, privileged: bool, results: list[BudgetResult]) -> list[dict]:
    rows = []
    for r in results:
        lo, hi = r.interval
        rows.append({"agent": name, "privileged": privileged, "budget": r.budget, "episodes": len(r.correct),
                     "accuracy": r.accuracy, "ci_low": lo, "ci_high": hi,
                     "mean_saccades": float(r.n_saccades.mean()), "decisions_per_s": r.decisions_per_s})
    return rows


def markdown(rows: list[dict], budgets: tuple[int, ...], labels: dict[str, str] | None = None) -> str:
    """Two tables: accuracy (%) [95% CI] per budget; mean saccades and decisions/s per budget.
    A cell an agent has no row for reads "-"; the human row's cells give their episode counts."""
    names = list(dict.fromkeys(r["agent"] for r in rows))
    by = {(r["agent"], r["budget"]): r for r in rows}
    privileged = {r["agent"]: r["privileged"] for r in rows}
    label = {n: (labels or {}).get(n, n + (" (privileged)" if privileged[n] else "")) for n in names}

    def cell(n: str, k: int, text) -> str:
        r = by.get((n, k))
        return "-" if r is None else text(r) + (f" (n={r['episodes']})" if n == HUMAN else "")

    def rate(x: float) -> str:
        return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"

    head = "| agent | " + " | ".join(f"k={k}" for k in budgets) + " |\n|---|" + "---|" * len(budgets) + "\n"
    acc = head + "".join(f"| {label[n]} | " + " | ".join(
        cell(n, k, lambda r: fmt(r["accuracy"], r["ci_low"], r["ci_high"])) for k in budgets) + " |\n"
        for n in names)
    cost = head + "".join(f"| {label[n]} | " + " | ".join(
        cell(n, k, lambda r: f"{r['mean_saccades']:.2f} / {rate(r['decisions_per_s'])}") for k in budgets) + " |\n"
        for n in names)
    return ("Accuracy (%) [95% Wilson interval] with a budget of k saccades:\n\n" + acc +
            "\nMean saccades used / decisions per second:\n\n" + cost)


def plot(results: dict[str, list[BudgetResult]], privileged: dict[str, bool], out: Path, env_id: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, res in results.items():
        ks = [r.budget for r in res]
        acc = np.array([r.accuracy for r in res]) * 100
        ci = np.array([r.interval for r in res]).T * 100
        ax.errorbar(ks, acc, yerr=np.clip([acc - ci[0], ci[1] - acc], 0, None), marker="o", capsize=3,
                    linestyle="--" if privileged[name] else "-", label=name + (" (priv.)" if privileged[name] else ""))
    ax.set_xlabel("saccade budget k")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.axhline(10, color="grey", lw=0.8, ls=":")
    ax.set_title(f"{env_id}: accuracy vs saccade count")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_saccades.png", dpi=120)
    plt.close(fig)

    budgets = [r.budget for r in next(iter(results.values()))]
    cols = min(3, len(budgets))
    rows = (len(budgets) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False, sharey=True)
    centres = (ECC_BINS[:-1] + ECC_BINS[1:]) / 2
    for i, k in enumerate(budgets):
        ax = axes[i // cols][i % cols]
        for name, res in results.items():
            r = next((r for r in res if r.budget == k), None)
            if r is None:  # the human row has only the budgets people played
                continue
            which = np.clip(np.digitize(r.eccentricity, ECC_BINS) - 1, 0, len(centres) - 1)
            acc = [r.correct[which == b].mean() * 100 if (which == b).sum() >= 20 else np.nan
                   for b in range(len(centres))]
            ax.plot(centres, acc, marker="o", ms=3, linestyle="--" if privileged[name] else "-", label=name)
        ax.set_title(f"k = {k}")
        ax.set_ylim(0, 100)
        ax.set_xlabel("target eccentricity (px)")
        if i % cols == 0:
            ax.set_ylabel("accuracy (%)")
    for j in range(len(budgets), rows * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{env_id}: accuracy vs target eccentricity (bins of 5 px, >= 20 episodes)")
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_eccentricity.png", dpi=110)
    plt.close(fig)


def monte_carlo(agent, samples: int, *, env_id: str, budget: int, episodes: int | None, device, seed: int,
                batch_size: int, bar) -> BudgetResult:
    """:func:`agents.ram.evaluate_mc` on the same episodes as :func:`evaluate` (``samples``
    scanpaths per scene, as many copies of the scene at once, so the waves are smaller)."""
    from agents.ram import evaluate_mc

    res = evaluate_mc(agent, env_id=env_id, budget=budget, episodes=episodes, samples=samples, device=device,
                      seed=seed, batch_size=max(1, batch_size // samples))
    bar.update(len(res.correct))
    return res


HUMAN = "human"  # the row of people's recordings (--human)


def human_results(cfg: Config, agent_episodes: int) -> tuple[list[BudgetResult], str, str]:
    """People's recordings (``--human``) replayed through the env, checked, and pooled per budget of
    ``cfg.budgets`` (:func:`saccade_env.recording.score_recordings`): the results, the row's label,
    and a line for under the table (who played, how many of their episodes the agents played too)."""
    from saccade_env.recording import RecordingError, score_recordings

    try:
        scores = score_recordings(cfg.human, env_id=cfg.env)
    except (RecordingError, OSError, ValueError) as err:
        raise SystemExit(f"--human: {err}") from None
    played = {k: v for k, v in scores.by_budget.items() if k in cfg.budgets}
    if not played:
        raise SystemExit(f"--human: the recordings were played at budgets {sorted(scores.by_budget)}, none of "
                         f"--budgets {' '.join(map(str, cfg.budgets))}: add theirs to --budgets")
    results = [BudgetResult(budget=k, correct=c, n_saccades=n, eccentricity=e, seconds=float(s.sum()))
               for k, (c, n, e, s, _) in played.items()]
    seeds = np.concatenate([v[4] for v in played.values()])
    shared = 0 if cfg.full_test else int(((seeds >= cfg.seed) & (seeds < cfg.seed + agent_episodes)).sum())
    n, people = len(seeds), len(scores.participants)
    who = f"{people} {'person' if people == 1 else 'people'}"
    left = sorted(set(scores.by_budget) - set(played))
    note = (f"human: {n} episodes by {who} ({', '.join(scores.participants)}) in {scores.files} recording(s); "
            f"{shared} of them are episodes the agents played too (seeds --seed to --seed + --episodes - 1)" +
            (f"; episodes at budgets {left}, not in --budgets, left out" if left else "") + ".")
    return results, f"human ({who}, {n} episodes)", note


def output_dir(cfg: Config) -> Path:
    """The folder the results go to, checked and created before any episode is played."""
    if cfg.out:
        out = Path(cfg.out)
        if out.exists() and not out.is_dir():
            raise SystemExit(f"--out {out} is a file: pass a folder")
        if out.is_dir() and any(out.iterdir()) and not cfg.overwrite:
            raise SystemExit(f"--out {out} already holds files: pass --overwrite to replace them, or another --out "
                             f"(leave it out for a new runs/compare/<date-time>/)")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / "compare" / stamp
        for i in range(2, 1000):
            if not out.exists():
                break
            out = out.with_name(f"{stamp}-{i}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise SystemExit(f"--out {out}: cannot write there ({err.strerror or err}): pass another --out") from None
    return out


def write_rows(out: Path, rows: list[dict], meta: dict) -> None:
    """table.csv and table.json with the rows measured so far (each file replaced atomically)."""
    from agents.checkpoint import atomic_write

    def csv_file(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    atomic_write(out / "table.csv", csv_file)
    atomic_write(out / "table.json", lambda tmp: Path(tmp).write_text(json.dumps({**meta, "rows": rows}, indent=1)))


def plan(cfg: Config, agents: dict, episodes: dict[str, int]) -> dict[str, list[range]]:
    """The episodes this process plays of each agent's evaluation at each budget: all of them, but
    under torchrun (agents.distributed) its share. An agent that plays the same episodes however
    they are split (no randomness of its own) gives every rank a block of each budget's episodes;
    one with its own random stream (a ``seed`` method, Monte-Carlo) plays each budget whole, on
    one rank, the budgets dealt to the ranks in turn. Either way the gathered table is the one a
    single process makes."""
    mine, turn = {}, 0
    for n, agent in agents.items():
        whole = bool(registry.AGENTS[n].mc_samples) or callable(getattr(agent, "seed", None))
        mine[n] = []
        for _ in cfg.budgets:
            if whole:
                mine[n].append(range(episodes[n]) if turn % dist.world() == dist.rank() else range(0))
                turn += 1
            else:
                mine[n].append(dist.shard(episodes[n]))
    return mine


def main(cfg: Config) -> str:
    dist.init()  # under torchrun: the ranks share the episodes, rank 0 prints and writes
    out = dist.on_main(lambda: output_dir(cfg))
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    names = list(cfg.agents) or [n for n in registry.available(cfg.env) if n not in OPT_IN]
    left_out = [n for n in registry.available(cfg.env) if n in OPT_IN] if not cfg.agents else []
    if left_out and dist.is_main():
        print(f"not in the default run (slow on a CPU): {' '.join(left_out)}; include them with "
              f"--agents {' '.join(names + left_out)}")
    if not names:
        raise SystemExit(f"no agent of {cfg.env} has a checkpoint in checkpoints/: train one, e.g. "
                         f"`python train/foveal.py` for the center, random and oracle baselines")
    agents = {}
    for n in names:
        if registry.AGENTS[n].env_id != cfg.env:
            raise SystemExit(f"agent {n!r} was trained on {registry.AGENTS[n].env_id}: "
                             f"pass --env {registry.AGENTS[n].env_id}")
        try:
            agents[n] = registry.load(n, device=device)
        except CheckpointError as err:
            raise SystemExit(str(err)) from None
    episodes = {n: cfg.episodes for n in agents}
    if cfg.full_test:
        episodes = {n: split_size("test") for n in agents}
    elif device.type == "cpu" and cfg.cap:
        for n in agents:
            cap = registry.AGENTS[n].cpu_episodes
            episodes[n] = min(cfg.episodes, cap) if cap else cfg.episodes
    capped = [n for n in agents if episodes[n] < cfg.episodes]
    if capped and dist.is_main():
        print(f"on a CPU, {', '.join(capped)} (gradient-based planners, slow) play {min(episodes[n] for n in capped)} "
              f"episodes per budget; --no-cap plays {cfg.episodes}")
    # people's recordings, replayed and checked before any agent plays
    human = human_results(cfg, split_size("test") if cfg.full_test else cfg.episodes) if cfg.human else None
    results: dict[str, list[BudgetResult]] = {}
    privileged = {n: bool(a.privileged) for n, a in agents.items()}
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
               f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}"
               + (f", {dist.world()} processes (torchrun)" if dist.world() > 1 else ""))
    parts = plan(cfg, agents, episodes)
    meta = {"config": dataclasses.asdict(cfg), "device": str(device), "machine": machine}
    rows: list[dict] = []
    t0 = time.perf_counter()
    with tqdm(total=sum(len(p) for ps in parts.values() for p in ps), desc="episodes", unit="ep",
              disable=not dist.is_main()) as bar:
        for n, agent in agents.items():
            bar.set_postfix_str(n)
            mc = registry.AGENTS[n].mc_samples
            count = None if cfg.full_test else episodes[n]  # None: every test digit once
            played = [None if not p else
                      evaluate(agent, env_id=cfg.env, budget=k, episodes=count, device=device, seed=cfg.seed,
                               batch_size=cfg.batch_size, on_wave=bar.update, part=p) if not mc
                      else monte_carlo(agent, mc, env_id=cfg.env, budget=k, episodes=count, device=device,
                                       seed=cfg.seed, batch_size=cfg.batch_size, bar=bar)
                      for k, p in zip(cfg.budgets, parts[n])]
            # every rank's parts, in rank order: the blocks follow each other
            results[n] = [BudgetResult.join([r for r in got if r is not None]) for got in zip(*dist.all_gather(played))]
            mine = rows_of(n, privileged[n], results[n])
            rows += mine
            if not dist.is_main():
                continue
            write_rows(out, rows, {**meta, "wall_s": time.perf_counter() - t0})
            bar.write(f"{n}: " + ", ".join(f"k={r['budget']} {fmt(r['accuracy'], r['ci_low'], r['ci_high'])}"
                                           for r in mine) + f" (written to {out}/table.csv)")
    if human:
        results[HUMAN], privileged[HUMAN] = human[0], False
        rows += rows_of(HUMAN, False, human[0])
    wall = time.perf_counter() - t0
    table = markdown(rows, cfg.budgets, {HUMAN: human[1]} if human else None)
    counts = (f"{cfg.episodes} episodes per cell" if not capped else
              f"{cfg.episodes} episodes per cell ({', '.join(f'{n}: {episodes[n]}' for n in capped)})")
    if cfg.full_test:
        counts = f"every test digit once per cell ({split_size('test')} episodes)"
    footer = (f"\n{cfg.env}, test split, {counts}, seed {cfg.seed}; "
              f"{wall:.0f} s on {device} ({machine}).\n" + (human[2] + "\n" if human else ""))
    if not dist.is_main():
        return table
    (out / "table.md").write_text(table + footer)
    write_rows(out, rows, {**meta, "wall_s": wall})
    plot(results, privileged, out, cfg.env)
    print(table + footer + f"Wrote {out}/table.md, table.csv, table.json, accuracy_vs_saccades.png, "
                           f"accuracy_vs_eccentricity.png")
    return table


if __name__ == "__main__":
    main(parse_config(Config))
