"""Paired ms/image of the sampler options (the time column of docs/samplers.md): every option
through `InpaintPipeline.inpaint_tensors` on the same images, masks and seed, one batch, the
options' order reversed every other round so each sees the same load.

    python benchmarks/sampler_timing.py --images ../shared/datasets/cat-faces-64/val \\
        --masks out/val_masks --count 64 --steps 8,12,16 --rounds 2 --threads 2

Runs every step count to the end (no early stop), as the sweeps of that table do. Prints a line
per round to stderr and one JSON line to stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from maskgit_inpaint import InpaintPipeline
from maskgit_inpaint.experiments import load_eval_set
from maskgit_inpaint.masks import generate_masks
from maskgit_inpaint.precision import describe_processor

OPTIONS = {
    "default": {},
    "critic": {"critic_rounds": 1},
    "halton": {"order": "halton"},
    "halton+critic": {"order": "halton", "critic_rounds": 1},
    "remdm": {"remask": "remdm"},
    "remdm+critic": {"remask": "remdm", "critic_rounds": 1},
}


def synthetic_set(count: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images with random-walk holes: enough to run every option (smoke mode)."""
    g = torch.Generator().manual_seed(0)
    known = torch.from_numpy(generate_masks("random-walk", count, size, seed=0))
    return torch.rand(count, 3, size, size, generator=g), known


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", help="image folder (with --masks: white = hole, named as the images)")
    p.add_argument("--masks")
    p.add_argument("--count", type=int, default=64)
    p.add_argument("--steps", default="8", help="comma-separated step counts T [8]")
    p.add_argument("--options", default=",".join(OPTIONS), help=f"comma-separated, of {', '.join(OPTIONS)}")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="2 synthetic images, T = 2, one round: checks it runs")
    a = p.parse_args(argv)
    options = a.options.split(",")
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        p.error(f"unknown option(s) {', '.join(unknown)}; choose from {', '.join(OPTIONS)}")
    steps = [int(t) for t in a.steps.split(",")]
    torch.set_num_threads(a.threads)
    pipe = InpaintPipeline.from_pretrained(None, "cpu", precision=a.precision)
    size = pipe.model.image_size
    if a.smoke:
        images01, known = synthetic_set(2, size)
        steps, a.rounds = [2], 1
    elif a.images and a.masks:
        _, images01, known = load_eval_set(a.images, a.masks, size, limit=a.count)
    else:
        p.error("give --images and --masks, or --smoke")
    n = len(images01)
    proc = describe_processor("cpu")["processor"]
    print(f"{proc}, {a.threads} threads, {a.precision}, {n} images, batch {n}", file=sys.stderr)

    # every setting checked before any timing
    settings = {(t, o): pipe.resolve(None, steps=t, sweet_spot=None, **OPTIONS[o]) for t in steps for o in options}

    def run(t: int, name: str) -> float:
        t0 = time.perf_counter()
        pipe.inpaint_tensors(images01, known, a.seed, settings[t, name], batch_size=n)
        return 1000 * (time.perf_counter() - t0) / n

    for t in steps:  # warm-up: first calls allocate and pick kernels
        run(t, options[0])
    ms: dict[str, list[float]] = {f"T{t} {o}": [] for t in steps for o in options}
    for r in range(a.rounds):
        order = [(t, o) for t in steps for o in options]
        for t, name in order if r % 2 == 0 else order[::-1]:
            ms[f"T{t} {name}"].append(round(run(t, name), 1))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in ms.items()), file=sys.stderr, flush=True)
    out = {"processor": proc, "threads": a.threads, "precision": a.precision, "images": n,
           "ms_per_image": ms, "median_ms_per_image": {k: round(float(np.median(v)), 1) for k, v in ms.items()}}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
