"""Train the STN agent (agents/stn.py) end to end through the differentiable retina.

    python train/stn.py                                        # SaccadeMNIST-v0 -> runs/stn-v0/stn-v0.pt
    python train/stn.py --env SaccadeMNIST-Cluttered60-v0      # -> runs/stn-cluttered60/stn-cluttered60.pt
    python train/stn.py --promote                              # ... and copy it over checkpoints/stn-v0.pt
    python train/stn.py --resume                               # go on from runs/<name>/resume.pt
    python train/stn.py --resume --lr 2e-4 --loc-lr 6e-5       # ... with lower learning rates from here on
    python train/stn.py --resume --minutes 200 --decay cosine  # ... annealing them to zero by the end
    python train/stn.py --env SaccadeMNIST-Cluttered60-v0 --classifier vgg --channels 32 64 \
        --init-localiser checkpoints/stn-cluttered60.pt --freeze-localiser   # a new reader behind a trained eye

Each step draws a batch of training scenes from the environment's own core (the scene
sampler, whitening and retina of saccade_env), puts the eye at a start fixation (the
centre, or for ``jitter_fraction`` of the batch a random point: "multiple starts", so
the same module learns to look again from wherever it is, which is what it does with a
budget k > 1), lets the localiser read the sensors there, and reads the fovea *bilinearly*
at the real-valued fixation it regresses.  The loss is the classifier's cross-entropy
there (its gradient reaches the localiser through :func:`saccade_env.retina.fovea`), plus
``start_weight`` times the cross-entropy at the first fovea (what the agent answers with a
budget of 0).  An optional auxiliary term (``aux_weight``, decaying to zero over
``aux_steps``) pulls the fixation towards the digit's centre; it is off by default.

It fits on ``--split`` (default the first 55,000 training digits) and validates on
``--val-split`` (the last 5,000): the test split is never read here; it is scored once per
shipped checkpoint by ``eval/compare_agents.py --full-test``.
Logs in runs/<name>/ (TensorBoard), resume file runs/<name>/resume.pt, and at the end the
checkpoint (runs/<name>/, or ``--out``) with the held-out accuracies (agents.rollout.evaluate)
in its meta.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from agents import distributed as dist
from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.cli import (GracefulExit, RunOptions, budget_done, check_ranges, cosine_factor, finish_run, load_resume,
                        parse_config, prepare_run, resolve_device, save_resume, writer)
from agents.rollout import evaluate
from agents.stn import (DEFAULT_CHECKPOINTS, STNAgent, STNConfig, checkpoint_config, config_from_checkpoint,
                        location_error_px)
from saccade_env.core import SaccadeCore, make_config
from saccade_env.presets import PRESETS
from saccade_env.retina import fovea


@dataclass(frozen=True)
class Config(RunOptions):
    """Train the STN agent (localiser + classifier) through the differentiable retina."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "environment id (a preset)"})
    where_sensors: tuple[str, ...] = field(default=(), metadata={
        "help": "sensors the localiser reads; empty: periphery+fovea where the preset has a periphery, "
                "else glimpse+fovea"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of the training generator"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=1, metadata={"min": 0, "help": "torch CPU threads (0: torch's default)"})
    steps: int = field(default=3000, metadata={"min": 1, "help": "optimiser steps"})
    minutes: float = field(default=0.0, metadata={"min": 0, "help": "stop after this wall time (0: no limit)",
                                                  "aliases": ("--max-minutes",)})
    batch_size: int = field(default=128, metadata={"min": 1, "help": "scenes per step"})
    lr: float = field(default=1e-3, metadata={"above": 0, "help": "Adam learning rate of the classifier"})
    loc_lr: float = field(default=3e-4, metadata={"min": 0, "help": "Adam learning rate of the localiser"})
    decay: str = field(default="none", metadata={
        "help": "none (constant rates) or cosine: both rates fall along a half cosine to zero over this "
                "invocation's budget (from the step it starts or resumes at to --steps or --minutes, "
                "whichever comes first), so a resumed run can end with an annealing phase"})
    hidden: int = field(default=256, metadata={"min": 1, "help": "localiser width"})
    periphery_energy: bool = field(default=True, metadata={
        "help": "the localiser also reads the periphery's phase-invariant energy"})
    classifier: str = field(default="lenet", metadata={
        "help": "lenet (two 5x5 convolutions) or vgg (four 3x3 convolutions with batch norm: reads a cluttered "
                "fovea better, ~4x the compute)"})
    channels: tuple[int, ...] = field(default=(32, 64), metadata={"help": "classifier convolution widths (two)"})
    fc: int = field(default=256, metadata={"min": 1, "help": "classifier hidden layer width"})
    init_classifier: str = field(default="", metadata={
        "help": "start the classifier from a shared What-pathway checkpoint (e.g. checkpoints/foveal.pt, "
                "made by train/foveal.py); empty: a LeNet from scratch"})
    init: str = field(default="", metadata={
        "help": "start the whole agent (localiser and classifier) from this STN checkpoint: a fine-tune, e.g. on a "
                "changed display (same --where-sensors, --hidden and --periphery-energy as that run)"})
    init_localiser: str = field(default="", metadata={
        "help": "start the localiser from this STN checkpoint (same sensors and width), e.g. to train a new "
                "classifier behind a trained localiser"})
    freeze_localiser: bool = field(default=False, metadata={
        "help": "train the classifier alone: the localiser (from --init-localiser or --resume) stays as it is"})
    jitter_fraction: float = field(default=0.25, metadata={
        "min": 0, "max": 1, "help": "part of the batch starting off-centre"})
    jitter_range: float = field(default=0.5, metadata={"min": 0, "help": "off-centre starts are uniform in +-this"})
    start_weight: float = field(default=0.5, metadata={"min": 0, "help": "weight of the loss at the first fovea"})
    aux_weight: float = field(default=0.0, metadata={"min": 0, "help": "auxiliary pull to the digit (per px^2/100)"})
    aux_steps: int = field(default=0, metadata={"min": 0, "help": "the auxiliary weight decays to 0 over these steps"})
    ce_to_loc: float = field(default=1.0, metadata={
        "min": 0, "help": "scale of the classification gradient reaching the localiser through the retina (1: plain "
                          "end to end; < 1 where the fovea's pixel gradients are mostly noise, as in MotionClouds "
                          "scenes)"})
    contrast: float | None = field(default=None, metadata={"help": "override the preset's digit contrast"})
    noise: float | None = field(default=None, metadata={"help": "override the preset's noise level"})
    ecc_std: float | None = field(default=None, metadata={"help": "override the radial placement's scale"})
    glimpse_size: int | None = field(default=None, metadata={"help": "override the preset's glimpse patch side"})
    glimpse_scales: int | None = field(default=None, metadata={"help": "override the preset's glimpse scales"})
    split: str = field(default="train[:55000]", metadata={"help": "digits fitted (MNIST split or slice)"})
    val_split: str = field(default="train[55000:]", metadata={"help": "held-out digits for validation"})
    eval_every: int = field(default=500, metadata={"min": 0, "help": "steps between validation evaluations"})
    eval_episodes: int = field(default=1000, metadata={"min": 1, "help": "episodes per validation (train digits)"})
    final_episodes: int = field(default=5000, metadata={"min": 1, "help": "held-out episodes per budget at the end"})
    final_budgets: tuple[int, ...] = field(default=(0, 1, 2, 3, 4, 5), metadata={"help": "budgets evaluated at the end"})
    log_every: int = field(default=25, metadata={"min": 1, "help": "steps between TensorBoard scalars"})
    save_every: int = field(default=200, metadata={"min": 1, "help": "steps between resume files"})

    def __post_init__(self) -> None:
        check_ranges(self)
        if not any(p.id == self.env for p in PRESETS):
            raise ValueError(f"--env must be one of {[p.id for p in PRESETS]}, got {self.env!r}")
        if len(self.channels) != 2:
            raise ValueError(f"--channels takes two widths (conv1 conv2), got {self.channels}")
        if self.classifier not in ("lenet", "vgg"):
            raise ValueError(f"--classifier must be 'lenet' or 'vgg', got {self.classifier!r}")
        if self.init_classifier and self.classifier != "lenet":
            raise ValueError("--init-classifier starts the shared What pathway; leave --classifier at lenet with it")
        if self.init and (self.init_classifier or self.init_localiser):
            raise ValueError("--init starts the whole agent from a checkpoint: give it without --init-classifier "
                             "and --init-localiser")
        if self.freeze_localiser and not (self.init or self.init_localiser or self.resume):
            raise ValueError("--freeze-localiser keeps a trained localiser: give it one with --init-localiser "
                             "PATH (an STN checkpoint) or --resume")
        if self.decay not in ("none", "cosine"):
            raise ValueError(f"--decay must be 'none' or 'cosine', got {self.decay!r}")


def env_kwargs(cfg: Config) -> dict:
    """The preset's overrides asked for on the command line (also used for evaluation)."""
    keys = ("contrast", "noise", "ecc_std", "glimpse_size", "glimpse_scales")
    return {k: getattr(cfg, k) for k in keys if getattr(cfg, k) is not None}


def make_core(cfg: Config, where: tuple[str, ...], device: torch.device) -> SaccadeCore:
    """The environment's core on the training split, computing only the sensors needed."""
    kw = dict(next(p for p in PRESETS if p.id == cfg.env).kwargs)
    kw.update(env_kwargs(cfg), split=cfg.split, sensors=tuple(s for s in ("fovea", "periphery", "glimpse")
                                                               if s in {*where, "fovea"}))
    return SaccadeCore(make_config(**kw), device=device)


def default_where(env_id: str) -> tuple[str, ...]:
    kw = next(p for p in PRESETS if p.id == env_id).kwargs
    return ("periphery", "fovea") if "periphery" in kw.get("sensors", ()) else ("glimpse", "fovea")


def draw_scenes(core: SaccadeCore, gen: torch.Generator, batch: int):
    """A fresh batch of training scenes (each a new random stream key)."""
    keys = torch.randint(0, 2**31 - 1, (batch,), generator=gen).to(core.device)
    return core.reset(core.init_state(keys), torch.ones(batch, dtype=torch.bool, device=core.device))


def start_fixations(cfg: Config, gen: torch.Generator, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2) start fixations (centre, or uniform in +-jitter_range), (B,) bool at the centre."""
    jitter = torch.rand(batch, generator=gen) < cfg.jitter_fraction
    xy = (torch.rand(batch, 2, generator=gen) * 2 - 1) * cfg.jitter_range
    return torch.where(jitter[:, None], xy, 0.0).to(device), (~jitter).to(device)


def step_losses(cfg: Config, agent: STNAgent, core: SaccadeCore, state, start: torch.Tensor,
                centred: torch.Tensor, aux_weight: float) -> dict[str, torch.Tensor]:
    """One batch: look from ``start`` (B, 2), classify at the regressed point (bilinear, grad)."""
    with torch.no_grad():
        views = core.observe(dataclasses.replace(state, fixation=start))  # what the eye sees at the start
    fixation = (start + agent.locate(views)).clamp(-1, 1)  # (B, 2), real-valued (no grad if the localiser is frozen)
    read_at = fixation if cfg.ce_to_loc == 1 else fixation * cfg.ce_to_loc + fixation.detach() * (1 - cfg.ce_to_loc)
    seen = fovea(state.scene, read_at, size=core.cfg.fovea_size, pad=core.pad)  # differentiable in fixation
    batch = seen.shape[0]
    if cfg.start_weight:  # one pass over both foveae (batch-norm statistics of the mix the agent meets)
        both = agent.classify(torch.cat([seen, views["fovea"][centred]]))
        logits = both[:batch]
        ce0 = F.cross_entropy(both[batch:], state.label[centred]) if bool(centred.any()) else both.new_zeros(())
    else:
        logits, ce0 = agent.classify(seen), seen.new_zeros(())
    ce = F.cross_entropy(logits, state.label)
    err_px = location_error_px(fixation, core.target_xy(state), core.cfg.scene.size)  # (B,)
    aux = (F.smooth_l1_loss(err_px, torch.zeros_like(err_px), beta=2.0, reduction="none") / 10).mean()
    loss = ce + cfg.start_weight * ce0 + aux_weight * aux
    return {"loss": loss, "ce": ce.detach(), "ce_start": ce0.detach(), "aux": aux.detach(),
            "acc": (logits.argmax(1) == state.label).float().mean(),
            "err_px": err_px.detach()[centred].mean() if bool(centred.any()) else err_px.new_tensor(float("nan"))}


def stn_checkpoint(path: str, arch: STNConfig, flag: str) -> tuple[STNConfig, dict[str, torch.Tensor]]:
    """The architecture and weights of the STN checkpoint ``path``, its localiser checked against ``arch``."""
    ckpt = load_checkpoint(path, agent="stn", script="train/stn.py")
    theirs = config_from_checkpoint(ckpt["config"])
    for key in ("where_sensors", "shapes", "hidden", "periphery_energy", "max_step"):
        if getattr(theirs, key) != getattr(arch, key):
            raise ValueError(f"{flag} {path}: its localiser has {key}={getattr(theirs, key)!r}, this run "
                             f"{getattr(arch, key)!r}; train with the same --env, --where-sensors, --hidden and "
                             f"--periphery-energy as it was")
    return theirs, ckpt["weights"]["agent"]


def localiser_weights(path: str, arch: STNConfig) -> dict[str, torch.Tensor]:
    """The localiser's weights from the STN checkpoint ``path``, checked against ``arch``."""
    prefix = "localiser."
    return {k[len(prefix):]: v for k, v in stn_checkpoint(path, arch, "--init-localiser")[1].items()
            if k.startswith(prefix)}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(Config, argv)
    shipped = DEFAULT_CHECKPOINTS.get(cfg.env, f"stn-{cfg.env}.pt")
    name = cfg.name or shipped[:-3]
    files = prepare_run(cfg, default_name=name, checkpoint=shipped)
    torch.manual_seed(dist.rank_seed(cfg.seed))  # the global stream too (dropout): a function of the seed (and rank)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    where = cfg.where_sensors or default_where(cfg.env)
    core = make_core(cfg, where, device)
    gen = torch.Generator().manual_seed(dist.rank_seed(cfg.seed))  # each rank its own scenes
    probe = core.observe(draw_scenes(core, torch.Generator().manual_seed(cfg.seed + 1), 2))
    shapes = tuple((k, tuple(probe[k].shape[1:])) for k in ("fovea", "periphery", "glimpse") if k in probe)
    kind, channels, fc, what = cfg.classifier, tuple(cfg.channels), cfg.fc, None
    if cfg.init_classifier:
        what = load_checkpoint(cfg.init_classifier, agent="foveal", script="train/foveal.py")
        kind, channels, fc = "foveal", (what["config"]["width"], 2 * what["config"]["width"]), 256
    arch = STNConfig(where_sensors=where, shapes=shapes, background=core.pad, hidden=cfg.hidden,
                     periphery_energy=cfg.periphery_energy, classifier=kind, channels=channels, fc=fc)
    init_weights = None
    if cfg.init:  # the whole agent: its classifier's architecture too
        theirs, init_weights = stn_checkpoint(cfg.init, arch, "--init")
        arch = dataclasses.replace(arch, classifier=theirs.classifier, channels=theirs.channels, fc=theirs.fc)
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on --seed alone, global RNG untouched
        torch.manual_seed(cfg.seed)
        agent = STNAgent(config=arch, env_kwargs=env_kwargs(cfg))
    if what is not None:
        agent.classifier.load_state_dict(what["weights"]["net"])
    if cfg.init_localiser:
        agent.localiser.load_state_dict(localiser_weights(cfg.init_localiser, arch))
    if init_weights is not None:
        agent.load_state_dict(init_weights)
    agent.to(device)
    opt = torch.optim.Adam([{"params": agent.classifier.parameters(), "lr": cfg.lr},
                            {"params": agent.localiser.parameters(), "lr": cfg.loc_lr}])
    step, elapsed = 0, 0.0
    if files.continuing:
        step, elapsed = load_resume(files.resume, device=device, config=cfg, agent=agent, opt=opt, gen=gen)
        for group, lr in zip(opt.param_groups, (cfg.lr, cfg.loc_lr)):  # the rates asked for now (e.g. lower)
            group["lr"] = lr
        print(f"resumed {files.resume} at step {step} (lr {cfg.lr:g}, loc-lr {cfg.loc_lr:g})")
    tb = writer(files.dir)
    t0 = time.perf_counter() - elapsed
    step0, elapsed0 = step, elapsed  # where this invocation's budget (and a --decay schedule) starts
    base_lrs = [g["lr"] for g in opt.param_groups]

    bar = tqdm(total=cfg.steps, initial=step, desc=name, dynamic_ncols=True, disable=not dist.is_main())

    def save() -> None:
        save_resume(files.resume, step=step, elapsed=time.perf_counter() - t0, config=cfg, agent=agent, opt=opt,
                    gen=gen)

    agent.train()
    agent.localiser.requires_grad_(not cfg.freeze_localiser)  # frozen: no gradient, so Adam skips it
    # under torchrun: the step's forward under DDP (its backward averages the ranks' gradients), a share of the batch
    losses = dist.wrap(agent, forward=lambda *a: step_losses(cfg, agent, core, *a))
    batch = dist.local_batch(cfg.batch_size)
    clock = lambda: dist.main_value(time.perf_counter() - t0)  # noqa: E731  (rank 0's: every rank decides alike)
    with GracefulExit() as stop:
        while step < cfg.steps and not (cfg.minutes and clock() > 60 * cfg.minutes):
            if stop.requested(step):
                save()
                bar.close()
                stop.exit(step=step, resume=files.resume)
            state = draw_scenes(core, gen, batch)
            start, centred = start_fixations(cfg, gen, batch, device)
            aux_w = cfg.aux_weight * max(0.0, 1 - step / cfg.aux_steps) if cfg.aux_steps else cfg.aux_weight
            if cfg.decay == "cosine":  # over this invocation's budget, at the step about to be taken
                factor = cosine_factor(budget_done(step + 1 - step0, cfg.steps - step0, clock() - elapsed0,
                                                   60 * cfg.minutes - elapsed0 if cfg.minutes else 0.0))
                for group, lr in zip(opt.param_groups, base_lrs):
                    group["lr"] = lr * factor
            out = losses(state, start, centred, aux_w)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0:
                for k, v in out.items():
                    tb.add_scalar(f"train/{k}", float(v.detach()), step)
                tb.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
                bar.set_postfix(acc=f"{float(out['acc']):.3f}", err_px=f"{float(out['err_px']):.1f}",
                                ce0=f"{float(out['ce_start']):.2f}")
            if step % cfg.save_every == 0:
                save()
            if cfg.eval_every and step % cfg.eval_every == 0 and dist.is_main():
                agent.eval()
                res = evaluate(agent, env_id=cfg.env, budget=1, episodes=cfg.eval_episodes, device=device,
                               seed=10**7, split=cfg.val_split, batch_size=500, **env_kwargs(cfg))
                tb.add_scalar("val/accuracy_k1", res.accuracy, step)
                tqdm.write(f"step {step}: validation ({cfg.val_split}, k=1) accuracy {res.accuracy:.4f}")
                agent.train()
    bar.close()
    save()
    wall = time.perf_counter() - t0
    if not dist.is_main():  # rank 0 scores and writes the checkpoint
        return {}
    agent.eval()
    scores = {}
    for k in cfg.final_budgets:
        res = evaluate(agent, env_id=cfg.env, budget=k, episodes=cfg.final_episodes, device=device, seed=0,
                       split=cfg.val_split, batch_size=1000, **env_kwargs(cfg))
        lo, hi = res.interval
        scores[f"k{k}"] = {"accuracy": res.accuracy, "interval": [lo, hi], "episodes": cfg.final_episodes,
                           "split": cfg.val_split}
        tb.add_scalar("val/final_accuracy", res.accuracy, k)
        print(f"held-out ({cfg.val_split}) {cfg.env} budget {k}: accuracy {res.accuracy:.4f} [{lo:.4f}, {hi:.4f}] "
              f"({cfg.final_episodes} episodes)")
    tb.close()
    path = files.out
    save_checkpoint(path, agent="stn", config={**checkpoint_config(agent), "env": cfg.env,
                                                "env_kwargs": env_kwargs(cfg)},
                    weights={"agent": agent.state_dict()},
                    meta={"command": " ".join(["python", "train/stn.py", *(sys.argv[1:] if argv is None else argv)]),
                          "seed": cfg.seed, "device": str(device), "wall_time_s": round(wall, 1), "steps": step,
                          "scores": scores, "train_config": dataclasses.asdict(cfg)})
    print(f"wrote {path} after {step} steps, {wall / 60:.1f} min of training")
    finish_run(files)
    return {"scores": scores, "steps": step, "wall": wall, "path": path, "agent": agent}


if __name__ == "__main__":
    main()
