"""Training data: image folders (decoded once into memory) and the stage-2 token cache."""
from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from .checkpoints import atomic_write
from .images import IMAGE_KINDS, IMAGE_SUFFIXES, open_image, to_rgb
from .masks import GENERATORS, generate_masks, harmonic_fill, pixel_to_token_mask

log = logging.getLogger("maskgit_inpaint")

# The lab's normalisation, selectable as a preset in configs (`data.normalization: lab`).
NORMALIZATIONS = {
    "default": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},  # pixels in [-1, 1]
    "lab": {"mean": [0.4816, 0.4324, 0.3845], "std": [0.2602, 0.2518, 0.2537]},
}


def find_images(root: str | Path) -> list[Path]:
    """Every image file (images.IMAGE_SUFFIXES) under `root`, recursively, in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{root}: no images ({IMAGE_KINDS}) found")
    return files


def load_rgb(path: Path, size: int) -> np.ndarray:
    """RGB, shorter side resized to `size`, centre-cropped: (size, size, 3) uint8."""
    img = to_rgb(open_image(Path(path)))
    w, h = img.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


def load_folder(files: list[Path], size: int) -> tuple[torch.Tensor, list[Path]]:
    """Decode every file once into a uint8 tensor (N,3,size,size). A corrupt file is reported
    once by path and skipped, so a long run never dies on it."""
    arrays, kept, bad = [], [], []
    for p in files:
        try:
            arrays.append(load_rgb(p, size))
            kept.append(p)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            log.warning("skipping unreadable image %s (%s)", p, e)
            bad.append(p)
    where = os.path.commonpath([str(p.parent) for p in files]) if files else "."
    if not arrays:
        raise ValueError(f"{where}: none of the {len(files)} images could be read")
    if bad:
        log.warning("skipped %d of %d images in %s as unreadable: %s", len(bad), len(files), where,
                    ", ".join(p.name for p in bad[:10]) + (", ..." if len(bad) > 10 else ""))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), kept


def split_files(train_dir, val_dir=None, val_fraction: float = 0.05, seed: int = 0):
    """Separate train/val folders, or a seeded val fraction of one folder."""
    train = find_images(train_dir)
    if val_dir:
        return train, find_images(val_dir)
    if val_fraction <= 0:
        return train, []
    rng = random.Random(seed)
    idx = list(range(len(train)))
    rng.shuffle(idx)
    n_val = max(1, int(round(len(train) * val_fraction)))
    val_idx = set(idx[:n_val])
    return [p for i, p in enumerate(train) if i not in val_idx], [p for i, p in enumerate(train) if i in val_idx]


class ImageTensorDataset(Dataset):
    """Normalised float images from a uint8 tensor, with optional horizontal flips."""

    def __init__(self, images_u8: torch.Tensor, mean, std, flip: bool = True):
        self.images = images_u8
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.flip = flip

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        """`i`: an index (flipped at random when `flip`), or (index, flip) from `EpochBatchSampler`."""
        i, flip = i if isinstance(i, tuple) else (i, self.flip and bool(torch.rand(()) < 0.5))
        x = self.images[i].float() / 255.0
        if flip:
            x = x.flip(-1)
        return (x - self.mean) / self.std


class EpochBatchSampler(Sampler):
    """Shuffled batches whose order (and flips) depend only on the seed and the epoch, so a run
    resumed in the middle of an epoch can see the rest of that very epoch (`resume_at`). Under
    DDP each rank takes every world-size-th sample of the one permutation (read at iteration
    time, when the process group exists). Indices come as (index, flip) when `flip`."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, flip: bool = False):
        self.n, self.batch_size, self.seed, self.flip = n, batch_size, seed, flip
        self.epoch, self.start = 0, 0
        self._resume: tuple[int, int] | None = None

    @staticmethod
    def _world() -> tuple[int, int]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        return self.n // self._world()[1] // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, batches: int) -> None:
        """The next pass over `epoch` skips its first `batches` batches."""
        self._resume = (epoch, batches)

    def __iter__(self):
        rank, world = self._world()
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        flips = (torch.rand(self.n, generator=g) < 0.5).tolist()
        per_rank = self.n // world
        mine = perm[rank::world][:per_rank].tolist()
        mine_flips = flips[rank::world][:per_rank]
        self.start = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
        self._resume = None
        for b in range(self.start, len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield list(zip(mine[sl], mine_flips[sl])) if self.flip else mine[sl]


class ResumableLoader(DataLoader):
    """A training DataLoader over an `EpochBatchSampler` that Lightning checkpoints and restores
    (its `state_dict` / `load_state_dict`: the epoch and how many of its batches were handed
    out), so a mid-epoch resume continues that epoch instead of replaying its first batches."""

    def __init__(self, dataset, batch_size: int, seed: int = 0, flip: bool = False, num_workers: int = 0):
        sampler = EpochBatchSampler(len(dataset), batch_size, seed, flip)
        # its own generator: creating an iterator (workers' base seed) leaves the global RNG alone
        super().__init__(dataset, batch_sampler=sampler, num_workers=num_workers,
                         generator=torch.Generator().manual_seed(seed))
        self.taken_epoch, self.taken = 0, 0

    def __iter__(self):
        # counted as handed out, not as prefetched by workers: the state a checkpoint needs
        sampler, n = self.batch_sampler, 0
        for batch in super().__iter__():
            n += 1
            self.taken_epoch, self.taken = sampler.epoch, sampler.start + n
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.taken_epoch, "taken": self.taken}

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.resume_at(int(state["epoch"]), int(state["taken"]))


