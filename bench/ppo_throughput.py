"""PPO training throughput (env-steps/s): our batched env through the SB3 adapter vs SB3's DummyVecEnv.

    python bench/ppo_throughput.py                           # CPU, 16 and 64 envs
    python bench/ppo_throughput.py --device cuda --sizes 64 1024 4096 --dummy-max 64

Both sides train the same PPO (MultiInputPolicy + agents/sb3_extractors.RetinaExtractor,
same hyper-parameters, same seed) on the same number of environments with the same flat
actions (discrete, log-polar grid):

- ``adapter``: ``VecMonitor(SB3VecEnv(gym.make_vec(env, num_envs=n, device=...)))``: one
  batched torch env, NumPy only at SB3's boundary;
- ``dummy``: ``VecMonitor(DummyVecEnv([gym.make(env) + DiscreteActions] * n))``: SB3's
  usual way, n single envs stepped one after another.

Two figures per row: env-steps per second of ``model.learn`` (rollouts *and* PPO updates,
after one warm-up rollout), and of ``VecEnv.step`` alone with random actions (the part the
adapter changes); environment construction is not timed.  The policy runs on
``--device`` too; the single envs always run on the CPU (one each).
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import saccade_env  # noqa: F401
from agents.cli import at_least
from agents.sb3_extractors import RetinaExtractor
from saccade_env.sb3 import make_sb3_vec_env
from saccade_env.wrappers import DiscreteActions


def make(kind: str, env_id: str, n: int, device: str, env_kwargs: dict):
    if kind == "adapter":
        return VecMonitor(make_sb3_vec_env(env_id, num_envs=n, device=device, **env_kwargs))
    return VecMonitor(DummyVecEnv([lambda: DiscreteActions(gym.make(env_id, **env_kwargs)) for _ in range(n)]))


def step_rate(venv, *, seconds: float, seed: int = 0) -> float:
    """Env-steps/s of ``venv.step`` alone (uniform random flat actions, SB3's VecEnv API)."""
    rng = np.random.default_rng(seed)
    venv.reset()
    nvec = venv.action_space.nvec
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        venv.step(np.stack([rng.integers(0, nvec[0], venv.num_envs), rng.integers(0, nvec[1], venv.num_envs)], 1))
        steps += venv.num_envs
    return steps / (time.perf_counter() - t0)


def rate(venv, *, device: str, n_steps: int, rollouts: int, seed: int = 0) -> float:
    """Env-steps/s of PPO.learn over ``rollouts`` rollouts (after one warm-up rollout)."""
    n = venv.num_envs
    model = PPO("MultiInputPolicy", venv, n_steps=n_steps, batch_size=min(256, n * n_steps), n_epochs=4, seed=seed,
                device=device, policy_kwargs={"features_extractor_class": RetinaExtractor,
                                              "net_arch": {"pi": [128], "vf": [128]}})
    model.learn(n * n_steps)  # warm-up
    t0 = time.perf_counter()
    model.learn(n * n_steps * rollouts, reset_num_timesteps=False)
    return n * n_steps * rollouts / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env", default="SaccadeMNIST-v0")
    p.add_argument("--sizes", type=at_least(1), nargs="+", default=[16, 64], help="numbers of envs")
    p.add_argument("--device", default="cpu", help="device of the policy and the batched env")
    p.add_argument("--n-steps", type=at_least(1), default=16, help="PPO steps per env per rollout")
    p.add_argument("--rollouts", type=at_least(1), default=3, help="timed rollouts (+ updates) per measurement")
    p.add_argument("--seconds", type=float, default=10.0, help="timing of the env-step-only measurement")
    p.add_argument("--dummy-max", type=at_least(1), default=64, help="largest n to try with DummyVecEnv")
    p.add_argument("--threads", type=at_least(1), default=1, help="torch CPU threads")
    p.add_argument("--split", default="test", help="MNIST split of the envs (test: faster to load)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env_kwargs = {"split": args.split}
    rows = []
    for n in args.sizes:
        for kind in ("adapter", "dummy"):
            if kind == "dummy" and n > args.dummy_max:
                continue
            venv = make(kind, args.env, n, args.device, env_kwargs)
            s = step_rate(venv, seconds=args.seconds)
            r = rate(venv, device=args.device, n_steps=args.n_steps, rollouts=args.rollouts)
            venv.close()
            rows.append({"n_envs": n, "env": kind, "steps_per_s": round(r, 1), "env_only_steps_per_s": round(s, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.env}, PPO (MultiInputPolicy + RetinaExtractor, n_steps={args.n_steps}, 4 epochs), "
          f"device {args.device}, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}\n")
    print("| envs | measure | adapter (env-steps/s) | DummyVecEnv (env-steps/s) | ratio |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        for key, what in (("steps_per_s", "PPO training"), ("env_only_steps_per_s", "VecEnv.step only")):
            a = next(r[key] for r in rows if r["n_envs"] == n and r["env"] == "adapter")
            d = next((r[key] for r in rows if r["n_envs"] == n and r["env"] == "dummy"), None)
            print(f"| {n} | {what} | {a:.0f} | {'-' if d is None else f'{d:.0f}'} | "
                  f"{'-' if d is None else f'{a / d:.1f}x'} |")


if __name__ == "__main__":
    main()
