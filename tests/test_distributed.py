"""Several processes (agents.distributed): two gloo ranks on the CPU, spawned here with
torch.multiprocessing (and once through torchrun), take the optimiser step one process takes on
the union of their batches, share an evaluation's episodes into the single-process table, and
stop, save and resume together."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import distributed as dist

ROOT = Path(__file__).resolve().parent.parent
WORLD = 2


def _train(name: str):
    """train/<name>.py as a module (registered: its dataclasses look their module up)."""
    key = f"train_{name}_distributed"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "train" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, fn, args: tuple) -> None:
    """One spawned rank: torchrun's environment, then ``fn(*args)``; leaves the group as at exit."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "tests"))
    dist.init()
    fn(*args)
    dist._close()  # spawned processes skip atexit


def _spawn(fn, *args, limit_s: float = 240.0) -> None:
    """``fn(*args)`` on every rank of a 2-process gloo group (raises what a rank raised); ranks
    that hang (collectives that do not match) are stopped after ``limit_s`` seconds."""
    import time

    import torch.multiprocessing as mp
    ctx = mp.start_processes(_rank_main, args=(_free_port(), fn, args), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + limit_s
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise AssertionError(f"the ranks still ran after {limit_s:.0f} s: a collective that not every rank took?")


# ---- the pure helpers, one process ----------------------------------------------------------------

def test_without_torchrun_everything_is_the_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist.init()
    net = torch.nn.Linear(2, 2)
    assert not dist.active() and (dist.world(), dist.rank(), dist.is_main()) == (1, 0, True)
    assert dist.wrap(net) is net and dist.wrap(net, forward=len) is len
    assert dist.rank_seed(7) == 7 and dist.shard(10) == range(10) and dist.local_batch(7) == 7
    assert dist.maximum(3) == 3 and dist.main_value(2.5) == 2.5 and dist.all_gather("x") == ["x"]
    assert dist.on_main(lambda: 4) == 4


def test_shards_cover_every_item_once_and_seeds_differ():
    for n in (0, 1, 5, 8, 1001):
        for w in (1, 2, 3, 8):
            blocks = [dist.shard(n, rank=r, world=w) for r in range(w)]
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    # the ranks' streams differ (torch's CPU generator keeps a seed's low 32 bits only)
    draws = [torch.rand(4, generator=torch.Generator().manual_seed(dist.rank_seed(5, rank=r))) for r in range(8)]
    assert len({tuple(d.tolist()) for d in draws}) == 8
    assert dist.rank_seed(5, rank=0) == 5  # rank 0 (and one process) keeps the seed: a plain run is unchanged


def test_a_batch_the_ranks_cannot_share_is_refused_with_the_fix():
    assert dist.local_batch(128, world=4) == 32
    with pytest.raises(SystemExit, match=r"--batch-size 130 .* multiple of 4; pass --batch-size 128 or --batch-size 132"):
        dist.local_batch(130, world=4)
    with pytest.raises(SystemExit, match="--batch-size 2"):
        dist.local_batch(1, world=2)


@pytest.fixture(scope="module")
def center():
    from agents.baselines import load_agent
    return load_agent("center")


def test_an_evaluation_in_blocks_is_the_whole_evaluation(center):
    from agents.baselines import load_agent
    from agents.rollout import BudgetResult, evaluate
    kw = dict(budget=1, episodes=23, batch_size=8, seed=4, device="cpu")
    whole = evaluate(center, **kw)
    joined = BudgetResult.join([evaluate(center, part=dist.shard(23, rank=r, world=3), **kw) for r in range(3)])
    for k in ("correct", "n_saccades", "eccentricity"):
        np.testing.assert_array_equal(getattr(joined, k), getattr(whole, k), err_msg=k)
    with pytest.raises(ValueError, match="own randomness"):  # its stream runs over the whole evaluation
        evaluate(load_agent("random"), part=range(8, 23), **kw)


# ---- two ranks ---------------------------------------------------------------------------------

def _updates(out: Path) -> None:
    """The steps compared: each writes its weights to ``out/<what>.<world>.pt`` (rank 0)."""
    from agents.cli import cosine
    from agents.nets import FovealClassifier
    from agents.stn import STNAgent, STNConfig

    def keep(name: str, module: torch.nn.Module) -> None:
        if dist.is_main():
            torch.save(module.state_dict(), out / f"{name}.{dist.world()}.pt")

    # the shared helper: a linear model, plain SGD
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 6, generator=gen), torch.randn(8, 3, generator=gen)
    torch.manual_seed(0)
    net = torch.nn.Linear(6, 3)
    model, mine, opt = dist.wrap(net), dist.shard(8), torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        ((model(x[mine]) - y[mine]) ** 2).mean().backward()
        opt.step()
    keep("linear", net)

    # a real trainer's update: train/foveal.py's train_step (cosine schedule) on a global batch of 16; SGD, not
    # Adam, whose step of a near-zero gradient is its sign and so turns float rounding into a full step
    foveal = _train("foveal")
    cfg = foveal.Config(contrasts=(0.7,), device="cpu")
    views, labels = foveal.foveal_batch(foveal.make_samplers(cfg, cfg.split, torch.device("cpu")), 16, 3.0, 0.1,
                                        torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    net = FovealClassifier(width=4, dropout=0.0)  # dropout draws differ between one and two processes
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched, model, mine = cosine(opt, 10), dist.wrap(net), dist.shard(16)
    for _ in range(2):
        foveal.train_step(model, opt, sched, views[mine], labels[mine])
    keep("foveal", net)

    # train/stn.py's step (its methods run under DDP through wrap(forward=...)): all starts centred, so that
    # every term of its loss is a mean over the batch
    stn = _train("stn")
    cfg = stn.parse_config(stn.Config, ["--env", "SaccadeMNIST-v0", "--jitter-fraction", "0", "--hidden", "16",
                                        "--channels", "4", "8", "--fc", "16", "--device", "cpu"])
    where = stn.default_where(cfg.env)
    core = stn.make_core(cfg, where, torch.device("cpu"))
    keys = torch.arange(16) + 1000
    state = core.reset(core.init_state(keys[list(dist.shard(16))]), torch.ones(len(dist.shard(16)), dtype=torch.bool))
    probe = core.observe(state)
    torch.manual_seed(0)
    agent = STNAgent(config=STNConfig(where_sensors=where, background=core.pad, hidden=16, channels=(4, 8), fc=16,
                                      shapes=tuple((k, tuple(probe[k].shape[1:])) for k in where)))
    torch.nn.init.normal_(agent.localiser.out.weight, std=0.01, generator=torch.Generator().manual_seed(2))
    start, centred = stn.start_fixations(cfg, torch.Generator().manual_seed(3), state.label.shape[0], core.device)
    opt = torch.optim.SGD(agent.parameters(), lr=0.1)
    losses = dist.wrap(agent, forward=lambda *a: stn.step_losses(cfg, agent, core, *a))
    for _ in range(2):
        opt.zero_grad()
        losses(state, start, centred, 0.0)["loss"].backward()
        opt.step()
    keep("stn", agent)


@pytest.fixture(scope="module")
def updates(tmp_path_factory):
    out = tmp_path_factory.mktemp("updates")
    _updates(out)  # one process, the whole batch
    _spawn(_updates, out)  # two, half each
    return out


@pytest.mark.parametrize("what", ["linear", "foveal", "stn"])
def test_two_ranks_take_the_step_of_one_process_on_the_whole_batch(updates, what):
    one, two = torch.load(updates / f"{what}.1.pt"), torch.load(updates / f"{what}.2.pt")
    assert one.keys() == two.keys() and one
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6, msg=k)


