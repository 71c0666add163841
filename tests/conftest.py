"""Shared fixtures: a saved tiny random model and synthetic image/mask folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
LAB_VQGAN_SPEC = REPO_ROOT.parent / "shared" / "spec" / "lab_vqgan_state_dict.txt"

# The tensors in these tests are tiny: intra-op threads only add overhead (and thrash when
# the 2-core machine is shared), so run single-threaded.
torch.set_num_threads(1)


def tiny_config() -> dict:
    from maskgit_inpaint.config import preset

    return preset("tiny")


def make_tiny_model(seed: int = 0):
    from maskgit_inpaint.model import MaskGIT

    torch.manual_seed(seed)
    return MaskGIT(tiny_config()).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random MaskGIT saved as a model directory (shared; tests must not modify it)."""
    d = tmp_path_factory.mktemp("tiny_model")
    make_tiny_model(0).save(d)
    return d


@pytest.fixture(scope="session")
def weak_model_dir(tmp_path_factory) -> Path:
    """The tiny model of `tiny_model_dir` with another tiny transformer as its weak one (shared)."""
    d = tmp_path_factory.mktemp("weak_model")
    model = make_tiny_model(0)
    model.set_weak_transformer(make_tiny_model(1).transformer.state_dict())
    model.save(d)
    return d


def synthetic_image(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A smooth-ish colour image (gradient + a few rectangles), (size, size, 3) uint8."""
    yy, xx = np.mgrid[:size, :size] / max(size - 1, 1)
    base = np.stack([xx, yy, 1 - xx * yy], -1) * rng.uniform(80, 255, 3)
    img = base.copy()
    for _ in range(3):
        y0, x0 = rng.integers(0, size - 8, 2)
        h, w = rng.integers(4, size // 2, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 255, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_mask(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """(size, size) bool, True = known; one rectangular hole plus a few stray hole pixels."""
    m = np.ones((size, size), bool)
    y0, x0 = rng.integers(4, size // 2, 2)
    h, w = rng.integers(6, size // 3, 2)
    m[y0:y0 + h, x0:x0 + w] = False
    for y, x in rng.integers(0, size, (3, 2)):
        m[y, x] = False
    return m


def write_png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path


def write_mask(known: np.ndarray, path: Path, invert: bool = False) -> Path:
    """A mask file: white = hole (the package's convention), or black = hole with `invert`."""
    arr = np.where(known, 0, 255).astype(np.uint8)
    return write_png(255 - arr if invert else arr, path)


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB", f"{path}: mode {im.mode}"
        return np.asarray(im).copy()


class _Tools:
    """Helpers handed to tests as the `tools` fixture (no `import conftest` needed)."""

    tiny_config = staticmethod(tiny_config)
    make_tiny_model = staticmethod(make_tiny_model)
    synthetic_image = staticmethod(synthetic_image)
    synthetic_mask = staticmethod(synthetic_mask)
    write_png = staticmethod(write_png)
    write_mask = staticmethod(write_mask)
    read_rgb = staticmethod(read_rgb)
    lab_vqgan_spec = LAB_VQGAN_SPEC


@pytest.fixture(scope="session")
def tools() -> type[_Tools]:
    return _Tools
