"""The Gradio app: `run_inpaint` without a browser, then the page end to end in headless Chromium."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from maskgit_inpaint.app import (
    find_samples,
    hole_layer,
    known_from_mask,
    prepare_image,
    run_inpaint as _run_inpaint,
    settings_from_ui,
    upscale,
)
from maskgit_inpaint.masks import generate_masks
from maskgit_inpaint.model import MaskGIT


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return MaskGIT.from_dir(tiny_model_dir, device="cpu")


@pytest.fixture
def image(tools) -> np.ndarray:
    return tools.synthetic_image(np.random.default_rng(3), 64)


def settings(**kw) -> dict:
    """run_inpaint's arguments: the model's settings with 4 steps and `kw`, seed 1."""
    return {"steps": 4, "seed": 1, **kw}


def run_inpaint(model, image, mask, kw: dict | None = None):
    kw = dict(kw or {})
    seed, composite = kw.pop("seed", 0), kw.pop("composite", True)
    return _run_inpaint(model, image, mask, model.default_settings.override(**kw), seed=seed, composite=composite)


def test_composite_keeps_known_pixels_and_fills_the_hole(model, image, tools):
    known = tools.synthetic_mask(np.random.default_rng(4), 64)
    result, strip, message = run_inpaint(model, image, known, settings())
    assert result.shape == (64, 64, 3) and result.dtype == np.uint8
    assert np.array_equal(result[known], image[known])
    assert (result[~known] != image[~known]).any(axis=1).mean() > 0.5
    assert strip.ndim == 3 and strip.shape[0] == 2 * 64 + 2 and strip.shape[2] == 3
    assert "Inpainted" in message and "took" in message


def test_editor_layers_give_the_same_result_as_the_mask(model, image):
    """The editor shows the image 8x; a brush layer at that size maps back onto the 64x64 grid."""
    known = generate_masks("brush", 1, 64, seed=5)[0]
    layer = hole_layer(known, 8)
    assert layer.shape == (512, 512, 4)
    editor = {"background": upscale(image, 8), "layers": [layer], "composite": None}
    assert np.array_equal(known_from_mask(editor, 64), known)
    a = run_inpaint(model, image, known, settings())
    b = run_inpaint(model, image, editor, settings())
    assert np.array_equal(a.result, b.result)
    # a single painted screen pixel makes its whole model pixel a hole
    layer = np.zeros((512, 512, 4), np.uint8)
    layer[100, 200] = (255, 0, 255, 40)
    k = known_from_mask({"layers": [layer]}, 64)
    assert (~k).sum() == 1 and not k[100 // 8, 200 // 8]


def test_composite_off_regenerates_everything(model, image, tools):
    known = tools.synthetic_mask(np.random.default_rng(4), 64)
    res = run_inpaint(model, image, known, settings(composite=False))
    assert res.result.shape == (64, 64, 3)
    assert not np.array_equal(res.result[known], image[known])  # the random tokenizer reconstructs poorly
    assert "composite off" in res.message


def test_settings_reach_the_sampler(model, image, tools):
    known = tools.synthetic_mask(np.random.default_rng(4), 64)
    res = run_inpaint(model, image, known, settings(gamma="linear", steps=6, sweet_spot=3))
    assert "3 steps of the linear schedule (T=6)" in res.message
    assert res.strip.shape[1] == (3 + 2) * 64 + (3 + 1) * 2  # input, 3 steps, result
    again = run_inpaint(model, image, known, settings(gamma="linear", steps=6, sweet_spot=3))
    assert np.array_equal(res.result, again.result)          # seeded
    other = run_inpaint(model, image, known, settings(gamma="linear", steps=6, sweet_spot=3, seed=2))
    assert not np.array_equal(res.result, other.result)


def test_guidance_reaches_the_sampler_and_defaults_to_the_model(model, image, tools):
    known = tools.synthetic_mask(np.random.default_rng(4), 64)
    off = run_inpaint(model, image, known, settings(guidance=0.0))
    on = run_inpaint(model, image, known, settings(guidance=2.0))
    assert "context guidance 2" in on.message and "guidance" not in off.message
    assert not np.array_equal(off.result, on.result)
    assert np.array_equal(off.result[known], on.result[known])
    first = run_inpaint(model, image, known, {"seed": 0, "guidance": 2.0, "guidance_steps": 1})
    assert "context guidance 2 on the first 1 step," in first.message
    ramped = run_inpaint(model, image, known, {"seed": 0, "guidance": 2.0, "guidance_schedule": "linear"})
    assert "context guidance 2 (linear ramp)," in ramped.message
    thr = run_inpaint(model, image, known, {"seed": 0, "token_threshold": 0.25})
    assert "token threshold 0.25," in thr.message and thr.result is not None


def test_weak_guidance_reaches_the_sampler_and_needs_a_weak_transformer(model, weak_model_dir, image, tools):
    known = tools.synthetic_mask(np.random.default_rng(5), 64)
    weak_model = MaskGIT.from_dir(weak_model_dir, device="cpu")
    off = run_inpaint(weak_model, image, known, settings(guidance=2.0))
    on = run_inpaint(weak_model, image, known, settings(guidance=2.0, weak_guidance=True))
    assert "context guidance 2 against the weak transformer," in on.message
    assert "weak" not in off.message
    assert not np.array_equal(off.result, on.result)
    assert np.array_equal(off.result[known], on.result[known])
    missing = run_inpaint(model, image, known, settings(guidance=2.0, weak_guidance=True))
    assert missing.result is None and missing.level == "error" and "weak transformer" in missing.message
    assert settings_from_ui(weak_model.default_settings, weak_guidance=True).weak_guidance is True


def test_page_widgets_map_to_settings(model):
    """0 on the page means "run all steps" (sweet spot) and "guide every step" (guided steps);
    an empty number box keeps the model's value."""
    base = model.default_settings
    s = settings_from_ui(base, gamma="sqrt", steps=8.0, sweet_spot=0, guidance=3.0, guidance_steps=0)
    assert s.sweet_spot is None and s.guidance_steps is None and s.gamma == "sqrt" and s.steps == 8
    cfg = settings_from_ui(base, gamma="sqrt", steps=8.0, sweet_spot=6.0, guidance=3.0, guidance_steps=4.0)
    assert (cfg.gamma, cfg.steps, cfg.sweet_spot, cfg.guidance, cfg.guidance_steps) == ("sqrt", 8, 6, 3.0, 4)
    assert cfg.guidance_schedule == base.guidance_schedule and cfg.hole_fill == base.hole_fill
    ramp = settings_from_ui(base, steps=8, guidance=3.0, guidance_schedule="linear")
    assert ramp.guidance_schedule == "linear" and ramp.guidance_at(4) == 1.5
    assert settings_from_ui(base, token_threshold=0.25, choice_temperature=None).token_threshold == 0.25
    with pytest.raises(ValueError, match="token_threshold"):
        settings_from_ui(base, token_threshold=1.0)


