"""Image decoding shared by every reader (CLI inpaint, training data, evaluation, web app):
16-bit grayscale scaled rather than clipped to white, EXIF orientation applied, transparency
flattened onto white, TIFF accepted everywhere, and clear errors for what cannot be read."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskgit_inpaint import app, data, evaluation, images
from maskgit_inpaint.images import InputError, list_images, read_image, read_mask

GRADIENT16 = (np.arange(64 * 64, dtype=np.int64).reshape(64, 64) * 65535 // (64 * 64 - 1)).astype(np.uint16)
EXPECTED8 = (GRADIENT16.astype(np.int64) * 255 + 32767) // 65535


def _app_rgb(path: Path) -> np.ndarray:
    return app.prepare_image(path, 64).array


READERS = {
    "read_image": lambda p: read_image(p),
    "load_rgb": lambda p: data.load_rgb(p, 64),
    "evaluation": lambda p: evaluation.load_image_files([p])[0].permute(1, 2, 0).numpy(),
    "app": _app_rgb,
}


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_16bit_grayscale_is_scaled_not_clipped_to_white(tmp_path, suffix, reader):
    path = tmp_path / f"g16{suffix}"
    Image.fromarray(GRADIENT16).save(path)
    assert Image.open(path).mode.startswith("I")  # the case Pillow's convert("RGB") clips
    rgb = READERS[reader](path)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], EXPECTED8)


def test_16bit_mask_thresholds_at_half_of_its_range(tmp_path):
    mask16 = np.zeros((8, 8), np.uint16)
    mask16[:, 4:] = 65535
    mask16[0, 0] = 200  # a small 16-bit value is dark, so known, not "hole" after clipping
    path = tmp_path / "m.png"
    Image.fromarray(mask16).save(path)
    known = read_mask(path)
    assert known[:, :4].all() and not known[:, 4:].any()  # white = hole


@pytest.mark.parametrize("reader", sorted(READERS))
def test_exif_orientation_is_applied(tmp_path, reader):
    # stored: left half black, right half white; orientation 6 = "rotate 90 CW to view",
    # so the viewed picture has its top half black and bottom half white
    stored = np.zeros((64, 64, 3), np.uint8)
    stored[:, 32:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.png"
    Image.fromarray(stored).save(path, exif=exif)
    rgb = READERS[reader](path).astype(int)
    assert rgb[:28].mean() < 20 and rgb[36:].mean() > 235


@pytest.mark.parametrize("reader", sorted(READERS))
def test_transparent_pixels_are_flattened_onto_white(tmp_path, reader):
    rgba = np.zeros((64, 64, 4), np.uint8)  # transparent black everywhere ...
    rgba[:, :32] = (200, 10, 10, 255)       # ... but an opaque red left half
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    rgb = READERS[reader](path).astype(int)
    assert abs(rgb[:, 4:28] - np.array([200, 10, 10])).max() <= 2
    assert rgb[:, 36:].min() >= 253


def test_tiff_is_listed_by_every_folder_reader(tmp_path):
    arr = np.full((64, 64, 3), 90, np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.tif")
    Image.fromarray(arr).save(tmp_path / "b.tiff")
    names = ["a.tif", "b.tiff"]
    assert [p.name for p in list_images(tmp_path)] == names
    assert [p.name for p in data.find_images(tmp_path)] == names
    assert [p.name for p in evaluation.list_image_files(tmp_path)] == names


def test_empty_folder_error_names_the_folder_and_the_accepted_suffixes(tmp_path):
    with pytest.raises(InputError, match=r"no image files \(png, jpg, jpeg, webp, bmp, tif, tiff\)") as e:
        list_images(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(evaluation.EvaluationInputError, match="no prediction files"):
        evaluation.list_image_files(tmp_path, "prediction")


def test_float_images_are_refused_with_the_file_named(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.random.default_rng(0).random((8, 8), dtype=np.float32), mode="F").save(path)
    with pytest.raises(InputError, match=r"f\.tif: 32-bit float images are not supported"):
        read_image(path)
    with pytest.raises(evaluation.EvaluationInputError, match=r"f\.tif: 32-bit float"):
        evaluation.load_image_files([path])
    with pytest.raises(app.ImageInputError, match="32-bit float"):
        app.prepare_image(path, 64)


def test_8bit_data_in_a_32bit_integer_image_is_kept_as_is():
    arr = (np.arange(64, dtype=np.int32).reshape(8, 8) * 4)  # 0..252: 8-bit values in mode "I"
    img = Image.fromarray(arr, mode="I")
    out = np.asarray(images.normalize_image(img, "x"))
    np.testing.assert_array_equal(out, arr.astype(np.uint8))
