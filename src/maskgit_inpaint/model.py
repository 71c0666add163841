"""The model: the tokenizer and transformer weights with their forward passes, and the model directory.

How they are used to inpaint is `pipeline.InpaintPipeline`'s business.

A model directory holds `config.yaml`, `tokenizer.safetensors` and, for a full model,
`transformer.safetensors`; optionally `weak_transformer.safetensors`, a weaker transformer of
the same architecture (an earlier checkpoint) for `sampler.weak_guidance`. A tokenizer too large
for one file keeps its decoder side in `decoder.safetensors`. Nothing in it is pickled.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from .config import NORMALIZATIONS, default_model_dir, has_default_model  # noqa: F401  (re-exported)
from .checkpoints import WeightsError, atomic_write, load_safetensors, load_strict, save_safetensors
from .device import resolve_device  # noqa: F401  (re-exported)
from .precision import precision_line
from .settings import HOLE_FILLS, PRECISIONS, InpaintSettings, SamplerConfig, resolve_precision
from .tokenizer import DECODER_SIDE, VQGAN, TokenizerConfig
from .transformer import MaskTransformer, TransformerConfig

FORMAT = "maskgit-inpaint/1"
WEAK_FILE = "weak_transformer.safetensors"
TOKENIZER_FILE = "tokenizer.safetensors"
DECODER_FILE = "decoder.safetensors"
# Above this a tokenizer's decoder side is saved on its own: every file then stays under the
# 16 MB that the repository takes without LFS (a 2x wide decoder is 17 MB in fp16).
SPLIT_BYTES = 15_000_000


class ModelDirError(ValueError):
    """A model directory is missing, incomplete or inconsistent."""


# Tokens per transformer call on a CPU (see `MaskGIT.logits_fn`): 16 sequences of 256.
CPU_TOKENS_PER_CALL = 4096


def transformer_autocast(precision: str, device: torch.device | str):
    """Context for the transformer's forward pass and the decoder's: bf16 under autocast, or
    nothing. The encoder always runs in fp32 so that the known tokens never change with precision."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# Above this share of rows holding the mask token, `MaskGIT.logits_fn` computes every row.
MASKED_ROWS_SHARE = 0.75
# MKL's fp32 matrix product rounds otherwise for few rows (on the development Xeon: up to 8
# rows, and up to 128 for an inner size of 1024), so the masked-only pass never runs one on
# fewer rows than this: its logits are then those of the whole pass, bit for bit.
MIN_GEMM_ROWS = 256


def masked_rows(is_mask: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) long: each row's positions holding the mask token, in order, padded with other
    positions up to `k` (their outputs are dropped)."""
    return (~is_mask).to(torch.int8).argsort(dim=1, stable=True)[:, :k]


_ANNOUNCED: set = set()


def _announce(requested: str, resolved: str, device: torch.device) -> None:
    """Log the transformer's precision once per process and choice (the CLI shows it on stderr)."""
    key = (requested, resolved, str(device))
    if key not in _ANNOUNCED:
        _ANNOUNCED.add(key)
        logging.getLogger("maskgit_inpaint").info(precision_line(requested, resolved, device))


__all__ = ["HOLE_FILLS", "PRECISIONS", "InpaintSettings", "MaskGIT", "ModelDirError", "load_model",
           "resolve_precision"]


