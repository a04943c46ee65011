"""DDP scaling of a trainer: samples/s and time to a fixed accuracy with 1, 2, ... processes
(torchrun), the all-reduce's measured cost, and a projection to more GPUs and machines
(docs/scaling.md).

    python bench/ddp_scaling.py                                   # train/foveal.py, 1 and 2 processes
    python bench/ddp_scaling.py --procs 1 2 4 --steps 200 400 --target 0.8 --out runs/ddp_scaling.json

For each number of processes N and each step budget S it runs train/foveal.py with the global
``--batch-size`` B (N = 1: plain ``python``; N > 1: ``torchrun --standalone --nproc_per_node N``),
each run a fresh one with its own cosine schedule, and reads its checkpoint: the training loop's
wall time (the checkpoint's ``wall_s``: sampling the foveae, forward, backward, all-reduce,
optimiser; not the start-up nor the final evaluation) and the held-out accuracy (contrast 0.7,
fovea on the digit). Samples/s is S * B / wall_s; the time to ``--target`` is the wall time of
the smallest budget whose run reaches it.

Then, under torchrun, it times the all-reduce alone: ``--reps`` all-reduces of a float32 tensor
as large as the classifier's parameters (what DDP sends per step) on the CPU (gloo), and projects
the step time t(N) = c * B / N + t_allreduce(N) for interconnects of assumed bandwidths (stated
in the output), with c the compute per sample measured with one process and a ring all-reduce
moving 2 (N - 1) / N times the parameter bytes per process; no overlap of the all-reduce with the
backward is assumed (DDP overlaps them: the projection is pessimistic there).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# ASSUMED interconnects of the projection: (name, GPUs, levels); a level (ranks, bandwidth in bytes/s, latency
# per message in s) is one ring all-reduce; several levels: hierarchical, first inside each machine (its GPUs),
# then between the machines (one network card each, shared by its GPUs), as NCCL does across nodes
INTERCONNECTS = (
    ("8 GPUs, 1 machine, NVLink (assumed 100 GB/s per GPU)", 8, ((8, 100e9, 10e-6),)),
    ("8 GPUs, 1 machine, PCIe 4.0 x16 (assumed 12 GB/s per GPU)", 8, ((8, 12e9, 10e-6),)),
    ("4 machines x 8 GPUs: NVLink inside (100 GB/s), one 100 Gb/s network card per machine (12.5 GB/s)", 32,
     ((8, 100e9, 10e-6), (4, 12.5e9, 30e-6))),
    ("4 machines x 1 GPU, 10 Gb/s Ethernet (assumed 1.25 GB/s)", 4, ((4, 1.25e9, 50e-6),)),
)


def ring_allreduce_s(nbytes: float, *, processes: int, bandwidth: float, latency: float) -> float:
    """A ring all-reduce of ``nbytes`` over ``processes``: each sends and receives 2 (N - 1) / N of
    the bytes, in 2 (N - 1) messages of ``latency``, at ``bandwidth`` bytes/s."""
    if processes <= 1:
        return 0.0
    hops = 2 * (processes - 1)
    return hops / processes * nbytes / bandwidth + hops * latency


def param_bytes(width: int) -> int:
    """Bytes of the foveal classifier's float32 parameters: what DDP all-reduces every step."""
    from agents.nets import FovealClassifier
    return sum(p.numel() * p.element_size() for p in FovealClassifier(width=width).parameters())


