"""Import the course lab's checkpoints (VQGAN.pt and a transformer .pth) into a model directory."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from .checkpoints import WeightsError, load_strict, load_torch_state_dict
from .config import NORMALIZATIONS
from .model import MaskGIT
from .tokenizer import LAB_TOKENIZER, VQGAN
from .transformer import MaskTransformer, TransformerConfig

# The lab trained its VQGAN with these statistics.
LAB_NORMALIZATION = NORMALIZATIONS["lab"]
# The seed report's best sampler settings (linear schedule, 12 iterations, stop at 8).
LAB_SAMPLER = {"gamma": "linear", "steps": 12, "sweet_spot": 8, "choice_temperature": 4.5, "temperature": 1.0}


def load_lab_vqgan(path: str | Path) -> VQGAN:
    """Load `VQGAN.pt` (a plain state dict of 315 tensors) with strict key and shape checks."""
    model = VQGAN(LAB_TOKENIZER)
    load_strict(model, load_torch_state_dict(path), path)
    return model.eval()


def _find(d, key):
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            r = _find(v, key)
            if r is not None:
                return r
    return None


def lab_transformer_config(state_dict: dict, yaml_config: str | Path | None = None, heads: int | None = None,
                           source: str | Path = "transformer checkpoint") -> TransformerConfig:
    """Read the architecture off the tensor shapes; heads (not visible in shapes) from
    MaskGit.yml's `num_heads`/`heads`/`n_heads` when given, else 16 as in the seed."""
    try:
        vocab, dim = state_dict["tok_emb.weight"].shape
        num_tokens = state_dict["pos_emb"].shape[0]
        mlp_hidden = state_dict["blocks.0.MLP.0.weight"].shape[0]
    except KeyError as e:
        raise WeightsError(f"{source}: not a lab-layout transformer (missing {e.args[0]})") from None
    layers = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k)))
    if heads is None and yaml_config:
        p = Path(yaml_config)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: config file not found")
        y = yaml.safe_load(p.read_text())
        heads = next((_find(y, k) for k in ("num_heads", "n_heads", "heads") if _find(y, k) is not None), None)
    return TransformerConfig(layout="lab", codebook_size=vocab - 1, num_tokens=num_tokens, dim=dim,
                             heads=int(heads or 16), layers=layers, mlp_hidden=mlp_hidden, dropout=0.1)


def load_lab_transformer(path: str | Path, yaml_config: str | Path | None = None,
                         heads: int | None = None) -> MaskTransformer:
    sd = load_torch_state_dict(path)
    cfg = lab_transformer_config(sd, yaml_config, heads, source=path)
    model = MaskTransformer(cfg)
    load_strict(model, sd, path)
    return model.eval()


def import_lab(vqgan_path: str | Path, transformer_path: str | Path | None, out_dir: str | Path,
               yaml_config: str | Path | None = None, heads: int | None = None) -> Path:
    """Convert lab checkpoints into a model directory (config.yaml + safetensors)."""
    vq = load_lab_vqgan(vqgan_path)
    config = {"image_size": 64, "normalization": LAB_NORMALIZATION, "tokenizer": LAB_TOKENIZER.to_dict(),
              "transformer": None, "sampler": LAB_SAMPLER}
    tf = None
    if transformer_path:
        tf = load_lab_transformer(transformer_path, yaml_config, heads)
        if tf.cfg.codebook_size != LAB_TOKENIZER.codebook_size:
            raise WeightsError(f"{transformer_path}: codebook of {tf.cfg.codebook_size} codes does not match "
                               f"the VQGAN's {LAB_TOKENIZER.codebook_size}")
        config["transformer"] = tf.cfg.to_dict()
    model = MaskGIT(config)
    model.tokenizer.load_state_dict(vq.state_dict())
    if tf is not None:
        model.transformer.load_state_dict(tf.state_dict())
    return model.save(out_dir)
