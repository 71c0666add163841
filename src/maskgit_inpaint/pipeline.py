"""`InpaintPipeline`: real images in, inpainted images out, for Python users and every front end.

Images of any size and mode are inpainted at the model's resolution; only the (slightly dilated)
hole, upsampled, goes back into the original, so every other pixel is returned unchanged at full
resolution. Masks follow the convention of diffusers, LaMa and IOPaint: white = hole.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .images import InputError, as_known_mask, as_rgb_array, resize_known, to_tensor, to_uint8
from .model import InpaintOutput, MaskGIT, load_model
from .sampling import seed_for_name
from .settings import InpaintSettings


@dataclass
class BatchResult:
    """What `InpaintPipeline.run` gives for a batch of same-size model inputs."""
    images: np.ndarray          # (B, H, W, 3) uint8 at full resolution
    output: InpaintOutput       # the model's output at its own resolution (tokens, steps, ...)
    seconds: float
    inputs01: torch.Tensor      # (B, 3, S, S) the images as the model saw them
    known: torch.Tensor         # (B, S, S) bool, their known pixels at the model's size


class InpaintPipeline:
    """Load once, call many times::

        pipe = InpaintPipeline.from_pretrained()          # the bundled model
        out = pipe("cat.png", "hole.png", seed=0)         # PIL image; mask white = hole
        outs = pipe([img1, img2], [m1, m2], steps=12)     # lists in, list out; any setting by keyword
    """

    def __init__(self, model: MaskGIT, model_dir: str | Path | None = None):
        if model.transformer is None:
            raise InputError(f"{model_dir or 'model'}: holds only a tokenizer; inpainting needs a transformer")
        self.model = model
        self.model_dir = Path(model_dir) if model_dir else None

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str = "auto",
                        precision: str | None = None, **settings) -> "InpaintPipeline":
        """`path`: a model directory (None = the bundled model). `settings`: InpaintSettings
        fields that replace the model's defaults for every call."""
        model, model_dir = load_model(path, device, precision=precision, **settings)
        return cls(model, model_dir)

    @property
    def settings(self) -> InpaintSettings:
        return self.model.settings

    @property
    def size(self) -> int:
        return self.model.image_size

    # ------------------------------------------------------------------ the call
    def __call__(self, image, mask_image, *, seed: int | None = None, composite: bool = True,
                 **settings) -> Image.Image | list[Image.Image]:
        """Inpaint `image` where `mask_image` is white (PIL image, numpy array or path; or lists
        of them). `seed` (default 0) makes the result reproducible; `settings` override any
        InpaintSettings field for this call. Returns a PIL image, or a list for a list."""
        single = not isinstance(image, (list, tuple))
        images = [image] if single else list(image)
        masks = [mask_image] if single else list(mask_image) if isinstance(mask_image, (list, tuple)) \
            else [mask_image] * len(images)
        if len(masks) != len(images):
            raise InputError(f"{len(images)} images but {len(masks)} masks")
        arrays = [as_rgb_array(im, f"image {i}") for i, im in enumerate(images)]
        known = [as_known_mask(m, a.shape[:2], f"mask {i}", hole_white=True)
                 for i, (m, a) in enumerate(zip(masks, arrays))]
        s = self.model.resolve_settings(None, **settings)
        names = [str(i) for i in range(len(arrays))]
        out = []
        for i, (a, k) in enumerate(zip(arrays, known)):
            res = self.run([a], [k], [names[i]], seed=0 if seed is None else seed, settings=s, composite=composite)
            out.append(Image.fromarray(res.images[0]))
        return out[0] if single else out

    def run(self, images: Sequence[np.ndarray], known: Sequence[np.ndarray], names: Sequence[str], seed: int = 0,
            settings: InpaintSettings | None = None, composite: bool = True, dilate: int = 0,
            return_steps: bool = False) -> BatchResult:
        """Inpaint a batch of (H, W, 3) uint8 images with their (H, W) bool known masks (True =
        known), all of one size. Each image's noise comes from `seed` and its name (as in
        `seed_for_name`), so a result does not depend on the batch it is in."""
        h, w = images[0].shape[:2]
        if any(a.shape[:2] != (h, w) for a in images):
            raise InputError("one batch holds images of one size")
        size = self.size
        x = to_tensor([resize_rgb(a, size) for a in images])
        k = torch.from_numpy(np.stack([resize_known(m, size) for m in known]))
        seeds = torch.tensor([seed_for_name(seed, n) for n in names])
        t0 = time.perf_counter()
        out = self.model.inpaint(x, k, settings, seed=seeds, composite=composite, dilate=dilate,
                                 return_steps=return_steps)
        small = to_uint8(out.images)
        seconds = time.perf_counter() - t0
        if (h, w) == (size, size):
            return BatchResult(small, out, seconds, x, k)
        full = np.stack([paste_hole(a, m, s) if composite else resize_rgb(s, (h, w))
                         for a, m, s in zip(images, known, small)])
        return BatchResult(full, out, seconds, x, k)

    def inpaint_tensors(self, images01: torch.Tensor, known: torch.Tensor, names: Sequence[str], seed: int,
                        settings: InpaintSettings | None = None, batch_size: int = 64, composite: bool = False,
                        tokens_out: list | None = None) -> tuple[torch.Tensor, float]:
        """Model-resolution tensors in, outputs (N,3,H,W) in [0,1] and seconds per image out: the
        evaluation loop (sweeps, FID curves). `tokens_out` collects the final token grids."""
        out = []
        t0 = time.perf_counter()
        for i in range(0, len(names), batch_size):
            sl = slice(i, i + batch_size)
            seeds = torch.tensor([seed_for_name(seed, n) for n in names[sl]])
            res = self.model.inpaint(images01[sl], known[sl], settings, seed=seeds, composite=composite)
            out.append(res.images.float().cpu())
            if tokens_out is not None:
                tokens_out.append(res.tokens.cpu())
        dt = time.perf_counter() - t0
        return torch.cat(out), dt / max(1, len(names))


# ----------------------------------------------------------------------------- full resolution
def resize_rgb(a: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 resized (bicubic) to `size` (a side, or (H, W)); unchanged when equal."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if a.shape[:2] == hw:
        return a
    return np.asarray(Image.fromarray(a).resize((hw[1], hw[0]), Image.BICUBIC), dtype=np.uint8)


def paste_hole(original: np.ndarray, known: np.ndarray, small: np.ndarray) -> np.ndarray:
    """`small` (the model's output) upsampled into `original` inside the hole grown by about one
    model pixel (the upsampled seam is blurred); every other pixel stays the original's."""
    h, w = original.shape[:2]
    up = resize_rgb(small, (h, w))
    r = max(1, math.ceil(max(h, w) / small.shape[0]))
    hole = torch.from_numpy(~known)[None, None].float()
    grown = torch.nn.functional.max_pool2d(hole, 2 * r + 1, stride=1, padding=r)[0, 0].bool().numpy()
    return np.where(grown[..., None], up, original)


def describe(settings: InpaintSettings, model: MaskGIT) -> str:
    """One line naming the settings an output was made with (for logs)."""
    s = settings
    return (f"gamma={s.gamma} steps={s.steps} stop={s.stop} guidance={s.guidance:g}"
            f"{' vs weak' if s.weak_guidance and s.guidance else ''} token threshold={s.token_threshold:g} "
            f"hole fill={s.hole_fill} blend={s.blend}"
            + (f" decode known={'on' if s.decode_known else 'off'}" if model.conditioned_decoder else ""))


