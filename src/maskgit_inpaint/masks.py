"""Pixel masks, token masks and seeded mask generators.

Convention everywhere: a pixel mask is bool (..., H, W) with True = known pixel,
False = hole (the lab's PNGs: 255 known, 0 hole). A token mask is bool (..., N) with
True = unknown token (to be generated).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def pixel_to_token_mask(known: torch.Tensor, latent_size: int, dilate: int = 0,
                        threshold: float = 0.0) -> torch.Tensor:
    """(B, H, W) bool known-pixel mask -> (B, latent_size**2) bool unknown-token mask.

    A token is unknown when more than `threshold` of its patch is hole. With 0, any hole pixel
    makes it unknown (the lab's rule: a token is known only if its whole patch is known). A
    higher threshold keeps the encoder's token of the hole-filled image where a hole only grazes
    a patch: those few hole pixels are then drawn from the smooth fill, which on the default
    model fits better than a regenerated token (see docs/experiments.md, the token threshold). `dilate` grows the unknown
    region by that many tokens, which hides seams around thin holes.
    """
    if known.dim() == 2:
        known = known[None]
    hole = (~known.bool()).float()[:, None]
    b, _, h, w = hole.shape
    if h % latent_size or w % latent_size:
        raise ValueError(f"mask size {h}x{w} is not a multiple of the latent size {latent_size}")
    if not 0 <= threshold < 1:
        raise ValueError(f"token threshold must be in [0, 1), got {threshold}")
    # the hole share of each patch; at threshold 0 any hole pixel counts (the eps only absorbs
    # rounding where a share equals the threshold)
    unknown = F.avg_pool2d(hole, kernel_size=(h // latent_size, w // latent_size)) > threshold + 1e-6
    if dilate:
        unknown = F.max_pool2d(unknown.float(), 2 * dilate + 1, stride=1, padding=dilate) > 0
    return unknown.reshape(b, -1)


def token_to_pixel_mask(unknown: torch.Tensor, size: int) -> torch.Tensor:
    """(B, N) unknown-token mask -> (B, size, size) bool, True where the token is unknown."""
    b, n = unknown.shape
    s = int(math.isqrt(n))
    m = unknown.reshape(b, 1, s, s).float()
    return F.interpolate(m, size=(size, size), mode="nearest")[:, 0] > 0


def harmonic_fill(x: torch.Tensor, known: torch.Tensor, iters: int = 8) -> torch.Tensor:
    """Fill the holes of `x` (B,C,H,W) smoothly from the known pixels around them; `known`
    (B,H,W) bool. Known pixels are returned unchanged.

    The tokenizer's encoder sees the whole image (its GroupNorms pool over it), so a flat
    hole colour shifts even tokens far from the hole; a smooth fill keeps the known tokens
    much closer to those of the full image, which is what the transformer was trained on.
    Coarse-to-fine: the hole is first filled at half resolution (recursively), upsampled,
    then relaxed with a few Jacobi sweeps of the Laplace equation.
    """
    k = known.to(x.dtype)[:, None]
    if bool(k.all()):
        return x
    b, c, h, w = x.shape
    if min(h, w) <= 2 or h % 2 or w % 2:
        mean = (x * k).sum((2, 3), keepdim=True) / k.sum((2, 3), keepdim=True).clamp(min=1)
        return torch.where(k > 0, x, mean.expand_as(x))
    num, den = F.avg_pool2d(x * k, 2), F.avg_pool2d(k, 2)
    coarse = harmonic_fill(num / den.clamp(min=1e-6), den[:, 0] > 0, iters)
    keep = k > 0
    y = torch.where(keep, x, F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False))
    for _ in range(iters):
        y = torch.where(keep, x, F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1))
    return y


# ----------------------------------------------------------------------------- generators
def random_walk_mask(size: int = 64, rng: np.random.Generator | None = None,
                     coverage: tuple[float, float] = (0.15, 0.35)) -> np.ndarray:
    """Irregular blob holes like the lab's test masks: random walks with a round brush
    until the hole covers a fraction drawn from `coverage`. Returns bool, True = known."""
    rng = rng or np.random.default_rng()
    target = rng.uniform(*coverage)
    hole = np.zeros((size, size), bool)
    yy, xx = np.mgrid[:size, :size]
    while hole.mean() < target:
        y, x = rng.uniform(0, size, 2)
        radius = rng.uniform(size / 32, size / 10)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(8, 40))):
            hole |= (yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2
            if hole.mean() >= target:
                break
            angle += rng.normal(0, 0.6)
            step = radius * rng.uniform(0.5, 1.0)
            y = float(np.clip(y + step * np.sin(angle), 0, size - 1))
            x = float(np.clip(x + step * np.cos(angle), 0, size - 1))
    return ~hole


def rectangle_mask(size: int = 64, rng: np.random.Generator | None = None,
                   area: tuple[float, float] = (0.1, 0.4)) -> np.ndarray:
    rng = rng or np.random.default_rng()
    a = rng.uniform(*area)
    aspect = rng.uniform(0.5, 2.0)
    h = int(np.clip(round(size * math.sqrt(a * aspect)), 1, size))
    w = int(np.clip(round(size * math.sqrt(a / aspect)), 1, size))
    y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    m = np.ones((size, size), bool)
    m[y:y + h, x:x + w] = False
    return m


def brush_mask(size: int = 64, rng: np.random.Generator | None = None, strokes: tuple[int, int] = (1, 4)) -> np.ndarray:
    """Free-form brush strokes (thick polylines), as in DeepFill v2."""
    rng = rng or np.random.default_rng()
    hole = np.zeros((size, size), bool)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(int(rng.integers(strokes[0], strokes[1] + 1))):
        y, x = rng.uniform(0, size, 2)
        width = rng.uniform(size / 20, size / 8)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(2, 6))):
            angle += rng.uniform(-1.2, 1.2)
            length = rng.uniform(size / 8, size / 3)
            ny = float(np.clip(y + length * np.sin(angle), 0, size - 1))
            nx = float(np.clip(x + length * np.cos(angle), 0, size - 1))
            for t in np.linspace(0, 1, 12):
                cy, cx = y + t * (ny - y), x + t * (nx - x)
                hole |= (yy - cy) ** 2 + (xx - cx) ** 2 <= (width / 2) ** 2
            y, x = ny, nx
    return ~hole


def outpaint_mask(size: int = 64, rng: np.random.Generator | None = None,
                  border: tuple[float, float] = (0.1, 0.3)) -> np.ndarray:
    """Known centre, hole along one to four borders."""
    rng = rng or np.random.default_rng()
    m = np.ones((size, size), bool)
    sides = rng.permutation(4)[: int(rng.integers(1, 5))]
    for s in sides:
        k = max(1, int(round(size * rng.uniform(*border))))
        if s == 0:
            m[:k] = False
        elif s == 1:
            m[-k:] = False
        elif s == 2:
            m[:, :k] = False
        else:
            m[:, -k:] = False
    return m


GENERATORS = {
    "random-walk": random_walk_mask,
    "rectangle": rectangle_mask,
    "brush": brush_mask,
    "outpaint": outpaint_mask,
}


def generate_masks(kind: str, count: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """`count` masks of one kind, (count, size, size) bool, True = known. Mask i depends only
    on (kind, seed, i), so a set can be extended or regenerated piecewise."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown mask kind {kind!r}; choose from {', '.join(GENERATORS)}")
    gen = GENERATORS[kind]
    out = np.empty((count, size, size), bool)
    for i in range(count):
        out[i] = gen(size, np.random.default_rng([seed, i]))
    return out
