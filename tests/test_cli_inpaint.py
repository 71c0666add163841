"""`maskgit inpaint` end to end on a saved tiny random model and synthetic images."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml
from PIL import Image, ImageFilter

from maskgit_inpaint.cli import main
from maskgit_inpaint.precision import auto_precision

STEMS = ["cat1", "cat2", "dog", "bird", "fox", "owl"]


def make_inputs(tools, root, stems=STEMS, suffixes=None, mask_stems=None, seed=0, size=64, invert=False):
    """Write images and masks; returns (images_dir, masks_dir, {stem: (rgb, known)})."""
    rng = np.random.default_rng(seed)
    img_dir, mask_dir = root / "images", root / "masks"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    suffixes = suffixes or [".png"] * len(stems)
    mask_stems = mask_stems or stems
    data = {}
    for stem, suf, mstem in zip(stems, suffixes, mask_stems):
        rgb = tools.synthetic_image(rng, size)
        known = tools.synthetic_mask(rng, size)
        Image.fromarray(rgb).save(img_dir / f"{stem}{suf}")
        tools.write_mask(known, mask_dir / f"{mstem}.png", invert)
        data[stem] = (rgb, known)
    return img_dir, mask_dir, data


def inpaint(model_dir, img_dir, mask_dir, out, *extra):
    return main(["inpaint", "--images", str(img_dir), "--masks", str(mask_dir), "--out", str(out),
                 "--model", str(model_dir), "--device", "cpu", *map(str, extra)])


def read_outputs(out) -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in sorted(out.glob("*.png"))}


def all_files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*")) if folder.exists() else []


# ----------------------------------------------------------------------------- happy paths
def test_one_png_per_input_named_after_the_stem(tools, tiny_model_dir, tmp_path, capsys):
    sufs = [".jpg", ".jpeg", ".png", ".bmp", ".webp", ".PNG"]
    img_dir, mask_dir, _ = make_inputs(tools, tmp_path, suffixes=sufs)
    (img_dir / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    rc = inpaint(tiny_model_dir, img_dir, mask_dir, out)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "inpainted 6 images" in cap.out
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.png" for s in STEMS)
    for p in out.iterdir():
        with Image.open(p) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (64, 64)


def test_composite_keeps_known_pixels_and_no_composite_does_not(tools, tiny_model_dir, tmp_path):
    img_dir, mask_dir, data = make_inputs(tools, tmp_path)
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "comp") == 0
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "raw", "--no-composite") == 0
    comp, raw = read_outputs(tmp_path / "comp"), read_outputs(tmp_path / "raw")
    assert comp.keys() == raw.keys() == set(STEMS)
    for stem, (rgb, known) in data.items():
        assert np.array_equal(comp[stem][known], rgb[known]), stem
        assert not np.array_equal(comp[stem][~known], rgb[~known]), stem  # the hole was filled
        assert not np.array_equal(raw[stem][known], rgb[known]), stem     # raw decode of a random model
        # the default composite is the seamless clone of the raw decode (same tokens)
        import torch
        from maskgit_inpaint.compositing import poisson_paste

        t = lambda a: torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 255
        expected = poisson_paste(t(raw[stem]), t(rgb), torch.from_numpy(known)[None]).clamp(0, 1)
        got = t(comp[stem])
        assert (got - expected).abs().max() <= 2.5 / 255, stem  # PNG rounding of raw and output


def test_blend_paste_puts_the_raw_decode_in_the_holes(tools, tiny_model_dir, tmp_path, capsys):
    img_dir, mask_dir, data = make_inputs(tools, tmp_path)
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "paste", "--blend", "paste") == 0
    assert "blend=paste" in capsys.readouterr().out
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "raw", "--no-composite") == 0
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "poisson") == 0
    assert "blend=poisson" in capsys.readouterr().out
    paste, raw, poisson = (read_outputs(tmp_path / d) for d in ("paste", "raw", "poisson"))
    for stem, (rgb, known) in data.items():
        assert np.array_equal(paste[stem][known], rgb[known]), stem
        assert np.array_equal(paste[stem][~known], raw[stem][~known]), stem
        assert not np.array_equal(poisson[stem][~known], paste[stem][~known]), stem
    with pytest.raises(SystemExit):
        inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "x", "--blend", "feather")
    assert "feather" in capsys.readouterr().err


def test_save_steps_writes_strips(tools, tiny_model_dir, tmp_path):
    img_dir, mask_dir, _ = make_inputs(tools, tmp_path, stems=STEMS[:3])
    out = tmp_path / "out"
    assert inpaint(tiny_model_dir, img_dir, mask_dir, out, "--save-steps") == 0
    assert sorted(p.name for p in (out / "steps").iterdir()) == sorted(f"{s}.png" for s in STEMS[:3])
    sampler = yaml.safe_load((tiny_model_dir / "config.yaml").read_text())["sampler"]
    cols = min(sampler["steps"], sampler["sweet_spot"]) + 2  # input, each step, output
    with Image.open(out / "steps" / "cat1.png") as im:
        assert im.size == (cols * 64 + (cols - 1) * 2, 2 * 64 + 2)
    # sampler flags reach the sampler: 4 steps stopped at 2 -> 2 step columns
    out2 = tmp_path / "out2"
    assert inpaint(tiny_model_dir, img_dir, mask_dir, out2, "--save-steps", "--gamma", "linear",
                   "--steps", "4", "--sweet-spot", "2") == 0
    with Image.open(out2 / "steps" / "cat1.png") as im:
        assert im.size == (4 * 64 + 3 * 2, 130)
    # the final images do not depend on whether steps are saved
    plain = tmp_path / "plain"
    assert inpaint(tiny_model_dir, img_dir, mask_dir, plain) == 0
    a, b = read_outputs(out), read_outputs(plain)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_pairing_by_stem_ignores_extra_masks(tools, tiny_model_dir, tmp_path):
    img_dir, mask_dir, data = make_inputs(tools, tmp_path / "a", stems=["b", "c"])
    # an extra mask that sorts first: sorted-order pairing would mis-pair (and counts differ)
    tools.write_mask(np.zeros((64, 64), bool), mask_dir / "a.png")
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "out") == 0
    (mask_dir / "a.png").unlink()
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "ref") == 0
    out, ref = read_outputs(tmp_path / "out"), read_outputs(tmp_path / "ref")
    assert sorted(out) == ["b", "c"]
    for stem, (rgb, known) in data.items():
        assert np.array_equal(out[stem], ref[stem])
        assert np.array_equal(out[stem][known], rgb[known])


def test_masks_of_other_names_are_refused_not_paired_by_order(tools, tiny_model_dir, tmp_path, capsys):
    img_dir, mask_dir, data = make_inputs(tools, tmp_path / "x", stems=["img_b", "img_a"], mask_stems=["m2", "m1"])
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "img_a.png: no mask named img_a.* in" in err and "(and 1 more)" in err
    assert all_files(tmp_path / "out") == []


def test_invert_mask_reads_black_holes(tools, tiny_model_dir, tmp_path):
    img_dir, mask_dir, data = make_inputs(tools, tmp_path / "n", stems=STEMS[:3])
    _, inv_dir, _ = make_inputs(tools, tmp_path / "i", stems=STEMS[:3], invert=True)
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "white") == 0
    assert inpaint(tiny_model_dir, img_dir, inv_dir, tmp_path / "black", "--invert-mask") == 0
    a, b = read_outputs(tmp_path / "white"), read_outputs(tmp_path / "black")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # the inverted masks read with the default convention give a different result
    assert inpaint(tiny_model_dir, img_dir, inv_dir, tmp_path / "wrong") == 0
    c = read_outputs(tmp_path / "wrong")
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_non_64_image_keeps_its_size_and_every_pixel_outside_the_hole(tools, tiny_model_dir, tmp_path, capsys):
    img_dir, mask_dir, data = make_inputs(tools, tmp_path, stems=["big"], size=80)
    out = tmp_path / "out"
    rc = inpaint(tiny_model_dir, img_dir, mask_dir, out)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    with Image.open(out / "big.png") as im:
        assert im.size == (80, 80) and im.mode == "RGB"
        result = np.asarray(im)
    rgb, known = data["big"]
    hole = ~known
    far = ~np.asarray(Image.fromarray(hole.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(9))).astype(bool)
    assert np.array_equal(result[far], rgb[far])  # outside the grown hole: the original pixels
    assert not np.array_equal(result[hole], rgb[hole])
    rc = inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "strict", "--strict-size")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "big.png" in err and "strict" in err
    assert all_files(tmp_path / "strict") == []


def test_deterministic_and_batch_size_independent(tools, tiny_model_dir, tmp_path):
    img_dir, mask_dir, _ = make_inputs(tools, tmp_path)
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "r1", "--batch-size", "4") == 0
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "r2", "--batch-size", "4") == 0
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "b1", "--batch-size", "1") == 0
    for stem in STEMS:
        assert (tmp_path / "r1" / f"{stem}.png").read_bytes() == (tmp_path / "r2" / f"{stem}.png").read_bytes()
    a, b = read_outputs(tmp_path / "r1"), read_outputs(tmp_path / "b1")
    assert a.keys() == b.keys() == set(STEMS)
    for stem in STEMS:
        assert np.array_equal(a[stem], b[stem]), stem


def test_result_does_not_depend_on_the_other_images(tools, tiny_model_dir, tmp_path):
    img_dir, mask_dir, _ = make_inputs(tools, tmp_path)
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "all") == 0
    for p in list(img_dir.iterdir()):
        if p.stem not in ("dog", "owl"):
            p.unlink()
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "two") == 0
    a, b = read_outputs(tmp_path / "all"), read_outputs(tmp_path / "two")
    assert sorted(b) == ["dog", "owl"]
    assert all(np.array_equal(a[k], b[k]) for k in b)


def test_single_image_and_mask_files_match_the_folder_run(tools, tiny_model_dir, tmp_path, capsys):
    img_dir, mask_dir, _ = make_inputs(tools, tmp_path)
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "all") == 0
    # a file with a mask of another name pairs with it; a mask folder pairs by stem
    shutil.copy(mask_dir / "dog.png", tmp_path / "hole.png")
    assert inpaint(tiny_model_dir, img_dir / "dog.png", tmp_path / "hole.png", tmp_path / "one") == 0
    assert inpaint(tiny_model_dir, img_dir / "owl.png", mask_dir, tmp_path / "one_by_stem") == 0
    capsys.readouterr()
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["dog.png"]
    assert [p.name for p in (tmp_path / "one_by_stem").iterdir()] == ["owl.png"]
    assert (tmp_path / "one" / "dog.png").read_bytes() == (tmp_path / "all" / "dog.png").read_bytes()
    assert (tmp_path / "one_by_stem" / "owl.png").read_bytes() == (tmp_path / "all" / "owl.png").read_bytes()
    (tmp_path / "notes.txt").write_text("not an image")
    assert inpaint(tiny_model_dir, tmp_path / "notes.txt", mask_dir, tmp_path / "bad") == 2
    err = capsys.readouterr().err
    assert "notes.txt: not an image file" in err and "Traceback" not in err


def test_seed_changes_the_fill_only(tools, tiny_model_dir, tmp_path):
    img_dir, mask_dir, data = make_inputs(tools, tmp_path, stems=STEMS[:3])
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "s0") == 0
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "s1", "--seed", "1") == 0
    a, b = read_outputs(tmp_path / "s0"), read_outputs(tmp_path / "s1")
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    for stem, (rgb, known) in data.items():
        assert np.array_equal(a[stem][known], b[stem][known])


def test_guidance_changes_the_fill_only(tools, tiny_model_dir, tmp_path):
    img_dir, mask_dir, data = make_inputs(tools, tmp_path, stems=STEMS[:3])
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "w0", "--guidance", "0") == 0
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "w2", "--guidance", "2") == 0
    a, b = read_outputs(tmp_path / "w0"), read_outputs(tmp_path / "w2")
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    for stem, (rgb, known) in data.items():
        assert np.array_equal(a[stem][known], b[stem][known])


def test_token_threshold_changes_the_fill_only(tools, tiny_model_dir, tmp_path, capsys):
    """The masks' stray hole pixels graze their patches: at threshold 0.5 those tokens are kept,
    so the fill changes while the known pixels stay the input's; the summary line says so."""
    img_dir, mask_dir, data = make_inputs(tools, tmp_path, stems=STEMS[:3])
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "t0") == 0
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "t5", "--token-threshold", "0.5") == 0
    assert "token threshold=0.5 " in capsys.readouterr().out
    a, b = read_outputs(tmp_path / "t0"), read_outputs(tmp_path / "t5")
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    for stem, (rgb, known) in data.items():
        assert np.array_equal(a[stem][known], b[stem][known])


