"""Train a stable-baselines3 PPO policy on SaccadeMNIST through the batched-env adapter.

    python train/ppo.py                                   # SaccadeMNIST-v0, discrete log-polar actions
    python train/ppo.py --device cuda --num-envs 4096 --total-timesteps 20000000
    python train/ppo.py --env SaccadeMNIST-Translated60-v0 --form continuous
    python train/ppo.py --recurrent                       # sb3-contrib's RecurrentPPO (pip install -e ".[recurrent]")
    python train/ppo.py --resume                          # go on from runs/<name>/resume.pt
    python train/ppo.py --promote                         # ... then copy runs/<name>/ppo.pt over checkpoints/ppo.pt

PPO with SB3's MultiInputPolicy and the retina's features extractor
(agents/sb3_extractors.py), on ``num_envs`` environments stepped as one batch on
``device`` (saccade_env/sb3.py).  Logs to TensorBoard in runs/<name>/, saves a resume file
there every ``save_every`` steps (atomically, at a rollout's start; ``--resume`` reads it), and at the end
writes the checkpoint (``--out``, default runs/<name>/ppo.pt: the policy's weights and
configuration, read by agents/ppo.py's ``load_agent``; ``--promote`` copies it over checkpoints/ppo.pt) and the accuracy at each saccade budget
on the test split, measured with agents.rollout.evaluate.
"""
from __future__ import annotations

import importlib
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor

from agents.checkpoint import atomic_write, save_checkpoint
from agents.cli import (GracefulExit, RunOptions, check_ranges, finish_run, load_resume, parse_config, prepare_run,
                        resolve_device, save_resume)
from agents.baselines import load_foveal
from agents.ppo import EXTRACTORS, SB3Agent, policy_class, policy_options
from agents.rollout import evaluate
from agents.sb3_extractors import WhatObservation
from saccade_env.sb3 import make_sb3_vec_env


