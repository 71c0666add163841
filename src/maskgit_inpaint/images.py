"""Image and mask files at the edges: listing, pairing, reading, atomic PNG writing."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .checkpoints import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
IMAGE_KINDS = ", ".join(s[1:] for s in IMAGE_SUFFIXES)  # for messages: "png, jpg, ..."


class InputError(ValueError):
    """Bad user input: the message names the file and the problem."""


def list_images(folder: str | Path, what: str = "image", allow_file: bool = False) -> list[Path]:
    """Sorted image files directly in `folder`; with `allow_file`, a single image file stands for itself."""
    folder = Path(folder)
    if allow_file and folder.is_file():
        if folder.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{folder}: not an image file ({IMAGE_KINDS})")
        return [folder]
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} {'file or folder' if allow_file else 'folder'} not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no {what} files ({IMAGE_KINDS})")
    return files


def pair_files(images: list[Path], masks: list[Path]) -> list[tuple[Path, Path]]:
    """Pair by file stem when every image has a same-stem mask, else by sorted order."""
    by_stem = {m.stem: m for m in masks}
    if len(by_stem) == len(masks) and all(p.stem in by_stem for p in images):
        return [(p, by_stem[p.stem]) for p in images]
    if len(images) != len(masks):
        raise InputError(f"{len(images)} images but {len(masks)} masks in {masks[0].parent}, and their "
                         "file stems do not match: masks pair with images by stem, else by sorted order")
    return list(zip(images, masks))


def open_image(path: Path) -> Image.Image:
    """Open and decode a file the way every reader here sees it (see `normalize_image`)."""
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable or corrupt image ({e})") from None
    return normalize_image(img, path)


def normalize_image(img: Image.Image, name: str | Path) -> Image.Image:
    """Upright (EXIF orientation applied, as viewers show photos) and at most 8 bits per channel:
    16-bit grayscale is scaled to 0-255, since Pillow's convert("RGB"/"L") clips it to white."""
    img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise InputError(f"{name}: {img.mode} image has values outside 0-65535; save it as 8-bit")
        # "I" holds 8-bit data when every value fits; otherwise both modes hold 16-bit data
        if img.mode.startswith("I;16") or (arr.size and arr.max() > 255):
            arr = (arr * 255 + 32767) // 65535
        return Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode == "F":
        raise InputError(f"{name}: 32-bit float images are not supported; save it as 8-bit")
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB; transparent areas flattened onto white (as a viewer shows them), not onto whatever
    colour the transparent pixels happen to store."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        img = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", img.size, "white"), img).convert("RGB")
    return img.convert("RGB")


def read_image(path: str | Path, size: int | None = None, strict: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 RGB; resized to `size` with a warning (or an error when strict)."""
    return fit_image(open_image(Path(path)), path, size, strict)


def fit_image(img: Image.Image, path: str | Path, size: int | None = None, strict: bool = False) -> np.ndarray:
    """`read_image` for an image already opened with `open_image` (`path` names it in messages)."""
    img = to_rgb(img)
    if size is not None and img.size != (size, size):
        if strict:
            raise InputError(f"{path}: image is {img.size[0]}x{img.size[1]}, expected {size}x{size} (--strict-size)")
        warnings.warn(f"{path}: resized from {img.size[0]}x{img.size[1]} to {size}x{size}", stacklevel=2)
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def read_mask(path: str | Path, shape: tuple[int, int] | None = None, hole_value: int = 0) -> np.ndarray:
    """(H, W) bool, True = known pixel. Grayscale thresholded at 128; 0 = hole unless hole_value=255."""
    path = Path(path)
    img = open_image(path).convert("L")
    arr = np.asarray(img) >= 128
    if shape is not None and arr.shape != tuple(shape):
        raise InputError(f"{path}: mask is {arr.shape[1]}x{arr.shape[0]} but its image is {shape[1]}x{shape[0]}")
    return arr if hole_value == 0 else ~arr


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool known-mask (holes stay holes)."""
    img = Image.fromarray((mask * 255).astype(np.uint8)).resize((size, size), Image.NEAREST)
    return np.asarray(img) >= 128


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """list of (H,W,3) uint8 -> (B,3,H,W) float in [0,1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(images01: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) float [0,1] -> (B,H,W,3) uint8."""
    return (images01.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Atomic PNG write: a temporary name, then a rename."""
    img = Image.fromarray(array)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