def test_page_has_one_control_per_setting(tiny_model_dir):
    pytest.importorskip("gradio")
    from dataclasses import fields

    from maskgit_inpaint.app import build_app
    from maskgit_inpaint.settings import InpaintSettings

    demo = build_app(tiny_model_dir, device="cpu")
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {f.name.replace("_", "-") for f in fields(InpaintSettings)} <= ids


@pytest.mark.parametrize("mask", [None, "blank-layer", "all-known"])
def test_empty_mask_returns_the_input(model, image, mask):
    if mask == "blank-layer":
        mask = {"background": None, "layers": [np.zeros((512, 512, 4), np.uint8)], "composite": None}
    elif mask == "all-known":
        mask = np.ones((64, 64), bool)
    res = run_inpaint(model, image, mask, settings())
    result, strip, message = res
    assert np.array_equal(result, image) and strip is None
    assert "mask is empty" in message and "unchanged" in message
    assert res.level == "warning"


def test_full_mask_generates_the_whole_image(model, image):
    res = run_inpaint(model, image, np.zeros((64, 64), bool), settings())
    assert res.result.shape == (64, 64, 3) and res.level == "warning"
    assert "whole image is masked" in res.message
    assert (res.result != image).any(axis=2).mean() > 0.5
    assert res.strip is not None