@dataclass(frozen=True)
class Config(RunOptions):
    """Train PPO (stable-baselines3) on SaccadeMNIST with the batched env."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "a registered id (saccade_env.presets)"})
    form: str = field(default="discrete", metadata={"help": "flat action form", "choices": ("discrete", "continuous")})
    grid: str = field(default="logpolar", metadata={"help": "saccade targets of the discrete form",
                                                    "choices": ("logpolar", "uniform")})
    grid_size: int = field(default=8, metadata={"min": 1, "help": "cells per side of the uniform grid"})
    max_saccades: int | None = field(default=None, metadata={
        "min": 0, "help": "training budget (default: the preset's)"})
    contrast: float | None = field(default=None, metadata={"help": "digit contrast (default: the preset's)"})
    noise: float | None = field(default=None, metadata={"help": "background noise level (default: the preset's)"})
    placement: str | None = field(default=None, metadata={"help": "radial, uniform or center (default: preset's)"})
    sensors: tuple[str, ...] = field(default=(), metadata={"help": "fovea/periphery/glimpse (default: the preset's)"})
    policy: str = field(default="auto", metadata={
        "help": "retinotopic: saccade targets scored on the periphery's map (discrete log-polar actions, "
                "feed-forward); mlp: SB3's MultiInputPolicy with RetinaExtractor; auto: retinotopic where it "
                "applies, else mlp", "choices": ("auto", "retinotopic", "mlp")})
    what: str = field(default="shipped", metadata={
        "help": "a frozen What classifier whose reading of the fovea the policy observes: 'shipped' (the "
                "shipped foveal.pt), a train/foveal.py checkpoint, or 'none' (learn from the fovea alone)"})
    shaping: float = field(default=1.0, metadata={
        "min": 0, "help": "potential-based reward shaping with the frozen What's probability of the true label "
                          "(agents.sb3_extractors.WhatObservation; 0: none; needs --what)"})
    saccade_cost: float = field(default=0.0, metadata={"min": 0, "help": "reward subtracted per saccade "
                                                                         "(training env only)"})
    num_envs: int = field(default=128, metadata={"min": 1, "help": "environments stepped as one batch"})
    total_timesteps: int = field(default=5_000_000, metadata={"min": 1, "help": "env steps in all"})
    n_steps: int = field(default=16, metadata={"min": 1, "help": "steps per env per rollout"})
    batch_size: int = field(default=512, metadata={"min": 1, "help": "PPO minibatch"})
    n_epochs: int = field(default=4, metadata={"min": 1, "help": "PPO epochs per rollout"})
    lr: float = field(default=1e-3, metadata={"above": 0, "help": "Adam step size", "aliases": ("--learning-rate",)})
    gamma: float = field(default=0.99, metadata={"min": 0, "max": 1, "help": "discount"})
    gae_lambda: float = field(default=0.95, metadata={"min": 0, "max": 1, "help": "GAE lambda"})
    ent_coef: float = field(default=0.01, metadata={"min": 0, "help": "entropy bonus"})
    clip_range: float = field(default=0.2, metadata={"above": 0, "help": "PPO clip"})
    width: int = field(default=16, metadata={"min": 1, "help": "conv channels of the extractor's first layers"})
    code: int = field(default=128, metadata={"min": 1, "help": "width of each sensor's code in the extractor"})
    hidden: int = field(default=128, metadata={"min": 1, "help": "hidden units of the policy and value heads"})
    layers: int = field(default=2, metadata={"min": 1, "help": "retinotopic policy: circular conv layers"})
    look_bias: float = field(default=0.0, metadata={"help": "retinotopic policy: initial bias of the look logit "
                                                            "(0 with a What reading: a fresh policy looks at one "
                                                            "step in two; see RetinotopicPolicy)"})
    recurrent: bool = field(default=False, metadata={"help": "sb3-contrib's RecurrentPPO (LSTM policy)"})
    bootstrap_truncated: bool = field(default=False, metadata={
        "help": "report a look past the budget as TimeLimit.truncated (PPO then bootstraps it)"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of the envs and the policy"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda (env and policy)"})
    threads: int = field(default=1, metadata={"min": 1, "help": "torch CPU threads"})
    minutes: float = field(default=55.0, metadata={"min": 0, "help": "stop training after this wall time (0: no limit)",
                                                  "aliases": ("--max-minutes",)})
    save_every: int = field(default=50_000, metadata={"min": 1, "help": "env steps between resume files"})
    monitor_every: int = field(default=100_000, metadata={
        "min": 0, "help": "env steps between held-out evaluations (val/accuracy in the logs); the checkpoint keeps "
                          "the weights of the best one (0: none, keep the last weights)"})
    monitor_budget: int = field(default=3, metadata={"min": 0, "help": "saccade budget of the held-out evaluations"})
    monitor_episodes: int = field(default=500, metadata={"min": 1, "help": "episodes of each held-out evaluation"})
    eval_budgets: tuple[int, ...] = field(default=(0, 1, 2, 3, 4, 5), metadata={"help": "saccade budgets k"})
    eval_episodes: int = field(default=1000, metadata={"min": 0, "help": "held-out episodes per budget at the end "
                                                                      "(0: no evaluation)"})
    split: str = field(default="train[:55000]", metadata={"help": "digits trained on (MNIST split or slice)"})
    val_split: str = field(default="train[55000:]", metadata={"help": "held-out digits of the final report"})
    progress_bar: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.shaping and self.what == "none":
            raise ValueError("--shaping reads the frozen What's probability of the label: pass --what, or --shaping 0")
        if self.policy == "retinotopic" and self.recurrent:
            raise ValueError("--recurrent takes --policy mlp (the retinotopic policy is feed-forward)")
        if self.policy == "retinotopic" and "periphery" not in self.sensors_used():
            raise ValueError("--policy retinotopic scores targets on the periphery: keep the 'periphery' sensor")
        if self.policy == "retinotopic" and (self.form, self.grid) != ("discrete", "logpolar"):
            raise ValueError(f"--policy retinotopic scores the log-polar saccade targets: it needs --form discrete "
                             f"--grid logpolar (got --form {self.form} --grid {self.grid}); or pass --policy mlp")

    def sensors_used(self) -> tuple[str, ...]:
        return self.sensors or tuple(gym.spec(self.env).kwargs.get("sensors", ()))

    def policy_name(self) -> str:
        """--policy, with auto resolved: retinotopic for discrete log-polar actions on a periphery, without
        --recurrent; mlp otherwise."""
        if self.policy != "auto":
            return self.policy
        fits = ((self.form, self.grid) == ("discrete", "logpolar") and not self.recurrent
                and "periphery" in self.sensors_used())
        return "retinotopic" if fits else "mlp"

    def what_path(self) -> str | None:
        """The frozen What checkpoint (None: the shipped one), or '' for none."""
        return {"shipped": None, "none": ""}.get(self.what, self.what)

    def env_kwargs(self) -> dict:
        """The scene overrides (not the budget), for training and evaluation alike."""
        kw = {"contrast": self.contrast, "noise": self.noise, "placement": self.placement}
        return {k: v for k, v in kw.items() if v is not None}

    def train_env_kwargs(self) -> dict:
        """The training env's overrides: the scene's, the budget and the sensors."""
        kw = self.env_kwargs()
        if self.max_saccades is not None:
            kw["max_saccades"] = self.max_saccades
        if self.sensors:
            kw["sensors"] = self.sensors
        if self.saccade_cost:
            kw["saccade_cost"] = self.saccade_cost
        return kw


def algorithm(recurrent: bool):
    """PPO, or sb3-contrib's RecurrentPPO with a clear message when it is not installed."""
    if not recurrent:
        return PPO
    policy_class(True, policy="mlp")  # ImportError: "pip install sb3-contrib"
    return importlib.import_module("sb3_contrib").RecurrentPPO


