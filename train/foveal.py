"""Train the foveal classifier: the What pathway, shared by the foveal baselines and What/Where.

As in Daucé et al. 2020, the classifier reads 28x28 foveae of SaccadeMNIST scenes whose
fixation is shifted from the digit's centre, with a shift spread that grows during
training, at several digit contrasts; a fraction of foveae land anywhere in the scene
(mostly noise), so the classifier learns to be unsure where there is no digit.

    python train/foveal.py                       # writes checkpoints/foveal.pt
    python train/foveal.py --steps 200 --out /tmp/foveal.pt
    python train/foveal.py --resume              # continues runs/foveal/resume.pt
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from agents.checkpoint import save_checkpoint
from agents.cli import cosine, load_resume, parse_config, resolve_device, run_dir, run_meta, save_resume, writer
from agents.nets import FovealClassifier
from agents.scenes import preset_scene, sample_scenes
from saccade_env.retina import fovea
from saccade_env.scene import SceneSampler, offsets_to_xy


@dataclass(frozen=True)
class Config:
    """Train the foveal classifier (What pathway) on shifted digits in SaccadeMNIST scenes."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "preset whose scenes are used"})
    steps: int = field(default=3000, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=128, metadata={"help": "foveae per step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate (cosine decay to 0)"})
    shift_start: float = field(default=1.0, metadata={"help": "std (px, per axis) of the fixation's shift "
                                                                "from the digit centre at the start"})
    shift_end: float = field(default=6.0, metadata={"help": "std (px) reached at 60%% of training"})
    anywhere: float = field(default=0.1, metadata={"help": "fraction of foveae at a uniform random place"})
    contrasts: tuple[float, ...] = field(default=(0.3, 0.5, 0.7, 1.0), metadata={"help": "digit contrasts"})
    width: int = field(default=24, metadata={"help": "channels of the first conv layer"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=1, metadata={"help": "CPU threads for torch"})
    eval_scenes: int = field(default=4000, metadata={"help": "test scenes for the final report"})
    checkpoint_every: int = field(default=250, metadata={"help": "steps between resume files"})
    runs: str = field(default="runs", metadata={"help": "directory of TensorBoard logs and resume files"})
    name: str = field(default="foveal", metadata={"help": "run name (runs/<name>)"})
    out: str = field(default="checkpoints/foveal.pt", metadata={"help": "the shipped checkpoint"})
    resume: bool = field(default=False, metadata={"help": "continue from runs/<name>/resume.pt"})

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be >= 1")
        preset_scene(self.env)  # raises a clear error for an unknown preset
        if not all(0.0 < c <= 1.0 for c in self.contrasts):
            raise ValueError(f"--contrasts must lie in (0, 1], got {self.contrasts}")


def make_samplers(cfg: Config, split: str, device: torch.device) -> list[SceneSampler]:
    """One scene sampler per contrast, on the preset's scenes."""
    return [SceneSampler(preset_scene(cfg.env, contrast=c), split=split, device=device) for c in cfg.contrasts]


def foveal_batch(samplers: list[SceneSampler], n: int, shift_px: float, anywhere: float,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` foveae (n, 1, 28, 28) near their digits, and labels (n,)."""
    dev = samplers[0].device
    per = math.ceil(n / len(samplers))
    views, labels = [], []
    for s in samplers:
        batch = sample_scenes(s, per, gen)
        size = s.cfg.size
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
def centre_accuracy(net: FovealClassifier, sampler: SceneSampler, n: int, gen: torch.Generator) -> float:
    """Accuracy on ``n`` test scenes with the fovea on the digit's centre."""
    net.eval()
    correct = 0
    for i in range(0, n, 500):
        views, labels = foveal_batch([sampler], min(500, n - i), 0.0, 0.0, gen)
        correct += int((net(views).argmax(1) == labels).sum())
    net.train()
    return correct / n


def main(cfg: Config) -> None:
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    samplers = make_samplers(cfg, "train", device)
    net = FovealClassifier(width=cfg.width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = cosine(opt, cfg.steps)
    rdir = run_dir(cfg.runs, cfg.name)
    start, elapsed = 0, 0.0
    if cfg.resume:
        start, elapsed = load_resume(rdir / "resume.pt", device=device, net=net, opt=opt, sched=sched, gen=gen)
    tb = writer(rdir)
    t0 = time.perf_counter() - elapsed
    for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="foveal"):
        frac = min(1.0, step / (0.6 * cfg.steps))
        shift = cfg.shift_start + frac * (cfg.shift_end - cfg.shift_start)
        views, labels = foveal_batch(samplers, cfg.batch_size, shift, cfg.anywhere, gen)
        loss = F.cross_entropy(net(views), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            tb.add_scalar("train/loss", loss.item(), step)
            tb.add_scalar("train/shift_px", shift, step)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            save_resume(rdir / "resume.pt", step=step + 1, elapsed=time.perf_counter() - t0, config=cfg,
                        net=net, opt=opt, sched=sched, gen=gen)
    wall = time.perf_counter() - t0
    test = make_samplers(dataclasses.replace(cfg, contrasts=(0.7,)), "test", device)[0]
    acc = centre_accuracy(net, test, cfg.eval_scenes, torch.Generator(device=device).manual_seed(12345))
    tb.add_scalar("test/centre_accuracy_c0.7", acc, cfg.steps)
    tb.close()
    meta = run_meta(cfg, device=device, wall=wall, scores={"test_centre_accuracy_contrast_0.7": acc})
    save_checkpoint(cfg.out, agent="foveal", config={"width": cfg.width, "train": dataclasses.asdict(cfg)},
                    weights={"net": net.state_dict()}, meta=meta)
    print(f"foveal classifier: test accuracy with the fovea on the digit (contrast 0.7, {cfg.eval_scenes} "
          f"scenes) {acc:.4f}; {wall:.0f} s on {device}; wrote {cfg.out}")


if __name__ == "__main__":
    main(parse_config(Config))