def test_weak_guidance_flag_changes_the_fill_only(tools, weak_model_dir, tmp_path, capsys):
    """--weak-guidance runs the guidance's free pass on the model's weak transformer: another
    fill, the same known pixels, and the summary line says so; --no-weak-guidance turns it off."""
    img_dir, mask_dir, data = make_inputs(tools, tmp_path, stems=STEMS[:3])
    assert inpaint(weak_model_dir, img_dir, mask_dir, tmp_path / "off", "--guidance", "2") == 0
    assert "guidance=2 token" in capsys.readouterr().out
    assert inpaint(weak_model_dir, img_dir, mask_dir, tmp_path / "on", "--guidance", "2", "--weak-guidance") == 0
    assert "guidance=2 vs weak token" in capsys.readouterr().out
    a, b = read_outputs(tmp_path / "off"), read_outputs(tmp_path / "on")
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    for stem, (rgb, known) in data.items():
        assert np.array_equal(a[stem][known], b[stem][known])
    assert inpaint(weak_model_dir, img_dir, mask_dir, tmp_path / "no", "--guidance", "2", "--no-weak-guidance") == 0
    assert read_outputs(tmp_path / "no").keys() == a.keys()
    assert all(np.array_equal(a[k], v) for k, v in read_outputs(tmp_path / "no").items())


