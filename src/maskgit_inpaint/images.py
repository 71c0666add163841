"""Image and mask files at the edges: listing, pairing, reading, atomic PNG writing."""
from __future__ import annotations

import io
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


def pair_by_stem(files: list[Path], others: list[Path], what: str = "mask") -> list[Path]:
    """For each of `files`, the one of `others` with its file stem. A file without its match is
    an error that names it: pairing by sorted order would silently mix up a folder."""
    by_stem = {}
    for p in others:
        if p.stem in by_stem:
            raise InputError(f"{p}: two {what}s named {p.stem!r} ({by_stem[p.stem].name}, {p.name})")
        by_stem[p.stem] = p
    missing = [p for p in files if p.stem not in by_stem]
    if missing:
        where = others[0].parent if others else "?"
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{missing[0]}: no {what} named {missing[0].stem}.* in {where}{more}; "
                         f"{what}s pair with images by file stem")
    return [by_stem[p.stem] for p in files]


def pair_files(images_path, masks_path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of two folders by file stem (see `pair_by_stem`); a single mask file
    serves every image (one mask for a whole folder, as in IOPaint)."""
    images = list_images(images_path, "image", allow_file=True)
    masks = list_images(masks_path, "mask", allow_file=True)
    if Path(masks_path).is_file():
        return [(p, masks[0]) for p in images]
    return list(zip(images, pair_by_stem(images, masks)))


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


def read_mask(path: str | Path, shape: tuple[int, int] | None = None, invert: bool = False) -> np.ndarray:
    """(H, W) bool known mask (True = known) from a mask file: white (>= 128) = hole, as in
    diffusers, LaMa and IOPaint; with `invert`, black = hole (masks drawn the other way)."""
    return as_known_mask(Path(path), shape, str(path), invert=invert)


def hole_warning(known: np.ndarray, name: str) -> str | None:
    """A warning for a mask that is probably not what its author meant: no hole at all, or
    almost all hole (often a mask drawn the other way round)."""
    share = 1.0 - float(known.mean()) if known.size else 0.0
    if share == 0.0:
        return f"{name}: the mask has no hole (white = hole); the image is returned unchanged"
    if share > 0.9:
        return (f"{name}: the mask is {100 * share:.0f}% hole, so almost nothing of the image is kept "
                "(white = hole; pass --invert-mask / invert_mask=True for masks with black holes)")
    return None


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """list of (H,W,3) uint8 -> (B,3,H,W) float in [0,1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def quantize(images01: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) float in [0,1] -> uint8 tensor of the same shape, rounded as a saved PNG is."""
    return (images01.clamp(0, 1) * 255).round().to(torch.uint8)


def to_uint8(images01: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) float [0,1] -> (B,H,W,3) uint8 arrays."""
    return quantize(images01).permute(0, 2, 3, 1).cpu().numpy()


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Atomic PNG write: a temporary name, then a rename."""
    img = Image.fromarray(array)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def as_rgb_array(obj, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB from a path, bytes, a PIL image or a numpy array (gray, RGB or RGBA;
    uint8, uint16 or float in [0, 1]), read as `open_image` reads files."""
    if isinstance(obj, np.ndarray):
        a = obj
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)) or min(a.shape[:2]) < 1:
            raise InputError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {a.shape}")
        if a.dtype == np.uint16:
            obj = ((a.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
        elif np.issubdtype(a.dtype, np.floating) and (not np.isfinite(a).all() or a.min() < 0 or a.max() > 1):
            raise InputError(f"{name}: a float image must hold values in [0, 1]")
        elif a.dtype == bool:
            obj = a.astype(np.uint8) * 255
        elif a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
            raise InputError(f"{name}: unsupported array dtype {a.dtype} (use uint8, uint16 or float)")
    elif not isinstance(obj, (str, Path, Image.Image, bytes, bytearray, memoryview)):
        raise InputError(f"{name}: expected a path, a PIL image or a numpy array, got {type(obj).__name__}")
    return np.asarray(to_rgb(open_any(obj)), dtype=np.uint8)


def read_rgba(obj, name: str = "image") -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) uint8 RGB as `as_rgb_array` reads it, and the (H, W) alpha channel of a picture
    that has one (None for an opaque one), so that an output can keep the input's transparency."""
    if isinstance(obj, np.ndarray) or not isinstance(obj, (str, Path, Image.Image, bytes, bytearray, memoryview)):
        rgb = as_rgb_array(obj, name)
        has_alpha = isinstance(obj, np.ndarray) and obj.ndim == 3 and obj.shape[2] == 4
        return rgb, (np.asarray(open_any(obj).convert("RGBA"))[..., 3].copy() if has_alpha else None)
    img = open_image(Path(obj)) if isinstance(obj, (str, Path)) else open_any(obj)
    rgb = np.asarray(to_rgb(img), dtype=np.uint8)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        return rgb, np.asarray(img.convert("RGBA"))[..., 3].copy()
    return rgb, None


def as_known_mask(obj, shape: tuple[int, int] | None, name: str = "mask", invert: bool = False) -> np.ndarray:
    """(H, W) bool known mask (True = known) from a mask image, path or array: white (>= 128)
    is hole, or black with `invert`. A bool array is taken as True = hole."""
    if isinstance(obj, np.ndarray) and obj.dtype == bool:
        hole = obj if obj.ndim == 2 else obj.any(-1)
        hole = ~hole if invert else hole
    else:
        if isinstance(obj, (str, Path)):
            gray = np.asarray(open_image(Path(obj)).convert("L"))
        else:
            gray = np.asarray(Image.fromarray(as_rgb_array(obj, name)).convert("L"))
        hole = gray < 128 if invert else gray >= 128
    if shape is not None and hole.shape != tuple(shape):
        raise InputError(f"{name}: mask is {hole.shape[1]}x{hole.shape[0]} but its image is {shape[1]}x{shape[0]}")
    return ~hole


def resize_known(known: np.ndarray, size: int) -> np.ndarray:
    """A known mask at the model's `size`: a model pixel is known only where every pixel it
    covers is known, so no part of a hole is ever taken as known."""
    if known.shape == (size, size):
        return known
    hole = torch.from_numpy(~known)[None, None].float()
    small = torch.nn.functional.adaptive_max_pool2d(hole, size) if min(known.shape) >= size else \
        torch.nn.functional.interpolate(hole, size=(size, size), mode="nearest")
    return ~(small[0, 0] > 0).numpy()


def load_pairs(images_dir, masks_dir, invert: bool = False, bad: list | None = None):
    """Every image and mask of two folders (or two files), read and checked before anything is
    written: (pairs of paths, (H, W, 3) uint8 arrays at full size, (H, W) bool known masks).
    With a `bad` list, a pair whose image or mask cannot be used is left out and its error message
    appended there (so one broken file does not stop a folder); otherwise it raises InputError."""
    pairs = pair_files(images_dir, masks_dir)
    stems = [p.stem for p, _ in pairs]
    dup = {s for s in stems if stems.count(s) > 1}
    if dup:
        raise InputError(f"{images_dir}: several images share the name {sorted(dup)[0]!r}; outputs would collide")
    good, imgs, known = [], [], []
    for ip, mp in pairs:
        try:
            img = np.asarray(to_rgb(open_image(ip)), dtype=np.uint8)
            k = read_mask(mp, img.shape[:2], invert)
        except InputError as e:
            if bad is None:
                raise
            bad.append(str(e))
            continue
        good.append((ip, mp))
        imgs.append(img)
        known.append(k)
    return good, imgs, known


def open_any(source, max_bytes: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """A PIL image from an array, a PIL image, a path or bytes (upright, 8-bit), refusing files over
    `max_bytes` and pictures over `max_pixels` (decompression bombs) before decoding; InputError
    naming the source otherwise."""
    if isinstance(source, Image.Image):
        try:
            return normalize_image(source, "the image")
        except InputError as e:
            raise InputError(str(e)) from None
    if isinstance(source, np.ndarray):
        arr = source
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(arr, 0, 255).round().astype(np.uint8)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4)):
            return Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
        raise InputError(f"expected an (H, W, 3) image array, got shape {arr.shape}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "the upload"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        name = path.name
        if not path.is_file():
            raise InputError(f"{name}: file not found")
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise InputError(f"{name}: larger than {max_bytes // 2**20}mb; upload a smaller image")
        data = path.read_bytes()
    else:
        raise InputError(f"expected an image, got {type(source).__name__}")
    try:
        img = Image.open(io.BytesIO(data))
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise InputError(f"{name} is {img.width}x{img.height} pixels, more than {max_pixels // 10**6} "
                             "megapixels; upload a smaller image")
        img.load()
        return normalize_image(img, name)  # upright, 8-bit
    except InputError as e:
        raise InputError(str(e)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, InputError):
            raise
        kind = "not an image" if isinstance(e, UnidentifiedImageError) else f"an unreadable image ({e})"
        raise InputError(f"{name} is {kind}: upload a PNG, JPEG, WebP or BMP picture") from None


