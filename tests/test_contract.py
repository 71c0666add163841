"""One inpainting contract through every door: the CLI, InpaintPipeline and the web app read masks
the same way (white = hole), seed an image the same way, and give the same pixels."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_inpaint import InpaintPipeline
from maskgit_inpaint.app.run import run_inpaint
from maskgit_inpaint.cli import main
from maskgit_inpaint.images import InputError
from maskgit_inpaint.pipeline import image_seeds, model_region


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return InpaintPipeline.from_pretrained(tiny_model_dir, device="cpu", steps=3)


def _hole(h, w, box=None):
    m = np.zeros((h, w), np.uint8)
    y0, y1, x0, x1 = box or (h // 4, h // 2, w // 3, 2 * w // 3)
    m[y0:y1, x0:x1] = 255  # white = hole
    return m


def _cli(model_dir, images, masks, out, *extra):
    return main(["inpaint", "--model", str(model_dir), "--images", str(images), "--masks", str(masks),
                 "--out", str(out), "--device", "cpu", "--steps", "3", *extra])


def test_one_image_mask_and_seed_give_the_same_pixels_through_every_door(pipe, tiny_model_dir, tools, tmp_path):
    rgb = tools.synthetic_image(np.random.default_rng(5))
    mask = _hole(64, 64)
    tools.write_png(rgb, tmp_path / "in" / "cat.png")
    tools.write_png(mask, tmp_path / "masks" / "cat.png")
    assert _cli(tiny_model_dir, tmp_path / "in", tmp_path / "masks", tmp_path / "out", "--seed", "7") == 0
    cli = tools.read_rgb(tmp_path / "out" / "cat.png")
    python = np.asarray(pipe(rgb, mask, seed=7))
    app = run_inpaint(pipe, rgb, mask, seed=7).result
    assert np.array_equal(cli, python)
    assert np.array_equal(app, python)
    # the same image under another name, in a batch with others, is seeded the same
    other = tools.synthetic_image(np.random.default_rng(6))
    batch = pipe([other, rgb], [mask, mask], seed=7)
    assert np.array_equal(np.asarray(batch[1]), python)
    assert not np.array_equal(np.asarray(pipe(rgb, mask, seed=8)), python)


def test_the_seed_depends_on_the_known_pixels_only(tools):
    x = torch.rand(2, 3, 16, 16)
    known = torch.ones(2, 16, 16, dtype=torch.bool)
    known[:, 4:8, 4:8] = False
    y = x.clone()
    y[:, :, 4:8, 4:8] = 0.5  # other content inside the hole
    assert torch.equal(image_seeds(0, x, known), image_seeds(0, y, known))
    assert image_seeds(0, x, known)[0] != image_seeds(0, x, known)[1]
    assert not torch.equal(image_seeds(0, x, known), image_seeds(1, x, known))
    assert ((image_seeds(10 ** 12, x, known) >= 0) & (image_seeds(10 ** 12, x, known) < 2 ** 31)).all()


def test_white_is_hole_everywhere_and_invert_mask_reads_black_holes(pipe, tiny_model_dir, tools, tmp_path):
    rgb = tools.synthetic_image(np.random.default_rng(2))
    white = _hole(64, 64)
    tools.write_png(rgb, tmp_path / "in" / "a.png")
    tools.write_png(white, tmp_path / "white" / "a.png")
    tools.write_png(255 - white, tmp_path / "black" / "a.png")
    assert _cli(tiny_model_dir, tmp_path / "in", tmp_path / "white", tmp_path / "o1") == 0
    assert _cli(tiny_model_dir, tmp_path / "in", tmp_path / "black", tmp_path / "o2", "--invert-mask") == 0
    a, b = tools.read_rgb(tmp_path / "o1" / "a.png"), tools.read_rgb(tmp_path / "o2" / "a.png")
    assert np.array_equal(a, b)
    assert np.array_equal(a, np.asarray(pipe(rgb, white)))
    assert np.array_equal(a, np.asarray(pipe(rgb, 255 - white, invert_mask=True)))
    # the old flag still works: --hole-value 0 means black = hole
    assert _cli(tiny_model_dir, tmp_path / "in", tmp_path / "black", tmp_path / "o3", "--hole-value", "0") == 0
    assert np.array_equal(tools.read_rgb(tmp_path / "o3" / "a.png"), a)


def test_masks_that_are_probably_wrong_are_named_in_a_warning(pipe, tiny_model_dir, tools, tmp_path, capsys):
    rgb = tools.synthetic_image(np.random.default_rng(3))
    with pytest.warns(UserWarning, match=r"image 0: the mask is 9[0-9]% hole.*invert_mask"):
        pipe(rgb, 255 - _hole(64, 64, (0, 5, 0, 64)))
    with pytest.warns(UserWarning, match="image 0: the mask has no hole"):
        out = pipe(rgb, np.zeros((64, 64), np.uint8))
    assert np.array_equal(np.asarray(out), rgb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe(rgb, _hole(64, 64))  # an ordinary hole: no warning
    tools.write_png(rgb, tmp_path / "in" / "cat.png")
    tools.write_png(255 - _hole(64, 64, (0, 5, 0, 64)), tmp_path / "masks" / "cat.png")
    assert _cli(tiny_model_dir, tmp_path / "in", tmp_path / "masks", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "masks/cat.png" not in err and "cat.png: the mask is" in err and "--invert-mask" in err


def test_masks_pair_by_stem_only_or_one_mask_serves_all(tiny_model_dir, tools, tmp_path, capsys):
    for stem in ("a", "b"):
        tools.write_png(tools.synthetic_image(np.random.default_rng(len(stem))), tmp_path / "in" / f"{stem}.png")
    tools.write_png(_hole(64, 64), tmp_path / "masks" / "a.png")
    tools.write_png(_hole(64, 64), tmp_path / "masks" / "zzz.png")
    assert _cli(tiny_model_dir, tmp_path / "in", tmp_path / "masks", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "in/b.png: no mask named b.* in" in err and "by file stem" in err
    assert _cli(tiny_model_dir, tmp_path / "in", tmp_path / "masks" / "a.png", tmp_path / "one") == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["a.png", "b.png"]


def test_a_list_runs_as_one_batch(pipe, tools, monkeypatch):
    calls = []
    real = InpaintPipeline.generate

    def spy(self, images01, *a, **kw):
        calls.append(len(images01))
        return real(self, images01, *a, **kw)

    monkeypatch.setattr(InpaintPipeline, "generate", spy)
    imgs = [tools.synthetic_image(np.random.default_rng(i)) for i in range(5)]
    big = np.asarray(Image.fromarray(imgs[0]).resize((100, 80)))
    outs = pipe(imgs + [big], [_hole(64, 64)] * 5 + [_hole(80, 100)], seed=1)
    assert calls == [6]  # every image, of any size, goes to the model at its size in one batch
    assert outs[5].size == (100, 80)
    calls.clear()
    alone = pipe(imgs[2], _hole(64, 64), seed=1)
    assert np.array_equal(np.asarray(alone), np.asarray(outs[2]))
    calls.clear()
    pipe(imgs, [_hole(64, 64)] * 5, seed=1, batch_size=2)
    assert calls == [2, 2, 1]


def test_crop_mode_inpaints_a_square_around_the_hole(pipe, tools):
    # a 300x200 photo with a 30x20 hole: the model sees a 64x64 square around it, not the squashed photo
    known = np.ones((200, 300), bool)
    known[50:70, 200:230] = False
    assert model_region(known, 64) == (28, 183, 64, 64)
    assert model_region(known, 64, margin=40) == (5, 160, 110, 110)
    assert model_region(known, 64, mode="resize") == (0, 0, 200, 300)
    assert model_region(np.ones((200, 300), bool), 64) == (0, 0, 200, 300)  # no hole
    wide = np.ones((100, 400), bool)
    wide[40:60, 10:390] = False  # wider than the image is tall: the whole image, resized
    assert model_region(wide, 64) == (0, 0, 100, 400)
    rgb = np.asarray(Image.fromarray(tools.synthetic_image(np.random.default_rng(4))).resize((300, 200)))
    mask = np.where(known, 0, 255).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 64 px square: no upsampling, no warning
        out = np.asarray(pipe(rgb, mask, seed=0))
    changed = np.argwhere((out != rgb).any(-1))
    assert changed.size and changed[:, 0].min() >= 28 and changed[:, 1].min() >= 183
    assert changed[:, 0].max() < 28 + 64 and changed[:, 1].max() < 183 + 64
    with pytest.warns(UserWarning, match=r"upsampled 4\.7x"):
        squashed = np.asarray(pipe(rgb, mask, seed=0, resize_mode="resize"))
    assert not np.array_equal(squashed, out)
    with pytest.raises(InputError, match="resize_mode"):
        pipe(rgb, mask, resize_mode="stretch")


def test_an_rgba_image_keeps_its_alpha(pipe, tools, tmp_path, tiny_model_dir):
    rgb = tools.synthetic_image(np.random.default_rng(8))
    alpha = np.tile(np.linspace(40, 255, 64).astype(np.uint8), (64, 1))
    rgba = np.dstack([rgb, alpha])
    out = pipe(Image.fromarray(rgba, "RGBA"), _hole(64, 64), seed=2)
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png")
    tools.write_png(_hole(64, 64), tmp_path / "m" / "in.png")
    assert _cli(tiny_model_dir, tmp_path / "in.png", tmp_path / "m" / "in.png", tmp_path / "out", "--seed", "2") == 0
    with Image.open(tmp_path / "out" / "in.png") as im:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im), np.asarray(out))


def test_parsing_the_command_line_imports_no_torch():
    code = ("import sys; from maskgit_inpaint.cli import build_parser; p = build_parser(); "
            "p.parse_args(['inpaint', '--images', 'a', '--masks', 'b', '--out', 'c']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