def _compare(out: Path) -> None:
    from eval import compare_agents as ca
    ca.main(ca.Config(agents=("center", "random", "oracle", "what_where"), budgets=(0, 2), episodes=30,
                      batch_size=8, device="cpu", out=str(out), overwrite=True))


def test_a_shared_evaluation_gives_the_single_process_table(tmp_path, capsys):
    _compare(tmp_path / "one")
    _spawn(_compare, tmp_path / "two")
    one, two = (json.loads((tmp_path / d / "table.json").read_text()) for d in ("one", "two"))
    timing = ("decisions_per_s",)  # a timing: each rank's own
    assert [{k: v for k, v in r.items() if k not in timing} for r in one["rows"]] == \
           [{k: v for k, v in r.items() if k not in timing} for r in two["rows"]]
    assert len(one["rows"]) == 8 and "2 processes" in two["machine"]
    md = [(tmp_path / d / "table.md").read_text().split("Mean saccades")[0] for d in ("one", "two")]
    assert md[0] == md[1]


def _straight_stopped_resumed(runs: Path) -> None:
    """train/foveal.py three times on each rank: straight through; stopped by a SIGTERM that only
    rank 1 gets, before step 3; continued with --resume."""
    from agents import cli
    foveal = _train("foveal")
    kw = dict(steps=6, batch_size=8, width=4, eval_scenes=8, eval_shifts=(5.0,), contrasts=(0.7,), save_every=2,
              device="cpu", runs=str(runs))
    try:  # a global batch the ranks cannot share: refused before any work, on every rank
        foveal.main(foveal.Config(**{**kw, "batch_size": 7}, name="odd"))
        raise AssertionError("--batch-size 7 was taken by 2 processes")
    except SystemExit as err:
        assert "--batch-size 7 is the global batch" in str(err.code) and not (runs / "odd").exists()
    foveal.main(foveal.Config(name="straight", out=str(runs / "straight.pt"), **kw))
    real = cli.GracefulExit.requested

    def requested(self, step):
        if dist.rank() == 1 and step >= 3 and self.signum is None:
            signal.raise_signal(signal.SIGTERM)  # through the real handler
        return real(self, step)
    cli.GracefulExit.requested = requested
    try:
        foveal.main(foveal.Config(name="stopped", out=str(runs / "stopped.pt"), **kw))
        raise AssertionError("the run did not stop")
    except SystemExit as stop:
        assert stop.code == 128 + signal.SIGTERM, stop.code  # rank 0 too: it stops with rank 1
    finally:
        cli.GracefulExit.requested = real
    assert not (runs / "stopped.pt").exists()
    foveal.main(foveal.Config(name="stopped", out=str(runs / "stopped.pt"), resume="yes", **kw))