def train_run(n: int, steps: int, args, runs: Path) -> dict:
    """One fresh train/foveal.py run with ``n`` processes: its loop's wall time and held-out accuracy."""
    import torch
    cmd = [str(ROOT / "train" / "foveal.py"), "--steps", str(steps), "--batch-size", str(args.batch_size),
           "--width", str(args.width), "--eval-scenes", str(args.eval_scenes), "--eval-shifts", "5",
           "--device", "cpu", "--threads", "1", "--seed", str(args.seed), "--runs", str(runs),
           "--name", f"p{n}_s{steps}"]
    launch = ([sys.executable] if n == 1 else
              [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n)])
    t0 = time.perf_counter()
    done = subprocess.run(launch + cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise SystemExit(f"{' '.join(launch + cmd)} failed:\n{done.stderr[-3000:]}")
    meta = torch.load(runs / f"p{n}_s{steps}" / "foveal.pt", weights_only=True)["meta"]
    return {"processes": n, "steps": steps, "batch": args.batch_size, "train_s": meta["wall_s"],
            "samples_per_s": steps * args.batch_size / meta["wall_s"], "process_s": time.perf_counter() - t0,
            "accuracy": meta["scores"]["val_centre_accuracy_contrast_0.7"],
            "command": " ".join(["torchrun --standalone --nproc_per_node " + str(n) if n > 1 else "python"] +
                                [str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else c for c in cmd])}


def allreduce_rank(nbytes: int, reps: int) -> None:
    """Under torchrun: time ``reps`` all-reduces of ``nbytes`` of float32 (gloo); rank 0 prints JSON."""
    import torch
    import torch.distributed as tdist
    from agents import distributed as dist
    torch.set_num_threads(1)
    dist.init()
    t = torch.ones(nbytes // 4)
    for _ in range(5):
        tdist.all_reduce(t)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(reps):
        tdist.all_reduce(t)
    seconds = (time.perf_counter() - t0) / reps
    if dist.is_main():
        print(json.dumps({"processes": dist.world(), "bytes": nbytes, "allreduce_s": seconds}))


def allreduce_time(n: int, nbytes: int, reps: int) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), __file__,
           "--allreduce-bytes", str(nbytes), "--reps", str(reps)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise SystemExit(f"all-reduce timing failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["command"] = f"torchrun --standalone --nproc_per_node {n} bench/ddp_scaling.py --allreduce-bytes {nbytes} " \
                     f"--reps {reps}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="numbers of processes")
    parser.add_argument("--steps", type=int, nargs="+", default=[150, 300, 600], help="step budgets")
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--width", type=int, default=24, help="the classifier's width (the shipped one's)")
    parser.add_argument("--target", type=float, default=0.85, help="held-out accuracy of the time-to-accuracy")
    parser.add_argument("--eval-scenes", type=int, default=2000, help="held-out scenes scored per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=50, help="all-reduces timed")
    parser.add_argument("--gpu-speedup", type=float, default=50.0,
                        help="ASSUMED: how many times faster a GPU computes a sample than one core of this CPU "
                             "(not measured: no GPU here); the projection's GPU compute is c / this")
    parser.add_argument("--out", default="", help="also write the results as JSON here")
    parser.add_argument("--allreduce-bytes", type=int, default=0, help=argparse.SUPPRESS)  # torchrun's ranks
    args = parser.parse_args()
    if args.allreduce_bytes:
        return allreduce_rank(args.allreduce_bytes, args.reps)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'CPU'}, no GPU"
    nbytes = param_bytes(args.width)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.procs:
            for steps in args.steps:
                r = train_run(n, steps, args, Path(tmp))
                runs.append(r)
                print(f"{n} process(es), {steps} steps x {r['batch']}: {r['samples_per_s']:.0f} samples/s "
                      f"({r['train_s']:.1f} s of training, {r['process_s']:.1f} s in all), held-out accuracy "
                      f"{r['accuracy']:.4f}   [{r['command']}]", flush=True)
    allreduce = [allreduce_time(n, nbytes, args.reps) for n in args.procs if n > 1]
    for a in allreduce:
        print(f"all-reduce of {nbytes / 1e6:.2f} MB (the parameters) over {a['processes']} gloo processes: "
              f"{a['allreduce_s'] * 1e3:.2f} ms   [{a['command']}]")

    print(f"\ntime to held-out accuracy >= {args.target}:")
    for n in args.procs:
        hit = [r for r in runs if r["processes"] == n and r["accuracy"] >= args.target]
        best = min(hit, key=lambda r: r["steps"]) if hit else None
        print(f"  {n} process(es): " + (f"{best['train_s']:.1f} s ({best['steps']} steps)" if best else
                                        f"not reached within {max(args.steps)} steps"))

    one = [r for r in runs if r["processes"] == 1]
    projection = []
    if one:
        c = sum(r["train_s"] for r in one) / sum(r["steps"] * r["batch"] for r in one)  # s per sample
        print(f"\nprojection (compute per sample c = {c * 1e3:.3f} ms on one core of this CPU, measured; a GPU "
              f"ASSUMED {args.gpu_speedup:g}x faster: {c / args.gpu_speedup * 1e6:.1f} us; all-reduce "
              f"{nbytes / 1e6:.2f} MB per step, ring, no overlap with the backward; global batch {args.batch_size}):")
        for name, gpus, levels in INTERCONNECTS:
            comm = sum(ring_allreduce_s(nbytes, processes=n, bandwidth=bw, latency=lat) for n, bw, lat in levels)
            single = c / args.gpu_speedup * args.batch_size
            step = single / gpus + comm
            weak = single / (single + comm)  # --batch-size per GPU: gpus times the global batch
            projection.append({"setup": name, "gpus": gpus, "compute_step_s": single / gpus, "allreduce_s": comm,
                               "speedup": single / step, "efficiency": single / step / gpus,
                               "weak_efficiency": weak})
            print(f"  {name}: compute {single / gpus * 1e3:.3f} ms + all-reduce {comm * 1e3:.3f} ms per step -> "
                  f"{single / step:.1f}x one GPU ({100 * single / step / gpus:.0f}% efficiency); with "
                  f"{args.batch_size} samples per GPU (a {gpus}x larger global batch) {100 * weak:.0f}% efficiency")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine, "param_bytes": nbytes, "runs": runs,
                                              "allreduce": allreduce, "projection": projection,
                                              "gpu_speedup_assumed": args.gpu_speedup}, indent=1))
    print(f"\n{machine}; {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
