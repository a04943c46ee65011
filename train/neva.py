"""Train NeVA's downstream classifier: a CNN of foveated SaccadeMNIST scenes.

NeVA needs nothing else trained: its scanpaths come from sign-gradient descent through this
frozen classifier (agents/neva.py).  Scenes come from the environment's own core
(``SaccadeCore.reset``, MNIST's training split); each is seen from the centre then from 0-3
more fixations (60% near the digit, the others anywhere in the display), with a random memory
decay, exactly as the agent builds its views:

- 70%: the *seen* view, NeVA's foveation of the agent's reconstruction (foveae pasted at
  their fixations over the back-projection of the latest peripheral reading): what every
  NeVA agent answers on;
- 20%: NeVA's foveation of the sharp scene (what the privileged planner differentiates);
- 10%: the sharp scene (the privileged planner's target is the prediction on it).

    python train/neva.py --minutes 30          # CPU, reduced budget: writes runs/neva/neva.pt
    python train/neva.py --promote             # ... and copies it over the shipped checkpoints/neva.pt
    python train/neva.py --resume              # continue runs/neva/resume.pt
    python train/neva.py --resume --minutes 120 --lr 5e-4   # ... to 120 min in all, at a lower rate
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
from agents.cli import (GracefulExit, RunOptions, check_ranges, finish_run, load_resume, parse_config, prepare_run,
                        resolve_device, save_resume, seeded_init, writer)
from agents.neva import (BackProjector, NevaConfig, ViewClassifier, foveate, gaussian_blur, memory, paste,
                         reconstruct)
from saccade_env.core import SaccadeCore, make_config
from saccade_env.presets import PRESETS
from saccade_env.retina import fovea


@dataclass(frozen=True)
class Config(RunOptions):
    """Train NeVA's classifier of foveated scenes."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "registered id whose scenes are used"})
    seed: int = field(default=0, metadata={"min": 0, "help": "seed of scenes and fixations"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    batch_size: int = field(default=64, metadata={"min": 1, "help": "scenes per step"})
    steps: int = field(default=20000, metadata={"min": 1, "help": "at most this many steps"})
    minutes: float = field(default=30.0, metadata={"above": 0, "help": "wall-clock budget of the training loop",
                                                   "aliases": ("--max-minutes",)})
    lr: float = field(default=1e-3, metadata={"above": 0, "help": "Adam learning rate"})
    width: int = field(default=16, metadata={"min": 1, "help": "classifier width"})
    max_extra: int = field(default=3, metadata={"min": 0, "help": "fixations after the central one: 0..max_extra"})
    p_near: float = field(default=0.6, metadata={
        "min": 0, "max": 1, "help": "probability that a fixation is near the digit"})
    near_px: float = field(default=6.0, metadata={"min": 0, "help": "std (px) of a fixation 'near the digit'"})
    val_scenes: int = field(default=512, metadata={"min": 1, "help": "scenes of the fixed validation set"})
    eval_every: int = field(default=250, metadata={"min": 1, "help": "steps between validation and resume file"})
    threads: int = field(default=1, metadata={"min": 1, "help": "torch CPU threads (shared machine: 1)"})
    split: str = field(default="train[:55000]", metadata={"help": "digits fitted (MNIST split or slice)"})
    val_split: str = field(default="train[55000:]", metadata={"help": "held-out digits of the validation views"})
    init: str = field(default="", metadata={"help": "start from the classifier of this NeVA checkpoint (fine-tune; "
                                                     "same --width)"})

    def __post_init__(self) -> None:
        check_ranges(self)


def make_views(core: SaccadeCore, bp: BackProjector, ncfg: NevaConfig, keys: torch.Tensor,
               gen: torch.Generator, cfg: Config, kinds: torch.Tensor | None = None, extra: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) int64 scene keys -> views (B, S, S), labels (B,).  ``kinds`` (B,): 0 seen view,
    1 foveated sharp scene, 2 sharp scene; ``extra`` (B,): fixations after the centre."""
    B, dev, S = keys.shape[0], core.device, ncfg.scene_size
    st = core.reset(core.init_state(keys), torch.ones(B, dtype=torch.bool, device=dev))
    target = core.target_xy(st)  # (B, 2)
    T = cfg.max_extra + 1
    r = lambda *shape: torch.rand(*shape, generator=gen, device=dev)  # noqa: E731
    near = target[:, None] + torch.randn(B, T, 2, generator=gen, device=dev) * (cfg.near_px / (S / 2))
    rad, ang = 0.78 * torch.sqrt(r(B, T)), 2 * torch.pi * r(B, T)
    anywhere = torch.stack([rad * torch.cos(ang), rad * torch.sin(ang)], -1)
    fix = torch.where(r(B, T, 1) < cfg.p_near, near, anywhere)
    fix = (torch.round(fix.clamp(-1, 1) * (S / 2)) / (S / 2))
    fix[:, 0] = 0.0  # every episode starts at the centre
    if extra is None:
        extra = (r(B) * (cfg.max_extra + 1)).long()
    fix = torch.where((torch.arange(T, device=dev)[None, :] <= extra[:, None])[..., None], fix, float("nan"))
    canvas = torch.zeros(B, S, S, device=dev)
    seen = torch.zeros(B, S, S, dtype=torch.bool, device=dev)
    for t in range(T):  # loop over fixations (not over the batch); absent ones change nothing
        here = ~torch.isnan(fix[:, t, 0])
        f = torch.nan_to_num(fix[:, t])
        fov = fovea(st.scene, f, size=ncfg.fovea, pad=ncfg.background)
        c2, s2 = paste(canvas, seen, fov, f)
        canvas, seen = torch.where(here[:, None, None], c2, canvas), torch.where(here[:, None, None], s2, seen)
    last = fix[torch.arange(B, device=dev), extra]  # (B, 2) the latest fixation: its periphery reading
    back = bp(core.periphery.read(st.whitened, last), last)
    phi = 0.1 + 0.9 * r(B)
    sharp = memory(fix, ncfg, phi)
    recon = reconstruct(canvas, seen, back, ncfg)
    seen_view = foveate(recon, sharp, gaussian_blur(recon, ncfg.blur, background=ncfg.background))
    scene_view = foveate(st.scene, sharp, gaussian_blur(st.scene, ncfg.blur, background=ncfg.background))
    if kinds is None:
        u = r(B)
        kinds = (u > 0.7).long() + (u > 0.9).long()
    view = torch.where((kinds == 0)[:, None, None], seen_view,
                       torch.where((kinds == 1)[:, None, None], scene_view, st.scene))
    return view, st.label


def main(cfg: Config) -> None:
    files = prepare_run(cfg, default_name="neva", checkpoint="neva.pt")
    torch.manual_seed(dist.rank_seed(cfg.seed))  # the global stream too (dropout): a function of the seed (and rank)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    preset = next(p for p in PRESETS if p.id == cfg.env)
    ecfg = make_config(**{**preset.kwargs, "split": cfg.split})
    ncfg = NevaConfig(scene_size=ecfg.scene.size, fovea=ecfg.fovea_size, background=ecfg.scene.background)
    core = SaccadeCore(ecfg, device=device)
    bp = BackProjector(ncfg, ecfg.periphery).to(device)
    model = seeded_init(cfg.seed, lambda: ViewClassifier(width=cfg.width, pool=ncfg.pool)).to(device)
    if cfg.init:
        init = load_checkpoint(cfg.init, agent="neva", script="train/neva.py")
        if init["config"]["classifier"] != model.config:
            raise SystemExit(f"--init {cfg.init} holds a classifier of {init['config']['classifier']}, this run "
                             f"builds {model.config}: pass its --width or start without --init")
        model.load_state_dict(init["weights"]["classifier"])
    val_core = SaccadeCore(dataclasses.replace(ecfg, split=cfg.val_split), device=device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator(device=device).manual_seed(dist.rank_seed(cfg.seed))  # each rank its own fixations
    step, elapsed = 0, 0.0
    if files.continuing:
        step, elapsed = load_resume(files.resume, device=device, config=cfg, model=model, opt=opt, gen=gen)
        for group in opt.param_groups:  # the rate asked for now (e.g. lower, to finish a run)
            group["lr"] = cfg.lr
        print(f"resumed at step {step} ({elapsed / 60:.1f} min), lr {cfg.lr:g}")
    tb = writer(files.dir)
    # a fixed validation set (scene keys far from the training ones): seen views, centre only / + digit
    vgen = torch.Generator(device=device).manual_seed(10_000 + cfg.seed)
    vkeys = torch.arange(cfg.val_scenes, device=device) + 10**9
    with torch.no_grad():
        zeros = torch.zeros(cfg.val_scenes, dtype=torch.long, device=device)
        val = {"centre": make_views(val_core, bp, ncfg, vkeys, vgen, dataclasses.replace(cfg, near_px=0.0), zeros,
                                    zeros),
               "centre+digit": make_views(val_core, bp, ncfg, vkeys, vgen,
                                          dataclasses.replace(cfg, near_px=0.0, max_extra=1), zeros, zeros + 1)}
    scores: dict[str, float] = {}
    bar = tqdm(total=cfg.steps, initial=step, desc="neva classifier", disable=not dist.is_main())
    t0 = time.perf_counter() - elapsed
    # under torchrun: DDP, and each rank its share of every step's scenes (their keys: its part of the global batch)
    ddp, part = dist.wrap(model), dist.shard(cfg.batch_size)

    def save() -> None:
        save_resume(files.resume, step=step, elapsed=time.perf_counter() - t0, config=cfg, model=model, opt=opt, gen=gen)

    with GracefulExit() as stop:
        while step < cfg.steps and dist.main_value(time.perf_counter() - t0) < cfg.minutes * 60:  # rank 0's clock
            if stop.requested(step):
                save()
                bar.close()
                stop.exit(step=step, resume=files.resume)
            keys = step * cfg.batch_size + torch.arange(part.start, part.stop, device=device) + cfg.seed * 10**8
            with torch.no_grad():
                views, labels = make_views(core, bp, ncfg, keys, gen, cfg)
            loss = F.cross_entropy(ddp(views), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            if step % 25 == 0:
                tb.add_scalar("train/loss", loss.item(), step)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % cfg.eval_every == 0 and dist.is_main():
                model.eval()
                with torch.no_grad():
                    for k, (v, y) in val.items():
                        scores[f"val_{k}"] = float((model(v).argmax(1) == y).float().mean())
                        tb.add_scalar(f"val/{k}", scores[f"val_{k}"], step)
                model.train()
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
            if step % cfg.eval_every == 0:
                save()
    bar.close()
    if not dist.is_main():  # rank 0 scores and writes the checkpoint
        save()
        return
    model.eval()
    with torch.no_grad():
        for k, (v, y) in val.items():
            scores[f"val_{k}"] = float((model(v).argmax(1) == y).float().mean())
    wall = time.perf_counter() - t0
    save()
    path = save_checkpoint(files.out, agent="neva",
                           config={"neva": dataclasses.asdict(ncfg), "classifier": model.config, "env": cfg.env},
                           weights={"classifier": model.state_dict()},
                           meta={"command": " ".join(["python"] + sys.argv), "seed": cfg.seed, "device": str(device),
                                 "wall_s": round(wall, 1), "steps": step, "scores": scores,
                                 "note": "trained on CPU with a reduced budget" if device.type == "cpu" else ""})
    print(f"wrote {path}: {scores}")
    finish_run(files)


if __name__ == "__main__":
    main(parse_config(Config))