def test_dilate_keeps_composite_exact(tools, tiny_model_dir, tmp_path):
    img_dir, mask_dir, data = make_inputs(tools, tmp_path, stems=STEMS[:2])
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "d0", "--no-composite") == 0
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "d1", "--no-composite", "--dilate", "1") == 0
    a, b = read_outputs(tmp_path / "d0"), read_outputs(tmp_path / "d1")
    assert any(not np.array_equal(a[k], b[k]) for k in a)
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "c1", "--dilate", "1") == 0
    c = read_outputs(tmp_path / "c1")
    for stem, (rgb, known) in data.items():
        assert np.array_equal(c[stem][known], rgb[known])


# ----------------------------------------------------------------------------- failures
def _bad_missing_folder(tools, root, model_dir):
    img_dir, mask_dir, _ = make_inputs(tools, root, stems=STEMS[:2])
    return root / "no_such_images", mask_dir, model_dir, "no_such_images"


def _bad_missing_mask_folder(tools, root, model_dir):
    img_dir, mask_dir, _ = make_inputs(tools, root, stems=STEMS[:2])
    return img_dir, root / "no_such_masks", model_dir, "no_such_masks"


def _bad_empty_folder(tools, root, model_dir):
    img_dir, mask_dir, _ = make_inputs(tools, root, stems=STEMS[:2])
    for p in img_dir.iterdir():
        p.unlink()
    return img_dir, mask_dir, model_dir, str(img_dir)