def test_non_image_upload_gets_a_message(model, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a picture")
    for source in (notes, str(notes), b"%PDF-1.4 not an image"):
        result, strip, message = run_inpaint(model, source, None, settings())
        assert result is None and strip is None
        assert "not an image" in message
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG" + bytes(11 * 1024 * 1024))
    res = run_inpaint(model, big, None, settings())
    assert res.result is None and res.level == "error" and "larger than 10mb" in res.message
    bomb = tmp_path / "bomb.png"  # small file, 81 megapixels once decoded
    Image.new("1", (9000, 9000)).save(bomb)
    res = run_inpaint(model, bomb, None, settings())
    assert res.result is None and "9000x9000 pixels, more than 64 megapixels" in res.message
    res = run_inpaint(model, None, None, settings())
    assert res.result is None and "pick a sample or upload" in res.message


def test_large_image_is_centre_cropped_with_a_note(model, tmp_path):
    yy, xx = np.mgrid[:200, :300]
    big = np.stack([xx * 255 // 299, yy * 255 // 199, 255 - xx * 255 // 299], -1).astype(np.uint8)
    path = tmp_path / "wide.png"
    Image.fromarray(big).save(path)
    prep = prepare_image(path, 64)
    assert prep.box == (50, 0, 250, 200) and prep.array.shape == (64, 64, 3)
    assert "centre-cropped from 300x200 to 200x200" in prep.note and "64x64" in prep.note
    expected = np.asarray(Image.fromarray(big[:, 50:250]).resize((64, 64), Image.LANCZOS))
    assert np.array_equal(prep.array, expected)

    # a mask drawn on the original is cropped alike: a hole over the crop's left half (and
    # one left of the crop, which is cut away)
    known = np.ones((200, 300), bool)
    known[:, 50:150] = False
    known[:, :20] = False
    k = known_from_mask(known, 64, prep)
    assert not k[:, :32].any() and k[:, 32:].all()

    res = run_inpaint(model, path, known, settings())
    assert "centre-cropped from 300x200" in res.message
    assert res.result.shape == (64, 64, 3)
    assert np.array_equal(res.result[:, 32:], prep.array[:, 32:])
    # an array of any size works the same way, and a mask picture (white = hole) too
    res2 = run_inpaint(model, big, Image.fromarray(np.where(known, 0, 255).astype(np.uint8)), settings())
    assert np.array_equal(res.result, res2.result)
    # a mask that fits neither the image nor a square is refused with a message
    res3 = run_inpaint(model, big, np.ones((10, 20), bool), settings())
    assert res3.result is None and "the mask is 20x10" in res3.message


def test_small_and_transparent_images(model):
    rgba = np.zeros((32, 48, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :24, 3] = 255  # left half opaque red, right half transparent -> white
    prep = prepare_image(rgba, 64)
    assert "resized from 32x32 to 64x64" in prep.note
    assert (prep.array[:, -4:] == 255).all()
    res = run_inpaint(model, prep.array, None, settings())
    assert res.notes == [] and "note" not in res.message.lower()  # already 64x64: no note


def test_samples_are_found(tmp_path, tools):
    assert find_samples(tmp_path) == find_samples(None)  # none here: the default model's (if any)
    tools.write_png(tools.synthetic_image(np.random.default_rng(0)), tmp_path / "samples" / "b.png")
    tools.write_png(tools.synthetic_image(np.random.default_rng(1)), tmp_path / "samples" / "a.png")
    (tmp_path / "samples" / "readme.txt").write_text("x")
    assert list(find_samples(tmp_path)) == ["a", "b"]


def test_app_builds_with_a_queue_of_one(tiny_model_dir):
    pytest.importorskip("gradio")
    from maskgit_inpaint.app import MAX_FILE_SIZE, build_app, launch_kwargs, serve
    import inspect

    demo = build_app(tiny_model_dir, device="cpu")
    fns = list(demo.fns.values()) if isinstance(demo.fns, dict) else list(demo.fns)
    inpaint = [f for f in fns if getattr(f, "concurrency_id", None) == "inpaint"]
    assert len(inpaint) == 1 and inpaint[0].concurrency_limit == 1
    kw = launch_kwargs()
    assert kw["server_name"] == "127.0.0.1" and kw["max_file_size"] == MAX_FILE_SIZE == "10mb"
    assert kw["share"] is False
    sig = inspect.signature(serve)
    assert sig.parameters["host"].default == "127.0.0.1" and sig.parameters["port"].default == 7860
    assert demo.analytics_enabled is False


def test_weak_guidance_box_shows_only_for_a_model_with_a_weak_transformer(tiny_model_dir, weak_model_dir):
    pytest.importorskip("gradio")
    from maskgit_inpaint.app import build_app

    def box(model_dir):
        demo = build_app(model_dir, device="cpu")
        (b,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "weak-guidance"]
        return b

    assert box(weak_model_dir).visible and not box(tiny_model_dir).visible
    assert box(tiny_model_dir).value is False


# ----------------------------------------------------------------------------- end to end
def _rgb(png_bytes: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB")).astype(int)


def _wait_for(pred, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value is not None and value is not False:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _status(page) -> str:
    return page.input_value("#status textarea")


@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # Gradio's own pandas deprecations
def test_browser_upload_paint_inpaint(tiny_model_dir, tmp_path):
    """With the bundled default model when there is one (the app users get), else a tiny one."""
    from browser_helpers import chromium_page, free_port, require_browser

    require_browser()
    pytest.importorskip("gradio")
    from maskgit_inpaint.app import serve

    t0 = time.monotonic()
    yy, xx = np.mgrid[:64, :64]
    picture = np.stack([xx * 4, yy * 4, np.full_like(xx, 128)], -1).astype(np.uint8)
    upload = tmp_path / "picture.png"
    Image.fromarray(picture).save(upload)
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello, I am not an image")

    port = free_port()
    from maskgit_inpaint.model import default_model_dir, has_default_model

    model_dir = default_model_dir() if has_default_model() else tiny_model_dir
    demo = serve(model_dir, port=port, device="cpu", block=False, quiet=True)
    try:
        with chromium_page(tmp_path / "profile") as (page, external):
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load", timeout=60_000)
            page.wait_for_selector("#inpaint", timeout=60_000)

            # upload: the editor gets the picture
            page.set_input_files("#upload input[type=file]", str(upload))
            page.wait_for_function("() => document.querySelector('#status textarea').value"
                                   ".includes('paint the hole')", timeout=30_000)
            canvas = page.locator("#editor canvas").first

            def centre_pixel():
                shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(int)
                h, w = shot.shape[:2]
                return shot, shot[h // 2, w // 2]

            # the picture is drawn when the canvas centre shows its mid-grey-blue, not the empty canvas
            _wait_for(lambda: abs(centre_pixel()[1] - picture[32, 32]).max() < 40, 20, "the picture in the editor")

            # paint a horizontal stroke through the middle with the brush (the default tool); few
            # mouse moves, as each one is a frame of software WebGL (about a second on a busy CPU)
            box = canvas.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            half = 0.3 * min(box["width"], box["height"])
            page.mouse.move(cx - half, cy)
            page.mouse.down()
            for i in range(1, 4):
                page.mouse.move(cx - half + 2 * half * i / 3, cy)
            page.mouse.up()
            _wait_for(lambda: (lambda p: p[0] > p[1] + 60 and p[2] > p[1] + 40)(centre_pixel()[1]), 10,
                      "the magenta stroke on the canvas")

            page.click("#inpaint")
            page.wait_for_function("() => document.querySelector('#status textarea').value.includes('took')",
                                   timeout=60_000)
            page.wait_for_selector("#result img", timeout=30_000)
            status = _status(page)
            src = page.get_attribute("#result img", "src")
            response = page.request.get(src)
            assert response.ok, src
            out = _rgb(response.body())
            assert out.shape == (64, 64, 3)

            # the hole is the stroke: rows about the middle; outside it the picture is untouched
            diff = (out != picture).any(axis=2)
            assert diff.any(), "the output equals the input: nothing was inpainted"
            rows, cols = np.nonzero(diff)
            assert 18 <= rows.min() and rows.max() <= 45, f"changed rows {rows.min()}..{rows.max()}"
            assert np.array_equal(out[:18], picture[:18]) and np.array_equal(out[46:], picture[46:])
            assert diff[31:33, 24:40].mean() > 0.5, "the middle of the stroke was not regenerated"
            assert cols.min() < 24 and cols.max() > 40, "the stroke was not painted across"
            assert "Inpainted" in status and "took" in status

            # the result downloads as a PNG, the same picture
            page.wait_for_selector("#download:not([disabled])", timeout=10_000)
            with page.expect_download(timeout=20_000) as info:
                page.click("#download")
            download = info.value
            assert download.suggested_filename.endswith(".png")
            data = open(download.path(), "rb").read()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and np.array_equal(_rgb(data), out)

            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshot: {shot}")

            # a file that is no image is refused with a message, the picture stays
            page.set_input_files("#upload input[type=file]", str(not_image))
            page.wait_for_function("() => document.querySelector('#status textarea').value"
                                   ".includes('not an image')", timeout=30_000)
            assert "notes.txt is not an image" in _status(page)

            assert external == [], f"the page tried to reach the internet: {external}"
    finally:
        demo.close()
    print(f"end-to-end test took {time.monotonic() - t0:.1f} s")
