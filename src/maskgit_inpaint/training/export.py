"""From a run to a model directory: the checkpoint's weights (a decoder's EMA when it has one)."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

from ..checkpoints import atomic_write, save_safetensors
from ..config import INFERENCE_KEYS
from ..model import DECODER_FILE, WEAK_FILE, MaskGIT
from ..tokenizer import DECODER_SIDE, TOKEN_SIDE
from .runs import _normalization, load_run_config


def find_checkpoint(run_dir: Path, which: str = "best") -> Path:
    ck = Path(run_dir) / "checkpoints"
    if which in ("best", "last"):
        for name in ([f"{which}.ckpt"] + (["last.ckpt"] if which == "best" else [])):
            if (ck / name).is_file():
                return ck / name
        epochs = sorted(ck.glob("epoch*.ckpt"))
        if epochs:
            return epochs[-1]
        raise FileNotFoundError(f"{ck}: no checkpoint found")
    p = Path(which)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    return p


def load_checkpoint_state(path: Path) -> dict:
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as a checkpoint ({e})") from None
    return ckpt


def model_from_checkpoint(run_dir: str | Path, ckpt_path: str | Path, config: dict | None = None,
                          tokenizer=None):
    """A MaskGIT with a run's weights from one checkpoint: tokenizer-only for a tokenizer run,
    the full model (the run's tokenizer included) for a transformer run. Returns (model, kind).
    Pass `tokenizer` (a loaded MaskGIT) to skip re-reading the tokenizer for every checkpoint."""
    run_dir = Path(run_dir)
    config = config or load_run_config(run_dir)
    sd = load_checkpoint_state(Path(ckpt_path))["state_dict"]
    kind = config.get("kind")
    model_cfg = {"image_size": config["tokenizer"].get("image_size", 64),
                 "normalization": _normalization(config), "tokenizer": config["tokenizer"],
                 "transformer": config.get("transformer") if kind == "transformer" else None,
                 "sampler": {}, **{k: config[k] for k in INFERENCE_KEYS if config.get(k) is not None}}
    model = MaskGIT(model_cfg)
    if kind == "tokenizer":
        weights = {k[len("vqgan."):]: v for k, v in sd.items() if k.startswith("vqgan.")}
        # a run with a decoder EMA exports the averaged decoder side
        weights.update({k[len("ema."):]: v for k, v in sd.items() if k.startswith("ema.")})
        model.tokenizer.load_state_dict(weights)
    elif kind == "transformer":
        tok = tokenizer or MaskGIT.from_dir(config["tokenizer_dir"], require_transformer=False)
        model.tokenizer.load_state_dict(tok.tokenizer.state_dict())
        model.transformer.load_state_dict(
            {k[len("transformer."):]: v for k, v in sd.items() if k.startswith("transformer.")})
    else:
        raise ValueError(f"{run_dir}/config.yaml: unknown run kind {kind!r}")
    return model.eval(), kind


def with_transformer_from(tokenizer_model: MaskGIT, source: str | Path) -> MaskGIT:
    """A full model: the tokenizer of `tokenizer_model` (a decoder-only run) with the transformer,
    weak transformer and inpainting settings of the model directory `source`. Refused unless
    both tokenizers encode alike (same encoder side), since the transformer reads those tokens."""
    src = MaskGIT.from_dir(source)
    own, theirs = tokenizer_model.tokenizer.state_dict(), src.tokenizer.state_dict()
    differ = [k for k in own if k.startswith(TOKEN_SIDE) and
              (k not in theirs or theirs[k].shape != own[k].shape
               or not torch.allclose(theirs[k].float(), own[k].float(), rtol=1e-3, atol=1e-4))]
    differ += [k for k in theirs if k.startswith(TOKEN_SIDE) and k not in own]
    if differ:
        raise ValueError(f"--transformer-from {source}: its tokenizer encodes differently from this run's "
                         f"({', '.join(differ[:3])}{', ...' if len(differ) > 3 else ''} differ), so its transformer "
                         "would read other tokens; only a --decoder-only run from it can take its transformer")
    model = MaskGIT({**src.config, "tokenizer": tokenizer_model.config["tokenizer"]})
    model.tokenizer.load_state_dict(tokenizer_model.tokenizer.state_dict())
    model.transformer.load_state_dict(src.transformer.state_dict())
    if src.weak_transformer is not None:
        model.set_weak_transformer(src.weak_transformer.state_dict(), Path(source) / WEAK_FILE)
    return model.eval()


def export_run(run_dir: str | Path, out_dir: str | Path, which: str = "best",
               dtype: torch.dtype | None = None, weak: str | Path | None = None,
               transformer_from: str | Path | None = None) -> Path:
    """Write a model directory from a run: tokenizer-only from a tokenizer run, the full model
    (tokenizer included) from a transformer run. `weak` adds the weak transformer that
    `sampler.weak_guidance` guides against: a checkpoint of the run (as `which`: an earlier,
    less trained one) or a model directory with a transformer of the same architecture.
    `transformer_from`: a tokenizer run's decoder with a model directory's transformer (see
    `with_transformer_from`)."""
    ckpt_path = find_checkpoint(Path(run_dir), which)
    model, kind = model_from_checkpoint(run_dir, ckpt_path)
    note = ""
    if transformer_from is not None:
        if kind != "tokenizer":
            raise ValueError(f"--transformer-from: {run_dir} is a transformer run; it exports its own transformer")
        if weak is not None:
            raise ValueError("--transformer-from takes the weak transformer from that model directory; drop --weak")
        model = with_transformer_from(model, transformer_from)
        model.save(out_dir, dtype=dtype)
        print(f"exported the tokenizer from {ckpt_path} with the transformer of {transformer_from} to {out_dir}",
              file=sys.stderr)
        return Path(out_dir)
    if weak is not None:
        if kind != "transformer":
            raise ValueError(f"--weak: {run_dir} is a tokenizer run; a weak transformer needs a transformer run")
        if Path(weak).is_dir():
            source, weak_sd = Path(weak), MaskGIT.from_dir(weak).transformer.state_dict()
        else:
            source = find_checkpoint(Path(run_dir), str(weak))
            if source.resolve() == ckpt_path.resolve():
                raise ValueError(f"--weak {weak}: the same checkpoint as the exported one ({ckpt_path}); "
                                 "guiding a model against itself does nothing")
            sd = load_checkpoint_state(source)["state_dict"]
            weak_sd = {k[len("transformer."):]: v for k, v in sd.items() if k.startswith("transformer.")}
        model.set_weak_transformer(weak_sd, source)
        note = f", weak transformer from {source}"
    elif model.default_settings.weak_guidance:
        # e.g. a warm start from a model that guides against its own weak transformer
        model.config = {**model.config, "sampler": {**(model.config.get("sampler") or {}), "weak_guidance": False}}
        note = (" (its sampler asked for weak guidance, but no --weak transformer was given: "
                "exported with weak_guidance off)")
    model.save(out_dir, dtype=dtype)
    print(f"exported {kind} from {ckpt_path} to {out_dir}{note}", file=sys.stderr)
    return Path(out_dir)


def export_decoder_parts(run_dir: str | Path, out_dir: str | Path, which: str = "last",
                         dtype: torch.dtype | None = None) -> list[Path]:
    """The files a later decoder run warm-starts from (`init_decoder`, `init_disc`): the decoder
    side (its EMA when the run keeps one) and the discriminator. They are far smaller than a
    whole tokenizer and carry what a fresh run would otherwise lose: the GAN's discriminator."""
    run_dir, out = Path(run_dir), Path(out_dir)
    config = load_run_config(run_dir)
    if config.get("kind") != "tokenizer":
        raise ValueError(f"--decoder-parts: {run_dir} is not a tokenizer run")
    ckpt_path = find_checkpoint(run_dir, which)
    sd = load_checkpoint_state(ckpt_path)["state_dict"]
    decoder = {k[len("vqgan."):]: v for k, v in sd.items() if k.startswith(tuple("vqgan." + p for p in DECODER_SIDE))}
    ema = {k[len("ema."):]: v for k, v in sd.items() if k.startswith("ema.")}
    decoder.update(ema)
    written = [out / DECODER_FILE]
    save_safetensors(decoder, written[0], dtype)
    disc = {k[len("disc."):]: v for k, v in sd.items() if k.startswith("disc.")}
    if disc:
        written.append(out / "discriminator.safetensors")
        save_safetensors(disc, written[1], dtype)
    text = yaml.safe_dump({"tokenizer": config["tokenizer"], "init": config.get("init")}, sort_keys=False)
    atomic_write(out / "tokenizer.yaml", lambda tmp: Path(tmp).write_text(text))
    written.append(out / "tokenizer.yaml")
    print(f"exported the decoder side{' (EMA)' if ema else ''}{' and the discriminator' if disc else ''} "
          f"from {ckpt_path} to {out}", file=sys.stderr)
    return written
