"""The inpainting pipeline (tokenizer + transformer + sampler) and the model directory.

A model directory holds `config.yaml`, `tokenizer.safetensors` and, for a full model,
`transformer.safetensors`; optionally `weak_transformer.safetensors`, a weaker transformer of
the same architecture (an earlier checkpoint) for `sampler.weak_guidance`. A tokenizer too large
for one file keeps its decoder side in `decoder.safetensors`. Nothing in it is pickled.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from .compositing import paste_known
from .checkpoints import WeightsError, atomic_write, load_safetensors, load_strict, save_safetensors
from .masks import harmonic_fill, pixel_to_token_mask
from .sampling import SamplerConfig, inpaint_tokens
from .settings import HOLE_FILLS, PRECISIONS, InpaintSettings, resolve_precision
from .tokenizer import DECODER_SIDE, VQGAN, TokenizerConfig
from .transformer import MaskTransformer, TransformerConfig

FORMAT = "maskgit-inpaint/1"
WEAK_FILE = "weak_transformer.safetensors"
TOKENIZER_FILE = "tokenizer.safetensors"
DECODER_FILE = "decoder.safetensors"
# Above this a tokenizer's decoder side is saved on its own: every file then stays under the
# 16 MB that the repository takes without LFS (a 2x wide decoder is 17 MB in fp16).
SPLIT_BYTES = 15_000_000
DEFAULT_NORMALIZATION = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


class ModelDirError(ValueError):
    """A model directory is missing, incomplete or inconsistent."""


# Tokens per transformer call on a CPU (see `MaskGIT.logits_fn`): 16 sequences of 256.
CPU_TOKENS_PER_CALL = 4096


def transformer_autocast(precision: str, device: torch.device | str):
    """Context for the transformer's forward pass: bf16 matmuls under autocast, or nothing.
    The tokenizer always runs in fp32 so that the known tokens never change with precision."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class InpaintOutput:
    images: torch.Tensor                 # (B,3,H,W) in [0,1]
    tokens: torch.Tensor                 # (B,N) final tokens
    unknown: torch.Tensor                # (B,N) tokens that were generated
    step_images: list[torch.Tensor] = field(default_factory=list)  # per step (B,3,H,W) in [0,1]
    step_masks: list[torch.Tensor] = field(default_factory=list)   # per step (B,N) still masked


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
        norm = config.get("normalization") or DEFAULT_NORMALIZATION
        self.register_buffer("mean", torch.tensor(norm["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(norm["std"]).view(1, 3, 1, 1), persistent=False)
        # how it inpaints by default (config.yaml); every call can override any field
        self.settings = InpaintSettings.from_config(config)

    # ------------------------------------------------------------------ settings (read-only views)
    @property
    def sampler(self) -> InpaintSettings:
        return self.settings

    @property
    def precision(self) -> str:
        return self.settings.precision

    @property
    def hole_fill(self) -> str:
        return self.settings.hole_fill

    @property
    def blend(self) -> str:
        return self.settings.blend

    @property
    def decode_known(self) -> bool:
        return self.settings.decode_known

    def resolve_settings(self, settings: SamplerConfig | None = None, **overrides) -> InpaintSettings:
        """`settings` (default: the model's; a plain SamplerConfig replaces only the sampler's
        fields) with `overrides`, checked against what this model can run."""
        if settings is None:
            s = self.settings
        elif isinstance(settings, InpaintSettings):
            s = settings
        else:
            s = self.settings.override(**asdict(settings))
        s = s.override(**overrides)
        self.check_sampler(s)
        return s

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
        """Raise if this model cannot run `sampler`: weak guidance needs a weak transformer."""
        sampler.validate()
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
        """`fn(*batches)`, on a CPU one image at a time. oneDNN picks a convolution's kernel by
        the batch size, and on some CPUs (seen on AVX-512 without BF16, for the 3-channel first
        convolution) the kernel for a batch sums in another order than the one for a single
        image: the same image then encoded or decoded alone and in a batch differed in the last
        bits, enough to move a pixel by one grey level or a token on a near tie. One image per
        call makes each result that of the image alone, and on a 2-core CPU it is no slower in
        all (64 images, one at a time against batched: encode 0.58 s against 0.43 s, decode
        0.85 s against 1.27 s, so 1.43 s against 1.70 s)."""
        n = batches[0].shape[0]
        if self.device.type != "cpu" or n <= 1:
            return fn(*batches)
        return torch.cat([fn(*(None if b is None else b[i:i + 1] for b in batches)) for i in range(n)])

    @torch.no_grad()
    def encode(self, images01: torch.Tensor) -> torch.Tensor:
        return self.per_image(self.tokenizer.encode, self.normalize(images01))

    @property
    def conditioned_decoder(self) -> bool:
        """Whether the tokenizer's decoder also sees the known pixels (`tokenizer.dec_cond`)."""
        return bool(self.tokenizer.cfg.dec_cond)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, images01: torch.Tensor | None = None,
               known: torch.Tensor | None = None, decode_known: bool | None = None) -> torch.Tensor:
        """Token grids -> images in [0,1]. A mask-conditioned decoder also takes the known pixels
        of `images01` (B,3,H,W) where `known` (B,H,W) is True; without them, or with
        `self.decode_known` off, it decodes from the tokens alone (its branch then sees an empty
        input). Other decoders ignore them."""
        cond = None
        decode_known = self.decode_known if decode_known is None else decode_known
        if self.conditioned_decoder and decode_known and images01 is not None:
            if known is None:
                raise ValueError("decode: `known` is needed with `images01`")
            cond = self.tokenizer.condition(self.normalize(images01.to(self.device, torch.float32)),
                                            known.to(self.device, torch.bool))
        return self.denormalize(self.per_image(self.tokenizer.decode, tokens, cond).float())

    # ------------------------------------------------------------------ inpainting
    @torch.no_grad()
    def inpaint(self, images01: torch.Tensor, known: torch.Tensor, settings: SamplerConfig | None = None,
                seed: int | torch.Tensor = 0, composite: bool = True, dilate: int = 0,
                return_steps: bool = False, **overrides) -> InpaintOutput:
        """Fill the holes of `images01` (B,3,H,W) in [0,1]; `known` (B,H,W) bool, True = known pixel.

        `settings` (default: the model's) with any of its fields overridden by keyword.
        Before encoding, hole pixels are replaced by `settings.hole_fill`:
        computed from the known pixels only, so whatever the input holds there cannot leak
        into the result. The harmonic fill keeps the known tokens closer to those of the full
        image (on the default model's val set, 23 % of them change instead of 46 %), which
        lowers FID a lot. Which tokens are generated follows `sampler.token_threshold` (see
        `masks.pixel_to_token_mask`); the others keep the encoder's tokens. With `composite`,
        the known pixels are put back with `settings.blend` (see `compositing`). `precision` is
        that of the transformer's forward passes; see `resolve_precision`.
        """
        if self.transformer is None:
            raise ModelDirError("this model directory holds only a tokenizer; inpainting needs a transformer")
        s = self.resolve_settings(settings, **overrides)
        images01 = images01.to(self.device, torch.float32)
        known = known.to(self.device, torch.bool)
        x = self.normalize(images01)
        if s.hole_fill == "mean":
            x = x * known[:, None]  # 0 in normalised space is the mean colour
        else:
            x = harmonic_fill(x, known)
        tokens = self.per_image(self.tokenizer.encode, x)
        unknown = pixel_to_token_mask(known, self.latent_size, dilate=dilate, threshold=s.token_threshold)
        weak_fn = self.logits_fn(s.precision, weak=True) if self.weak_transformer is not None else None
        res = inpaint_tokens(self.logits_fn(s.precision), tokens, unknown, s, codebook_size=self.codebook_size,
                             seed=seed, return_steps=return_steps, weak_logits_fn=weak_fn)
        out = self.decode(res.tokens, images01, known, s.decode_known)
        if composite:
            out = paste_known(out, images01, known, s.blend)
        step_images = [self.decode(t, images01, known, s.decode_known) for t in res.step_tokens] if return_steps else []
        return InpaintOutput(out, res.tokens, unknown, step_images, res.step_masks)

    def logits_fn(self, precision: str | None = None, weak: bool = False):
        """The sampler's view of the transformer (with `weak`, of the weak one): tokens (B, N) ->
        logits, in `precision` (default `self.precision`). On a CPU a large batch runs in slices of about
        `CPU_TOKENS_PER_CALL` tokens: the activations then stay in the caches, which is about
        15 % faster on the development machine (64 images with guidance: 128 x 256 tokens), and
        the logits are the same bit for bit, since every sequence is computed on its own."""
        prec = resolve_precision(precision or self.precision, self.device)
        if prec == "mixed":  # the weak pass only steers the draw; its cost in FID: MODEL_CARD, metrics
            prec = "bf16" if weak else "fp32"
        net = self.weak_transformer if weak else self.transformer
        if net is None:
            raise ModelDirError(f"this model has no {'weak ' if weak else ''}transformer")

        def logits_fn(cur: torch.Tensor) -> torch.Tensor:
            with transformer_autocast(prec, self.device):
                if self.device.type != "cpu" or cur.numel() <= CPU_TOKENS_PER_CALL:
                    return net(cur)
                rows = max(1, CPU_TOKENS_PER_CALL // cur.shape[1])
                return torch.cat([net(part) for part in cur.split(rows)])

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
        if model.sampler.weak_guidance and model.sampler.guidance and model.weak_transformer is None:
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


def default_model_dir() -> Path:
    """The pretrained model shipped inside the package."""
    from importlib import resources

    return Path(str(resources.files("maskgit_inpaint").joinpath("default_model")))


def has_default_model() -> bool:
    d = default_model_dir()
    return (d / "config.yaml").is_file() and (d / "transformer.safetensors").is_file()


def load_model(model_dir: str | Path | None = None, device: str = "auto", **settings) -> tuple["MaskGIT", Path]:
    """A full model for inference and its directory: `model_dir`, else the bundled default.
    `settings`: InpaintSettings fields that override the model's config (None = keep)."""
    if model_dir is None:
        if not has_default_model():
            raise ModelDirError("no default model is bundled with this installation; "
                                "pass a model directory (--model MODEL_DIR)")
        model_dir = default_model_dir()
    model = MaskGIT.from_dir(model_dir, device=resolve_device(device))
    model.settings = model.settings.override(**settings)
    return model, Path(model_dir)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
