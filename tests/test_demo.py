"""`maskgit demo`: samples made by the model itself, the sheet, and the bundled default model."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from maskgit_inpaint.cli import main
from maskgit_inpaint.model import default_model_dir, has_default_model


@pytest.fixture()
def model_with_samples(tiny_model_dir, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(tiny_model_dir, d)
    assert main(["demo", "--model", str(d), "--make-samples", "3", "--device", "cpu"]) == 0
    return d


def test_make_samples_writes_images_and_masks(model_with_samples):
    samples = model_with_samples / "samples"
    assert sorted(p.name for p in samples.glob("*.png")) == ["sample0.png", "sample1.png", "sample2.png"]
    for i in range(3):
        img = np.asarray(Image.open(samples / f"sample{i}.png"))
        mask = np.asarray(Image.open(samples / "masks" / f"sample{i}.png"))
        assert img.shape == (64, 64, 3) and mask.shape == (64, 64)
        assert set(np.unique(mask)) <= {0, 255} and 0 < (mask == 0).mean() < 1


def test_demo_writes_a_sheet_and_composited_outputs(model_with_samples, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(model_with_samples), "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert str(out / "sheet.png") in text
    sheet = np.asarray(Image.open(out / "sheet.png"))
    steps = 8  # the tiny model's sampler config
    # 3 rows of (2 * 64 + 2) px with 6 px gaps, columns: input + each step + output, x2 upscale
    assert sheet.shape == (2 * (3 * 130 + 2 * 6), 2 * ((steps + 2) * 66 - 2), 3)
    for i in range(3):
        src = np.asarray(Image.open(model_with_samples / "samples" / f"sample{i}.png"))
        known = np.asarray(Image.open(model_with_samples / "samples" / "masks" / f"sample{i}.png")) == 0
        res = np.asarray(Image.open(out / f"sample{i}.png"))
        assert np.array_equal(res[known], src[known])


def test_demo_is_deterministic(model_with_samples, tmp_path):
    for name in ("a", "b"):
        assert main(["demo", "--model", str(model_with_samples), "--out", str(tmp_path / name),
                     "--device", "cpu"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "sheet.png")),
                          np.asarray(Image.open(tmp_path / "b" / "sheet.png")))


def test_demo_without_samples_says_how_to_make_them(tiny_model_dir, tmp_path, capsys):
    assert main(["demo", "--model", str(tiny_model_dir), "--out", str(tmp_path), "--device", "cpu"]) == 2
    assert "--make-samples" in capsys.readouterr().err


def test_make_samples_needs_a_model_dir(capsys):
    assert main(["demo", "--make-samples", "2"]) == 2
    assert "--model" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the bundled model
needs_default = pytest.mark.skipif(not has_default_model(), reason="no default model bundled")


@needs_default
def test_default_model_is_small_and_ships_eight_samples_with_masks():
    d = default_model_dir()
    weights = sum(p.stat().st_size for p in d.glob("*.safetensors"))
    assert weights <= 40 * 2 ** 20
    samples = sorted((d / "samples").glob("*.png"))
    assert len(samples) == 8
    assert all((d / "samples" / "masks" / p.name).is_file() for p in samples)
    assert (d / "MODEL_CARD.md").is_file()


@needs_default
def test_demo_runs_on_the_default_model_without_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--device", "cpu"]) == 0
    assert (tmp_path / "maskgit-demo" / "sheet.png").stat().st_size > 10_000
    assert len(list((tmp_path / "maskgit-demo").glob("sample*.png"))) == 8