def test_a_distributed_run_stopped_and_resumed_ends_where_a_straight_one_does(tmp_path, capfd):
    _spawn(_straight_stopped_resumed, tmp_path)
    a, b = (torch.load(tmp_path / f, weights_only=True)["weights"]["net"] for f in ("straight.pt", "stopped.pt"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert capfd.readouterr().err.count("SIGTERM: stopped at step 3") == 2  # both ranks, the same step
    # the resume file holds both ranks' random streams: a run of another size may not continue it
    saved = torch.load(tmp_path / "stopped" / "resume.pt", weights_only=True)
    draws = [torch.rand(4, generator=torch.Generator().set_state(r["gens"]["gen"])) for r in saved["ranks"]]
    assert saved["world"] == 2 and not torch.equal(*draws)  # each rank its own stream, kept
    from agents import cli
    with pytest.raises(SystemExit, match=r"2 process\(es\), this run has 1"):
        cli.load_resume(tmp_path / "stopped" / "resume.pt", device=torch.device("cpu"), net=torch.nn.Linear(1, 1))


def test_a_trainer_runs_unchanged_under_torchrun(tmp_path):
    """Through torchrun itself: rank 0 alone writes and reports."""
    def torchrun(batch: int) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD),
               str(ROOT / "train" / "foveal.py"), "--steps", "3", "--batch-size", str(batch), "--width", "4",
               "--eval-scenes", "8", "--eval-shifts", "5", "--contrasts", "0.7", "--device", "cpu"]
        return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              timeout=300, cwd=tmp_path)
    done = torchrun(8)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("foveal classifier: held-out accuracy") == 1  # rank 0 alone reports
    run = tmp_path / "runs" / "foveal"
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("events")) == ["foveal.pt", "resume.pt"]
    assert len(list(run.glob("events*"))) == 1  # one TensorBoard log
    assert torch.load(run / "resume.pt", weights_only=True)["world"] == WORLD
