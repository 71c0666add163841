"""Putting the known pixels back over a decoded image.

The decoder never reproduces the known pixels exactly: its colours drift by a few levels
over whole regions. Pasting the known pixels back over it ("paste") therefore leaves a
visible seam around every hole, which FID picks up. "poisson" is seamless cloning (Perez
et al., 2003): inside the hole the decoded content keeps its gradients, and a smooth
(harmonic) correction makes it meet the known pixels exactly at the hole's border. Known
pixels are the input's in both cases.
"""
from __future__ import annotations

import torch

from .masks import harmonic_fill
from .settings import BLENDS
# Jacobi sweeps per level of the coarse-to-fine Laplace solve: more did not lower the composite
# FID (docs/experiments.md, "The sampler sweeps").
POISSON_ITERS = 8


def check_blend(blend: str) -> str:
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    return blend


def poisson_paste(decoded: torch.Tensor, images: torch.Tensor, known: torch.Tensor,
                  iters: int = POISSON_ITERS) -> torch.Tensor:
    """Seamless clone of `decoded` into the holes of `images` (both (B,C,H,W), same range);
    `known` (B,H,W) bool, True = known. The correction is the harmonic interpolation into
    the hole of the difference images - decoded on the known pixels, so it depends only on
    the pixels bordering the hole, and is 0 where the decoder already matches."""
    k = known[:, None]
    residual = torch.where(k, images - decoded, torch.zeros_like(decoded))
    corrected = decoded + harmonic_fill(residual, known, iters)
    return torch.where(k, images, corrected)


def paste_known(decoded: torch.Tensor, images: torch.Tensor, known: torch.Tensor,
                blend: str = "poisson") -> torch.Tensor:
    """`images` where known, `decoded` (seam-corrected for "poisson") in the holes; the
    result is clamped to [0, 1] (pixel range of both inputs)."""
    if check_blend(blend) == "paste":
        return torch.where(known[:, None], images, decoded)
    return poisson_paste(decoded, images, known).clamp(0, 1)
