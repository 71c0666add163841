"""How a model inpaints, as one typed object: the sampler plus what the encoder sees in the holes,
how known pixels go back, what a mask-conditioned decoder is given, and the transformer's precision.

A model directory's config.yaml gives its defaults; every front end (CLI flags, sweep axes, the
token cache's key, the web app's controls) is derived from these fields rather than listing them.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from .compositing import BLENDS
from .sampling import SamplerConfig, option

# What the encoder sees in the holes: a smooth fill from the surrounding pixels ("harmonic"),
# or the flat mean colour ("mean", the course lab's choice).
HOLE_FILLS = ("harmonic", "mean")
PRECISIONS = ("auto", "fp32", "bf16", "mixed")
# Keys of a model config that hold inference settings, beside its `sampler` section.
TOP_LEVEL = ("hole_fill", "blend", "decode_known")
# Names older configs and callers used for a field.
RENAMED = {"temperature": "token_temperature", "schedule": "gamma"}


@dataclass
class InpaintSettings(SamplerConfig):
    # harmonic: a smooth fill from the known pixels; mean: the flat mean colour (the course lab's)
    hole_fill: str = option("harmonic", "what the encoder sees in the holes", choices=HOLE_FILLS)
    # poisson: seamless cloning; paste: plain paste
    blend: str = option("poisson", "how known pixels go back over the output", choices=BLENDS, tokens=False)
    decode_known: bool = option(True, "give a mask-conditioned decoder the known pixels", tokens=False)
    # auto: bf16 on a GPU, fp32 on a CPU; mixed: fp32 with the guidance's weak pass in bf16
    precision: str = option("auto", "of the transformer", choices=PRECISIONS)

    def validate(self) -> None:
        super().validate()
        for f in fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(map(str, choices))}, got {value!r}")
        if not isinstance(self.decode_known, bool):
            raise ValueError(f"decode_known must be true or false, got {self.decode_known!r}")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, config: dict | None) -> "InpaintSettings":
        """A model config's settings: its `sampler` section and top-level hole_fill/blend/decode_known."""
        config = config or {}
        values = {RENAMED.get(k, k): v for k, v in (config.get("sampler") or {}).items()}
        unknown = sorted(set(values) - {f.name for f in fields(SamplerConfig)})
        if unknown:
            raise ValueError(f"unknown sampler config keys: {unknown}")
        values.update({k: config[k] for k in TOP_LEVEL if config.get(k) is not None})
        return cls().override(**values)

    def override(self, **changes: Any) -> "InpaintSettings":
        """These settings with `changes` (field names; None = keep), checked. An unknown name is
        an error that names it; a sweet spot at or past T means "no early stop"."""
        changes = {RENAMED.get(k, k): v for k, v in changes.items() if v is not None}
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown inpainting setting(s) {unknown}; known: {', '.join(sorted(names))}")
        new = replace(self, **changes)
        if new.sweet_spot is not None and new.sweet_spot >= new.steps:
            # kept as a number it would become an early stop as soon as a caller raised the steps
            new = replace(new, sweet_spot=None)
        new.validate()
        return new

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    # ------------------------------------------------------------------ views
    def sampler(self) -> SamplerConfig:
        return SamplerConfig(**{f.name: getattr(self, f.name) for f in fields(SamplerConfig)})

    def to_config(self) -> dict:
        """The model-config form (sampler section + top-level keys; precision is a run-time choice)."""
        d = asdict(self)
        return {"sampler": {f.name: d[f.name] for f in fields(SamplerConfig)}, **{k: d[k] for k in TOP_LEVEL}}

    def token_key(self) -> dict:
        """The fields that can change the sampled tokens (what the token cache hashes)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("tokens", True)}

    def resolved_precision(self, device: torch.device | str) -> str:
        return resolve_precision(self.precision, device)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """'auto' is bf16 on a GPU that supports it and fp32 on CPU, where results then match the
    published figures bit for bit; bf16 on CPU is an opt-in speed-up. 'mixed' runs the model's
    own pass in fp32 and only the guidance's pass on the weak transformer in bf16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated, use {new}", FutureWarning, stacklevel=3)
