"""`maskgit inpaint` of this checkout against another checkout's (e.g. an older commit), same
images and masks, default settings, rounds interleaved so both see the same load.

    git worktree add /tmp/base be78fe2
    python benchmarks/inpaint_cli_ab.py --base-src /tmp/base/src \\
        --images /work/shared/datasets/cat-faces-64/val --masks out/val_masks --count 128 --rounds 3

Masks pair with the sorted images by position and are white = hole (as `maskgit masks` writes
them now); a base checkout from before that convention (`--base-hole-value 255`, the default) is
told so with its old flag, so both read the same holes. Each round runs both commands as fresh processes; the figure compared is the command's own
"ms/image" (inpainting and writing the PNGs, without start-up), and each process's wall time.
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from maskgit_inpaint.precision import describe_processor

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def make_pairs(images: Path, masks: Path, count: int, out: Path) -> tuple[Path, Path]:
    """`count` image/mask pairs as links in `out` (no copies), the masks named by the images' stems."""
    imgs = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    msks = sorted(p for p in masks.iterdir() if p.suffix.lower() == ".png")[:count]
    if len(imgs) < count or len(msks) < count:
        sys.exit(f"need {count} images and masks, found {len(imgs)} in {images} and {len(msks)} in {masks}")
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for im, m in zip(imgs, msks):
        (out / "images" / im.name).symlink_to(im.resolve())
        (out / "masks" / f"{im.stem}.png").symlink_to(m.resolve())
    return out / "images", out / "masks"


def run_cli(src: str | None, images: Path, masks: Path, out: Path, batch_size: int, extra: list[str]) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "maskgit_inpaint", "inpaint", "--images", str(images), "--masks", str(masks),
           "--out", str(out), "--batch-size", str(batch_size), *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    m = re.search(r"\((\d+) ms/image", p.stdout)
    return {"ms_per_image": int(m.group(1)), "wall_s": round(wall, 2),
            "precision": next((ln.split("maskgit: ", 1)[1] for ln in p.stderr.splitlines() if "precision" in ln), None)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-src", required=True, help="the other checkout's src/ folder")
    p.add_argument("--images", required=True)
    p.add_argument("--masks", required=True)
    p.add_argument("--count", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--base-hole-value", default="255",
                   help="the base's --hole-value for white-hole masks ('' for a base that reads white = hole)")
    p.add_argument("extra", nargs="*", help="more `maskgit inpaint` flags for both (after --)")
    a = p.parse_args(argv)
    ours_src = str(Path(__file__).resolve().parents[1] / "src")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images, masks = make_pairs(Path(a.images), Path(a.masks), a.count, tmp / "in")
        runs = {"base": [], "ours": []}
        for r in range(a.rounds):
            order = ("base", "ours") if r % 2 == 0 else ("ours", "base")
            for name in order:
                src = a.base_src if name == "base" else ours_src
                extra = a.extra + (["--hole-value", a.base_hole_value] if name == "base" and a.base_hole_value else [])
                runs[name].append(run_cli(src, images, masks, tmp / f"out_{name}", a.batch_size, extra))
                print(f"round {r + 1} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    med = {k: statistics.median(r["ms_per_image"] for r in v) for k, v in runs.items()}
    out = {"images": a.count, "batch_size": a.batch_size, "rounds": a.rounds, **describe_processor("cpu"),
           "base_src": a.base_src, "base_ms_per_image": [r["ms_per_image"] for r in runs["base"]],
           "ours_ms_per_image": [r["ms_per_image"] for r in runs["ours"]],
           "base_wall_s": [r["wall_s"] for r in runs["base"]], "ours_wall_s": [r["wall_s"] for r in runs["ours"]],
           "base_precision": runs["base"][0]["precision"], "ours_precision": runs["ours"][0]["precision"],
           "speedup_median": round(med["base"] / med["ours"], 2),
           "speedup_per_round": [round(b["ms_per_image"] / o["ms_per_image"], 2)
                                 for b, o in zip(runs["base"], runs["ours"])]}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