def _bad_count_mismatch(tools, root, model_dir):
    img_dir, mask_dir, _ = make_inputs(tools, root, stems=["a", "b", "c"], mask_stems=["x", "y", "z"])
    (mask_dir / "z.png").unlink()
    return img_dir, mask_dir, model_dir, str(mask_dir)


def _bad_duplicate_stems(tools, root, model_dir):
    img_dir, mask_dir, _ = make_inputs(tools, root, stems=STEMS[:2])
    shutil.copy(img_dir / "cat1.png", img_dir / "cat1.jpg")
    return img_dir, mask_dir, model_dir, "cat1"


def _bad_model_config(tools, root, model_dir):
    img_dir, mask_dir, _ = make_inputs(tools, root, stems=STEMS[:2])
    other = root / "other_model"
    shutil.copytree(model_dir, other)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["transformer"]["dim"] = 64
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    return img_dir, mask_dir, other, "transformer.safetensors"


def _bad_model_missing(tools, root, model_dir):
    img_dir, mask_dir, _ = make_inputs(tools, root, stems=STEMS[:2])
    return img_dir, mask_dir, root / "no_model", "no_model"


@pytest.mark.parametrize("case", [
    _bad_missing_folder, _bad_missing_mask_folder, _bad_empty_folder, _bad_count_mismatch,
    _bad_duplicate_stems, _bad_model_config, _bad_model_missing,
], ids=lambda f: f.__name__.removeprefix("_bad_"))
def test_bad_input_exit_2_one_line_no_output(tools, tiny_model_dir, tmp_path, capsys, case):
    img_dir, mask_dir, model_dir, name = case(tools, tmp_path / "in", tiny_model_dir)
    out = tmp_path / "out"
    rc = inpaint(model_dir, img_dir, mask_dir, out)
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert rc == 2
    assert len(lines) == 1, cap.err
    assert lines[0].startswith("maskgit inpaint: error:")
    assert name in lines[0]
    assert "Traceback" not in cap.err
    assert all_files(out) == []


