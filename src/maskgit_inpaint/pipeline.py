"""`InpaintPipeline`: the one inpainting sequence, for Python users and every front end.

hole fill -> encode -> sample tokens -> decode -> composite, at the model's resolution, around
each hole of an image of any size. The CLI, the web app, the demo, sweeps and FID curves call it;
settings go in per call and are checked once; the model only computes.

Conventions shared by every door: masks are white where the hole is (diffusers, LaMa, IOPaint);
an image's noise comes from the seed and the image's own known content, so one image, mask and
seed give the same pixels whichever door they come through and whatever batch they are in.
"""
from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .compositing import paste_known
from .images import InputError, as_known_mask, hole_warning, quantize, read_rgba, resize_known, to_tensor, to_uint8
from .masks import harmonic_fill, pixel_to_token_mask
from .model import MaskGIT, ModelDirError, load_model
from .sampling import inpaint_tokens
from .settings import InpaintSettings, SamplerConfig

RESIZE_MODES = ("crop", "resize")
# A fill upsampled more than this many times looks blurry: say so.
MAX_UPSAMPLE = 2.0


@dataclass
class InpaintOutput:
    """What the model-resolution sequence gives for a batch."""
    images: torch.Tensor                 # (B,3,S,S) in [0,1]
    tokens: torch.Tensor                 # (B,N) final tokens
    unknown: torch.Tensor                # (B,N) tokens that were generated
    step_images: list[torch.Tensor] = field(default_factory=list)  # per step (B,3,S,S) in [0,1]
    step_masks: list[torch.Tensor] = field(default_factory=list)   # per step (B,N) still masked


@dataclass
class BatchResult:
    """What `InpaintPipeline.run` gives for a list of images."""
    images: list[np.ndarray]    # (H, W, 3) uint8 per image, at its own size
    output: InpaintOutput       # the model's output at its own resolution (tokens, steps, ...)
    seconds: float
    inputs01: torch.Tensor      # (B, 3, S, S) the regions as the model saw them
    known: torch.Tensor         # (B, S, S) bool, their known pixels at the model's size
    regions: list[tuple[int, int, int, int]] = field(default_factory=list)  # (top, left, height, width)


