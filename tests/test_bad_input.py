"""Bad input, over the CLI and InpaintPipeline: each case gives a clear error naming the file and
the problem (non-zero exit, one line, no traceback); a folder with one bad file still writes the
good ones and lists the bad; odd but valid images (RGBA, grayscale, 16-bit, palette) just work."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image, ImageFilter

from maskgit_inpaint import InpaintPipeline
from maskgit_inpaint.cli import main
from maskgit_inpaint.images import InputError

GOOD = ["a", "b", "c"]


def _png_bytes(rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _inputs(tools, root, stems=GOOD, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    data = {}
    for s in stems:
        rgb, known = tools.synthetic_image(rng), tools.synthetic_mask(rng)
        tools.write_png(rgb, root / "images" / f"{s}.png")
        tools.write_mask(known, root / "masks" / f"{s}.png")
        data[s] = (rgb, known)
    return root / "images", root / "masks", data


def _run(model, images, masks, out, *extra):
    """The exit code, whether main returns it or argparse exits with it."""
    try:
        return _main(model, images, masks, out, *extra)
    except SystemExit as e:
        return e.code


def _main(model, images, masks, out, *extra):
    return main(["inpaint", "--images", str(images), "--masks", str(masks), "--out", str(out), "--model", str(model),
                 "--device", "cpu", "--steps", "2", *map(str, extra)])


def _outputs(out):
    return sorted(p.name for p in out.glob("*.png")) if out.exists() else []


# ----------------------------------------------------------------------------- broken files
def _corrupt(path, rgb):
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)


def _truncated(path, rgb):
    data = _png_bytes(rgb)
    path.write_bytes(data[: len(data) // 2])


def _text(path, rgb):
    path.write_text("this is a text file, not a picture\n")


def _empty_file(path, rgb):
    path.write_bytes(b"")


BROKEN = [_corrupt, _truncated, _text, _empty_file]


@pytest.mark.parametrize("which", ["images", "masks"])
@pytest.mark.parametrize("breaker", BROKEN, ids=lambda f: f.__name__[1:])
def test_a_folder_with_one_broken_file_writes_the_good_ones_and_lists_the_bad(tools, tiny_model_dir, tmp_path,
                                                                             capsys, breaker, which):
    images, masks, data = _inputs(tools, tmp_path / "in")
    breaker((images if which == "images" else masks) / "b.png", data["b"][0])
    out = tmp_path / "out"
    rc = _run(tiny_model_dir, images, masks, out)
    err = capsys.readouterr().err
    assert rc == 1
    assert _outputs(out) == ["a.png", "c.png"]
    assert "1 of 3 inputs skipped" in err and f"{which}/b.png" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("breaker", BROKEN, ids=lambda f: f.__name__[1:])
def test_one_broken_image_file_is_an_error_naming_it(tools, tiny_model_dir, tmp_path, capsys, breaker):
    images, masks, data = _inputs(tools, tmp_path / "in", stems=["a"])
    breaker(images / "a.png", data["a"][0])
    rc = _run(tiny_model_dir, images / "a.png", masks / "a.png", tmp_path / "out")
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "a.png" in lines[0] and "Traceback" not in lines[0]
    assert _outputs(tmp_path / "out") == []


@pytest.mark.parametrize("breaker", BROKEN, ids=lambda f: f.__name__[1:])
def test_the_pipeline_names_a_broken_file(tools, tiny_model_dir, tmp_path, breaker):
    pipe = InpaintPipeline.from_pretrained(tiny_model_dir, device="cpu", steps=2)
    rgb = tools.synthetic_image(np.random.default_rng(0))
    breaker(tmp_path / "broken.png", rgb)
    with pytest.raises(InputError, match="broken.png"):
        pipe(tmp_path / "broken.png", np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError, match="broken.png"):
        pipe(rgb, tmp_path / "broken.png")


def test_a_mask_of_another_size_is_listed_and_the_rest_written(tools, tiny_model_dir, tmp_path, capsys):
    images, masks, _ = _inputs(tools, tmp_path / "in")
    tools.write_mask(np.ones((32, 32), bool), masks / "c.png")
    rc = _run(tiny_model_dir, images, masks, tmp_path / "out")
    err = capsys.readouterr().err
    assert rc == 1 and _outputs(tmp_path / "out") == ["a.png", "b.png"]
    assert "c.png: mask is 32x32 but its image is 64x64" in err
    pipe = InpaintPipeline.from_pretrained(tiny_model_dir, device="cpu", steps=2)
    with pytest.raises(InputError, match="mask is 32x32 but its image is 64x64"):
        pipe(images / "a.png", np.zeros((32, 32), np.uint8))


# ----------------------------------------------------------------------------- masks at the extremes
def test_an_empty_mask_returns_the_image_unchanged(tools, tiny_model_dir, tmp_path):
    images, masks, data = _inputs(tools, tmp_path / "in", stems=["a"])
    tools.write_mask(np.ones((64, 64), bool), masks / "a.png")  # nothing to fill
    assert _run(tiny_model_dir, images, masks, tmp_path / "out") == 0
    assert np.array_equal(tools.read_rgb(tmp_path / "out" / "a.png"), data["a"][0])
    pipe = InpaintPipeline.from_pretrained(tiny_model_dir, device="cpu", steps=2)
    assert np.array_equal(np.asarray(pipe(data["a"][0], np.zeros((64, 64), np.uint8))), data["a"][0])


def test_a_full_mask_generates_the_whole_image(tools, tiny_model_dir, tmp_path):
    images, masks, data = _inputs(tools, tmp_path / "in", stems=["a"])
    tools.write_mask(np.zeros((64, 64), bool), masks / "a.png")  # all hole
    assert _run(tiny_model_dir, images, masks, tmp_path / "out") == 0
    out = tools.read_rgb(tmp_path / "out" / "a.png")
    assert out.shape == (64, 64, 3) and not np.array_equal(out, data["a"][0])
    pipe = InpaintPipeline.from_pretrained(tiny_model_dir, device="cpu", steps=2)
    full = np.asarray(pipe(data["a"][0], np.full((64, 64), 255, np.uint8), seed=0))
    assert not np.array_equal(full, data["a"][0])
    assert np.array_equal(full, np.asarray(pipe(data["a"][0], np.full((64, 64), 255, np.uint8), seed=0)))


# ----------------------------------------------------------------------------- odd but valid modes
def _rgba(rgb):
    return Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA")


def _gray(rgb):
    return Image.fromarray(rgb).convert("L")


def _gray16(rgb):
    return Image.fromarray(np.asarray(Image.fromarray(rgb).convert("L"), np.uint16) * 257)


def _palette(rgb):
    return Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=64)


@pytest.mark.parametrize("mode", [_rgba, _gray, _gray16, _palette], ids=lambda f: f.__name__[1:])
def test_rgba_gray_16bit_and_palette_images_keep_their_known_pixels(tools, tiny_model_dir, tmp_path, mode):
    images, masks, data = _inputs(tools, tmp_path / "in", stems=["a"])
    rgb, known = data["a"]
    img = mode(rgb)
    img.save(images / "a.png")
    want = np.asarray(Image.open(images / "a.png").convert("RGB")) if mode is not _gray16 else \
        np.repeat(np.asarray(_gray(rgb))[..., None], 3, -1)
    assert _run(tiny_model_dir, images, masks, tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "a.png") as im:
        out = np.asarray(im)
    if mode is _rgba:  # the alpha channel comes back as it was
        assert out.shape == (64, 64, 4) and (out[..., 3] == 255).all()
        out = out[..., :3]
    assert out.shape == (64, 64, 3)
    grown = np.asarray(Image.fromarray(~known).filter(ImageFilter.MaxFilter(5)))
    assert np.array_equal(out[~grown], want[~grown])


# ----------------------------------------------------------------------------- settings
@pytest.mark.parametrize("flags,match", [(["--steps", "0"], "steps"), (["--steps", "-3"], "steps"),
                                         (["--gamma", "nope"], "nope")])
def test_bad_steps_and_schedule_are_refused_before_any_work(tools, tiny_model_dir, tmp_path, capsys, flags, match):
    images, masks, _ = _inputs(tools, tmp_path / "in", stems=["a"])
    assert _run(tiny_model_dir, images, masks, tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert _outputs(tmp_path / "out") == []
    pipe = InpaintPipeline.from_pretrained(tiny_model_dir, device="cpu")
    key, value = flags[0].lstrip("-"), flags[1]
    with pytest.raises(ValueError, match=match):
        pipe(np.zeros((64, 64, 3), np.uint8), np.full((64, 64), 255, np.uint8),
             **{key: int(value) if key == "steps" else value})


# ----------------------------------------------------------------------------- model directories
def _garbage(path):
    path.write_bytes(b"\x00\x01 not safetensors at all " * 10)


def _half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _missing(path):
    path.unlink()


@pytest.mark.parametrize("file", ["tokenizer.safetensors", "transformer.safetensors", "config.yaml"])
@pytest.mark.parametrize("breaker", [_garbage, _half, _missing], ids=lambda f: f.__name__[1:])
def test_a_broken_model_directory_names_the_file(tools, tiny_model_dir, tmp_path, capsys, file, breaker):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    breaker(model / file)
    images, masks, _ = _inputs(tools, tmp_path / "in", stems=["a"])
    rc = _run(model, images, masks, tmp_path / "out")
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and file in lines[0], lines
    assert "Traceback" not in lines[0]
    assert _outputs(tmp_path / "out") == []
    with pytest.raises(ValueError, match=file.replace(".", r"\.")):
        InpaintPipeline.from_pretrained(model, device="cpu")
