"""Train the fullview baseline: a CNN that sees the whole scene at full resolution, no retina.

What a user would pick instead of an eye; privileged in every table, since no eye sees
the whole scene sharply at once.

    python train/fullview.py                     # writes checkpoints/fullview.pt
    python train/fullview.py --resume            # continues runs/fullview/resume.pt
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from agents.checkpoint import save_checkpoint
from agents.cli import check_ranges, cosine, load_resume, parse_config, resolve_device, run_dir, run_meta, save_resume, writer
from agents.nets import SceneClassifier
from agents.scenes import preset_scene, sample_scenes
from saccade_env.scene import SceneSampler


@dataclass(frozen=True)
class Config:
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
    eval_scenes: int = field(default=4000, metadata={"min": 1, "help": "test scenes for the final report"})
    checkpoint_every: int = field(default=250, metadata={"min": 1, "help": "steps between resume files"})
    runs: str = field(default="runs", metadata={"help": "directory of TensorBoard logs and resume files"})
    name: str = field(default="fullview", metadata={"help": "run name (runs/<name>)"})
    out: str = field(default="checkpoints/fullview.pt", metadata={"help": "the shipped checkpoint"})
    resume: bool = field(default=False, metadata={"help": "continue from runs/<name>/resume.pt"})

    def __post_init__(self):
        check_ranges(self)
        preset_scene(self.env)  # raises a clear error for an unknown preset


@torch.no_grad()
def test_accuracy(net: SceneClassifier, sampler: SceneSampler, n: int, gen: torch.Generator) -> float:
    net.eval()
    correct = 0
    for i in range(0, n, 250):
        b = sample_scenes(sampler, min(250, n - i), gen)
        correct += int((net(b.scene).argmax(1) == b.label).sum())
    net.train()
    return correct / n


def main(cfg: Config) -> None:
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    full = preset_scene(cfg.env)
    levels = [full.noise * i / 4 for i in range(5)]  # 0 .. the preset's level: find digits first
    samplers = [SceneSampler(dataclasses.replace(full, noise=n), split="train", device=device) for n in levels]
    net = SceneClassifier(width=cfg.width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = cosine(opt, cfg.steps)
    rdir = run_dir(cfg.runs, cfg.name)
    start, elapsed = 0, 0.0
    if cfg.resume:
        start, elapsed = load_resume(rdir / "resume.pt", device=device, net=net, opt=opt, sched=sched, gen=gen)
    tb = writer(rdir)
    t0 = time.perf_counter() - elapsed
    for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="fullview"):
        level = min(4, int(5 * step / max(1.0, cfg.curriculum * cfg.steps))) if cfg.curriculum > 0 else 4
        b = sample_scenes(samplers[level], cfg.batch_size, gen)
        loss = F.cross_entropy(net(b.scene), b.label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            tb.add_scalar("train/loss", loss.item(), step)
            tb.add_scalar("train/noise", levels[level], step)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_resume(rdir / "resume.pt", step=step + 1, elapsed=time.perf_counter() - t0, config=cfg,
                        net=net, opt=opt, sched=sched, gen=gen)
    wall = time.perf_counter() - t0
    test = SceneSampler(preset_scene(cfg.env), split="test", device=device)
    acc = test_accuracy(net, test, cfg.eval_scenes, torch.Generator(device=device).manual_seed(12345))
    tb.add_scalar("test/accuracy", acc, cfg.steps)
    tb.close()
    meta = run_meta(cfg, device=device, wall=wall, scores={"test_accuracy": acc})
    save_checkpoint(cfg.out, agent="fullview", config={"net": net.config, "train": dataclasses.asdict(cfg)},
                    weights={"net": net.state_dict()}, meta=meta)
    print(f"fullview CNN: test accuracy {acc:.4f} ({cfg.eval_scenes} scenes of {cfg.env}); "
          f"{wall:.0f} s on {device}; wrote {cfg.out}")


if __name__ == "__main__":
    main(parse_config(Config))