class _Stop(Exception):
    """Raised out of ``learn()`` at a rollout's start: a stop signal, or the ``--minutes`` deadline."""


def training_state(model, venv) -> dict:
    """What continuing ``model`` needs beyond its weights and optimiser, as tensors and plain values:
    progress counters, the pending observation, the environments' episodes, the random streams."""
    np_state = np.random.get_state()
    state = {"num_timesteps": int(model.num_timesteps), "n_updates": int(model._n_updates),
             "last_obs": {k: torch.as_tensor(v) for k, v in model._last_obs.items()},
             "last_episode_starts": torch.as_tensor(model._last_episode_starts),
             "env": venv.unwrapped.get_state(), "torch_rng": torch.get_rng_state(),
             "numpy_rng": [np_state[0], torch.as_tensor(np_state[1]), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    what = _what_wrapper(venv)
    if what is not None:  # the shaping potential of the pending observation
        state["what_phi"] = torch.as_tensor(what._phi).clone()
    lstm = getattr(model, "_last_lstm_states", None)
    if lstm is not None:  # RecurrentPPO: (pi, vf) pairs of (h, c)
        state["lstm"] = [[t.clone() for t in pair] for pair in lstm]
    return state


def _what_wrapper(venv) -> WhatObservation | None:
    """The WhatObservation in ``venv``'s chain of wrappers, if any."""
    while venv is not None and not isinstance(venv, WhatObservation):
        venv = getattr(venv, "venv", None)
    return venv


def restore_training_state(model, venv, state: dict) -> None:
    """Undo :func:`training_state` into a freshly built ``model`` and its ``venv``."""
    model.num_timesteps, model._n_updates = state["num_timesteps"], state["n_updates"]
    model._last_obs = {k: v.cpu().numpy() for k, v in state["last_obs"].items()}
    model._last_episode_starts = state["last_episode_starts"].cpu().numpy()
    venv.unwrapped.set_state(state["env"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    name, keys, *rest = state["numpy_rng"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))
    if "what_phi" in state:
        _what_wrapper(venv)._phi = state["what_phi"].cpu().numpy()
    if "lstm" in state:
        lstm = model._last_lstm_states
        model._last_lstm_states = type(lstm)(*(tuple(t.to(model.device) for t in pair) for pair in state["lstm"]))


class Progress(BaseCallback):
    """Episode accuracy in TensorBoard, resume points every ``save_every`` steps, a stop at a signal
    or at the ``--minutes`` deadline, both at a rollout's start (where a resume point is exact).
    The bar is SB3's own: ``learn(progress_bar=True)``."""

    def __init__(self, *, save_every: int, save, stop: GracefulExit, deadline: float, monitor=None,
                 monitor_every: int = 0, best: dict | None = None, t0: float = 0.0) -> None:
        super().__init__()
        self.save_every, self.save, self.stop, self.deadline = save_every, save, stop, deadline
        self.monitor, self.monitor_every, self.t0 = monitor, monitor_every, t0
        self.best = best if best is not None else {}
        self.correct: list[bool] = []
        self.saccades: list[int] = []
        self.next_save = save_every
        self.next_monitor = monitor_every

    def _on_training_start(self) -> None:
        self.next_save = (self.num_timesteps // self.save_every + 1) * self.save_every
        if self.monitor_every:
            self.next_monitor = (self.num_timesteps // self.monitor_every + 1) * self.monitor_every

    def check(self) -> None:
        """The held-out accuracy now (logged as val/accuracy, with the wall-clock minutes); the best
        weights so far are kept in ``best``."""
        acc = self.monitor()
        self.logger.record("val/accuracy", acc)
        self.logger.record("val/minutes", (time.time() - self.t0) / 60)
        if acc > self.best.get("accuracy", -1.0):
            self.best.update(accuracy=acc, step=int(self.num_timesteps),
                             policy={k: v.detach().clone() for k, v in self.model.policy.state_dict().items()})

    def _on_rollout_start(self) -> None:
        if self.stop.requested(self.num_timesteps):
            self.save()
            raise _Stop("signal")
        if time.time() >= self.deadline:
            raise _Stop("deadline")
        if self.monitor_every and self.num_timesteps >= self.next_monitor:
            self.check()
            self.next_monitor = (self.num_timesteps // self.monitor_every + 1) * self.monitor_every
        if self.num_timesteps >= self.next_save:
            self.save()
            self.next_save = (self.num_timesteps // self.save_every + 1) * self.save_every

    def _on_step(self) -> bool:
        dones = self.locals["dones"]
        if dones.any():
            infos = self.locals["infos"]
            self.correct.extend(bool(infos[i]["correct"]) for i in np.flatnonzero(dones))
            self.saccades.extend(int(infos[i]["n_saccades"]) for i in np.flatnonzero(dones))
        return True

    def _on_rollout_end(self) -> None:
        if self.correct:
            acc = float(np.mean(self.correct))
            self.logger.record("rollout/accuracy", acc)
            self.logger.record("rollout/saccades", float(np.mean(self.saccades)))
            self.correct, self.saccades = [], []


def train(cfg: Config) -> dict:
    """Train, save, evaluate; returns {"checkpoint", "accuracy": {k: acc}, "seconds"}."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit("train/ppo.py runs as one process (stable-baselines3 has no DDP): launch it with python, "
                         "not torchrun, and scale with --num-envs on one device (docs: Scaling out)")
    files = prepare_run(cfg, default_name="ppo", checkpoint="ppo.pt")
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    try:
        algo = algorithm(cfg.recurrent)
    except ImportError as err:
        raise SystemExit(f"--recurrent: {err}") from None
    t0 = time.time()
    env_kw = cfg.train_env_kwargs()
    venv = make_sb3_vec_env(cfg.env, num_envs=cfg.num_envs, device=device, form=cfg.form, grid=cfg.grid,
                            grid_size=cfg.grid_size, bootstrap_truncated=cfg.bootstrap_truncated,
                            split=cfg.split, **env_kw)
    what = None if cfg.what_path() == "" else load_foveal(cfg.what_path(), device=device)
    venv = VecMonitor(venv if what is None else WhatObservation(venv, what, shaping=cfg.shaping, gamma=cfg.gamma))
    venv.seed(cfg.seed)
    policy_kwargs = policy_options(cfg)
    model = algo(policy_class(cfg.recurrent, policy=cfg.policy_name()), venv, n_steps=cfg.n_steps,
                 batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, learning_rate=cfg.lr, gamma=cfg.gamma,
                 gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef, clip_range=cfg.clip_range, seed=cfg.seed,
                 device=device, policy_kwargs={**policy_kwargs, "features_extractor_class": EXTRACTORS[cfg.policy_name()]})
    best: dict = {}  # --monitor-every: the best held-out accuracy, its step and weights
    if files.continuing:
        saved: dict = {}
        _, elapsed = load_resume(files.resume, device=device, config=cfg, extra=saved, policy=model.policy,
                                 optimizer=model.policy.optimizer)
        restore_training_state(model, venv, saved["training"])  # learn() then goes on from there, no reset
        best.update(saved.get("best", {}))
        t0 = time.time() - elapsed
        print(f"resumed {files.resume} at step {model.num_timesteps}")

    def save() -> None:
        save_resume(files.resume, step=int(model.num_timesteps), elapsed=time.time() - t0, config=cfg,
                    extra={"training": training_state(model, venv), "best": best}, policy=model.policy,
                    optimizer=model.policy.optimizer)

    def monitor() -> float:
        """Accuracy at --monitor-budget on the held-out digits (deterministic actions, fixed episodes)."""
        agent = SB3Agent(policy=model.policy, mapping=venv.unwrapped.mapping, what=what)
        return evaluate(agent, env_id=cfg.env, budget=cfg.monitor_budget, episodes=cfg.monitor_episodes,
                        device=device, seed=12345, split=cfg.val_split, **cfg.env_kwargs()).accuracy

    model.set_logger(configure(str(files.dir), ["tensorboard", "csv"]))
    remaining = cfg.total_timesteps - model.num_timesteps
    with GracefulExit() as stop:
        if remaining > 0:
            cb = Progress(save_every=cfg.save_every, save=save, stop=stop,
                          deadline=t0 + cfg.minutes * 60 if cfg.minutes > 0 else float("inf"),
                          monitor=monitor, monitor_every=cfg.monitor_every, best=best, t0=t0)
            try:
                with warnings.catch_warnings():  # SB3's bar is tqdm.rich, which warns that it is experimental
                    warnings.filterwarnings("ignore", message="rich is experimental")
                    model.learn(remaining, callback=CallbackList([cb]), reset_num_timesteps=not files.continuing,
                                progress_bar=cfg.progress_bar)
            except _Stop:
                if stop.signum is not None:
                    venv.close()
                    stop.exit(step=int(model.num_timesteps), resume=files.resume)
            if cfg.monitor_every:  # the last weights compete too
                cb.check()
                model.logger.dump(model.num_timesteps)
        save()
    if best:  # early stopping on held-out training digits
        model.policy.load_state_dict(best["policy"])
        print(f"keeping the weights of step {best['step']} (held-out accuracy {best['accuracy']:.4f} at "
              f"k={cfg.monitor_budget} on {cfg.val_split})")
    atomic_write(files.dir / "final.zip", model.save)  # the SB3 model, for use with SB3 itself
    agent = SB3Agent(policy=model.policy, mapping=venv.unwrapped.mapping, what=what)
    config = {"env": cfg.env, "env_kwargs": env_kw, "form": cfg.form, "grid": cfg.grid, "grid_size": cfg.grid_size,
              "recurrent": cfg.recurrent, "policy": cfg.policy_name(), "policy_kwargs": policy_kwargs,
              "what": None if what is None else what.config, "train_config": asdict(cfg)}
    meta = {"command": " ".join(["python", "train/ppo.py", *sys.argv[1:]]), "seed": cfg.seed, "device": str(device),
            "threads": cfg.threads, "timesteps": int(model.num_timesteps), "train_seconds": round(time.time() - t0, 1)}
    if best:
        meta.update(selected_step=best["step"], selected_val_accuracy=best["accuracy"],
                    selected_budget=cfg.monitor_budget)
    weights = {"policy": {k: v.cpu() for k, v in model.policy.state_dict().items()}}
    if what is not None:  # the frozen What travels with the policy that reads it
        weights["what"] = {k: v.cpu() for k, v in what.state_dict().items()}
    save_checkpoint(files.out, agent="ppo", config=config, weights=weights, meta=meta)
    accuracy = {}
    for k in cfg.eval_budgets if cfg.eval_episodes > 0 else ():
        res = evaluate(agent, env_id=cfg.env, budget=k, episodes=cfg.eval_episodes, device=device, seed=0,
                       split=cfg.val_split, **cfg.env_kwargs())
        lo, hi = res.interval
        accuracy[k] = res.accuracy
        print(f"k={k}: accuracy {res.accuracy:.3f} [{lo:.3f}, {hi:.3f}] on {cfg.eval_episodes} held-out episodes "
              f"({cfg.val_split}), mean saccades {res.n_saccades.mean():.2f}")
    meta.update(val_scores={f"k={k}": a for k, a in accuracy.items()}, val_split=cfg.val_split,
                eval_episodes=cfg.eval_episodes, wall_seconds=round(time.time() - t0, 1))
    save_checkpoint(files.out, agent="ppo", config=config, weights=weights, meta=meta)
    venv.close()
    finish_run(files)
    return {"checkpoint": str(files.out), "accuracy": accuracy, "seconds": time.time() - t0}


if __name__ == "__main__":
    train(parse_config(Config))
