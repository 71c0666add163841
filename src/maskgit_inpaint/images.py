"""Image and mask files at the edges: listing, pairing, reading, atomic PNG writing."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .checkpoints import atomic_write

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class InputError(ValueError):
    """Bad user input: the message names the file and the problem."""


def list_images(folder: str | Path, what: str = "image") -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no {what} files (png, jpg, jpeg, webp, bmp)")
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
    try:
        img = Image.open(path)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable or corrupt image ({e})") from None


def read_image(path: str | Path, size: int | None = None, strict: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 RGB; resized to `size` with a warning (or an error when strict)."""
    path = Path(path)
    img = open_image(path).convert("RGB")
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
