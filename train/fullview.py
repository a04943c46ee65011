"""Train the fullview baseline: a CNN that sees the whole scene at full resolution, no retina.

What a user would pick instead of an eye; privileged in every table, since no eye sees
the whole scene sharply at once.

    python train/fullview.py                     # writes runs/fullview/fullview.pt
    python train/fullview.py --promote           # ... and copies it over the shipped checkpoints/fullview.pt
    python train/fullview.py --resume            # continues runs/fullview/resume.pt
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from agents import distributed as dist
from agents.checkpoint import save_checkpoint
from agents.cli import (GracefulExit, RunOptions, check_ranges, cosine, finish_run, load_resume, parse_config,
                        prepare_run, resolve_device, run_meta, save_resume, seeded_init, writer)
from agents.nets import SceneClassifier
from agents.scenes import preset_scene, sample_scenes
from saccade_env.scene import SceneSampler


@dataclass(frozen=True)
class Config(RunOptions):
    """Train the fullview CNN on whole SaccadeMNIST scenes."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "preset whose scenes are used"})
    steps: int = field(default=2000, metadata={"min": 1, "help": "optimiser steps"})
    batch_size: int = field(default=64, metadata={"min": 1, "help": "scenes per step"})
    lr: float = field(default=1e-3, metadata={"above": 0, "help": "Adam learning rate (cosine decay to 0)"})
    curriculum: float = field(default=0.4, metadata={
        "min": 0, "max": 1, "help": "fraction of the steps over which the background noise grows from 0 to the "
                                    "preset's level"})
    width: int = field(default=16, metadata={"min": 1, "help": "channels of the first conv layer"})
    seed: int = field(default=0, metadata={"min": 0, "help": "random seed"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=1, metadata={"min": 1, "help": "CPU threads for torch"})
    split: str = field(default="train[:55000]", metadata={"help": "digits fitted (MNIST split or slice)"})
    val_split: str = field(default="train[55000:]", metadata={"help": "held-out digits of the final report"})
    eval_scenes: int = field(default=4000, metadata={"min": 1, "help": "held-out scenes for the final report"})
    save_every: int = field(default=250, metadata={"min": 1, "help": "steps between resume files",
                                                   "aliases": ("--checkpoint-every",)})

    def __post_init__(self):
        check_ranges(self)
        preset_scene(self.env)  # raises a clear error for an unknown preset


@torch.no_grad()
def accuracy(net: SceneClassifier, sampler: SceneSampler, n: int, gen: torch.Generator) -> float:
    net.eval()
    correct = 0
    for i in range(0, n, 250):
        b = sample_scenes(sampler, min(250, n - i), gen)
        correct += int((net(b.scene).argmax(1) == b.label).sum())
    net.train()
    return correct / n


def main(cfg: Config) -> None:
    files = prepare_run(cfg, default_name="fullview", checkpoint="fullview.pt")
    torch.manual_seed(dist.rank_seed(cfg.seed))  # the global stream too (dropout): a function of the seed (and rank)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    gen = torch.Generator(device=device).manual_seed(dist.rank_seed(cfg.seed))  # each rank its own scenes
    full = preset_scene(cfg.env)
    levels = [full.noise * i / 4 for i in range(5)]  # 0 .. the preset's level: find digits first
    samplers = [SceneSampler(dataclasses.replace(full, noise=n), split=cfg.split, device=device) for n in levels]
    net = seeded_init(cfg.seed, lambda: SceneClassifier(width=cfg.width)).to(device)
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
        for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="fullview",
                         disable=not dist.is_main()):
            if stop.requested(step):
                save(step)
                stop.exit(step=step, resume=files.resume)
            level = min(4, int(5 * step / max(1.0, cfg.curriculum * cfg.steps))) if cfg.curriculum > 0 else 4
            b = sample_scenes(samplers[level], batch, gen)
            loss = F.cross_entropy(model(b.scene), b.label)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 50 == 0:
                tb.add_scalar("train/loss", loss.item(), step)
                tb.add_scalar("train/noise", levels[level], step)
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                save(step + 1)
    wall = time.perf_counter() - t0
    if not dist.is_main():  # rank 0 scores and writes the checkpoint
        return
    val = SceneSampler(preset_scene(cfg.env), split=cfg.val_split, device=device)
    acc = accuracy(net, val, cfg.eval_scenes, torch.Generator(device=device).manual_seed(12345))
    tb.add_scalar("val/accuracy", acc, cfg.steps)
    tb.close()
    meta = run_meta(cfg, device=device, wall=wall, scores={"val_accuracy": acc})
    save_checkpoint(files.out, agent="fullview", config={"net": net.config, "train": dataclasses.asdict(cfg)},
                    weights={"net": net.state_dict()}, meta=meta)
    print(f"fullview CNN: held-out accuracy {acc:.4f} ({cfg.eval_scenes} scenes of {cfg.env}, {cfg.val_split}); "
          f"{wall:.0f} s on {device}; wrote {files.out}")
    finish_run(files)


if __name__ == "__main__":
    main(parse_config(Config))
