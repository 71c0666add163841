"""`InpaintPipeline` on a list (one batch) against one call per image: ms/image of each, the same
images, mask and seed, rounds interleaved; also checks that both give the same pixels.

    python benchmarks/pipeline_list.py --images ../shared/datasets/cat-faces-64/val --count 16
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from maskgit_inpaint import InpaintPipeline
from maskgit_inpaint.images import list_images, read_rgba
from maskgit_inpaint.precision import describe_processor


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", required=True)
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="fp32")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    pipe = InpaintPipeline.from_pretrained(None, "cpu", precision=a.precision)
    imgs = [read_rgba(f)[0] for f in list_images(Path(a.images))[:a.count]]
    mask = np.zeros(imgs[0].shape[:2], np.uint8)
    mask[20:44, 20:44] = 255  # white = hole
    pipe(imgs[0], mask)  # warm-up
    print(describe_processor("cpu")["processor"], f"threads={a.threads} precision={a.precision}")
    for r in range(a.rounds):
        t = time.perf_counter()
        one = [pipe(x, mask, seed=0) for x in imgs]
        t_one = time.perf_counter() - t
        t = time.perf_counter()
        batch = pipe(imgs, [mask] * len(imgs), seed=0)
        t_list = time.perf_counter() - t
        same = all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(one, batch))
        print(f"round {r}: {len(imgs)} calls {1000 * t_one / len(imgs):.0f} ms/image, one list "
              f"{1000 * t_list / len(imgs):.0f} ms/image, same pixels: {same}", flush=True)


if __name__ == "__main__":
    main()