def image_seeds(seed: int, images01: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Each image's sampler seed: `seed` mixed with a hash of the image's known pixels and its
    mask at the model's size. It is the same through every door, alone or in any batch, and
    what the input holds inside the hole cannot change it."""
    pixels = quantize(images01.float().cpu()).numpy()
    kn = known.cpu().numpy().astype(bool)
    out = []
    for p, k in zip(pixels, kn):
        h = hashlib.blake2b(np.where(k[None], p, 0).tobytes() + np.packbits(k).tobytes(), digest_size=8)
        out.append((seed * 1_000_003 + int.from_bytes(h.digest(), "little")) % (2 ** 31))
    return torch.tensor(out, dtype=torch.int64)


class InpaintPipeline:
    """Load once, call many times::

        pipe = InpaintPipeline.from_pretrained()          # the bundled model
        out = pipe("cat.png", "hole.png", seed=0)         # PIL image; mask white = hole
        outs = pipe([img1, img2], [m1, m2], steps=12)     # lists in (one batch), list out
    """

    def __init__(self, model: MaskGIT, settings: InpaintSettings | None = None, model_dir: str | Path | None = None):
        if model.transformer is None:
            raise ModelDirError(f"{model_dir or 'this model'}: holds only a tokenizer; inpainting needs a transformer")
        self.model = model
        self.model_dir = Path(model_dir) if model_dir else None
        self.settings = self.resolve(settings if settings is not None else model.default_settings)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str = "auto", **settings) -> "InpaintPipeline":
        """`path`: a model directory (None = the bundled model). `settings`: InpaintSettings
        fields that replace the model's defaults for every call (None = keep)."""
        model, model_dir = load_model(path, device)
        return cls(model, model.default_settings.override(**settings), model_dir)

    @property
    def size(self) -> int:
        return self.model.image_size

    def resolve(self, settings: SamplerConfig | None = None, **overrides) -> InpaintSettings:
        """`settings` (default: the pipeline's; a plain SamplerConfig replaces only the sampler's
        fields) with `overrides`, checked once, including against what this model can run."""
        if settings is None:
            s = self.settings
        elif isinstance(settings, InpaintSettings):
            s = settings
        else:
            s = self.settings.override(**asdict(settings))
        if overrides:
            s = s.override(**overrides)
        self.model.check_sampler(s)
        return s

    # ------------------------------------------------------------------ the call
    def __call__(self, image, mask_image, *, seed: int = 0, composite: bool = True, invert_mask: bool = False,
                 resize_mode: str = "crop", crop_margin: int | None = None, batch_size: int = 64,
                 **settings) -> Image.Image | list[Image.Image]:
        """Inpaint `image` where `mask_image` is white (with `invert_mask`, black): PIL images,
        numpy arrays or paths, or lists of them (one mask may serve a list). `seed` makes the
        result reproducible; `settings` override any InpaintSettings field for this call.
        Images of any size: see `run` for `resize_mode` and `crop_margin`. A transparent
        input keeps its alpha. Returns a PIL image, or a list for a list."""
        single = not isinstance(image, (list, tuple))
        images = [image] if single else list(image)
        masks = list(mask_image) if isinstance(mask_image, (list, tuple)) else [mask_image] * len(images)
        if len(masks) != len(images):
            raise InputError(f"{len(images)} images but {len(masks)} masks")
        names = [str(im) if isinstance(im, (str, Path)) else f"image {i}" for i, im in enumerate(images)]
        read = [read_rgba(im, n) for im, n in zip(images, names)]
        known = [as_known_mask(m, rgb.shape[:2], f"mask of {n}", invert=invert_mask)
                 for m, (rgb, _), n in zip(masks, read, names)]
        res = self.run([rgb for rgb, _ in read], known, seed=seed, settings=self.resolve(None, **settings),
                       composite=composite, resize_mode=resize_mode, crop_margin=crop_margin, names=names,
                       batch_size=batch_size)
        out = [Image.fromarray(with_alpha(img, alpha)) for img, (_, alpha) in zip(res.images, read)]
        return out[0] if single else out

    def run(self, images: Sequence[np.ndarray], known: Sequence[np.ndarray], seed: int = 0,
            settings: InpaintSettings | None = None, composite: bool = True, dilate: int = 0,
            return_steps: bool = False, resize_mode: str = "crop", crop_margin: int | None = None,
            names: Sequence[str] | None = None, batch_size: int = 64, progress=None) -> BatchResult:
        """Inpaint (H, W, 3) uint8 images of any sizes with their (H, W) bool known masks (True =
        known), in batches of `batch_size`; `names` only label warnings.

        Each image is inpainted at the model's size S around its hole. `resize_mode="crop"`: a
        square around the hole(s) with `crop_margin` pixels of context on each side (default:
        half the hole's extent, and at least S pixels across), resized to S; "resize": the whole
        image resized to S (squashed when it is not square). Only the hole, grown by about one
        model pixel, goes back into the image: every other pixel is the input's. `progress` is
        called with the number of images done after each batch."""
        if resize_mode not in RESIZE_MODES:
            raise InputError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, got {resize_mode!r}")
        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        s = settings if settings is not None else self.settings
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        size = self.size
        regions, xs, ks = [], [], []
        for a, k, n in zip(images, known, names):
            if a.shape[:2] != k.shape:
                raise InputError(f"{n}: mask is {k.shape[1]}x{k.shape[0]} but the image is {a.shape[1]}x{a.shape[0]}")
            msg = hole_warning(k, n)
            if msg:
                warnings.warn(msg, stacklevel=2)
            top, left, h, w = region = model_region(k, size, resize_mode, crop_margin)
            if max(h, w) > MAX_UPSAMPLE * size and (~k).any():
                warnings.warn(f"{n}: the hole is filled at {size}x{size} and upsampled {max(h, w) / size:.1f}x "
                              f"(a {w}x{h} region around it), so the fill is blurrier than the photo", stacklevel=2)
            regions.append(region)
            xs.append(resize_rgb(a[top:top + h, left:left + w], size))
            ks.append(resize_known(k[top:top + h, left:left + w], size))
        x = to_tensor(xs)
        kt = torch.from_numpy(np.stack(ks))
        seeds = image_seeds(seed, x, kt)
        t0 = time.perf_counter()
        parts = []
        for i in range(0, len(xs), batch_size):
            sl = slice(i, i + batch_size)
            parts.append(self.generate(x[sl], kt[sl], s, seed=seeds[sl], composite=composite, dilate=dilate,
                                       return_steps=return_steps))
            if progress is not None:
                progress(min(i + batch_size, len(xs)))
        out = concat_outputs(parts)
        small = to_uint8(out.images)
        full = []
        for a, k, (top, left, h, w), sm in zip(images, known, regions, small):
            if a.shape[:2] == (size, size) and (h, w) == (size, size):
                full.append(sm)
            elif composite and not (~k).any():
                full.append(a.copy())
            else:
                region = a[top:top + h, left:left + w]
                patch = paste_hole(region, k[top:top + h, left:left + w], sm) if composite else resize_rgb(sm, (h, w))
                whole = a.copy()
                whole[top:top + h, left:left + w] = patch
                full.append(whole)
        return BatchResult(full, out, time.perf_counter() - t0, x, kt, regions)

    # ------------------------------------------------------------------ the model-size sequence
    @torch.no_grad()
    def generate(self, images01: torch.Tensor, known: torch.Tensor, settings: SamplerConfig | None = None,
                 seed: int | torch.Tensor = 0, composite: bool = True, dilate: int = 0,
                 return_steps: bool = False, **overrides) -> InpaintOutput:
        """Fill the holes of `images01` (B,3,S,S) in [0,1] at the model's size; `known` (B,S,S)
        bool, True = known pixel; `seed` an int for all or one per image (the doors above pass
        `image_seeds`).

        Before encoding, hole pixels are replaced by `settings.hole_fill`, computed from the
        known pixels only, so whatever the input holds there cannot leak into the result.
        Which tokens are generated follows `token_threshold` (`masks.pixel_to_token_mask`); the
        others keep the encoder's tokens. With `composite`, the known pixels go back with
        `settings.blend` (see `compositing`)."""
        s = self.resolve(settings, **overrides)
        model = self.model
        images01 = images01.to(model.device, torch.float32)
        known = known.to(model.device, torch.bool)
        x = model.normalize(images01)
        x = x * known[:, None] if s.hole_fill == "mean" else harmonic_fill(x, known)  # 0 = the mean colour
        tokens = model.per_image(model.tokenizer.encode, x)
        unknown = pixel_to_token_mask(known, model.latent_size, dilate=dilate, threshold=s.token_threshold)
        weak_fn = model.logits_fn(s.precision, weak=True) if model.weak_transformer is not None else None
        res = inpaint_tokens(model.logits_fn(s.precision), tokens, unknown, s, codebook_size=model.codebook_size,
                             seed=seed, return_steps=return_steps, weak_logits_fn=weak_fn)
        out = model.decode(res.tokens, images01, known, s.decode_known, s.precision)
        if composite:
            out = paste_known(out, images01, known, s.blend)
        step_images = [model.decode(t, images01, known, s.decode_known, s.precision) for t in res.step_tokens] if return_steps else []
        return InpaintOutput(out, res.tokens, unknown, step_images, res.step_masks)

    def inpaint_tensors(self, images01: torch.Tensor, known: torch.Tensor, seed: int,
                        settings: InpaintSettings | None = None, batch_size: int = 64, composite: bool = False,
                        tokens_out: list | None = None, progress=None) -> tuple[torch.Tensor, float]:
        """Model-size tensors in, outputs (N,3,S,S) in [0,1] and seconds per image out: the
        evaluation loop (sweeps, FID curves), seeded as every other door. `tokens_out` collects
        the final token grids."""
        s = self.resolve(settings)
        seeds = image_seeds(seed, images01, known)
        out = []
        t0 = time.perf_counter()
        for i in range(0, len(images01), batch_size):
            sl = slice(i, i + batch_size)
            res = self.generate(images01[sl], known[sl], s, seed=seeds[sl], composite=composite)
            out.append(res.images.float().cpu())
            if tokens_out is not None:
                tokens_out.append(res.tokens.cpu())
            if progress is not None:
                progress(min(i + batch_size, len(images01)))
        dt = time.perf_counter() - t0
        return torch.cat(out), dt / max(1, len(images01))


def concat_outputs(parts: list[InpaintOutput]) -> InpaintOutput:
    """One InpaintOutput from the batches of one call."""
    if len(parts) == 1:
        return parts[0]
    cat = lambda xs: torch.cat(xs) if xs else xs  # noqa: E731
    return InpaintOutput(cat([p.images for p in parts]), cat([p.tokens for p in parts]),
                         cat([p.unknown for p in parts]),
                         [torch.cat(step) for step in zip(*(p.step_images for p in parts))],
                         [torch.cat(step) for step in zip(*(p.step_masks for p in parts))])


# ----------------------------------------------------------------------------- regions of large images
def model_region(known: np.ndarray, size: int, mode: str = "crop", margin: int | None = None
                 ) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the part of an image the model inpaints at `size`: with
    "crop" a square around the hole(s), `margin` pixels of context on each side (default half
    the hole's extent), at least `size` across and at most the image's shorter side; the whole
    image with "resize", or when the hole does not fit in such a square, or there is no hole."""
    h, w = known.shape
    hole = ~known
    if mode == "resize" or (h, w) == (size, size) or not hole.any():
        return 0, 0, h, w
    rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    extent = max(y1 - y0, x1 - x0)
    m = extent // 2 if margin is None else max(0, int(margin))
    side = min(max(size, extent + 2 * m), min(h, w))
    if extent > side:
        return 0, 0, h, w
    top = int(np.clip(round((y0 + y1 - side) / 2), 0, h - side))
    left = int(np.clip(round((x0 + x1 - side) / 2), 0, w - side))
    return top, left, side, side


def resize_rgb(a: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 resized (bicubic) to `size` (a side, or (H, W)); unchanged when equal."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if a.shape[:2] == hw:
        return a
    return np.asarray(Image.fromarray(a).resize((hw[1], hw[0]), Image.BICUBIC), dtype=np.uint8)


def paste_hole(original: np.ndarray, known: np.ndarray, small: np.ndarray) -> np.ndarray:
    """`small` (the model's output) upsampled into `original`: the hole takes the upsampled
    output, which then fades into the original over about one model pixel around it (so no hard
    edge shows where the blurrier fill meets the photo); every other pixel stays the original's."""
    from scipy.ndimage import distance_transform_edt

    h, w = original.shape[:2]
    up = resize_rgb(small, (h, w))
    r = max(1, math.ceil(max(h, w) / small.shape[0]))
    alpha = np.clip(1.0 - distance_transform_edt(known) / (r + 1), 0.0, 1.0)[..., None]
    out = np.rint(alpha * up + (1.0 - alpha) * original).astype(np.uint8)
    return np.where(alpha > 0, out, original)


def with_alpha(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """An output with its input's alpha channel put back (as is, for an opaque input)."""
    return rgb if alpha is None else np.dstack([rgb, alpha])


def describe(settings: InpaintSettings, model: MaskGIT) -> str:
    """One line naming the settings an output was made with (for logs)."""
    s = settings
    return (f"gamma={s.gamma} steps={s.steps} stop={s.stop} guidance={s.guidance:g}"
            f"{' vs weak' if s.weak_guidance and s.guidance else ''} token threshold={s.token_threshold:g} "
            f"hole fill={s.hole_fill} blend={s.blend} precision={s.precision}"
            + (f" decode known={'on' if s.decode_known else 'off'}" if model.conditioned_decoder else ""))
