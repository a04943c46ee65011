"""Train the Where pathway of the What/Where saccader (Daucé, Albiges & Perrinet 2020).

What (the foveal classifier) is trained by ``train/foveal.py`` and read from
``checkpoints/foveal.pt``. This script:

1. measures What's accuracy map: its accuracy as a function of the shift between fixation
   and digit centre, on a grid of shifts, on training scenes (the paper's 55x55 map);
2. draws training scenes from the preset's scene sampler and reads the periphery at a
   fixation (the scene's centre, as in the paper, or near the digit / anywhere, the eye's
   positions after a saccade), and builds each one's Where target: the accuracy map read
   at the shift every cell's saccade would leave (``agents.what_where.where_targets``);
3. fits Where to those targets (binary cross-entropy on the soft targets, as the paper).

    python train/what_where.py                  # writes runs/what_where/what_where.pt
    python train/what_where.py --promote        # ... and copies it over the shipped checkpoints/what_where.pt
    python train/what_where.py --scenes 2000 --steps 200 --out /tmp/ww.pt
    python train/what_where.py --resume         # continues runs/what_where/resume.pt
    python train/what_where.py --arch glimpse --channels 24 --layers 4 --scenes 60000 --steps 4000 \
        --name what_where_glimpse       # Where on the env's glimpse (not the paper's sensor)
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from agents import distributed as dist
from agents import what_where as ww
from agents.baselines import load_foveal
from agents.checkpoint import CheckpointError, atomic_save, load_checkpoint, safe_load, save_checkpoint
from agents.cli import (GracefulExit, RunOptions, budget_done, check_ranges, cosine_factor, finish_run, load_resume,
                        parse_config, prepare_run, resolve_device, run_meta, save_resume, seeded_init, writer)
from agents.scenes import preset_scene, sample_scenes
from saccade_env.core import make_config
from saccade_env.retina import Periphery, glimpse
from saccade_env.scene import SceneSampler


@dataclass(frozen=True)
class Config(RunOptions):
    """Train Where: periphery -> What's accuracy after a saccade to each log-polar cell."""

    env: str = field(default="SaccadeMNIST-v0", metadata={"help": "preset whose scenes are used"})
    foveal: str = field(default="", metadata={"help": "the What pathway, a train/foveal.py checkpoint (default: the "
                                                      "shipped foveal.pt)"})
    noise: float | None = field(default=None, metadata={"help": "override the preset's noise level"})
    contrast: float | None = field(default=None, metadata={"help": "override the preset's digit contrast"})
    scenes: int = field(default=24000, metadata={"min": 1, "help": "training samples (scene + fixation)"})
    split: str = field(default="train[:55000]", metadata={"help": "digits of the training samples"})
    val_split: str = field(default="train[55000:]", metadata={"help": "held-out digits (validation samples and the "
                                                                       "final score)"})
    val_scenes: int = field(default=2000, metadata={"min": 1, "help": "held-out samples (--val-split digits)"})
    centre: float = field(default=0.5, metadata={
        "min": 0, "max": 1, "help": "fraction of fixations at the scene's centre"})
    near: float = field(default=0.35, metadata={
        "min": 0, "max": 1, "help": "fraction near the digit (the rest: anywhere)"})
    near_px: float = field(default=8.0, metadata={"min": 0, "help": "std (px) of a near fixation around the digit"})
    map_radius: int = field(default=40, metadata={"min": 1, "help": "accuracy map: shifts up to this (px)"})
    map_spacing: int = field(default=2, metadata={"min": 1, "help": "accuracy map: px between shifts"})
    map_scenes: int = field(default=96, metadata={"min": 1, "help": "accuracy map: scenes read at every shift"})
    arch: str = field(default="conv", metadata={
        "help": "conv or mlp (the paper's), both on the periphery; or glimpse (reads the env's multi-scale glimpse "
                "instead: not the paper's sensor)", "choices": ("conv", "mlp", "glimpse")})
    channels: int = field(default=48, metadata={"min": 1, "help": "conv width"})
    layers: int = field(default=5, metadata={"min": 1, "help": "conv depth"})
    hidden: int = field(default=1000, metadata={"min": 1, "help": "mlp hidden width"})
    glimpse_size: int = field(default=16, metadata={"min": 2, "help": "glimpse arch: patch side (samples)"})
    glimpse_scales: int = field(default=4, metadata={"min": 1, "max": 6, "help": "glimpse arch: patches, the j-th "
                                                                                "covering glimpse_size * 2**j px"})
    init: str = field(default="", metadata={"help": "start Where from this what_where checkpoint (fine-tune)"})
    data_cache: str = field(default="", metadata={"help": "keep the generated samples in this file and reuse "
                                                          "them when the data settings match (What-independent)"})
    cell_ce: float = field(default=1.0, metadata={
        "min": 0, "help": "weight of the cell-choice loss: cross-entropy between softmax(logits over cells) and "
                          "softmax(targets / cell_tau)"})
    cell_tau: float = field(default=0.05, metadata={"above": 0, "help": "temperature of the cell-choice targets"})
    steps: int = field(default=3000, metadata={"min": 1, "help": "optimiser steps"})
    minutes: float = field(default=0.0, metadata={
        "min": 0, "help": "stop after this wall time, the map and data generation included (0: no limit)",
        "aliases": ("--max-minutes",)})
    batch_size: int = field(default=128, metadata={"min": 1, "help": "samples per step"})
    lr: float = field(default=2e-3, metadata={"above": 0, "help": "Adam learning rate (cosine decay)"})
    seed: int = field(default=0, metadata={"min": 0, "help": "random seed"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=1, metadata={"min": 1, "help": "CPU threads for torch"})
    eval_episodes: int = field(default=1000, metadata={"min": 0, "help": "held-out episodes for the final score "
                                                                        "(0: skip)"})
    log_every: int = field(default=100, metadata={"min": 1, "help": "steps between validation logs"})
    save_every: int = field(default=250, metadata={"min": 1, "help": "steps between resume files",
                                                   "aliases": ("--checkpoint-every",)})

    def __post_init__(self):
        check_ranges(self)
        if self.centre + self.near > 1:
            raise ValueError(f"--centre and --near are fractions summing to at most 1, got {self.centre} + {self.near}")
        if self.arch == "glimpse" and self.glimpse_size % 2:
            raise ValueError(f"--glimpse-size must be even (the env's glimpse_size is), got {self.glimpse_size}")
        if self.map_spacing > self.map_radius:
            raise ValueError(f"--map-spacing ({self.map_spacing} px) must not exceed --map-radius ({self.map_radius} px)")


def scene_config(cfg: Config):
    over = {k: getattr(cfg, k) for k in ("noise", "contrast") if getattr(cfg, k) is not None}
    return preset_scene(cfg.env, **over)


def make_sampler(cfg: Config, split: str, device: torch.device) -> SceneSampler:
    return SceneSampler(scene_config(cfg), split=split, device=device)


def accuracy_map(what, sampler: SceneSampler, cfg: Config, gen: torch.Generator) -> torch.Tensor:
    """(M, M) What's accuracy vs shift, on ``cfg.map_scenes`` scenes of ``sampler``."""
    b = sample_scenes(sampler, cfg.map_scenes, gen)
    return ww.what_accuracy_map(what, b.scene, b.label, b.offset, radius=cfg.map_radius,
                                spacing=cfg.map_spacing, pad=sampler.cfg.background)


def fixations(offset: torch.Tensor, cfg: Config, scene_size: int, reach: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 2) scene coordinates: centre, near the digit (``offset`` (n, 2) px) or anywhere."""
    n, dev = offset.shape[0], offset.device
    u = torch.rand(n, 1, generator=gen, device=dev)
    near = offset.float() + cfg.near_px * torch.randn(n, 2, generator=gen, device=dev)
    anywhere = (torch.rand(n, 2, generator=gen, device=dev) * 2 - 1) * reach
    px = torch.where(u < cfg.centre, torch.zeros_like(near), torch.where(u < cfg.centre + cfg.near, near, anywhere))
    return torch.round(px.clamp(-reach, reach)) / (scene_size / 2)


def where_config(cfg: Config) -> ww.WhereConfig:
    return ww.WhereConfig(arch=cfg.arch, channels=cfg.channels, layers=cfg.layers, hidden=cfg.hidden,
                          glimpse_size=cfg.glimpse_size, glimpse_scales=cfg.glimpse_scales)


def make_dataset(sampler: SceneSampler, periphery: Periphery, n: int, cfg: Config, gen: torch.Generator,
                 chunk: int = 512) -> dict[str, torch.Tensor]:
    """``n`` samples: what Where reads (``periphery`` (n, C, E, A) or, for ``--arch glimpse``,
    ``glimpse`` (n, k, g, g); float16), fixation (n, 2), offset (n, 2) px."""
    S, reach = sampler.cfg.size, ww.default_reach(sampler.cfg.size)
    sensor = where_config(cfg).sensor
    parts: dict[str, list] = {sensor: [], "fixation": [], "offset": []}
    for m in tqdm([min(chunk, n - i) for i in range(0, n, chunk)], desc="scenes", leave=False):
        b = sample_scenes(sampler, m, gen)
        fix = fixations(b.offset, cfg, S, reach, gen)
        if sensor == "glimpse":
            view = glimpse(b.scene, fix, size=cfg.glimpse_size, scales=cfg.glimpse_scales, pad=sampler.cfg.background)
        else:
            view = periphery.read(periphery.whiten(b.scene, pad=sampler.cfg.background), fix)
        parts[sensor].append(view.half()); parts["fixation"].append(fix); parts["offset"].append(b.offset)
    return {k: torch.cat(v) for k, v in parts.items()}


DATA_KEYS = ("env", "noise", "contrast", "split", "val_split", "scenes", "val_scenes", "centre", "near", "near_px", "seed")
GLIMPSE_KEYS = ("glimpse_size", "glimpse_scales")


def cached_data(cfg: Config, make, device: torch.device):
    """``make()`` -> (train, val) samples, read from / written to ``cfg.data_cache`` when given
    (the samples depend on the data settings and the seed only, not on What)."""
    key = {k: getattr(cfg, k) for k in DATA_KEYS}
    key["scene"] = dataclasses.asdict(scene_config(cfg))  # the display the samples were drawn from
    if where_config(cfg).sensor == "glimpse":  # a periphery cache keeps its key (and stays valid)
        key.update({k: getattr(cfg, k) for k in GLIMPSE_KEYS}, sensor="glimpse")
    path = Path(cfg.data_cache) if cfg.data_cache else None
    if path is not None and path.is_file():
        try:
            saved = safe_load(path, what="sample cache", fix="it is made again", map_location=device)
        except CheckpointError as err:
            print(f"--data-cache: {err}")
            saved = {}
        if isinstance(saved, dict) and saved.get("key") == key:
            return saved["train"], saved["val"]
    train, val = make()
    if path is not None and dist.is_main():  # under torchrun every rank made the same samples
        atomic_save({"key": key, "train": train, "val": val}, path)
    return train, val


def targets(data: dict, idx: torch.Tensor, acc_map: torch.Tensor, where: ww.WhereNet, cfg: Config) -> torch.Tensor:
    """(b, E, A) Where targets of samples ``idx``."""
    return ww.where_targets(acc_map, data["offset"][idx], data["fixation"][idx], where.grid,
                            spacing=cfg.map_spacing, floor=ww.map_floor(acc_map), scene_size=where.scene_size,
                            reach=where.reach)


def where_loss(logits: torch.Tensor, target: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Binary cross-entropy of every cell's predicted accuracy (the paper's loss), plus a
    cell-choice term: the map's few good cells are a small part of the BCE (most cells sit at
    the floor), the choice term makes the arg-max land on them sooner."""
    loss = F.binary_cross_entropy_with_logits(logits, target)
    if cfg.cell_ce:
        choice = F.softmax(target.flatten(1) / cfg.cell_tau, 1)
        loss = loss + cfg.cell_ce * -(choice * F.log_softmax(logits.flatten(1), 1)).sum(1).mean()
    return loss


@torch.no_grad()
def choice_quality(where: ww.WhereNet, data: dict, acc_map: torch.Tensor, cfg: Config) -> dict[str, float]:
    """Mean target accuracy of the cell Where picks; of a random cell (chance); of the best
    fixed cell (the prior, what a Where blind to the periphery can reach); of the best cell."""
    where.eval()
    got, total, best = 0.0, 0.0, 0.0
    n = data["fixation"].shape[0]
    for idx in torch.arange(n, device=data["fixation"].device).split(1024):
        t = targets(data, idx, acc_map, where, cfg).flatten(1)
        pick = where(data[where.cfg.sensor][idx].float(), data["fixation"][idx]).flatten(1).argmax(1)
        got += float(t.gather(1, pick[:, None]).sum()); total = total + t.sum(0); best += float(t.max(1).values.sum())
    where.train()
    return {"picked": got / n, "chance": float(total.mean()) / n, "prior": float(total.max()) / n, "best": best / n}


def main(cfg: Config) -> dict:
    shipped = "what_where_glimpse" if cfg.arch == "glimpse" else "what_where"
    files = prepare_run(cfg, default_name=shipped, checkpoint=f"{shipped}.pt")
    torch.manual_seed(dist.rank_seed(cfg.seed))  # the global stream too (dropout): a function of the seed (and rank)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    try:
        what = load_foveal(cfg.foveal or None, device=device)
    except CheckpointError as err:
        raise SystemExit(f"the What pathway is missing: {err}") from None
    seeded = lambda k: torch.Generator(device=device).manual_seed(cfg.seed * 10 + k)
    gen = seeded(dist.rank_seed(0))  # the training batches (each rank its own); the map and the data have their
    # own streams, alike on every rank
    env_cfg = make_config(scene=scene_config(cfg))
    periphery = Periphery(env_cfg.periphery, env_cfg.scene.size).to(device)
    train_s, val_s = make_sampler(cfg, cfg.split, device), make_sampler(cfg, cfg.val_split, device)
    t0 = time.perf_counter()
    # 1. the accuracy map and 2. the data (regenerated identically on --resume: a function of the seed)
    acc_map = accuracy_map(what, train_s, cfg, seeded(1))
    data, val = cached_data(cfg, lambda: (make_dataset(train_s, periphery, cfg.scenes, cfg, seeded(2)), make_dataset(
        val_s, periphery, cfg.val_scenes, cfg, seeded(3))), device)
    where = seeded_init(cfg.seed, lambda: ww.build_where(where_config(cfg), periphery=periphery,
                                                         scene_size=env_cfg.scene.size)).to(device)
    print(f"accuracy map and {cfg.scenes + cfg.val_scenes} {where.cfg.sensor} samples ready after "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    where.fit_input(data[where.cfg.sensor][:4096])
    if cfg.init:
        init = load_checkpoint(cfg.init, agent=ww.NAME, script=ww.SCRIPT)
        if ww.WhereConfig(**init["config"]["where"]) != where.cfg:
            raise SystemExit(f"--init {cfg.init} holds a Where built as {init['config']['where']}, this run builds "
                             f"{dataclasses.asdict(where.cfg)}: pass the same --arch, --channels, --layers, --hidden, "
                             f"--glimpse-size and --glimpse-scales as that run")
        where.load_state_dict(init["weights"]["where"])
    opt = torch.optim.Adam(where.parameters(), lr=cfg.lr)

    def set_lr(step: int) -> None:
        """Cosine decay to 0 over the steps or the wall-clock budget, whichever ends first."""
        done = budget_done(step, cfg.steps, dist.main_value(time.perf_counter() - t0), cfg.minutes * 60)
        for grp in opt.param_groups:
            grp["lr"] = cfg.lr * cosine_factor(done)

    start, elapsed = 0, time.perf_counter() - t0
    if files.continuing:
        start, elapsed = load_resume(files.resume, device=device, config=cfg, where=where, opt=opt, gen=gen)
    model, batch = dist.wrap(where), dist.local_batch(cfg.batch_size)  # under torchrun: DDP, a share of the batch
    t0 = time.perf_counter() - elapsed
    tb = writer(files.dir)
    tb.add_image("what_accuracy_map", acc_map[None].clamp(0, 1), 0)
    n = data["fixation"].shape[0]

    def save(step: int) -> None:
        save_resume(files.resume, step=step, elapsed=time.perf_counter() - t0, config=cfg, where=where, opt=opt, gen=gen)

    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="where", disable=not dist.is_main())
    with GracefulExit() as stop:
        for step in bar:
            if stop.requested(step):
                save(step)
                stop.exit(step=step, resume=files.resume)
            if cfg.minutes and dist.main_value(time.perf_counter() - t0) > cfg.minutes * 60:  # rank 0's clock
                save(step)
                bar.write(f"wall-clock budget of {cfg.minutes} min reached after {step} steps" + (
                    " (the accuracy map and the samples took all of it: raise --minutes, or lower --scenes or "
                    "--map-scenes)" if step == start else ""))
                break
            set_lr(step)
            idx = torch.randint(n, (batch,), generator=gen, device=device)
            logits = model(data[where.cfg.sensor][idx].float(), data["fixation"][idx])
            loss = where_loss(logits, targets(data, idx, acc_map, where, cfg), cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if dist.is_main() and (step % cfg.log_every == 0 or step + 1 == cfg.steps):
                tb.add_scalar("train/bce", loss.item(), step)
                for k, v in choice_quality(where, val, acc_map, cfg).items():
                    tb.add_scalar(f"val/target_accuracy_{k}", v, step)
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                save(step + 1)
    wall = time.perf_counter() - t0
    if not dist.is_main():  # rank 0 scores and writes the checkpoint
        return {}
    quality = choice_quality(where, val, acc_map, cfg)
    scores = {f"val_target_accuracy_{k}": round(v, 4) for k, v in quality.items()}
    conf = ww.checkpoint_config(where, env_cfg.periphery)
    conf.update(train=dataclasses.asdict(cfg), accuracy_map=acc_map.cpu())
    meta = run_meta(cfg, device=device, wall=wall, scores=scores)
    save_checkpoint(files.out, agent=ww.NAME, config=conf, weights={"where": where.state_dict()}, meta=meta)
    if cfg.eval_episodes:
        from agents.rollout import evaluate
        agent = ww.load_agent(files.out, device=device, foveal_path=cfg.foveal or None, checkpoint=shipped)
        res = evaluate(agent, budget=3, episodes=cfg.eval_episodes, device=device, seed=10_000, split=cfg.val_split)
        scores["val_accuracy_budget3"] = round(res.accuracy, 4)
        tb.add_scalar("val/accuracy_budget3", res.accuracy, cfg.steps)
        meta["scores"] = scores
        save_checkpoint(files.out, agent=ww.NAME, config=conf, weights={"where": where.state_dict()}, meta=meta)
    tb.close()
    print(f"where: {scores}; {wall:.0f} s on {device}; wrote {files.out}")
    finish_run(files)
    return scores


if __name__ == "__main__":
    main(parse_config(Config))
