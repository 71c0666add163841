"""The token grids a sweep sampled, kept on disk so that a sweep after a decoder-only change
(fine-tuned or widened decoder, another blend) only decodes them again."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoints import atomic_write
from .settings import TOP_LEVEL, InpaintSettings, resolve_precision


# Tokenizer weights that only turn tokens into pixels: changing them leaves every sampled token as it is.
DECODER_SIDE = ("decoder.", "post_quant_conv.")
DECODER_SIDE_CONFIG = ("dec_in", "dec_stages", "dec_norm_groups", "dec_cond", "dec_cond_width", "dec_cond_levels")


def _digest(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


class TokenCache:
    """The token grids a sweep sampled, kept in a folder so that a later sweep with a new decoder
    (e.g. the tokenizer's decoder fine-tuned with the encoder frozen) only decodes them again.

    A run's key hashes everything its tokens depend on: the transformer's and the tokenizer's
    weights except the decoder side, the model config, hole fill, precision, batch size, the
    torch version and device type, the images, masks and names, the sampler settings and the seed.
    Anything else in that list changing gives a new key, so a stale entry is never used.
    The CPU (or GPU) model is not in the key, by choice: a cache folder carried to another machine
    keeps serving it. Its tokens are valid samples there, but fp32 kernels may round differently
    across processors, so they need not match a fresh run on that machine token for token."""

    def __init__(self, folder, model, images01, known, names, batch_size: int, log=print):
        self.folder = Path(folder)
        self.log = log
        h = hashlib.sha256(b"maskgit-inpaint token cache 1")
        for k, v in sorted(model.tokenizer.state_dict().items()):
            if not k.startswith(DECODER_SIDE):
                h.update(k.encode())
                _digest(h, v)
        for k, v in sorted(model.transformer.state_dict().items()):
            h.update(k.encode())
            _digest(h, v)
        if model.weak_transformer is not None:  # hashed only when present: earlier entries stay valid
            for k, v in sorted(model.weak_transformer.state_dict().items()):
                h.update(f"weak.{k}".encode())
                _digest(h, v)
        # the sampler is hashed per run; the format and what the decoder is given do not change the tokens
        # the settings are hashed per run; the format and the decoder's side do not change the tokens
        cfg = {k: v for k, v in model.config.items() if k not in ("sampler", "format") + TOP_LEVEL}
        if "tokenizer" in cfg:
            cfg["tokenizer"] = {k: v for k, v in cfg["tokenizer"].items() if k not in DECODER_SIDE_CONFIG}
        h.update(json.dumps([cfg, batch_size, torch.__version__, model.device.type], sort_keys=True,
                            default=str).encode())
        self.device = model.device
        _digest(h, images01.float())
        _digest(h, known.bool())
        h.update("\n".join(names).encode())
        h.update(b"seeds: pipeline.image_seeds")  # per-image seeds from the content (not the names, as before)
        self._base = h

    def key(self, settings: InpaintSettings, seed: int) -> str:
        """Every settings field that can change the tokens (`tokens` in its metadata), the
        precision resolved for the device."""
        h = self._base.copy()
        d = settings.token_key()
        d["precision"] = resolve_precision(settings.precision, self.device)
        if d["precision"] != "fp32":
            d["head"] = "fp32"  # bf16 passes keep an fp32 output head since 2026-12-07: older entries differ
        h.update(json.dumps([d, seed], sort_keys=True).encode())
        return h.hexdigest()[:32]

    def path(self, sampler, seed: int) -> Path:
        return self.folder / f"{self.key(sampler, seed)}.safetensors"

    def get(self, sampler, seed: int, n: int) -> tuple[torch.Tensor, float] | None:
        """(tokens, seconds per image of the run that sampled them), or None."""
        path = self.path(sampler, seed)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), "pt") as f:
                tokens, spi = f.get_tensor("tokens"), float(f.metadata()["s_per_image"])
        except Exception as e:  # an unreadable entry is sampled again and overwritten
            self.log(f"token cache: {path}: unreadable ({e}); sampling again")
            return None
        if tokens.dim() != 2 or len(tokens) != n:
            self.log(f"token cache: {path}: holds {tuple(tokens.shape)} tokens for {n} images; sampling again")
            return None
        return tokens.long(), spi

    def put(self, sampler, seed: int, tokens: torch.Tensor, spi: float) -> None:
        meta = {"s_per_image": repr(spi), "seed": str(seed), "settings": json.dumps(sampler.token_key())}
        data = {"tokens": tokens.to(torch.int32).contiguous()}
        atomic_write(self.path(sampler, seed), lambda tmp: save_file(data, tmp, metadata=meta))
