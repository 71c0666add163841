"""How a model inpaints, as one typed object: the sampler plus what the encoder sees in the holes,
how known pixels go back, what a mask-conditioned decoder is given, and the transformer's precision.

A model directory's config.yaml gives its defaults; every front end (CLI flags, sweep axes, the
token cache's key, the web app's controls) is derived from these fields rather than listing them.
This module imports no torch, so that `maskgit --help` answers at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

# schedules.SCHEDULES' names (a test keeps the two equal); listed here to keep this module torch-free
SCHEDULE_NAMES = ("arccos", "constant", "cosine", "linear", "sine_linear", "sqrt", "square")
# How the context guidance scale varies over the steps (see `SamplerConfig.guidance_at`).
GUIDANCE_SCHEDULES = ("constant", "linear")
# Which still-masked tokens a step reveals: the most confident ones, or the next in Halton order.
ORDERS = ("confidence", "halton")
# Re-masking of generated tokens during decoding (ReMDM).
REMASKS = ("none", "remdm")
# How known pixels go back over the output: seamless cloning, or a plain paste (see compositing.py).
BLENDS = ("poisson", "paste")


def option(default, help: str, choices=None, common: bool = False, tokens: bool = True, ui: tuple | None = None):
    """A settings field with what its command-line flag, sweep axis and web-app control need:
    `help`, `choices`, `common` (shown in the short option list), `tokens` (whether it can change
    the sampled tokens: the token cache's key) and `ui` (slider range (lo, hi, step))."""
    return field(default=default, metadata={"help": help, "choices": choices, "common": common,
                                            "tokens": tokens, "ui": ui})


@dataclass
class SamplerConfig:
    gamma: str = option("cosine", "mask schedule", choices=SCHEDULE_NAMES, common=True)
    steps: int = option(8, "total iterations T of the schedule", common=True, ui=(1, 32, 1))
    sweet_spot: int | None = option(None, "stop early after this many steps (none = all T)", common=True,
                                    ui=(0, 32, 1))
    choice_temperature: float = option(4.5, "Gumbel noise on the confidences (which tokens are kept), "
                                            "annealed to 0", common=True, ui=(0, 10, 0.1))
    token_temperature: float = option(1.0, "temperature of the token draw (0 = argmax)", common=True,
                                      ui=(0, 2, 0.05))
    # context guidance: logits + w * (logits - logits with the known tokens masked); a second pass per step
    guidance: float = option(0.0, "context guidance scale w (0 = off; costs a second pass)", ui=(0, 4, 0.1))
    guidance_steps: int | None = option(None, "guide only the first K steps (none = every step)", ui=(0, 32, 1))
    guidance_schedule: str = option("constant", "guidance per step (linear: rising to w)",
                                    choices=GUIDANCE_SCHEDULES)
    # 0 = any hole pixel makes the token unknown: the course lab's rule
    token_threshold: float = option(0.0, "regenerate a token when more than this share of it is hole",
                                    ui=(0, 0.9375, 0.0625))
    # the guidance's free pass on a weaker transformer (an earlier checkpoint) instead of on the model
    weak_guidance: bool = option(False, "guide against the model's weak transformer")
    # Halton order, ReMDM re-masking and the self-critic: sampling.py; what they gave: docs/samplers.md
    order: str = option("confidence", "which masked tokens a step reveals (halton: a fixed, evenly spread "
                                      "order over the hole, no Gumbel noise)", choices=ORDERS)
    remask: str = option("none", "re-mask generated tokens during decoding (remdm: ReMDM)", choices=REMASKS)
    remask_rate: float = option(0.1, "with remask remdm: share of the generated tokens re-masked per step",
                                ui=(0, 0.5, 0.01))
    critic_rounds: int = option(0, "after the last step: rounds of re-masking the least likely generated "
                                   "tokens and drawing them again (0 = off)", ui=(0, 4, 1))
    critic_fraction: float = option(0.1, "share of the hole's tokens each critic round re-masks",
                                    ui=(0, 0.5, 0.01))

    def validate(self) -> None:
        if self.gamma not in SCHEDULE_NAMES:
            raise ValueError(f"unknown mask schedule {self.gamma!r}; choose from {', '.join(SCHEDULE_NAMES)}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.sweet_spot is not None and self.sweet_spot < 1:
            raise ValueError(f"sweet_spot must be >= 1, got {self.sweet_spot}")
        if self.token_temperature < 0 or self.choice_temperature < 0:
            raise ValueError("temperatures must be >= 0")
        if not self.guidance >= 0:
            raise ValueError(f"guidance must be >= 0, got {self.guidance}")
        if self.guidance_steps is not None and self.guidance_steps < 1:
            raise ValueError(f"guidance_steps must be >= 1 (or None for every step), got {self.guidance_steps}")
        if self.guidance_schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(f"guidance_schedule must be one of {', '.join(GUIDANCE_SCHEDULES)}, "
                             f"got {self.guidance_schedule!r}")
        if not 0 <= self.token_threshold < 1:
            raise ValueError(f"token_threshold must be in [0, 1), got {self.token_threshold}")
        if not isinstance(self.weak_guidance, bool):
            raise ValueError(f"weak_guidance must be true or false, got {self.weak_guidance!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.remask not in REMASKS:
            raise ValueError(f"remask must be one of {', '.join(REMASKS)}, got {self.remask!r}")
        if not 0 <= self.remask_rate <= 1:
            raise ValueError(f"remask_rate must be in [0, 1], got {self.remask_rate}")
        if isinstance(self.critic_rounds, bool) or not isinstance(self.critic_rounds, int) or self.critic_rounds < 0:
            raise ValueError(f"critic_rounds must be an integer >= 0, got {self.critic_rounds!r}")
        if not 0 <= self.critic_fraction <= 1:
            raise ValueError(f"critic_fraction must be in [0, 1], got {self.critic_fraction}")

    def guidance_at(self, t: int) -> float:
        """The guidance scale of step t (1-based): 0 where the step is not guided."""
        if not self.guidance or (self.guidance_steps is not None and t > self.guidance_steps):
            return 0.0
        if self.guidance_schedule == "linear":
            return self.guidance * t / self.steps
        return self.guidance

    @property
    def stop(self) -> int:
        return min(self.sweet_spot or self.steps, self.steps)


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
    # auto: bf16 with native bf16 (GPU, AMX, AVX512-BF16), else fp32; mixed: fp32 with the guidance's weak pass in bf16
    precision: str = option("auto", "of the transformer and decoder (bf16: the encoder and the transformer's "
                            "output head stay fp32; auto: bf16 where the processor has it natively)",
                            choices=PRECISIONS)

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
    def token_key(self) -> dict:
        """The fields that can change the sampled tokens (what the token cache hashes)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("tokens", True)}



def resolve_precision(precision: str, device) -> str:
    """'auto' uses bf16 where the device multiplies bf16 natively (a GPU with bf16, a CPU with
    AMX or AVX512-BF16; `precision.auto_precision`) and fp32 elsewhere, where emulated bf16 is
    several times slower."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        from .precision import auto_precision  # here: this module stays torch-free for the CLI's start-up

        return auto_precision(device)
    return precision