def test_existing_outputs_survive_a_failed_run(tools, tiny_model_dir, tmp_path, capsys):
    img_dir, mask_dir, _ = make_inputs(tools, tmp_path, stems=STEMS[:3])
    out = tmp_path / "out"
    assert inpaint(tiny_model_dir, img_dir, mask_dir, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (img_dir / "cat2.png").write_bytes(b"garbage")
    assert inpaint(tiny_model_dir, img_dir, mask_dir, out) == 1  # the others rewritten, cat2's kept
    assert inpaint(tiny_model_dir, img_dir / "cat2.png", mask_dir / "cat2.png", out) == 2
    capsys.readouterr()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("flags,match", [(["--steps", "0"], "steps"), (["--sweet-spot", "0"], "sweet_spot"),
                                         (["--guidance", "-1"], "guidance"),
                                         (["--guidance-steps", "0"], "guidance_steps"),
                                         (["--token-threshold", "1"], "token_threshold"),
                                         (["--guidance", "1", "--weak-guidance"], "--no-weak-guidance")])
def test_bad_sampler_flags(tools, tiny_model_dir, tmp_path, capsys, flags, match):
    img_dir, mask_dir, _ = make_inputs(tools, tmp_path, stems=STEMS[:1])
    rc = inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "out", *flags)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and match in err
    assert all_files(tmp_path / "out") == []


@pytest.mark.parametrize("bs", ["0", "-1"])
def test_non_positive_batch_size_is_rejected(tools, tiny_model_dir, tmp_path, capsys, bs):
    img_dir, mask_dir, _ = make_inputs(tools, tmp_path, stems=STEMS[:2])
    rc = inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "out", "--batch-size", bs)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "batch" in err.lower()
    assert all_files(tmp_path / "out") == []


def test_precision_flag(tools, tiny_model_dir, tmp_path, capsys):
    img_dir, mask_dir, _ = make_inputs(tools, tmp_path, stems=STEMS[:2])
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "bf16", "--precision", "bf16") == 0
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "fp32", "--precision", "fp32") == 0
    assert inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "auto") == 0
    a, b, c = (read_outputs(tmp_path / d) for d in ("bf16", "fp32", "auto"))
    assert a.keys() == b.keys() == set(STEMS[:2])
    auto = a if auto_precision("cpu") == "bf16" else b  # bf16 where the CPU has native bf16
    assert all(np.array_equal(auto[k], c[k]) for k in b)
    with pytest.raises(SystemExit):
        inpaint(tiny_model_dir, img_dir, mask_dir, tmp_path / "x", "--precision", "fp16")
    assert "fp16" in capsys.readouterr().err


# ----------------------------------------------------------------------------- visualize
def test_visualize_writes_every_figure_for_one_image(tools, tiny_model_dir, tmp_path, capsys):
    img_dir, mask_dir, data = make_inputs(tools, tmp_path, stems=["cat1"])
    out = tmp_path / "figs"
    rc = main(["visualize", "--model", str(tiny_model_dir), "--image", str(img_dir / "cat1.png"),
               "--mask", str(mask_dir / "cat1.png"), "--out", str(out), "--device", "cpu", "--steps", "4"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["decoding.gif", "gamma.png", "mask_counts.png",
                                                      "result.png", "steps.png"]
    rgb, known = data["cat1"]
    result = np.asarray(Image.open(out / "result.png").convert("RGB"))
    assert result.shape == (64, 64, 3)
    assert np.array_equal(result[known], rgb[known])  # the composite keeps the known pixels
    with Image.open(out / "decoding.gif") as gif:
        assert gif.n_frames >= 4


def test_visualize_refuses_a_folder_for_image_with_a_clear_error(tools, tiny_model_dir, tmp_path, capsys):
    img_dir, mask_dir, _ = make_inputs(tools, tmp_path, stems=["cat1"])
    rc = main(["visualize", "--model", str(tiny_model_dir), "--image", str(img_dir),
               "--mask", str(mask_dir / "cat1.png"), "--out", str(tmp_path / "figs"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "--image must be an image file" in err and str(img_dir) in err
    assert "Traceback" not in err
