"""RAM's glimpse extraction: samples/s of the batched ``saccade_env.retina.glimpse`` versus
a per-sample Python loop of slicing (what RAM reimplementations typically do), on CPU or CUDA.

    python bench/ram_glimpse.py                       # the three RAM sensors, batch 1024, CPU
    python bench/ram_glimpse.py --batch 256 --repeats 5 --threads 1
    python bench/ram_glimpse.py --device cuda --batch 16384

Both produce the same patches (checked here before timing): the loop pads the batch of
scenes once, then for every sample and scale slices the (size * 2**j)-px square around the
fixation and box-averages it down to size x size.  Timings are the best of ``--repeats``
runs (the machine may be shared); results go to stdout as a Markdown table and JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from agents.cli import at_least
from saccade_env.retina import glimpse

SENSORS = {"Centered28 (8x8, 1 scale)": (28, 8, 1), "Translated60 (12x12, 3 scales)": (60, 12, 3),
           "v0 (12x12, 4 scales)": (128, 12, 4)}


def loop_glimpse(scenes: torch.Tensor, fixations: torch.Tensor, *, size: int, scales: int, pad: float
                 ) -> torch.Tensor:
    """(B, S, S), (B, 2) -> (B, scales, size, size), one sample and one scale at a time."""
    B, S, _ = scenes.shape
    M = size << scales
    padded = F.pad(scenes, (M, M, M, M), value=pad)
    off = torch.round(fixations * (S / 2)).long().tolist()
    out = []
    for i in range(B):
        dx, dy = off[i]
        patches = []
        for j in range(scales):
            side = size << j
            top, left = M + S // 2 - side // 2 + dy, M + S // 2 - side // 2 + dx
            patch = padded[i, top:top + side, left:left + side]
            patches.append(F.avg_pool2d(patch[None, None], 1 << j)[0, 0])
        out.append(torch.stack(patches))
    return torch.stack(out)


def rate(fn, repeats: int, batch: int, sync=lambda: None) -> float:
    fn(); sync()  # warm-up (CUDA kernels, allocator)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(); sync()
        best = min(best, time.perf_counter() - t0)
    return batch / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=at_least(1), default=1024)
    ap.add_argument("--repeats", type=at_least(1), default=5)
    ap.add_argument("--threads", type=at_least(1), default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this torch sees no CUDA device; run on a GPU machine or use --device cpu")
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    rows = []
    for name, (S, size, scales) in SENSORS.items():
        scenes = torch.rand(args.batch, S, S, generator=g).to(dev)
        fix = (torch.round((torch.rand(args.batch, 2, generator=g) * 2 - 1) * (S / 2)) / (S / 2)).to(dev)
        ref = loop_glimpse(scenes, fix, size=size, scales=scales, pad=0.0)
        torch.testing.assert_close(glimpse(scenes, fix, size=size, scales=scales), ref, atol=1e-6, rtol=0)
        batched = rate(lambda: glimpse(scenes, fix, size=size, scales=scales), args.repeats, args.batch, sync)
        loop = rate(lambda: loop_glimpse(scenes, fix, size=size, scales=scales, pad=0.0), args.repeats, args.batch,
                    sync)
        rows.append({"sensor": name, "batch": args.batch, "batched_per_s": round(batched),
                     "loop_per_s": round(loop), "speedup": round(batched / loop, 1)})
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{args.threads} CPU thread(s)"
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{where}, batch {args.batch}, best of {args.repeats}\n")
    print("| sensor | batched glimpse (samples/s) | per-sample loop (samples/s) | speed-up |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['sensor']} | {r['batched_per_s']:,} | {r['loop_per_s']:,} | {r['speedup']}x |")
    print("\n" + json.dumps(rows))


if __name__ == "__main__":
    main()
