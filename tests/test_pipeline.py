"""InpaintPipeline: real images of any size and mode in, PIL images out, pixels outside the hole kept."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from maskgit_inpaint import InpaintPipeline
from maskgit_inpaint.images import InputError


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return InpaintPipeline.from_pretrained(tiny_model_dir, device="cpu", steps=3)


def _hole(h, w):
    m = np.zeros((h, w), np.uint8)
    m[h // 4: h // 2, w // 3: 2 * w // 3] = 255  # white = hole
    return m


@pytest.mark.parametrize("size", [(64, 64), (90, 120), (40, 50)])
def test_any_size_keeps_every_pixel_outside_the_grown_hole(pipe, tools, size):
    h, w = size
    rgb = np.asarray(Image.fromarray(tools.synthetic_image(np.random.default_rng(1))).resize((w, h)))
    mask = _hole(h, w)
    out = pipe(Image.fromarray(rgb), Image.fromarray(mask), seed=0)
    assert isinstance(out, Image.Image) and out.size == (w, h) and out.mode == "RGB"
    a = np.asarray(out)
    far = ~np.asarray(Image.fromarray(mask).filter(ImageFilter.MaxFilter(2 * (max(h, w) // 64 + 1) + 3))).astype(bool)
    assert np.array_equal(a[far], rgb[far])
    assert not np.array_equal(a[mask > 0], rgb[mask > 0])


def test_paths_arrays_lists_seeds_and_settings(pipe, tools, tmp_path):
    rgb = tools.synthetic_image(np.random.default_rng(2))
    mask = _hole(64, 64)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    one = pipe(tmp_path / "a.png", tmp_path / "m.png", seed=3)
    assert np.array_equal(np.asarray(one), np.asarray(pipe(rgb, mask, seed=3)))  # path == array
    rgba = np.dstack([rgb, np.full((64, 64), 255, np.uint8)])
    assert np.array_equal(np.asarray(pipe(rgba, mask, seed=3))[..., :3], np.asarray(one))  # opaque RGBA == RGB
    both = pipe([rgb, rgb], [mask, mask], seed=3)
    assert isinstance(both, list) and len(both) == 2
    assert not np.array_equal(np.asarray(pipe(rgb, mask, seed=4)), np.asarray(one))
    assert not np.array_equal(np.asarray(pipe(rgb, mask, seed=3, gamma="linear", steps=5)), np.asarray(one))
    gray16 = (rgb.mean(-1) * 257).astype(np.uint16)
    assert pipe(gray16, mask).size == (64, 64)


def test_bad_inputs_name_the_problem(pipe, tools, tmp_path):
    rgb = tools.synthetic_image(np.random.default_rng(2))
    with pytest.raises(InputError, match="mask is 32x32 but its image is 64x64"):
        pipe(rgb, np.zeros((32, 32), np.uint8))
    (tmp_path / "t.png").write_text("not a picture")
    with pytest.raises(InputError, match="t.png"):
        pipe(tmp_path / "t.png", _hole(64, 64))
    with pytest.raises(ValueError, match="steps"):
        pipe(rgb, _hole(64, 64), steps=0)
    with pytest.raises(ValueError, match="unknown mask schedule .nope."):
        pipe(rgb, _hole(64, 64), gamma="nope")
    with pytest.raises(ValueError, match="unknown inpainting setting"):
        pipe(rgb, _hole(64, 64), stepz=4)
    with pytest.raises(InputError, match="2 images but 3 masks"):
        pipe([rgb, rgb], [_hole(64, 64)] * 3)
