"""Environment throughput: env-steps per second of SaccadeMNIST, single env and vector env.

    python bench/env_throughput.py                      # CPU (and CUDA when there is one)
    python bench/env_throughput.py --env SaccadeMNIST-v0 --sizes 1 64 1024 16384 --seconds 5

The policy is what a typical agent does: random saccades until none is left, then a
random answer (episodes of max_saccades + 1 steps; resets are part of the timing).
The single env runs on one CPU thread (torch.set_num_threads(1)); the vector env runs
with every thread of the machine on CPU, and on CUDA where available.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import gymnasium as gym
import numpy as np
import torch

import saccade_env  # noqa: F401  (registers the ids)
from agents.cli import at_least


def single_env_rate(env_id: str, seconds: float) -> float:
    env = gym.make(env_id)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    steps, t0 = 0, None
    while True:
        if t0 is None and steps == 50:  # warm-up done
            t0, steps = time.perf_counter(), 0
        look = obs["saccades_left"][0] > 0
        act = {"saccade": rng.uniform(-1, 1, 2).astype(np.float32), "answer": 10 if look else int(rng.integers(10))}
        obs, _, terminated, truncated, _ = env.step(act)
        steps += 1
        if terminated or truncated:
            obs, _ = env.reset()
        if t0 is not None and time.perf_counter() - t0 > seconds:
            return steps / (time.perf_counter() - t0)


def vector_env_rate(env_id: str, num_envs: int, device: str, seconds: float) -> float:
    venv = gym.make_vec(env_id, num_envs=num_envs, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    obs, _ = venv.reset(seed=0)

    def act(obs):
        look = obs["saccades_left"][:, 0] > 0
        answer = torch.where(look, 10, torch.randint(0, 10, (num_envs,), device=device, generator=gen))
        saccade = torch.rand(num_envs, 2, device=device, generator=gen) * 2 - 1
        return {"saccade": saccade, "answer": answer}

    for _ in range(3):  # warm-up
        obs, *_ = venv.step(act(obs))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or steps < 3:
        obs, *_ = venv.step(act(obs))
        steps += 1
    sync()
    rate = steps * num_envs / (time.perf_counter() - t0)
    venv.close()
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="SaccadeMNIST-v0")
    p.add_argument("--sizes", type=at_least(1), nargs="+", default=[1, 64, 1024, 16384])
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args()
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows.append(("single env", "cpu (1 thread)", 1, single_env_rate(args.env, args.seconds)))
    print(f"| {rows[-1][0]} | {rows[-1][1]} | 1 | {rows[-1][3]:,.0f} |", flush=True)
    torch.set_num_threads(threads)
    for dev in devices:
        for n in args.sizes:
            rate = vector_env_rate(args.env, n, dev, args.seconds)
            label = f"{dev} ({threads} threads)" if dev == "cpu" else torch.cuda.get_device_name()
            rows.append(("vector env", label, n, rate))
            print(f"| vector env | {label} | {n} | {rate:,.0f} |", flush=True)
    print(f"\n{args.env}, torch {torch.__version__}, {platform.processor() or platform.machine()}\n")
    print("| env | device | num_envs | env-steps/s |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(zip(("env", "device", "num_envs", "steps_per_s"), r)) for r in rows], f, indent=1)


if __name__ == "__main__":
    main()
