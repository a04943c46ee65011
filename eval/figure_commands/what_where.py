"""The What/Where figures of Daucé et al. 2020, regenerated, with the numbers set beside the paper's.

    python eval/figures.py what-where                # full (55x55 map, 500 episodes per point)
    python eval/figures.py what-where --quick        # CPU: coarser map, fewer episodes per curve point
    python eval/figures.py what-where --out docs --overwrite   # the documentation's figures

Writes into ``--out`` (default runs/figures/what_where/; its files are replaced only with
``--overwrite``): what_where_contrast.png (the paper's contrast figure: the digit centred under the
fovea, no saccade, at contrast 0.3 / 0.5 / 0.7, at noise 0.75 (v0) and 1.0 (the paper's), beside
the paper's numbers), what_where_accuracy_map.png (What's accuracy vs the shift between
fixation and digit centre), what_where_eccentricity_c{0.3,0.5,0.7}.png (accuracy vs
eccentricity after at most 0..3 saccades at each contrast) and what_where_results.json
(every number). All episodes run through agents.rollout (SaccadeMNIST-v0, test split); the
numbers set beside the paper's (the contrast figure, the 30-40 px and overall numbers) play
every one of the 10,000 test digits once.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch

from agents import what_where as ww
from agents.baselines import load_agent as load_baseline
from agents.baselines import load_foveal
from agents.cli import check_ranges, output_file, resolve_device
from agents.rollout import evaluate, make_env, run_episodes, split_size
from agents.scenes import preset_scene
from saccade_env.scene import SceneSampler

CONTRASTS = (0.3, 0.5, 0.7)
PAPER_CONTRAST = {0.3: 0.53, 0.5: 0.82, 0.7: 0.92}  # Daucé et al. 2020: centred digit, no saccade, noise 1.0
BUDGETS = (0, 1, 2, 3)
COLOURS = [(200, 120, 30), (40, 160, 40), (30, 30, 220), (160, 40, 160)]  # BGR


def accuracy_at(agent, *, budget: int, ecc: np.ndarray, contrast: float, seed: int, batch: int = 500,
                every_digit: bool = False) -> float:
    """Accuracy of ``agent`` over episodes whose digits sit at the eccentricities ``ecc`` (px);
    with ``every_digit``, episode j shows test digit j (``ecc`` then has one entry per test digit)."""
    venv = make_env("SaccadeMNIST-v0", agent=agent, num_envs=min(batch, len(ecc)), max_saccades=budget,
                    split="test", contrast=contrast)
    B, correct = venv.num_envs, []
    for w in range(0, len(ecc), B):
        e = np.resize(ecc[w:w + B], B)  # the last wave is padded, then cut
        options = {"eccentricity": e.astype(np.float32)}
        if every_digit:
            options["digit_index"] = np.minimum(np.arange(w, w + B), len(ecc) - 1)
        ep = run_episodes(venv, agent, seed=seed + w, options=options)
        correct.append(ep.correct.cpu().numpy()[: min(B, len(ecc) - w)])
    venv.close()
    return float(np.concatenate(correct).mean())


def line_plot(path: Path, xs, curves: dict, *, title: str, xlabel: str, ylabel: str, ref: dict | None = None) -> None:
    """A small line chart drawn with OpenCV: ``curves`` name -> y values (0..1) over ``xs``."""
    W, H, L, R, T, Bm = 560, 400, 60, 150, 40, 50
    img = np.full((H, W, 3), 255, np.uint8)
    x0, x1 = min(xs), max(xs)
    px = lambda x: int(L + (x - x0) / (x1 - x0) * (W - L - R))
    py = lambda y: int(H - Bm - y * (H - T - Bm))
    for y in np.linspace(0, 1, 6):
        cv2.line(img, (L, py(y)), (W - R, py(y)), (225, 225, 225), 1)
        cv2.putText(img, f"{y:.1f}", (L - 35, py(y) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    for x in xs:
        cv2.putText(img, f"{x:g}", (px(x) - 8, H - Bm + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.rectangle(img, (L, T), (W - R, H - Bm), (0, 0, 0), 1)
    for i, (name, ys) in enumerate(curves.items()):
        c = COLOURS[i % len(COLOURS)]
        pts = np.array([(px(x), py(y)) for x, y in zip(xs, ys)], np.int32)
        cv2.polylines(img, [pts], False, c, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, tuple(int(v) for v in p), 3, c, -1)
        cv2.putText(img, name, (W - R + 10, T + 20 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, c, 1, cv2.LINE_AA)
    for name, (rx, ry) in (ref or {}).items():
        cv2.drawMarker(img, (px(rx), py(ry)), (0, 0, 0), cv2.MARKER_STAR, 10, 1)
    cv2.putText(img, title, (L, T - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (L + 120, H - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, ylabel, (4, T - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def map_image(path: Path, acc: np.ndarray, *, radius: int, title: str) -> None:
    """The accuracy map, viridis, 0 to 1, with its scale and the fovea's extent (28 px) outlined."""
    size = 360
    big = cv2.resize((acc.clip(0, 1) * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    img = np.full((size + 70, size + 90, 3), 255, np.uint8)
    img[40:40 + size, 10:10 + size] = cv2.applyColorMap(big, cv2.COLORMAP_VIRIDIS)
    half = 14 / radius * size / 2
    c = 10 + size // 2, 40 + size // 2
    cv2.rectangle(img, (int(c[0] - half), int(c[1] - half)), (int(c[0] + half), int(c[1] + half)), (255, 255, 255), 1)
    bar = cv2.applyColorMap(np.linspace(255, 0, size).astype(np.uint8)[:, None].repeat(16, 1), cv2.COLORMAP_VIRIDIS)
    img[40:40 + size, size + 25:size + 41] = bar
    for v in (0.0, 0.5, 1.0):
        cv2.putText(img, f"{v:.1f}", (size + 45, int(40 + (1 - v) * (size - 1)) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, title, (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"shift x, y: -{radius}..{radius} px (box: the 28 px fovea)", (10, size + 60),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def contrast_figure(foveal: str | None, device: str, out: Path) -> dict:
    """The paper's contrast figure: the ``center`` agent (What on the centred fovea), the digit at
    the scene's centre, no saccade, every test digit once, at each contrast and noise 0.75 / 1.0."""
    center = load_baseline("center", foveal, device=device)
    curves = {}
    for noise in (0.75, 1.0):
        curves[f"noise {noise}"] = [evaluate(center, budget=0, episodes=None, device=device, seed=0,
                                             placement="center", contrast=c, noise=noise).accuracy for c in CONTRASTS]
    line_plot(out / "what_where_contrast.png", list(CONTRASTS), curves,
              title="What, centred digit, no saccade (stars: the paper, noise 1.0)", xlabel="contrast",
              ylabel="accuracy", ref={f"paper {c}": (c, v) for c, v in PAPER_CONTRAST.items()})
    print("contrast figure: " + "; ".join(f"{k}: " + " ".join(f"{v:.4f}" for v in ys) for k, ys in curves.items()),
          flush=True)
    return {"contrasts": list(CONTRASTS), "paper_noise_1.0": [PAPER_CONTRAST[c] for c in CONTRASTS],
            "episodes": split_size("test"), **curves}


@dataclass(frozen=True)
class Config:
    """The What/Where figures of Daucé et al. 2020, regenerated, with the numbers set beside the paper's."""

    quick: bool = field(default=False, metadata={
        "help": "coarser map (3 px), eccentricities every 10 px, 150 episodes per point"})
    episodes: int | None = field(default=None, metadata={"min": 1, "help": "episodes per point (default 500, quick 150)"})
    overall: int | None = field(default=None, metadata={
        "min": 1, "help": "episodes of the overall numbers (default 5000, quick 1000)"})
    checkpoint: str = field(default="", metadata={"help": "Where checkpoint (default checkpoints/what_where.pt)"})
    foveal: str = field(default="", metadata={"help": "What checkpoint (default checkpoints/foveal.pt)"})
    out: str = field(default="runs/figures/what_where", metadata={"help": "folder of the PNGs and the JSON"})
    overwrite: bool = field(default=False, metadata={"help": "replace the files of an earlier run in --out"})
    device: str = field(default="cpu", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=1, metadata={"min": 1, "help": "torch CPU threads"})

    def __post_init__(self) -> None:
        check_ranges(self)


OUTPUTS = ("what_where_contrast.png", "what_where_accuracy_map.png",
           *(f"what_where_eccentricity_c{c}.png" for c in CONTRASTS), "what_where_results.json")


def main(a: Config) -> None:
    a = SimpleNamespace(**{**dataclasses.asdict(a), "checkpoint": a.checkpoint or None, "foveal": a.foveal or None,
                           "device": str(resolve_device(a.device))})  # what the loaders take
    out = Path(a.out)
    for name in OUTPUTS:  # checked before any work
        output_file(out / name, overwrite=a.overwrite)
    torch.set_num_threads(a.threads)
    n = a.episodes or (150 if a.quick else 500)
    n_all = a.overall or (1000 if a.quick else 5000)
    res: dict = {"episodes_per_point": n, "overall_episodes": n_all, "device": a.device, "threads": a.threads}
    t0 = time.perf_counter()
    # --- What's accuracy map over shifts (test digits, contrast 0.7)
    what = load_foveal(a.foveal, device=a.device)
    radius, spacing = 27, (3 if a.quick else 1)
    sampler = SceneSampler(preset_scene("SaccadeMNIST-v0"), split="test", device=a.device)
    b = sampler.sample(torch.rand(100 if a.quick else 200, sampler.n_uniforms, generator=torch.Generator().manual_seed(7)))
    acc = ww.what_accuracy_map(what, b.scene, b.label, b.offset, radius=radius, spacing=spacing, pad=sampler.cfg.background)
    res["accuracy_map"] = {"radius_px": radius, "spacing_px": spacing, "scenes": int(b.scene.shape[0]),
                           "centre": float(acc[acc.shape[0] // 2, acc.shape[1] // 2]), "map": acc.tolist()}
    map_image(out / "what_where_accuracy_map.png", acc.cpu().numpy(), radius=radius,
              title=f"What accuracy vs shift ({acc.shape[0]}x{acc.shape[1]}, every {spacing} px, contrast 0.7)")
    # --- accuracy vs eccentricity, 0..3 saccades, 3 contrasts
    agent = ww.load_agent(a.checkpoint, device=a.device, foveal_path=a.foveal)
    rng = np.random.default_rng(0)
    eccs = [0, 10, 20, 30, 40] if a.quick else [0, 5, 10, 15, 20, 25, 30, 35, 40]
    res["eccentricity"] = {}
    for c in CONTRASTS:
        curves = {}
        for k in BUDGETS:
            curves[f"{k} saccades"] = [accuracy_at(agent, budget=k, ecc=np.full(n, float(e)), contrast=c, seed=100)
                                       for e in eccs]
        res["eccentricity"][str(c)] = {"eccentricity_px": eccs, **curves}
        print(f"contrast {c}: " + "; ".join(f"{k}: " + " ".join(f"{v:.2f}" for v in ys) for k, ys in curves.items()),
              flush=True)
    for c in CONTRASTS:
        line_plot(out / f"what_where_eccentricity_c{c}.png", eccs,
                  {k: v for k, v in res["eccentricity"][str(c)].items() if k != "eccentricity_px"},
                  title=f"What/Where, contrast {c}: accuracy vs eccentricity", xlabel="eccentricity (px)",
                  ylabel="accuracy")
    # --- the numbers (contrast 0.7)
    n_test = split_size("test")  # beside the paper's numbers: every test digit once
    near = rng.uniform(0, 5, n_test)
    far = rng.uniform(30, 40, n_test)
    nums = {"centred_ecc<5_budget0": accuracy_at(agent, budget=0, ecc=near, contrast=0.7, seed=200, every_digit=True),
            "ecc30-40_budget1": accuracy_at(agent, budget=1, ecc=far, contrast=0.7, seed=300, every_digit=True),
            "ecc30-40_budget3": accuracy_at(agent, budget=3, ecc=far, contrast=0.7, seed=300, every_digit=True)}
    print(json.dumps(nums), flush=True)
    r3 = evaluate(agent, budget=3, episodes=None, device=a.device, seed=0)
    oracle = load_baseline("oracle", a.foveal, device=a.device)
    o3 = evaluate(oracle, budget=3, episodes=None, device=a.device, seed=0)
    nums.update({"overall_budget3": r3.accuracy, "overall_budget3_interval": r3.interval,
                 "oracle_budget3": o3.accuracy, "oracle_budget3_interval": o3.interval,
                 "oracle_ecc30-40": accuracy_at(oracle, budget=3, ecc=far, contrast=0.7, seed=300, every_digit=True),
                 "mean_saccades_budget3": float(r3.n_saccades.mean()), "decisions_per_s_budget3": r3.decisions_per_s})
    # --- options: inhibition of return, evidence accumulation, Where's mirrored second view
    options = {"ior": dict(inhibition_of_return=True), "accumulate": dict(accumulate=True),
               "ior+accumulate": dict(inhibition_of_return=True, accumulate=True)}
    if agent.where.cfg.sensor == "periphery":  # the mirror is the periphery's (a glimpse Where has none)
        options["mirror"] = dict(mirror_views=True)
        options["mirror+accumulate"] = dict(mirror_views=True, accumulate=True)
    for name, opts in options.items():
        ag = ww.load_agent(a.checkpoint, device=a.device, foveal_path=a.foveal, **opts)
        nums[f"{name}_overall_budget3"] = evaluate(ag, budget=3, episodes=n_all, device=a.device, seed=0).accuracy
        nums[f"{name}_ecc30-40_budget1"] = accuracy_at(ag, budget=1, ecc=far, contrast=0.7, seed=300)
        nums[f"{name}_ecc30-40_budget3"] = accuracy_at(ag, budget=3, ecc=far, contrast=0.7, seed=300)
    res["numbers"] = nums
    res["contrast"] = contrast_figure(a.foveal, a.device, out)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "what_where_results.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(nums, indent=1))

