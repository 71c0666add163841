"""The app's inputs: an upload (any size, centre-cropped to the model's square) and a painted mask."""
from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..checkpoints import atomic_write
from ..images import InputError, open_any, to_rgb
from ..masks import generate_masks

MAX_FILE_SIZE = "10mb"               # Gradio's upload bound
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # the same bound, checked again for files handed to run_inpaint
EDITOR_SIDE = 512                    # the editor shows the model-size image upscaled to about this side
HOLE_RGBA = (255, 0, 255, 150)       # how a hole is drawn in the editor's brush layer
MAX_PIXELS = 64_000_000              # refuse bigger pictures (decompression bombs) before decoding
ImageInputError = InputError


@dataclass
class PreparedImage:
    array: np.ndarray                       # (size, size, 3) uint8, what the model sees
    original_size: tuple[int, int]          # (width, height) before cropping
    box: tuple[int, int, int, int]          # centre-crop box (left, top, right, bottom) in the original
    note: str | None = None                 # set when the image was cropped or resized



def _open_image(source: Any) -> Image.Image:
    return open_any(source, MAX_UPLOAD_BYTES, MAX_PIXELS)


def centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def prepare_image(source: Any, size: int) -> PreparedImage:
    """Centre-crop to a square and resize to the model's `size`, saying so in `note`."""
    img = to_rgb(_open_image(source))
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageInputError("the image is empty")
    box = centre_box(w, h)
    notes = []
    if (w, h) != (box[2] - box[0], box[3] - box[1]):
        img = img.crop(box)
        notes.append(f"centre-cropped from {w}x{h} to {img.size[0]}x{img.size[1]}")
    if img.size != (size, size):
        notes.append(f"resized from {img.size[0]}x{img.size[1]} to {size}x{size}")
        img = img.resize((size, size), Image.LANCZOS if img.size[0] > size else Image.BICUBIC)
    note = None
    if notes:
        note = "Image " + " and ".join(notes) + f" (the model works at {size}x{size})."
    return PreparedImage(np.asarray(img, dtype=np.uint8).copy(), (w, h), box, note)


def _write_png_once(array: np.ndarray, folder: Path, name: str = "image", max_age_s: float = 3600.0) -> Path:
    """Write `array` as `folder/<content hash>/<name>.png` (atomically, once), dropping files
    older than `max_age_s` so a long-running server does not fill the disk."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    data = buf.getvalue()
    path = folder / hashlib.sha256(data).hexdigest()[:24] / f"{name}.png"
    if path.exists():
        path.touch()
        return path
    now = time.time()
    for old in folder.glob("*/*.png"):
        try:
            if now - old.stat().st_mtime > max_age_s:
                old.unlink()
                old.parent.rmdir()
        except OSError:
            pass
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def display_scale(size: int) -> int:
    return max(1, EDITOR_SIDE // size)


def upscale(array: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale so pixels stay crisp in the editor."""
    return array.repeat(scale, 0).repeat(scale, 1) if scale > 1 else array


# ----------------------------------------------------------------------------- masks
def _hole_map(mask: Any) -> np.ndarray:
    """(H, W) float32 in [0, 1], 1 = hole, from a brush layer or a mask picture."""
    if isinstance(mask, (str, Path)):
        try:
            mask = _open_image(mask)
        except ImageInputError as e:
            raise ImageInputError(f"mask: {e}") from None
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("RGBA") if "A" in mask.getbands() else mask.convert("L"))
    arr = np.asarray(mask)
    if arr.dtype == bool:                             # known mask, True = known
        if arr.ndim != 2:
            raise ImageInputError(f"a known mask must be (H, W), got shape {arr.shape}")
        return (~arr).astype(np.float32)
    if arr.ndim == 3 and arr.shape[2] in (2, 4):      # painted layer: anything painted is hole
        return (arr[..., -1] > 0).astype(np.float32)
    if arr.ndim == 3 and arr.shape[2] in (1, 3):
        arr = arr.mean(axis=2)
    if arr.ndim != 2:
        raise ImageInputError(f"cannot read a mask from an array of shape {arr.shape}")
    return (arr >= 128).astype(np.float32)            # mask picture: white = hole, as everywhere


def _hole_at_size(hole: np.ndarray, size: int, prepared: PreparedImage | None) -> np.ndarray:
    """Bring an (H, W) hole map onto the model's grid: a pixel any part of which is hole is hole."""
    h, w = hole.shape
    if prepared is not None and (w, h) == prepared.original_size and (w, h) != (size, size):
        left, top, right, bottom = prepared.box       # a mask drawn on the original: crop it alike
        hole = hole[top:bottom, left:right]
        h, w = hole.shape
    if h != w:
        where = f" but the image is {prepared.original_size[0]}x{prepared.original_size[1]}" if prepared else ""
        raise ImageInputError(f"the mask is {w}x{h}{where}: give a mask of the image's size or a square one")
    if (h, w) != (size, size):
        hole = np.asarray(Image.fromarray(hole.astype(np.float32)).resize((size, size), Image.BOX))
    return hole > 1e-6


def known_from_mask(mask: Any, size: int, prepared: PreparedImage | None = None) -> np.ndarray:
    """(size, size) bool, True = known pixel, from any of:

    - the editor's value (a dict with `layers`): every painted pixel of every layer is hole;
    - a bool array, True = known (the project's convention);
    - an RGBA brush layer (alpha > 0 is hole);
    - a mask picture (array, PIL image or path), white = hole, like `maskgit masks` writes.

    A mask at the original image's size is centre-cropped like the image; a square mask of
    another size (the editor's upscaled canvas) is scaled, a pixel being hole when any part
    of it is. None means an empty mask.
    """
    if mask is None:
        return np.ones((size, size), bool)
    if isinstance(mask, dict):
        holes = [_hole_map(x) for x in (mask.get("layers") or []) if x is not None]
        if not holes:
            return np.ones((size, size), bool)
        if any(x.shape != holes[0].shape for x in holes):
            raise ImageInputError("the editor's layers differ in size")
        return ~_hole_at_size(np.maximum.reduce(holes), size, prepared)
    return ~_hole_at_size(_hole_map(mask), size, prepared)


def generated_known_mask(kind: str, seed: int, size: int) -> np.ndarray:
    """One of the project's generated hole shapes (masks.GENERATORS), True = known."""
    return generate_masks(kind, 1, size, int(seed))[0]


def hole_layer(known: np.ndarray, scale: int = 1) -> np.ndarray:
    """An RGBA brush layer showing the hole of `known` (for the editor)."""
    layer = np.zeros(known.shape + (4,), np.uint8)
    layer[~known] = HOLE_RGBA
    return upscale(layer, scale)


