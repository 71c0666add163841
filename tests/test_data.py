"""Training data: image discovery, decoding (resize + centre crop), corrupt files, the
train/val split and the stage-2 token cache."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit_inpaint import data as data_mod
from maskgit_inpaint.data import (
    ImageTensorDataset,
    encode_tokens,
    find_images,
    load_folder,
    load_rgb,
    split_files,
    token_cache,
)

MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]


def _write(arr: np.ndarray, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt, **kw)
    return path


def _image_folder(root: Path, n: int, tools, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    return [_write(tools.synthetic_image(rng), root / f"img{i:03d}.png") for i in range(n)]


# ============================================================================= find_images
def test_find_images_is_recursive_over_png_jpeg_webp_and_sorted(tmp_path, tools):
    rng = np.random.default_rng(0)
    img = tools.synthetic_image(rng)
    expected = [
        _write(img, tmp_path / "a.png"),
        _write(img, tmp_path / "b.JPG", "JPEG"),
        _write(img, tmp_path / "sub" / "c.jpeg", "JPEG"),
        _write(img, tmp_path / "sub" / "deeper" / "d.webp", "WEBP"),
        _write(img, tmp_path / "sub" / "deeper" / "e.PNG", "PNG"),
    ]
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "data.npy").write_bytes(b"\x00" * 16)
    (tmp_path / "folder.png").mkdir()  # a directory with an image suffix is not a file
    found = find_images(tmp_path)
    assert found == sorted(expected)
    assert all(isinstance(p, Path) for p in found)
    # every listed file decodes to (64, 64, 3)
    u8, kept = load_folder(found, 64)
    assert u8.shape == (5, 3, 64, 64) and u8.dtype == torch.uint8 and kept == found


def test_find_images_errors_on_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "x.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no images"):
        find_images(tmp_path / "empty")


# ============================================================================= load_rgb
def _bands(w: int, h: int, horizontal: bool) -> np.ndarray:
    """Red | green | blue bands along the long side; the green band is exactly the centre
    square that a shorter-side resize + centre crop keeps."""
    arr = np.zeros((h, w, 3), np.uint8)
    if horizontal:  # wide image: bands across x
        c0 = (w - h) // 2
        arr[:, :c0] = (255, 0, 0)
        arr[:, c0:c0 + h] = (0, 255, 0)
        arr[:, c0 + h:] = (0, 0, 255)
    else:
        r0 = (h - w) // 2
        arr[:r0] = (255, 0, 0)
        arr[r0:r0 + w] = (0, 255, 0)
        arr[r0 + w:] = (0, 0, 255)
    return arr


@pytest.mark.parametrize("w,h", [(128, 64), (64, 160), (192, 96), (100, 300), (48, 32)])
def test_load_rgb_resizes_shorter_side_and_centre_crops(tmp_path, w, h):
    arr = _bands(w, h, horizontal=w > h)
    p = _write(arr, tmp_path / "band.png")
    out = load_rgb(p, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # only the centre (green) band survives; allow bicubic ringing at the two crop edges
    inner = out[:, 3:-3] if w > h else out[3:-3]
    assert inner[..., 1].min() >= 200, "centre band not kept"
    assert inner[..., 0].max() <= 60 and inner[..., 2].max() <= 60, "crop is not centred"
    if min(w, h) == 64:  # no resampling at all: an exact crop
        if w > h:
            np.testing.assert_array_equal(out, arr[:, (w - 64) // 2:(w - 64) // 2 + 64])
        else:
            np.testing.assert_array_equal(out, arr[(h - 64) // 2:(h - 64) // 2 + 64])


def test_load_rgb_square_resize_and_exact_passthrough(tmp_path, tools):
    rng = np.random.default_rng(1)
    big = np.asarray(Image.fromarray(tools.synthetic_image(rng, 128)))
    p = _write(big, tmp_path / "big.png")
    ref = np.asarray(Image.fromarray(big).resize((64, 64), Image.BICUBIC))
    np.testing.assert_array_equal(load_rgb(p, 64), ref)
    same = tools.synthetic_image(rng, 64)
    np.testing.assert_array_equal(load_rgb(_write(same, tmp_path / "same.png"), 64), same)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA"])
def test_load_rgb_converts_any_mode_to_rgb(tmp_path, tools, mode):
    img = Image.fromarray(tools.synthetic_image(np.random.default_rng(2))).convert(mode)
    p = tmp_path / "m.png"
    img.save(p)
    out = load_rgb(p, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_load_rgb_reads_jpeg_and_webp(tmp_path, tools):
    img = tools.synthetic_image(np.random.default_rng(3), 80)
    for fmt, suf in (("JPEG", ".jpg"), ("WEBP", ".webp")):
        out = load_rgb(_write(img, tmp_path / f"x{suf}", fmt, quality=95), 64)
        assert out.shape == (64, 64, 3)
        ref = np.asarray(Image.fromarray(img).resize((64, 64), Image.BICUBIC)).astype(int)
        assert np.abs(out.astype(int) - ref).mean() < 12  # lossy, but the same picture


# ============================================================================= load_folder
def test_corrupt_files_are_logged_once_by_path_and_skipped(tmp_path, tools, caplog):
    good = _image_folder(tmp_path, 5, tools)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(os.urandom(2048))
    truncated = tmp_path / "truncated.png"
    full = (tmp_path / "img000.png").read_bytes()
    truncated.write_bytes(full[: len(full) // 2])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    files = find_images(tmp_path)
    assert set(files) == set(good) | {garbage, truncated, empty}
    caplog.set_level(logging.WARNING, logger="maskgit_inpaint")
    u8, kept = load_folder(files, 64)
    assert kept == sorted(good)
    assert u8.shape == (5, 3, 64, 64)
    for i, p in enumerate(kept):  # the kept images are the right ones, in order
        np.testing.assert_array_equal(u8[i].permute(1, 2, 0).numpy(), load_rgb(p, 64))
    for bad in (garbage, truncated, empty):
        hits = [r for r in caplog.records if str(bad) in r.getMessage()]
        assert len(hits) == 1, f"{bad} reported {len(hits)} times"
        assert hits[0].levelno == logging.WARNING
    for p in good:
        assert not any(str(p) in r.getMessage() for r in caplog.records)


def test_load_folder_with_only_corrupt_files_raises(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="none of the 1 images"):
        load_folder([bad], 64)


# ============================================================================= split_files
def test_split_files_seeded_disjoint_and_complete(tmp_path, tools):
    files = _image_folder(tmp_path / "d", 40, tools)
    train, val = split_files(tmp_path / "d", None, 0.2, seed=0)
    assert len(val) == 8 and len(train) == 32
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(files)
    assert train == sorted(train) and val == sorted(val)  # order kept stable
    assert split_files(tmp_path / "d", None, 0.2, seed=0) == (train, val)  # seeded
    others = [split_files(tmp_path / "d", None, 0.2, seed=s)[1] for s in (1, 2, 3)]
    assert any(o != val for o in others), "the seed does not change the split"
    # a tiny fraction still keeps one validation image
    t1, v1 = split_files(tmp_path / "d", None, 0.001, seed=0)
    assert len(v1) == 1 and len(t1) == 39


def test_split_files_no_val_and_explicit_val_folder(tmp_path, tools):
    files = _image_folder(tmp_path / "d", 6, tools)
    vfiles = _image_folder(tmp_path / "v", 3, tools, seed=9)
    assert split_files(tmp_path / "d", None, 0.0, seed=0) == (files, [])
    assert split_files(tmp_path / "d", tmp_path / "v", 0.5, seed=0) == (files, vfiles)


# ============================================================================= dataset
def test_image_tensor_dataset_normalises_and_flips(tools):
    rng = np.random.default_rng(4)
    u8 = torch.from_numpy(np.stack([tools.synthetic_image(rng) for _ in range(2)])).permute(0, 3, 1, 2)
    ds = ImageTensorDataset(u8, MEAN, STD, flip=False)
    x = ds[0]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    torch.testing.assert_close(x, u8[0].float() / 127.5 - 1)
    torch.manual_seed(0)
    flipped = ImageTensorDataset(u8, MEAN, STD, flip=True)
    seen = {bool(torch.equal(flipped[0], x)) for _ in range(40)}
    assert seen == {True, False}  # both orientations occur
    for _ in range(10):
        y = flipped[0]
        assert torch.equal(y, x) or torch.equal(y, x.flip(-1))


# ============================================================================= token cache
@pytest.fixture()
def tokenizer():
    from maskgit_inpaint.config import preset
    from maskgit_inpaint.tokenizer import VQGAN, TokenizerConfig

    torch.manual_seed(0)
    return VQGAN(TokenizerConfig.from_dict(preset("tiny")["tokenizer"])).eval()


@pytest.fixture()
def count_encodes(monkeypatch):
    calls = []
    real = data_mod.encode_tokens

    def counting(*a, **kw):
        calls.append(len(a[1]))
        return real(*a, **kw)

    monkeypatch.setattr(data_mod, "encode_tokens", counting)
    return calls


def test_token_cache_is_built_once_then_reused(tmp_path, tools, tokenizer, count_encodes):
    files = _image_folder(tmp_path / "imgs", 6, tools)
    cache = tmp_path / "cache" / "tok.safetensors"
    t1 = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    assert count_encodes == [6]
    assert cache.is_file()
    assert t1.shape == (6, 256) and t1.dtype == torch.int64
    assert 0 <= int(t1.min()) and int(t1.max()) < 256
    u8, _ = load_folder(files, 64)
    assert torch.equal(t1, encode_tokens(tokenizer, u8, MEAN, STD))
    st = cache.stat()
    t2 = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    assert count_encodes == [6], "cache hit still encoded the images"
    assert torch.equal(t1, t2) and t2.dtype == torch.int64
    assert cache.stat().st_mtime_ns == st.st_mtime_ns and cache.stat().st_ino == st.st_ino  # not rewritten


def test_token_cache_is_uint16_on_disk(tmp_path, tools, tokenizer):
    from safetensors import safe_open

    files = _image_folder(tmp_path / "imgs", 3, tools)
    cache = tmp_path / "tok.safetensors"
    toks = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    with safe_open(str(cache), "pt") as f:
        assert list(f.keys()) == ["tokens"]
        stored = f.get_tensor("tokens")
        assert f.metadata().get("key")
    assert stored.dtype == torch.uint16
    assert torch.equal(stored.to(torch.int64), toks)


def test_token_cache_flip_doubles_count_with_mirrored_tokens(tmp_path, tools, tokenizer):
    files = _image_folder(tmp_path / "imgs", 4, tools)
    plain = token_cache(tmp_path / "a.safetensors", tokenizer, files, 64, MEAN, STD, flip=False)
    both = token_cache(tmp_path / "b.safetensors", tokenizer, files, 64, MEAN, STD, flip=True)
    assert both.shape == (8, 256)
    assert torch.equal(both[:4], plain)
    u8, _ = load_folder(files, 64)
    assert torch.equal(both[4:], encode_tokens(tokenizer, u8.flip(-1), MEAN, STD))
    assert not torch.equal(both[4:], both[:4])


def test_token_cache_rebuilt_when_tokenizer_weights_change(tmp_path, tools, tokenizer, count_encodes, caplog):
    files = _image_folder(tmp_path / "imgs", 4, tools)
    cache = tmp_path / "tok.safetensors"
    t1 = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    with torch.no_grad():
        tokenizer.codebook.embedding.weight.copy_(torch.randn_like(tokenizer.codebook.embedding.weight))
    caplog.set_level(logging.INFO, logger="maskgit_inpaint")
    t2 = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    assert count_encodes == [4, 4]
    assert not torch.equal(t1, t2)
    u8, _ = load_folder(files, 64)
    assert torch.equal(t2, encode_tokens(tokenizer, u8, MEAN, STD))
    assert any("stale" in r.getMessage() for r in caplog.records)
    # and the rebuilt cache is then reused
    t3 = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    assert count_encodes == [4, 4] and torch.equal(t2, t3)


def test_token_cache_rebuilt_when_image_set_changes(tmp_path, tools, tokenizer, count_encodes):
    files = _image_folder(tmp_path / "imgs", 4, tools)
    cache = tmp_path / "tok.safetensors"
    t1 = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    # a new image
    extra = _write(tools.synthetic_image(np.random.default_rng(99)), tmp_path / "imgs" / "zzz.png")
    t2 = token_cache(cache, tokenizer, files + [extra], 64, MEAN, STD, flip=False)
    assert count_encodes == [4, 5] and t2.shape == (5, 256)
    assert torch.equal(t2[:4], t1)
    # an image removed
    t3 = token_cache(cache, tokenizer, files[1:] + [extra], 64, MEAN, STD, flip=False)
    assert count_encodes == [4, 5, 4] and t3.shape == (4, 256)
    # an image's content replaced under the same name
    st = files[1].stat()
    _write(np.full((64, 64, 3), 17, np.uint8), files[1])
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    t4 = token_cache(cache, tokenizer, files[1:] + [extra], 64, MEAN, STD, flip=False)
    assert count_encodes == [4, 5, 4, 4]
    u8, _ = load_folder(files[1:] + [extra], 64)
    assert torch.equal(t4, encode_tokens(tokenizer, u8, MEAN, STD))
    # a different flip setting is a different cache
    t5 = token_cache(cache, tokenizer, files[1:] + [extra], 64, MEAN, STD, flip=True)
    assert count_encodes == [4, 5, 4, 4, 4, 4] and t5.shape == (8, 256)


def test_token_cache_survives_a_copy_of_the_data_with_new_timestamps(tmp_path, tools, tokenizer, count_encodes):
    files = _image_folder(tmp_path / "imgs", 3, tools)
    cache = tmp_path / "tok.safetensors"
    t1 = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    copies = []
    for f in files:  # a re-mounted dataset: same names and bytes, new times
        (copy_dir / f.name).write_bytes(f.read_bytes())
        os.utime(copy_dir / f.name, ns=(1, f.stat().st_mtime_ns + 10**12))
        copies.append(copy_dir / f.name)
    t2 = token_cache(cache, tokenizer, copies, 64, MEAN, STD, flip=False)
    assert count_encodes == [3] and torch.equal(t1, t2)


def test_damaged_token_cache_is_rebuilt_not_trusted(tmp_path, tools, tokenizer, count_encodes, caplog):
    files = _image_folder(tmp_path / "imgs", 3, tools)
    cache = tmp_path / "tok.safetensors"
    t1 = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    cache.write_bytes(b"\x00garbage" * 10)
    caplog.set_level(logging.WARNING, logger="maskgit_inpaint")
    t2 = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    assert count_encodes == [3, 3] and torch.equal(t1, t2)
    assert any(str(cache) in r.getMessage() for r in caplog.records)
    t3 = token_cache(cache, tokenizer, files, 64, MEAN, STD, flip=False)
    assert count_encodes == [3, 3] and torch.equal(t1, t3)
