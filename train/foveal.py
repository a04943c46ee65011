"""Train the foveal classifier: the What pathway, shared by the foveal baselines and What/Where.

As in Daucé et al. 2020, the classifier reads 28x28 foveae of SaccadeMNIST scenes whose
fixation is shifted from the digit's centre, with a shift spread that grows during
training, at several digit contrasts; a fraction of foveae land anywhere in the scene
(mostly noise), so the classifier learns to be unsure where there is no digit.

    python train/foveal.py                       # writes runs/foveal/foveal.pt
    python train/foveal.py --promote             # ... and copies it over the shipped checkpoints/foveal.pt
    python train/foveal.py --steps 200 --out /tmp/foveal.pt
    python train/foveal.py --resume              # continues runs/foveal/resume.pt
    python train/foveal.py --init checkpoints/foveal.pt --steps 16000 --lr 5e-4 --shift-start 6 \
        --name foveal_ft                         # fine-tunes the shipped one (new schedule)

It fits on ``--split`` (default the first 55,000 training digits) and at the end reports the
accuracy on held-out training digits (``--val-split``, default the last 5,000; contrast 0.7)
with the fovea on the digit's centre and at ``--eval-shifts`` px from it (random direction):
its robustness to shifts. The test split is never read here: it is scored once per shipped
checkpoint by the evaluation scripts.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from agents import distributed as dist
from agents.baselines import load_foveal
from agents.checkpoint import save_checkpoint
from agents.cli import (GracefulExit, RunOptions, check_ranges, cosine, finish_run, load_resume, parse_config,
                        prepare_run, resolve_device, run_meta, save_resume, seeded_init, writer)
from agents.nets import FovealClassifier
from agents.scenes import preset_scene, sample_scenes
from saccade_env.retina import fovea
from saccade_env.scene import SceneSampler, offsets_to_xy


@dataclass(frozen=True)
class Config(RunOptions):
    """Train the foveal classifier (What pathway) on shifted digits in SaccadeMNIST scenes."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "preset whose scenes are used"})
    steps: int = field(default=3000, metadata={"min": 1, "help": "optimiser steps"})
    batch_size: int = field(default=128, metadata={"min": 1, "help": "foveae per step"})
    lr: float = field(default=1e-3, metadata={"above": 0, "help": "Adam learning rate (cosine decay to 0)"})
    shift_start: float = field(default=1.0, metadata={
        "min": 0, "help": "std (px, per axis) of the fixation's shift from the digit centre at the start"})
    shift_end: float = field(default=6.0, metadata={"min": 0, "help": "std (px) reached at 60%% of training"})
    anywhere: float = field(default=0.1, metadata={
        "min": 0, "max": 1, "help": "fraction of foveae at a uniform random place"})
    contrasts: tuple[float, ...] = field(default=(0.3, 0.5, 0.7, 1.0), metadata={"help": "digit contrasts"})
    width: int = field(default=24, metadata={"min": 1, "help": "channels of the first conv layer"})
    seed: int = field(default=0, metadata={"min": 0, "help": "random seed"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=1, metadata={"min": 1, "help": "CPU threads for torch"})
    split: str = field(default="train[:55000]", metadata={"help": "digits fitted (MNIST split or slice)"})
    val_split: str = field(default="train[55000:]", metadata={"help": "held-out digits of the final report"})
    eval_scenes: int = field(default=4000, metadata={"min": 1, "help": "held-out scenes for the final report"})
    save_every: int = field(default=250, metadata={"min": 1, "help": "steps between resume files",
                                                   "aliases": ("--checkpoint-every",)})
    init: str = field(default="", metadata={"help": "start from the weights of this foveal checkpoint (fine-tune "
                                                     "with a new schedule; its width must equal --width)"})
    eval_shifts: tuple[float, ...] = field(default=(5.0, 10.0, 15.0), metadata={
        "help": "final report: also the accuracy at these shifts (px) from the digit's centre"})

    def __post_init__(self):
        check_ranges(self)
        preset_scene(self.env)  # raises a clear error for an unknown preset
        if not all(0.0 < c <= 1.0 for c in self.contrasts):
            raise ValueError(f"--contrasts must lie in (0, 1], got {self.contrasts}")


def make_samplers(cfg: Config, split: str, device: torch.device) -> list[SceneSampler]:
    """One scene sampler per contrast, on the preset's scenes."""
    return [SceneSampler(preset_scene(cfg.env, contrast=c), split=split, device=device) for c in cfg.contrasts]


def foveal_batch(samplers: list[SceneSampler], n: int, shift_px: float, anywhere: float,
                 gen: torch.Generator, *, radius: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` foveae (n, 1, 28, 28) near their digits, and labels (n,). The fixation's shift
    from the digit's centre is N(0, ``shift_px``) per axis, or with ``radius`` exactly
    ``shift_px`` px in a uniformly random direction."""
    dev = samplers[0].device
    per = math.ceil(n / len(samplers))
    views, labels = [], []
    for s in samplers:
        batch = sample_scenes(s, per, gen)
        size = s.cfg.size
        if radius:
            angle = torch.rand(per, generator=gen, device=dev) * (2 * math.pi)
            shift = torch.stack([angle.cos(), angle.sin()], 1) * shift_px
        else:
            shift = torch.randn(per, 2, generator=gen, device=dev) * shift_px
        far = torch.rand(per, generator=gen, device=dev) < anywhere
        rand_xy = (torch.rand(per, 2, generator=gen, device=dev) * 2 - 1) * (s.cfg.max_offset / (size / 2))
        xy = offsets_to_xy(batch.offset, size) + shift * (2.0 / size)
        xy = torch.where(far[:, None], rand_xy, xy).clamp(-1, 1)
        xy = torch.round(xy * (size / 2)) / (size / 2)  # on the pixel grid, as the env's eye lands
        views.append(fovea(batch.scene, xy, size=28, pad=s.cfg.background))
        labels.append(batch.label)
    return torch.cat(views)[:n], torch.cat(labels)[:n]


@torch.no_grad()
def shift_accuracy(net: FovealClassifier, sampler: SceneSampler, n: int, gen: torch.Generator,
                   shift_px: float = 0.0) -> float:
    """Accuracy on ``n`` scenes with the fovea ``shift_px`` px from the digit's centre."""
    net.eval()
    correct = 0
    for i in range(0, n, 500):
        views, labels = foveal_batch([sampler], min(500, n - i), shift_px, 0.0, gen, radius=True)
        correct += int((net(views).argmax(1) == labels).sum())
    net.train()
    return correct / n


def val_scores(net: FovealClassifier, cfg: Config, device: torch.device) -> dict[str, float]:
    """Held-out accuracy at contrast 0.7, on the digit's centre and at ``cfg.eval_shifts`` px from it."""
    test = make_samplers(dataclasses.replace(cfg, contrasts=(0.7,)), cfg.val_split, device)[0]
    scores = {}
    for px in (0.0, *cfg.eval_shifts):
        key = "val_centre_accuracy_contrast_0.7" if px == 0 else f"val_accuracy_shift{px:g}px_contrast_0.7"
        scores[key] = shift_accuracy(net, test, cfg.eval_scenes, torch.Generator(device=device).manual_seed(12345), px)
    return scores


def train_step(model, opt: torch.optim.Optimizer, sched, views: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One optimiser step on foveae ``views`` (b, 1, 28, 28) with ``labels`` (b,); returns the loss.
    ``model``: the classifier, or its DDP wrapper (agents.distributed.wrap), whose backward averages
    the ranks' gradients: then the step is the one of the ranks' batches together."""
    loss = F.cross_entropy(model(views), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss


def main(cfg: Config) -> None:
    files = prepare_run(cfg, default_name="foveal", checkpoint="foveal.pt")
    torch.manual_seed(dist.rank_seed(cfg.seed))  # the global stream too (dropout): a function of the seed (and rank)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    gen = torch.Generator(device=device).manual_seed(dist.rank_seed(cfg.seed))  # each rank its own foveae
    samplers = make_samplers(cfg, cfg.split, device)
    net = seeded_init(cfg.seed, lambda: FovealClassifier(width=cfg.width)).to(device)
    if cfg.init:
        init = load_foveal(cfg.init, device=device)
        if init.config != net.config:
            raise SystemExit(f"--init {cfg.init} holds a classifier of {init.config}, not {net.config}: "
                             f"pass its --width ({init.config['width']}) or start without --init")
        net.load_state_dict(init.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = cosine(opt, cfg.steps)
    start, elapsed = 0, 0.0
    if files.continuing:
        start, elapsed = load_resume(files.resume, device=device, config=cfg, net=net, opt=opt, sched=sched, gen=gen)
    model, batch = dist.wrap(net), dist.local_batch(cfg.batch_size)  # under torchrun: DDP, a share of the batch
    tb = writer(files.dir)
    t0 = time.perf_counter() - elapsed

    def save(step: int) -> None:
        save_resume(files.resume, step=step, elapsed=time.perf_counter() - t0, config=cfg,
                    net=net, opt=opt, sched=sched, gen=gen)

    with GracefulExit() as stop:
        for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="foveal",
                         disable=not dist.is_main()):
            if stop.requested(step):
                save(step)
                stop.exit(step=step, resume=files.resume)
            frac = min(1.0, step / (0.6 * cfg.steps))
            shift = cfg.shift_start + frac * (cfg.shift_end - cfg.shift_start)
            loss = train_step(model, opt, sched, *foveal_batch(samplers, batch, shift, cfg.anywhere, gen))
            if step % 50 == 0:
                tb.add_scalar("train/loss", loss.item(), step)
                tb.add_scalar("train/shift_px", shift, step)
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                save(step + 1)
    wall = time.perf_counter() - t0
    if not dist.is_main():  # rank 0 scores and writes the checkpoint
        return
    scores = val_scores(net, cfg, device)
    for k, v in scores.items():
        tb.add_scalar(f"val/{k}", v, cfg.steps)
    tb.close()
    meta = run_meta(cfg, device=device, wall=wall, scores=scores)
    save_checkpoint(files.out, agent="foveal", config={"width": cfg.width, "train": dataclasses.asdict(cfg)},
                    weights={"net": net.state_dict()}, meta=meta)
    print(f"foveal classifier: held-out accuracy (contrast 0.7, {cfg.eval_scenes} scenes) "
          + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()) + f"; {wall:.0f} s on {device}; wrote {files.out}")
    finish_run(files)


if __name__ == "__main__":
    main(parse_config(Config))
