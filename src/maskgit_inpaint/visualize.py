"""Pictures of the decoding: per-step strips (token mask over decoded image) and the schedules."""
from __future__ import annotations

import numpy as np
import torch

from .checkpoints import atomic_write
from .masks import token_to_pixel_mask
from .sampling import masked_counts
from .schedules import SCHEDULES, gamma


def _hole_view(images01: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The input as the model sees it: holes painted mid-grey."""
    return torch.where(known[:, None].to(images01.device), images01, torch.full_like(images01, 0.5))


# colour of the tokens a step re-masked (ReMDM, a rising schedule, a critic round)
REMASKED_RGB = (0.85, 0.1, 0.1)


def remasked_steps(step_masks: list[torch.Tensor], unknown: torch.Tensor) -> list[torch.Tensor]:
    """Per step, the tokens masked after it that were not masked after the step before
    (generated tokens sent back to the mask), (B, N) bool."""
    prev, out = unknown.bool(), []
    for m in step_masks:
        out.append(m & ~prev.to(m.device))
        prev = m
    return out


def step_strip(images01: torch.Tensor, known: torch.Tensor, res, size: int, pad: int = 2) -> np.ndarray:
    """(B, 2*size + pad, W, 3) uint8: top row = token mask after each step (white = still
    masked, red = re-masked at this step, grey = generated, black = known), bottom row = decoded
    image after each step; first column the input with its hole, last column the final output."""
    b = images01.shape[0]
    unknown_px = token_to_pixel_mask(res.unknown, size).float()
    red = torch.tensor(REMASKED_RGB).view(1, 3, 1, 1)
    cols_top = [torch.where(known[:, None].bool(), 0.0, 1.0).expand(b, 3, size, size).float()]
    cols_bot = [_hole_view(images01, known)]
    for m, back, img in zip(res.step_masks, remasked_steps(res.step_masks, res.unknown), res.step_images):
        still = token_to_pixel_mask(m, size).float()
        top = (0.5 * unknown_px.cpu() + 0.5 * still.cpu())[:, None].expand(b, 3, size, size)
        cols_top.append(torch.where(token_to_pixel_mask(back, size).cpu()[:, None], red, top))
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


def plot_schedules(path, names=None, steps: int = 8, highlight: str | None = None):
    """The gamma functions (the report's Figure 1), with the per-step values for T = `steps`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = names or list(SCHEDULES)
    r = torch.linspace(0, 1, 401, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name in names:
        lw = 2.6 if name == highlight else 1.5
        line, = ax.plot(r.numpy(), gamma(name, r).numpy(), label=name, lw=lw)
        t = torch.arange(1, steps + 1, dtype=torch.float64) / steps
        ax.plot(t.numpy(), gamma(name, t).numpy(), "o", color=line.get_color(), ms=3.5)
    ax.set_xlabel("progress r = t / T")
    ax.set_ylabel("fraction still masked  gamma(r)")
    ax.set_title(f"mask schedules (dots: the {steps} steps)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def plot_step_counts(path, res, sampler) -> str:
    """Tokens still masked after each step for one image, next to the schedule's target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = res.unknown[:1].sum(1)
    actual = [int(m[0].sum()) for m in res.step_masks]
    target = masked_counts(n, sampler)[0].tolist()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(range(0, len(target) + 1), [int(n)] + target, "--", label=f"floor(n * gamma), gamma={sampler.gamma}")
    ax.plot(range(0, len(actual) + 1), [int(n)] + actual, "o-", label="still masked (this image)")
    ax.set_xlabel("step")
    ax.set_ylabel("masked tokens")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def decoding_frames(images01: torch.Tensor, known: torch.Tensor, res, size: int, scale: int = 4) -> list:
    """PIL frames of one image's decoding: input with hole, then each step's decoded image with
    still-masked tokens tinted blue (red: re-masked at that step), then the result; upscaled
    `scale` x for viewing."""
    from PIL import Image

    frames = [_hole_view(images01[:1], known[:1])[0]]
    for m, back, img in zip(res.step_masks, remasked_steps(res.step_masks, res.unknown), res.step_images):
        still = token_to_pixel_mask(m[:1], size)[0].to(img.device)
        again = token_to_pixel_mask(back[:1], size)[0].to(img.device)
        tint = torch.tensor([0.2, 0.4, 1.0], device=img.device).view(3, 1, 1)
        red = torch.tensor(REMASKED_RGB, device=img.device).view(3, 1, 1)
        frame = torch.where(still[None], 0.5 * img[0] + 0.5 * tint, img[0])
        frames.append(torch.where(again[None], 0.5 * img[0] + 0.5 * red, frame))
    frames.append(res.images[0])
    out = []
    for f in frames:
        arr = (f.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        out.append(Image.fromarray(arr).resize((size * scale, size * scale), Image.NEAREST))
    return out


def save_gif(frames: list, path, ms: int = 450) -> None:
    durations = [ms * 2] + [ms] * (len(frames) - 2) + [ms * 4]
    atomic_write(path, lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                                                  duration=durations, loop=0))