def files_fingerprint(files: list[Path]) -> str:
    """Names (in order) and contents: a dataset copied or re-mounted with new timestamps still
    hits the cache (hashing 8k small images takes well under a second)."""
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}\0".encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def state_fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_tokens(tokenizer, images_u8: torch.Tensor, mean, std, batch_size: int = 128,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 images -> token indices (N, n_tokens) as int64."""
    tokenizer = tokenizer.to(device).eval()
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(images_u8), batch_size):
        x = (images_u8[i:i + batch_size].to(device).float() / 255.0 - m) / s
        out.append(tokenizer.encode(x).cpu())
    return torch.cat(out)


def _cached(cache_path: Path, key: str, build, what: str) -> dict[str, torch.Tensor]:
    """The tensors stored at `cache_path` when its metadata key is `key`, else `build()`'s,
    written atomically with that key. A damaged or stale file is rebuilt, never trusted."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    if cache_path.is_file():
        try:
            with safe_open(str(cache_path), "pt") as f:
                meta = f.metadata() or {}
            if meta.get("key") == key:
                return load_file(str(cache_path))
            log.info("%s %s is stale (tokenizer or data changed): rebuilding", what, cache_path)
        except Exception as e:
            log.warning("%s %s unreadable (%s): rebuilding", what, cache_path, e)
    tensors = build()
    atomic_write(cache_path, lambda tmp: save_file(tensors, tmp, metadata={"key": key}))
    return tensors


def _as_uint16(tokens: torch.Tensor) -> torch.Tensor:
    if int(tokens.max()) >= 2 ** 16:
        raise ValueError("codebook too large for a uint16 token cache")
    return tokens.to(torch.uint16)


def token_cache(cache_path: str | Path, tokenizer, files: list[Path], size: int, mean, std,
                flip: bool = True, device="cpu") -> torch.Tensor:
    """Tokens of every image (and of its mirror image when `flip`), (M, N) int64.

    Stored as uint16 in a safetensors file keyed by a fingerprint of the tokenizer weights and
    of the image files, so it is rebuilt automatically when either changes.
    """
    key = f"{state_fingerprint(tokenizer)}-{files_fingerprint(files)}-{int(flip)}-{size}-{mean}-{std}"

    def build():
        t0 = time.perf_counter()
        log.info("encoding %d images%s into the token cache %s (once; reused until the tokenizer or data change)",
                 len(files), " and their mirror images" if flip else "", cache_path)
        images, _ = load_folder(files, size)
        toks = [encode_tokens(tokenizer, images, mean, std, device=device)]
        if flip:
            toks.append(encode_tokens(tokenizer, images.flip(-1), mean, std, device=device))
        tokens = torch.cat(toks)
        log.info("token cache: %d token grids in %.0f s", len(tokens), time.perf_counter() - t0)
        return {"tokens": _as_uint16(tokens)}

    return _cached(Path(cache_path), key, build, "token cache")["tokens"].to(torch.int64)


def pixel_mask_bank(count: int = 2048, size: int = 64, seed: int = 1234) -> torch.Tensor:
    """(count, size, size) bool known-pixel masks, an even mix of every mask generator."""
    per = max(1, count // len(GENERATORS))
    return torch.cat([torch.from_numpy(generate_masks(k, per, size, seed)) for k in GENERATORS])


@torch.no_grad()
def encode_masked_views(tokenizer, images_u8: torch.Tensor, mean, std, views: int, latent: int,
                        mask_bank: torch.Tensor, seed: int = 0, batch_size: int = 128,
                        device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens of each image as inpainting sees it: `views` random masks per image from
    `mask_bank`, holes filled as `MaskGIT.inpaint` fills them, then encoded.

    Returns (tokens (M, views, N) int64, unknown (M, views, N) bool). The known tokens of a
    masked image differ from those of the full image (the encoder sees the whole image), so
    a transformer trained only on full-image tokens meets unfamiliar context at inference.
    """
    tokenizer = tokenizer.to(device).eval()
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(mask_bank), (len(images_u8), views), generator=g)
    toks, unks = [], []
    for v in range(views):
        tv, uv = [], []
        for i in range(0, len(images_u8), batch_size):
            known = mask_bank[pick[i:i + batch_size, v]].to(device)
            x = (images_u8[i:i + batch_size].to(device).float() / 255.0 - m) / s
            tv.append(tokenizer.encode(harmonic_fill(x, known)).cpu())
            uv.append(pixel_to_token_mask(known, latent).cpu())
        toks.append(torch.cat(tv))
        unks.append(torch.cat(uv))
    return torch.stack(toks, 1), torch.stack(unks, 1)


def context_cache(cache_path: str | Path, tokenizer, files: list[Path], size: int, mean, std,
                  flip: bool = True, views: int = 4, seed: int = 0, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """`encode_masked_views` of every image (and of its mirror image when `flip`, in the order
    of `token_cache`), cached like `token_cache`: (tokens (M, views, N), unknown (M, views, N))."""
    key = (f"{state_fingerprint(tokenizer)}-{files_fingerprint(files)}-{int(flip)}-{size}-{mean}-{std}"
           f"-views{views}-seed{seed}")

    def build():
        t0 = time.perf_counter()
        images, _ = load_folder(files, size)
        if flip:
            images = torch.cat([images, images.flip(-1)])
        log.info("encoding %d masked views of %d images into the context cache %s (once)", views, len(images),
                 cache_path)
        tokens, unknown = encode_masked_views(tokenizer, images, mean, std, views, tokenizer.cfg.latent_size,
                                              pixel_mask_bank(size=size, seed=1234 + seed), seed=seed, device=device)
        log.info("context cache: %d x %d masked views in %.0f s", len(tokens), views, time.perf_counter() - t0)
        return {"tokens": _as_uint16(tokens), "unknown": unknown}

    d = _cached(Path(cache_path), key, build, "context cache")
    return d["tokens"].to(torch.int64), d["unknown"]
