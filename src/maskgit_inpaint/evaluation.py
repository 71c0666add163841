"""Inpainting metrics of image sets: PSNR / SSIM / L1 over the whole image and over the hole, with
FID, KID and P-IDS / U-IDS (see `fid`), for tensors or folders of files.

Conventions: images are uint8 (N, 3, H, W) for the Inception metrics and [0, 1] floats (or uint8)
for the pixel metrics; a mask is (N, 1, H, W) bool/uint8 with 1/True = known pixel, 0 = hole; mask files are white
where the hole is, as everywhere in the package.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .fid import (MIN_IDS_IMAGES, EvaluationInputError, _as_uint8, default_inception_path, fid, frechet_distance,
                  inception_discriminative_scores, inception_features, kernel_inception_distance, load_inception,
                  resolve_device)
from .images import InputError, list_images, open_image, pair_by_stem, read_mask, to_rgb

# the Inception metrics are reached from here too: one import for evaluating image sets
__all__ = ["EvaluationInputError", "default_inception_path", "evaluate_folders", "evaluate_images", "fid",
           "format_table", "frechet_distance", "inception_features", "kernel_inception_distance", "load_inception",
           "load_evaluation_folders", "pixel_metrics", "resolve_device"]


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


def load_mask_files(files: list[Path], invert: bool = False) -> torch.Tensor:
    """bool (N, 1, H, W), True = known, from mask files (white = hole; black with `invert`)."""
    try:
        known = [read_mask(p, invert=invert) for p in files]
    except InputError as e:
        raise EvaluationInputError(str(e)) from None
    for p, k in zip(files, known):
        if k.shape != known[0].shape:
            raise EvaluationInputError(f"{p}: size {k.shape[1]}x{k.shape[0]} differs from {files[0].name}'s "
                                       f"{known[0].shape[1]}x{known[0].shape[0]}; all masks must be one size")
    return torch.from_numpy(np.stack(known)).unsqueeze(1)


def load_image_folder(folder: str | os.PathLike) -> tuple[list[str], torch.Tensor]:
    """(file names, uint8 (N, 3, H, W) RGB) of the images in a folder, sorted by name."""
    files = list_image_files(folder)
    return [p.name for p in files], load_image_files(files)


def pair_evaluation_files(pred: list[Path], gt: list[Path], masks: list[Path] | None = None,
               ) -> list[tuple[Path, Path, Path | None]]:
    """(prediction, ground truth, mask) by file stem; a prediction without its ground truth or
    mask is an error that names it (files left over in those folders are ignored, with a warning)."""
    try:
        gts = pair_by_stem(pred, gt, "ground-truth image")
        ms = pair_by_stem(pred, masks, "mask") if masks is not None else [None] * len(pred)
    except InputError as e:
        raise EvaluationInputError(str(e)) from None
    if len(gt) > len(pred):
        warnings.warn(f"{len(gt) - len(pred)} ground-truth file(s) in {gt[0].parent} without a prediction are ignored",
                      stacklevel=2)
    return list(zip(pred, gts, ms))


def load_evaluation_folders(pred_dir, gt_dir, mask_dir=None, invert_mask: bool = False):
    """Paired (pred uint8, gt uint8, known-mask bool or None, pred file names, pairing) from folders,
    checking that each pair has one size."""
    pred_files = list_image_files(pred_dir, "prediction")
    gt_files = list_image_files(gt_dir, "ground-truth")
    mask_files = list_image_files(mask_dir, "mask") if mask_dir is not None else None
    triples, pairing = pair_evaluation_files(pred_files, gt_files, mask_files), "stem"
    pred = load_image_files([t[0] for t in triples])
    gt = load_image_files([t[1] for t in triples])
    if pred.shape[2:] != gt.shape[2:]:
        raise EvaluationInputError(f"{triples[0][0]}: predictions are {pred.shape[3]}x{pred.shape[2]} but ground truth "
                                   f"{triples[0][1]} is {gt.shape[3]}x{gt.shape[2]}")
    masks = None
    if mask_files is not None:
        masks = load_mask_files([t[2] for t in triples], invert_mask)
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
        res["kid"], res["kid_std"] = kernel_inception_distance(fp, fg)
        ids = inception_discriminative_scores(fg, fp) if fg.shape[0] == fp.shape[0] else None
    else:
        res["fid"], res["kid"], res["kid_std"], ids = None, None, None, None  # undefined for a single image
    res["p_ids"], res["u_ids"] = ids if ids is not None else (None, None)
    order = ["count", "fid", "kid", "kid_std", "psnr", "ssim", "l1", "psnr_hole", "ssim_hole", "l1_hole", "hole_fraction",
             "p_ids", "u_ids"]
    return {k: res.get(k) for k in order}


def evaluate_folders(pred_dir, gt_dir, mask_dir=None, inception_path=None, device: str = "cpu",
                     batch_size: int = 50) -> dict:
    """Metrics dict (count, fid, psnr, ssim, l1, *_hole, hole_fraction, p_ids, u_ids; None where not
    applicable) for folders of predictions and ground truth, optionally with masks."""
    pred, gt, masks, _, _ = load_evaluation_folders(pred_dir, gt_dir, mask_dir)
    inception = load_inception(inception_path, device) if inception_path is not None else None
    return evaluate_images(pred, gt, masks, inception, batch_size, device)


# ----------------------------------------------------------------------------- reports
def _fmt(v, digits: int) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}f}"


def format_table(metrics: dict) -> str:
    """Compact human-readable metrics table."""
    rows = [("FID", metrics.get("fid"), None, 3), ("KID", metrics.get("kid"), None, 5), ("PSNR (dB)", metrics.get("psnr"), metrics.get("psnr_hole"), 2),
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


