"""Pictures of the decoding: per-step strips (token mask over decoded image) and the schedules."""
from __future__ import annotations

import numpy as np
import torch

from .masks import token_to_pixel_mask


def _hole_view(images01: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The input as the model sees it: holes painted mid-grey."""
    return torch.where(known[:, None].to(images01.device), images01, torch.full_like(images01, 0.5))


def step_strip(images01: torch.Tensor, known: torch.Tensor, res, size: int, pad: int = 2) -> np.ndarray:
    """(B, 2*size + pad, W, 3) uint8: top row = token mask after each step (white = still
    masked, grey = generated, black = known), bottom row = decoded image after each step;
    first column the input with its hole, last column the final output."""
    b = images01.shape[0]
    unknown_px = token_to_pixel_mask(res.unknown, size).float()
    cols_top = [torch.where(known[:, None].bool(), 0.0, 1.0).expand(b, 3, size, size).float()]
    cols_bot = [_hole_view(images01, known)]
    for m, img in zip(res.step_masks, res.step_images):
        still = token_to_pixel_mask(m, size).float()
        cols_top.append((0.5 * unknown_px + 0.5 * still)[:, None].expand(b, 3, size, size))
        cols_bot.append(img.cpu())
    cols_top.append(torch.zeros(b, 3, size, size))
    cols_bot.append(res.images.cpu())
    n = len(cols_top)
    canvas = torch.ones(b, 3, 2 * size + pad, n * size + (n - 1) * pad)
    for i, (t, d) in enumerate(zip(cols_top, cols_bot)):
        x = i * (size + pad)
        canvas[:, :, :size, x:x + size] = t.cpu()
        canvas[:, :, size + pad:, x:x + size] = d.cpu()
    return (canvas.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
