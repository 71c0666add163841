"""`maskgit demo`: inpaint the bundled samples with the default model and write a sheet.

The samples are images the model generated itself from an all-masked token grid (so they are
free to redistribute, unlike the photos it was trained on), each paired with a seeded mask in
`samples/masks/`. `make_samples` is how they were made.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .images import InputError, load_pairs, save_png, to_uint8
from .masks import generate_masks
from .model import load_model
from .pipeline import InpaintPipeline
from .visualize import step_strip

SAMPLE_MASK_KINDS = ("random-walk", "rectangle", "brush", "random-walk", "outpaint", "random-walk", "brush",
                     "rectangle")


def make_samples(model_dir: str | Path, count: int = 8, seed: int = 0, steps: int = 12,
                 device: str = "auto") -> list[Path]:
    """Generate `count` images from nothing (every token masked) with the model in `model_dir`,
    and one seeded mask per image; write them to `<model_dir>/samples/` and `samples/masks/`."""
    model, _ = load_model(model_dir, device)
    size = model.image_size
    blank = torch.zeros(count, 3, size, size)
    nothing_known = torch.zeros(count, size, size, dtype=torch.bool)
    seeds = torch.arange(count) + 1000 * seed  # nothing is known: the images differ by their seeds alone
    res = InpaintPipeline(model).generate(blank, nothing_known, seed=seeds, composite=False, steps=steps,
                                          sweet_spot=None)
    out = Path(model_dir) / "samples"
    (out / "masks").mkdir(parents=True, exist_ok=True)
    written = []
    imgs = to_uint8(res.images)
    for i in range(count):
        kind = SAMPLE_MASK_KINDS[i % len(SAMPLE_MASK_KINDS)]
        known = generate_masks(kind, 1, size, seed=seed * 100 + i)[0]
        save_png(imgs[i], out / f"sample{i}.png")
        save_png(np.where(known, 0, 255).astype(np.uint8), out / "masks" / f"sample{i}.png")  # white = hole
        written += [out / f"sample{i}.png", out / "masks" / f"sample{i}.png"]
    return written


def load_samples(model_dir: Path):
    """The bundled sample images and their masks: (pairs of paths, images, known masks), read and
    paired (by stem) with the same checks as `maskgit inpaint`."""
    folder = Path(model_dir) / "samples"
    if not (folder / "masks").is_dir():
        raise InputError(f"{folder}: no samples with masks bundled with this model "
                         "(make them with `maskgit demo --make-samples 8 --model MODEL_DIR`)")
    return load_pairs(folder, folder / "masks")


def demo_sheet(x: torch.Tensor, known: torch.Tensor, res, size: int, scale: int = 2) -> np.ndarray:
    """One row per sample: the per-step strip (input with its hole, every decoding step with its
    token mask above it, the output), rows stacked with a white gap; upscaled `scale` x."""
    strips = step_strip(x, known, res, size)                       # (B, h, w, 3)
    b, h, w, _ = strips.shape
    gap = 6
    sheet = np.full((b * h + (b - 1) * gap, w, 3), 255, np.uint8)
    for i in range(b):
        sheet[i * (h + gap): i * (h + gap) + h] = strips[i]
    return sheet.repeat(scale, 0).repeat(scale, 1)


def run_demo(out_dir: str | Path = "maskgit-demo", device: str = "auto", model_dir: str | Path | None = None,
             seed: int = 0, precision: str | None = None) -> Path:
    """Inpaint the samples with the default model (or `model_dir`), write each output and
    `sheet.png`, and return the sheet's path."""
    pipe = InpaintPipeline.from_pretrained(model_dir, device, precision=precision)
    pairs, imgs, known = load_samples(pipe.model_dir)
    names = [p.stem for p, _ in pairs]
    t0 = time.perf_counter()
    batch = pipe.run(imgs, known, seed=seed, return_steps=True, names=[str(p) for p, _ in pairs])
    seconds = time.perf_counter() - t0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, img in zip(names, batch.images):
        save_png(img, out / f"{name}.png")
    sheet = out / "sheet.png"
    save_png(demo_sheet(batch.inputs01, batch.known, batch.output, pipe.size), sheet)
    s = pipe.settings
    print(f"inpainted {len(names)} samples in {seconds:.2f} s ({s.gamma} schedule, {s.stop} of {s.steps} steps, "
          f"seed {seed}); rows: input with hole | each step (top: white = still masked, grey = generated) | output")
    return sheet
