"""Train RAM (Mnih et al. 2014) on a SaccadeMNIST preset: REINFORCE with a learned baseline
plus the supervised classification loss (the paper's hybrid loss).

    python train/ram.py --env SaccadeMNIST-Centered28-v0            # 6 glimpses 8x8
    python train/ram.py --env SaccadeMNIST-Translated60-v0          # 8 glimpses 12x12, 3 scales
    python train/ram.py --minutes 60                                # SaccadeMNIST-v0: RAM on the retina
    python train/ram.py --env SaccadeMNIST-v0 --sensor glimpse      # v0 with the glimpse 12x12, 4 scales
    python train/ram.py --env SaccadeMNIST-Cluttered60-v0 --resume  # continue runs/<name>/resume.pt

Each iteration plays one wave of ``batch_size`` episodes on the batched environment
(training split, fresh digits every wave) through agents.rollout.run_episodes with
autograd on; the agent samples its locations (policy std ``--std``) and answers after
``n_glimpses - 1`` saccades.  On SaccadeMNIST-v0 the agent reads the env's own retina by
default (``--sensor retina``: the fovea through a frozen What classifier, the log-polar
periphery, a categorical location policy over the periphery's targets; agents/ram.py).
Losses, with the reward R = 1 for a right answer, 0 otherwise (``--reward correct``, the
paper), R = log p(true class) at the last step, clipped at -5 (``--reward logprob``: when
nearly every training answer is right, a 0/1 reward no longer tells one scanpath from
another), or, with the retina, each saccade's own R_t = the frozen What's probability of the
true class at the fixation it leads to (``--reward fovea``, the retina's default):

    classification: cross-entropy of the last step + every_step_weight * mean over earlier steps
                    (so the agent can be read at any budget k)
    baseline:       mean over looks of (b_t - R)^2
    REINFORCE:      -mean over looks of log pi(l_t) * (R - b_t)        (times reinforce_weight)

Adam, cosine decay; with the glimpse the location network's lr is ``--locator-lr`` (0.1) times
``--lr``: REINFORCE's gradient is mostly noise, and at the full lr Adam turns it into a random
walk of the policy mean away from the digit (docs/agents/ram.md, "Limits"). With the retina's
categorical policy and per-saccade reward it learns at the full lr.

``--valid N`` holds the last N training digits out: the waves draw from the other 60000 - N, the
monitor evaluations read the held-out ones, and the checkpoint keeps the weights of the best
monitor score (early stopping without looking at the test split). ``--weight-decay`` is AdamW's
decoupled decay on every weight but the location network's.

The checkpoint goes to runs/<name>/ram-<tag>.pt (agents.ram.checkpoint_name); ``--promote`` also
copies it over the shipped checkpoints/ram-<tag>.pt.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import torch
import torch.nn.functional as F
from tqdm import tqdm

import saccade_env
from agents import distributed as dist
from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.cli import (GracefulExit, RunOptions, budget_done, check_ranges, cosine_factor, finish_run, load_resume,
                        parse_config, prepare_run, resolve_device, save_resume, writer)
from agents.baselines import load_foveal
from agents.ram import (GROWABLE, LOCATIONS, RAMConfig, RAMState, build_agent, can_grow, checkpoint_name, config_dict,
                        widen_weights)
from agents.rollout import evaluate, make_env, run_episodes
from saccade_env.data import parse_split
from saccade_env.scene import DIGIT


@dataclass(frozen=True)
class Config(RunOptions):
    """Train RAM with the hybrid loss (REINFORCE + baseline + classification)."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "preset id (checkpoint: checkpoints/ram-<tag>.pt)"})
    glimpse_size: int = field(default=0, metadata={"min": 0, "help": "glimpse side g (0: the preset's; 12 on v0)"})
    glimpse_scales: int = field(default=0, metadata={"min": 0, "help": "glimpse scales k (0: the preset's; 4 on v0)"})
    n_glimpses: int = field(default=0, metadata={
        "min": 0, "help": "glimpses per episode = max_saccades + 1 (0: preset's)"})
    hidden: int = field(default=256, metadata={"min": 1, "help": "core width"})
    what_hidden: int = field(default=128, metadata={"min": 1, "help": "width of the glimpse network's what layer"})
    what_conv: int = field(default=0, metadata={
        "min": 0, "help": "channels of a 3x3/2 convolutional branch of the what layer (0: none, the paper)"})
    what_conv2: int = field(default=0, metadata={
        "min": 0, "help": "channels of a second 3x3/2 convolution on the branch's first, read out into the what "
                          "layer too (0: none; needs --what-conv)"})
    where_hidden: int = field(default=128, metadata={"min": 1, "help": "width of the glimpse network's where layer"})
    core: str = field(default="gru", metadata={"help": "recurrent core", "choices": ("gru", "lstm")})
    std: float = field(default=0.1, metadata={"above": 0, "help": "location policy std (scene coordinates)"})
    policy_into_core: bool = field(default=False, metadata={"help": "REINFORCE gradient reaches the core"})
    locator_hidden: int = field(default=0, metadata={
        "min": 0, "help": "ReLU hidden layer of the location net (0: linear)"})
    sensor: str = field(default="", metadata={
        "help": "glimpse (the paper's multi-resolution glimpse) or retina (the env's fovea, read by a frozen What, "
                "and log-polar periphery); default: retina on SaccadeMNIST-v0, glimpse on the other presets",
        "choices": ("", "glimpse", "retina")})
    location: str = field(default="", metadata={
        "help": "location policy: tanh (Gaussian, mean squashed by tanh: the paper) or clamp (straight-through "
                "clamp to [-1, 1]) with the glimpse; logpolar (categorical over the periphery's log-polar "
                "targets, scored on its map) with the retina; default: tanh / logpolar",
        "choices": ("", "tanh", "clamp", "logpolar")})
    what: str = field(default="", metadata={"help": "--sensor retina: the frozen What, a train/foveal.py "
                                                    "checkpoint (default: the shipped foveal.pt)"})
    where_width: int = field(default=16, metadata={"min": 1, "help": "--sensor retina: channels of the "
                                                                     "retinotopic maps over the periphery"})
    where_layers: int = field(default=2, metadata={"min": 1, "help": "--sensor retina: their conv layers"})
    dropout: float = field(default=0.0, metadata={"min": 0, "below": 1, "help": "dropout on the glimpse feature and the classifier's "
                                                          "input (training only; 0: none)"})
    lr: float = field(default=0.0, metadata={"min": 0, "help": "Adam learning rate (0: the sensor's default, 1e-3 "
                                                                "with the glimpse, 2e-3 with the retina)"})
    locator_lr: float = field(default=0.0, metadata={"min": 0, "help": "the location network's lr as a fraction of lr "
                                                                       "(0: the sensor's default, 0.1 with the "
                                                                       "glimpse, 1 with the retina)"})
    lr_final: float = field(default=0.1, metadata={"min": 0, "help": "final lr as a fraction of lr (cosine decay)"})
    steps: int = field(default=20000, metadata={"min": 1, "help": "training iterations (one wave of episodes each)"})
    minutes: float = field(default=0.0, metadata={"min": 0, "help": "stop after this wall time (0: no limit)",
                                                  "aliases": ("--max-minutes",)})
    batch_size: int = field(default=128, metadata={"min": 2, "help": "episodes per iteration"})
    every_step_weight: float = field(default=0.5, metadata={"min": 0, "help": "weight of the earlier steps' CE"})
    reward: str = field(default="", metadata={
        "help": "REINFORCE's reward: correct (1 for a right answer, 0 otherwise: the paper), logprob "
                "(log-probability of the true class at the last step, clipped at -5: it still ranks "
                "scanpaths when nearly every answer is right) or fovea (--sensor retina: each saccade's own "
                "reward, the frozen What's probability of the true class at the fixation it leads to); "
                "default: fovea with the retina, correct with the glimpse",
        "choices": ("", "correct", "logprob", "fovea")})
    reinforce_weight: float = field(default=1.0, metadata={"min": 0, "help": "weight of the REINFORCE loss"})
    weight_decay: float = field(default=0.0, metadata={
        "min": 0, "help": "decoupled (AdamW) weight decay on every weight but the location network's (0: none)"})
    grad_clip: float = field(default=5.0, metadata={"above": 0, "help": "gradient norm clip"})
    jitter: int = field(default=0, metadata={"help": "move each training digit by up to N px per axis, cropped "
                                                     "at the scene's edge (an augmentation: the monitor and the "
                                                     "final scores see the preset unchanged)"})
    rotate: float = field(default=0.0, metadata={"help": "turn each training digit by up to N degrees about its "
                                                         "centre (an augmentation, like --jitter: the monitor and "
                                                         "the final scores see the preset unchanged)"})
    valid: int = field(default=5000, metadata={
        "min": 0, "max": 30000, "help": "hold out the last N training digits: train on the others, monitor on these, "
                                        "keep the weights of the best monitor score and report the final scores "
                                        "on them (0: monitor and score on the test split, keep the last weights)"})
    eval_every: int = field(default=500, metadata={
        "min": 1, "help": "iterations between monitor evals (--valid's digits, or the test split)"})
    eval_episodes: int = field(default=1000, metadata={"min": 1, "help": "episodes of each monitor eval"})
    final_episodes: int = field(default=5000, metadata={"min": 1, "help": "episodes of the final scores (on the "
                                                                         "--valid digits, else the test split)"})
    seed: int = field(default=0, metadata={"min": 0, "help": "random seed"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=0, metadata={"min": 0, "help": "torch CPU threads (0: torch's default)"})
    init: str = field(default="", metadata={"help": "start from the weights of this RAM checkpoint of the same "
                                                    "preset and network (fine-tune: new optimizer and schedule); "
                                                    "larger --hidden/--what-hidden/--where-hidden than the "
                                                    "checkpoint's widen it and --what-conv (--what-conv2) on a "
                                                    "checkpoint without that layer adds it, the new units "
                                                    "starting silent"})
    save_every: int = field(default=250, metadata={"min": 1, "help": "iterations between resume files"})

    def __post_init__(self) -> None:
        check_ranges(self)
        checkpoint_name(self.env)  # a known preset
        if not (isinstance(self.jitter, int) and 0 <= self.jitter <= DIGIT // 2):  # SceneConfig.jitter's range
            raise ValueError(f"--jitter is a shift in px in 0..{DIGIT // 2} (e.g. 2), got {self.jitter!r}")
        if not 0.0 <= self.rotate <= 180.0:  # SceneConfig.rotate's range
            raise ValueError(f"--rotate is an angle in degrees in [0, 180] (e.g. 10), got {self.rotate!r}")
        if self.what_conv2 and not self.what_conv:
            raise ValueError(f"--what-conv2 {self.what_conv2} is a second layer of the convolutional what branch: "
                             f"pass --what-conv C too (e.g. --what-conv 32), or drop --what-conv2")
        mode = self.sensor_mode()
        if self.location and self.location not in LOCATIONS[mode]:
            raise ValueError(f"--location {self.location} does not go with --sensor {mode}: pass one of "
                             f"{LOCATIONS[mode]}")
        if self.reward == "fovea" and mode != "retina":
            raise ValueError("--reward fovea reads the frozen What of --sensor retina: pass --sensor retina or "
                             "another --reward")
        if self.what and mode != "retina":
            raise ValueError("--what is the frozen What of --sensor retina: drop it or pass --sensor retina")
        if self.init and self.resume:
            raise ValueError("--init starts a new run from a checkpoint's weights and --resume continues a run: "
                             "pass one of them")

    def lr_base(self) -> float:
        """--lr, or the sensor's default."""
        return self.lr or (2e-3 if self.sensor_mode() == "retina" else 1e-3)

    def locator_scale(self) -> float:
        """--locator-lr, or the sensor's default."""
        return self.locator_lr or (1.0 if self.sensor_mode() == "retina" else 0.1)

    def reward_kind(self) -> str:
        """--reward, or the sensor's default (fovea with the retina, correct with the glimpse)."""
        return self.reward or ("fovea" if self.sensor_mode() == "retina" else "correct")

    def sensor_mode(self) -> str:
        """The sensor: --sensor, or the preset's default (retina on SaccadeMNIST-v0, glimpse elsewhere)."""
        return self.sensor or ("retina" if self.env == "SaccadeMNIST-v0" else "glimpse")


def sensor(cfg: Config) -> tuple[int, int, int]:
    """(glimpse_size, glimpse_scales, max_saccades): the preset's unless overridden."""
    kw = gym.spec(cfg.env).kwargs
    v0 = cfg.env == "SaccadeMNIST-v0"  # its preset has no glimpse: RAM's choice is 12x12, 4 scales
    size = cfg.glimpse_size or (12 if v0 else kw["glimpse_size"])
    scales = cfg.glimpse_scales or (4 if v0 else kw["glimpse_scales"])
    n_sacc = cfg.n_glimpses - 1 if cfg.n_glimpses else kw["max_saccades"]
    return size, scales, n_sacc


def init_weights(cfg: Config, net_cfg: RAMConfig, *, device) -> tuple[RAMConfig, dict]:
    """(network config, weights) of the ``--init`` checkpoint, checked against this run's network.

    The policy std and ``policy_into_core`` are training choices, not weights: this run's apply.
    Widths (``--hidden``, ``--what-hidden``, ``--where-hidden``) larger than the checkpoint's grow
    its network, and ``--what-conv C`` adds a convolutional what branch to a checkpoint without one
    (:func:`agents.ram.widen_weights`: the new units start silent, so the grown network computes
    what the checkpoint did); smaller ones are refused.
    """
    if not Path(cfg.init).is_file():
        raise SystemExit(f"--init {cfg.init}: no such file; pass a RAM checkpoint of {cfg.env} "
                         f"(e.g. checkpoints/{checkpoint_name(cfg.env)}.pt)")
    try:  # the agent key names the preset: a checkpoint of another preset or agent is refused here
        ckpt = load_checkpoint(cfg.init, agent=checkpoint_name(cfg.env), script=f"train/ram.py --env {cfg.env}",
                               map_location=device)
    except CheckpointError as e:
        raise SystemExit(f"--init {cfg.init}: {e}") from None
    theirs_cfg = RAMConfig(**ckpt["config"]["net"])
    keep = ("std", "policy_into_core", "obs_mean", "obs_std", "dropout")
    theirs = {k: v for k, v in dataclasses.asdict(theirs_cfg).items() if k not in keep}
    ours = {k: v for k, v in dataclasses.asdict(net_cfg).items() if k not in keep}
    differ = {k: (theirs[k], ours[k]) for k in ours
              if theirs[k] != ours[k] and not (k in GROWABLE and can_grow(k, theirs[k], ours[k]))}
    if differ:
        flags = {f.name for f in dataclasses.fields(Config)}
        fix = " ".join(f"--{k.replace('_', '-')} {a}" for k, (a, _) in differ.items() if k in flags)
        raise SystemExit(f"--init {cfg.init} holds another network "
                         f"({', '.join(f'{k}: {a} there, {b} here' for k, (a, b) in differ.items())}): "
                         f"{f'pass {fix} or ' if fix else ''}start without --init")
    weights = ckpt["weights"]["net"]
    grown = [k for k in GROWABLE if getattr(net_cfg, k) > getattr(theirs_cfg, k)]
    if grown:
        wide_cfg = dataclasses.replace(theirs_cfg, **{k: getattr(net_cfg, k) for k in grown})
        weights = widen_weights(weights, theirs_cfg, wide_cfg,
                                generator=torch.Generator().manual_seed(cfg.seed))
        print(f"--init {cfg.init}: widened " + ", ".join(f"{k} {getattr(theirs_cfg, k)} -> {getattr(net_cfg, k)}"
                                                      for k in grown) + " (the new units start silent)")
        theirs_cfg = wide_cfg
    return theirs_cfg, weights


def losses(ep, cfg: Config) -> dict[str, torch.Tensor]:
    """The hybrid loss of one wave (Episodes whose state is a RAMState)."""
    st: RAMState = ep.state
    label = ep.label
    ce = [F.cross_entropy(lg, label) for lg in st.logits]
    look = torch.stack(st.look).float()  # (T, B)
    kind = cfg.reward_kind()
    if kind == "correct":
        R = ep.correct.float()  # (B,): every look of the episode shares it
    elif kind == "logprob":
        R = F.log_softmax(st.logits[-1].detach(), -1).gather(1, label[:, None])[:, 0].clamp(min=-5.0)
    else:  # fovea: the look at step t is paid the What's probability of the label at step t + 1
        phi = torch.stack([lp.gather(1, label[:, None])[:, 0].exp() for lp in st.what_logp])  # (T, B)
        R = torch.cat([phi[1:], torch.zeros_like(phi[:1])])  # (T, B); the last step answers: no look
    ce_loss = ce[-1] + (cfg.every_step_weight * torch.stack(ce[:-1]).mean() if len(ce) > 1 else 0.0)
    n_looks = look.sum().clamp(min=1.0)
    b = torch.stack(st.baseline)  # (T, B)
    base_loss = (((b - R) ** 2) * look).sum() / n_looks
    adv = (R - b).detach()
    reinforce = -(torch.stack(st.log_pi) * adv * look).sum() / n_looks
    total = ce_loss + base_loss + cfg.reinforce_weight * reinforce
    return {"total": total, "ce": ce_loss, "ce_last": ce[-1], "baseline": base_loss, "reinforce": reinforce,
            "reward": R.mean(), "accuracy": ep.correct.float().mean()}


def main(cfg: Config) -> None:
    key = checkpoint_name(cfg.env)
    files = prepare_run(cfg, default_name=key, checkpoint=f"{key}.pt")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    out = files.out
    size, scales, n_sacc = sensor(cfg)
    # --valid N: fit on the first n_train - N training digits, select on the last N
    n_train = parse_split("train")[2]
    fit_split = f"train[:{n_train - cfg.valid}]" if cfg.valid else "train"
    monitor_split = f"train[{n_train - cfg.valid}:]" if cfg.valid else "test"
    monitor_tag = "valid" if cfg.valid else "test"

    mode = cfg.sensor_mode()
    common = dict(hidden=cfg.hidden, what_hidden=cfg.what_hidden, where_hidden=cfg.where_hidden, core=cfg.core,
                  std=cfg.std, policy_into_core=cfg.policy_into_core, dropout=cfg.dropout,
                  location=cfg.location or LOCATIONS[mode][0])
    what = None
    if mode == "retina":  # the env's fovea, read by the frozen What, and its periphery
        what = load_foveal(cfg.what or None, device=device)
        periphery = saccade_env.make_config(**gym.spec(cfg.env).kwargs).periphery.shape
        net_cfg = RAMConfig(sensor="retina", what_net=what.config, periphery_shape=tuple(periphery),
                            where_width=cfg.where_width, where_layers=cfg.where_layers, **common)
    else:  # normalise glimpse pixels with statistics of a first training wave
        probe = gym.make_vec(cfg.env, num_envs=256, device=device, split=fit_split, sensors=("glimpse",),
                             glimpse_size=size, glimpse_scales=scales)
        g0 = probe.reset(seed=cfg.seed + 10**9)[0]["glimpse"]
        probe.close()
        net_cfg = RAMConfig(glimpse_size=size, glimpse_scales=scales, what_conv=cfg.what_conv,
                            what_conv2=cfg.what_conv2, locator_hidden=cfg.locator_hidden,
                            obs_mean=float(g0.mean()), obs_std=float(g0.std().clamp(min=1e-3)), **common)
    init = init_weights(cfg, net_cfg, device=device) if cfg.init else None
    if init is not None:  # the checkpoint's pixel normalisation goes with its weights
        net_cfg = dataclasses.replace(net_cfg, obs_mean=init[0].obs_mean, obs_std=init[0].obs_std)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation; the global RNG is left as it was
        torch.manual_seed(cfg.seed)
        agent = build_agent(net_cfg, device=device, deterministic=False, env_id=cfg.env)
    if what is not None:
        agent.net.what_net.load_state_dict(what.state_dict())
    if init is not None:
        agent.net.load_state_dict(init[1])
        print(f"initialised from {cfg.init}")
    # the location network learns from REINFORCE alone, whose gradient is mostly noise: Adam's
    # per-parameter normalisation turns that noise into steps of size ~lr, a random walk of the
    # policy mean; a smaller lr there (--locator-lr) slows the walk
    loc_params = agent.net.policy_parameters()
    rest = [p for p in agent.net.parameters() if all(p is not q for q in loc_params)]
    groups = [{"params": rest, "scale": 1.0, "weight_decay": cfg.weight_decay},
              {"params": loc_params, "scale": cfg.locator_scale(), "weight_decay": 0.0}]
    opt = torch.optim.Adam(groups, lr=cfg.lr_base(), decoupled_weight_decay=True)

    def set_lr(step: int) -> None:
        """Cosine decay to lr * lr_final over the iterations or the wall-clock budget, whichever ends first."""
        done = budget_done(step, cfg.steps, dist.main_value(time.perf_counter() - t0), cfg.minutes * 60)  # rank 0's
        decay = cosine_factor(done, cfg.lr_final)
        for grp in opt.param_groups:
            grp["lr"] = grp["scale"] * cfg.lr_base() * decay

    start, elapsed = 0, 0.0
    best = {"accuracy": -1.0, "step": 0, "net": None}  # with --valid: the best monitor score's weights
    if files.continuing:
        saved: dict = {}
        start, elapsed = load_resume(files.resume, device=device, config=cfg, extra=saved, net=agent.net, opt=opt)
        for grp, mine in zip(opt.param_groups, groups):  # this run's settings, not the saved ones
            grp["scale"], grp["weight_decay"], grp["decoupled_weight_decay"] = mine["scale"], mine["weight_decay"], True
        best = saved.get("best", best)
        print(f"resumed from {files.resume} at iteration {start}")

    # --jitter, --rotate: the training waves' scenes only (the monitor and the final scores: the preset's own)
    augment = {"scene": dataclasses.replace(gym.spec(cfg.env).kwargs["scene"], jitter=cfg.jitter,
                                            rotate=cfg.rotate)} if cfg.jitter or cfg.rotate else {}
    part = dist.shard(cfg.batch_size)  # under torchrun: this rank's episodes of every wave
    venv = make_env(cfg.env, agent=agent, num_envs=len(part), device=device, max_saccades=n_sacc,
                    split=fit_split, **augment)
    # under torchrun: a wave and its loss under DDP (the backward averages the ranks' gradients)
    play = dist.wrap(agent.net, forward=lambda seed: losses(run_episodes(venv, agent, seed=seed, record=True,
                                                                         grad=True), cfg))
    tb = writer(files.dir)
    t0 = time.perf_counter() - elapsed

    def save(step: int) -> None:
        save_resume(files.resume, step=step, elapsed=time.perf_counter() - t0, config=cfg, extra={"best": best},
                    net=agent.net, opt=opt)

    last_monitored = [-1]

    def monitor(step: int, episodes: int) -> float:
        agent.net.eval()
        agent.deterministic = True
        acc = evaluate(agent, env_id=cfg.env, budget=n_sacc, episodes=episodes, device=device,
                       seed=12345, batch_size=min(1000, episodes), split=monitor_split).accuracy
        agent.deterministic = False
        agent.net.train()
        tb.add_scalar(f"{monitor_tag}/accuracy", acc, step)
        tb.add_scalar(f"{monitor_tag}/accuracy_vs_minutes", acc, int((time.perf_counter() - t0) / 60 * 100))
        last_monitored[0] = step
        if cfg.valid and acc > best["accuracy"]:
            best.update(accuracy=acc, step=step,
                        net={k: v.detach().clone() for k, v in agent.net.state_dict().items()})
        return acc

    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=key, dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 30.0, disable=not dist.is_main())
    step = start - 1  # a resumed run with nothing left to train ends at iteration `start`
    with GracefulExit() as stop:
        for step in bar:
            if stop.requested(step):
                save(step)
                venv.close()
                stop.exit(step=step, resume=files.resume)
            agent.seed(dist.rank_seed(cfg.seed * 7919 + step))  # resumable: the sampling stream of iteration `step`
            if cfg.dropout:  # dropout draws from torch's global generator: seed it per iteration too
                torch.manual_seed(dist.rank_seed(cfg.seed * 7919 + step))
            L = play(cfg.seed * 10**8 + step * cfg.batch_size + part.start)
            opt.zero_grad(set_to_none=True)
            L["total"].backward()
            torch.nn.utils.clip_grad_norm_(agent.net.parameters(), cfg.grad_clip)
            set_lr(step)
            opt.step()
            if step % 50 == 0:
                for k, v in L.items():
                    tb.add_scalar(f"train/{k}", float(torch.as_tensor(v).detach()), step)
                bar.set_postfix(acc=f"{float(L['accuracy']):.3f}", ce=f"{float(L['ce_last'].detach()):.3f}")
            if (step + 1) % cfg.eval_every == 0 and dist.is_main():
                bar.write(f"iteration {step + 1}: {monitor_tag} accuracy {monitor(step + 1, cfg.eval_episodes):.4f} "
                          f"({(time.perf_counter() - t0) / 60:.1f} min)")
            if (step + 1) % cfg.save_every == 0:
                save(step + 1)
            if cfg.minutes and dist.main_value(time.perf_counter() - t0) > cfg.minutes * 60:
                bar.write(f"wall-clock budget of {cfg.minutes} min reached at iteration {step + 1}")
                break
    step += 1
    if cfg.valid and last_monitored[0] != step and dist.is_main():  # the last weights compete too
        print(f"iteration {step}: valid accuracy {monitor(step, cfg.eval_episodes):.4f}")
    save(step)
    wall = time.perf_counter() - t0
    venv.close()
    if not dist.is_main():  # rank 0 scores and writes the checkpoint
        return
    if cfg.valid:
        agent.net.load_state_dict(best["net"])
        print(f"keeping the weights of iteration {best['step']} (valid accuracy {best['accuracy']:.4f} "
              f"on the last {cfg.valid} training digits)")

    agent.net.eval()
    agent.deterministic = True
    scores = {}
    for k in range(n_sacc + 1):
        res = evaluate(agent, env_id=cfg.env, budget=k, episodes=cfg.final_episodes, device=device, seed=0,
                       split=monitor_split)
        scores[f"accuracy_k{k}"] = res.accuracy
        tb.add_scalar("final/accuracy_vs_k", res.accuracy, k)
    tb.add_scalar(f"{monitor_tag}/final_accuracy", scores[f"accuracy_k{n_sacc}"], step)
    print(f"{monitor_tag} accuracy by saccade budget ({monitor_split}):", {k: round(v, 4) for k, v in scores.items()})
    meta = {"command": "python " + " ".join(sys.argv), "seed": cfg.seed, "device": str(device),
            "wall_time_s": round(wall, 1), "iterations": step, "episodes_seen": step * cfg.batch_size,
            "scores": scores, "score_episodes": cfg.final_episodes, "torch_threads": torch.get_num_threads(),
            "fit_split": fit_split, "monitor_split": monitor_split}
    if cfg.valid:
        meta.update(selected_iteration=best["step"], valid_accuracy=best["accuracy"])
    save_checkpoint(out, agent=key, config={"env_id": cfg.env, "net": config_dict(net_cfg),
                                            "max_saccades": n_sacc, "train": dataclasses.asdict(cfg)},
                    weights={"net": agent.net.state_dict()}, meta=meta)
    tb.close()
    print(f"wrote {out} ({wall / 60:.1f} min of training)")
    finish_run(files)


if __name__ == "__main__":
    main(parse_config(Config))