class MaskGIT(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.tokenizer = VQGAN(TokenizerConfig.from_dict(config["tokenizer"]))
        self.transformer = None
        if config.get("transformer"):
            tcfg = TransformerConfig.from_dict(config["transformer"])
            if tcfg.codebook_size != self.tokenizer.codebook_size:
                raise ModelDirError(f"transformer.codebook_size ({tcfg.codebook_size}) differs from the "
                                    f"tokenizer's ({self.tokenizer.codebook_size})")
            if tcfg.num_tokens != self.tokenizer.cfg.num_tokens:
                raise ModelDirError(f"transformer.num_tokens ({tcfg.num_tokens}) differs from the "
                                    f"tokenizer's grid ({self.tokenizer.cfg.num_tokens})")
            self.transformer = MaskTransformer(tcfg)
        self.weak_transformer = None  # set by `set_weak_transformer` / `from_dir` when the directory has one
        norm = config.get("normalization") or NORMALIZATIONS["default"]
        self.register_buffer("mean", torch.tensor(norm["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(norm["std"]).view(1, 3, 1, 1), persistent=False)
        InpaintSettings.from_config(config)  # a bad inference setting in config.yaml fails at load, named

    @property
    def default_settings(self) -> InpaintSettings:
        """How this model inpaints unless told otherwise: its config's sampler section and
        hole fill, blend and decode_known (read, never written: settings travel per call)."""
        return InpaintSettings.from_config(self.config)

    # ------------------------------------------------------------------ properties
    @property
    def image_size(self) -> int:
        return self.tokenizer.cfg.image_size

    @property
    def codebook_size(self) -> int:
        return self.tokenizer.codebook_size

    @property
    def latent_size(self) -> int:
        return self.tokenizer.cfg.latent_size

    @property
    def has_weak_transformer(self) -> bool:
        return self.weak_transformer is not None

    def set_weak_transformer(self, state_dict: dict | None, source: str | Path = WEAK_FILE) -> None:
        """Install (or with None remove) the weak transformer that `sampler.weak_guidance` guides
        against: same architecture as the main one, trained on the same tokenizer's tokens."""
        if state_dict is None:
            self.weak_transformer = None
            return
        if self.transformer is None:
            raise ModelDirError(f"{source}: a weak transformer needs a full model (this one holds only a tokenizer)")
        weak = MaskTransformer(self.transformer.cfg)
        load_strict(weak, state_dict, source)
        self.weak_transformer = weak.to(self.device).eval()

    def check_sampler(self, sampler: SamplerConfig) -> None:
        """Raise if this model cannot run `sampler` (already validated): weak guidance needs a
        weak transformer."""
        if sampler.weak_guidance and sampler.guidance and self.weak_transformer is None:
            raise ModelDirError(f"weak guidance needs a weak transformer ({WEAK_FILE} in the model directory) "
                                "and this model has none: turn it off (--no-weak-guidance, or weak_guidance: false in "
                                "config.yaml) or add one with `maskgit export RUN --weak CHECKPOINT`")

    @property
    def device(self) -> torch.device:
        return self.mean.device

    # ------------------------------------------------------------------ pixels <-> tokens
    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        return (images01 - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.std + self.mean).clamp(0, 1)

    def per_image(self, fn, *batches: torch.Tensor | None) -> torch.Tensor:
        """`fn(*batches)` on a CPU with each image's result the same alone or in any batch.
        oneDNN picks a convolution's kernel by the batch size: on the development Xeon (AMX) a
        batch of one sums in another order than any larger batch, whose results are the same for
        every size and position (a pixel then moves by up to 1e-5, enough for a grey level or a
        token on a near tie). So an image alone runs as a batch of two (itself twice), and the
        first batch of each shape is checked: its first and last images must match their
        two-image runs bit for bit, else (a CPU whose kernels differ otherwise) every image of
        that shape runs on its own, as two. Batched, the tokenizer is several times faster than
        one image at a time (docs/benchmarks.md)."""
        n = batches[0].shape[0]
        if self.device.type != "cpu":
            return fn(*batches)

        def alone(i: int) -> torch.Tensor:
            return fn(*(None if b is None else b[i:i + 1].expand(2, *b.shape[1:]) for b in batches))[:1]

        if n == 1:
            return alone(0)
        verdicts = self.__dict__.setdefault("_batch_verdicts", {})
        key = (id(getattr(fn, "__self__", fn)), getattr(fn, "__qualname__", repr(fn)),
               torch.is_autocast_enabled(self.device.type)) + tuple(
            None if b is None else tuple(b.shape) for b in batches)
        if verdicts.get(key) is False:
            return torch.cat([alone(i) for i in range(n)])
        out = fn(*batches)
        if key not in verdicts:
            verdicts[key] = all(torch.equal(alone(i), out[i:i + 1]) for i in (0, n - 1))
            if not verdicts[key]:
                return torch.cat([alone(i) for i in range(n)])
        return out

    @torch.no_grad()
    def encode(self, images01: torch.Tensor) -> torch.Tensor:
        return self.per_image(self.tokenizer.encode, self.normalize(images01))

    @property
    def conditioned_decoder(self) -> bool:
        """Whether the tokenizer's decoder also sees the known pixels (`tokenizer.dec_cond`)."""
        return bool(self.tokenizer.cfg.dec_cond)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, images01: torch.Tensor | None = None,
               known: torch.Tensor | None = None, decode_known: bool | None = None,
               precision: str = "fp32") -> torch.Tensor:
        """Token grids -> images in [0,1]. A mask-conditioned decoder also takes the known pixels
        of `images01` (B,3,H,W) where `known` (B,H,W) is True; without them, or with
        `decode_known` off (default: the config's), it decodes from the tokens alone (its branch then sees an empty
        input). Other decoders ignore them. In `precision` bf16 the decoder's convolutions run
        under bf16 autocast (several times faster with AMX; pixels move by about half a grey
        level on average); the encoder always runs in fp32, so known tokens never depend on it."""
        cond = None
        decode_known = self.default_settings.decode_known if decode_known is None else decode_known
        if self.conditioned_decoder and decode_known and images01 is not None:
            if known is None:
                raise ValueError("decode: `known` is needed with `images01`")
            cond = self.tokenizer.condition(self.normalize(images01.to(self.device, torch.float32)),
                                            known.to(self.device, torch.bool))
        with transformer_autocast(precision, self.device):
            out = self.per_image(self.tokenizer.decode, tokens, cond)
        return self.denormalize(out.float())

    def logits_fn(self, precision: str = "auto", weak: bool = False):
        """The sampler's view of the transformer (with `weak`, of the weak one), in `precision`:
        `fn(tokens (B, N), rows="masked")` -> logits (B, N, V).

        rows="masked" (what the sampler calls) computes the logits only where a sequence holds
        the mask token, the only positions the sampler reads: the last block and the output head
        then run on those rows alone (`MaskTransformer.forward`), and every other position holds
        0. rows="compact" gives those rows alone, (M, V) in row-major order (`cur[cur == mask]`'s),
        which is what the sampler asks for (`sampling.masked_logits`). rows="all" computes every
        position (for a caller that reads the known ones too). The
        masked positions are the same bit for bit either way in fp32 on the development machine
        (tests/test_models.py checks that the sampled tokens are). On a CPU a large batch runs in
        slices of about `CPU_TOKENS_PER_CALL` tokens: the activations then stay in the caches,
        and every sequence is computed on its own, so the logits do not change."""
        prec = resolve_precision(precision, self.device)
        _announce(precision, prec, self.device)
        if prec == "mixed":  # the weak pass only steers the draw; its cost in FID: MODEL_CARD, metrics
            prec = "bf16" if weak else "fp32"
        net = self.weak_transformer if weak else self.transformer
        if net is None:
            raise ModelDirError(f"this model has no {'weak ' if weak else ''}transformer")
        mask_id = net.mask_token_id

        def part_logits(part: torch.Tensor, rows: str) -> torch.Tensor:
            if rows == "all":
                return net(part, fp32_head=True)
            is_mask = part == mask_id
            counts = is_mask.sum(1)
            k = int(counts.max())
            if k:  # at least MIN_GEMM_ROWS rows per matrix product (see there)
                k = max(k, -(-MIN_GEMM_ROWS // part.shape[0]))
            if k > MASKED_ROWS_SHARE * part.shape[1]:
                got = net(part, fp32_head=True)  # nearly every row is wanted: the whole pass costs the same
                return got[is_mask] if rows == "compact" else got
            width = net.cfg.codebook_size + (net.cfg.layout == "lab")
            if not k:
                return part.new_zeros((0, width) if rows == "compact" else (*part.shape, width), dtype=torch.float32)
            got = net(part, masked_rows(is_mask, k), fp32_head=True)
            got = got[torch.arange(k, device=part.device)[None] < counts[:, None]]
            if rows == "compact":
                return got
            out = got.new_zeros(*part.shape, width)
            out[is_mask] = got
            return out

        def logits_fn(cur: torch.Tensor, rows: str = "masked") -> torch.Tensor:
            if rows not in ("masked", "all", "compact"):
                raise ValueError(f"rows must be 'masked', 'all' or 'compact', got {rows!r}")
            with transformer_autocast(prec, self.device):
                if self.device.type != "cpu" or cur.numel() <= CPU_TOKENS_PER_CALL:
                    return part_logits(cur, rows)
                per_call = max(1, CPU_TOKENS_PER_CALL // cur.shape[1])
                return torch.cat([part_logits(part, rows) for part in cur.split(per_call)])

        logits_fn.compact = True  # the sampler may ask for rows="compact" (sampling.masked_logits)
        return logits_fn

    # ------------------------------------------------------------------ model directory
    def save(self, out_dir: str | Path, dtype: torch.dtype | None = None) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        config = dict(self.config)
        config["format"] = FORMAT
        tok = self.tokenizer.state_dict()
        size = sum(v.numel() * (dtype.itemsize if dtype is not None and v.is_floating_point() else v.element_size())
                   for v in tok.values())
        if size > SPLIT_BYTES:
            save_safetensors({k: v for k, v in tok.items() if k.startswith(DECODER_SIDE)}, out / DECODER_FILE, dtype)
            tok = {k: v for k, v in tok.items() if not k.startswith(DECODER_SIDE)}
        elif (out / DECODER_FILE).exists():
            (out / DECODER_FILE).unlink()  # a stale decoder side would be merged into this tokenizer
        save_safetensors(tok, out / TOKENIZER_FILE, dtype)
        if self.transformer is not None:
            save_safetensors(self.transformer.state_dict(), out / "transformer.safetensors", dtype)
        if self.weak_transformer is not None:
            save_safetensors(self.weak_transformer.state_dict(), out / WEAK_FILE, dtype)
        elif (out / WEAK_FILE).exists():
            (out / WEAK_FILE).unlink()  # a stale one from an earlier export would pair with the wrong model
        text = yaml.safe_dump(config, sort_keys=False)
        atomic_write(out / "config.yaml", lambda tmp: Path(tmp).write_text(text))
        return out

    @classmethod
    def from_dir(cls, model_dir: str | Path, device: str | torch.device = "cpu",
                 require_transformer: bool = True) -> "MaskGIT":
        d = Path(model_dir)
        if not d.is_dir():
            raise ModelDirError(f"{d}: model directory not found")
        cfg_path = d / "config.yaml"
        if not cfg_path.is_file():
            raise ModelDirError(f"{cfg_path}: missing (a model directory holds config.yaml and safetensors weights)")
        try:
            config = yaml.safe_load(cfg_path.read_text())
        except yaml.YAMLError as e:
            raise ModelDirError(f"{cfg_path}: not valid YAML ({e})") from None
        if not isinstance(config, dict) or "tokenizer" not in config:
            raise ModelDirError(f"{cfg_path}: no 'tokenizer' section")
        if require_transformer and not config.get("transformer"):
            raise ModelDirError(f"{d}: holds only a tokenizer (no transformer section in config.yaml); "
                                "train one with `maskgit train --tokenizer` first")
        try:
            model = cls(config)
        except (TypeError, ValueError) as e:
            raise ModelDirError(f"{cfg_path}: {e}") from None
        try:
            load_strict(model.tokenizer, *_tokenizer_weights(d))
            if model.transformer is not None:
                load_strict(model.transformer, load_safetensors(d / "transformer.safetensors"),
                            d / "transformer.safetensors")
                if (d / WEAK_FILE).is_file():
                    model.set_weak_transformer(load_safetensors(d / WEAK_FILE), d / WEAK_FILE)
        except WeightsError as e:
            raise ModelDirError(str(e)) from None
        defaults = model.default_settings
        if defaults.weak_guidance and defaults.guidance and model.weak_transformer is None:
            raise ModelDirError(f"{cfg_path}: sampler.weak_guidance is on but {d / WEAK_FILE} is missing "
                                "(add it, or set weak_guidance: false)")
        return model.to(device).eval()


def _tokenizer_weights(d: Path) -> tuple[dict, str]:
    """The tokenizer's state dict, from `tokenizer.safetensors` alone or with `decoder.safetensors`."""
    sd = load_safetensors(d / TOKENIZER_FILE)
    if not (d / DECODER_FILE).is_file():
        return sd, str(d / TOKENIZER_FILE)
    dec = load_safetensors(d / DECODER_FILE)
    both = sorted(set(sd) & set(dec))
    if both:
        raise ModelDirError(f"{d}: {TOKENIZER_FILE} and {DECODER_FILE} both hold {', '.join(both[:3])}"
                            f"{', ...' if len(both) > 3 else ''}; a model directory keeps each weight in one file "
                            "(is this a `--decoder-parts` export written over a model directory?)")
    return {**sd, **dec}, f"{d / TOKENIZER_FILE} + {d / DECODER_FILE}"


def model_hash(model_dir: str | Path) -> str:
    """Short content hash of a model directory's files, recorded with every result."""
    h = hashlib.sha256()
    for p in sorted(Path(model_dir).glob("*")):
        if p.is_file() and p.suffix in (".yaml", ".safetensors"):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def load_model(model_dir: str | Path | None = None, device: str = "auto") -> tuple["MaskGIT", Path]:
    """A full model for inference and its directory: `model_dir`, else the bundled default."""
    if model_dir is None:
        if not has_default_model():
            raise ModelDirError("no default model is bundled with this installation; "
                                "pass a model directory (--model MODEL_DIR)")
        model_dir = default_model_dir()
    return MaskGIT.from_dir(model_dir, device=resolve_device(device)), Path(model_dir)
