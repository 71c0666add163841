"""Mask schedules gamma(r): the fraction of unknown tokens still masked at progress r in [0, 1].

gamma(1) = 0 for every schedule, so decoding always ends with every token revealed.
Adding a schedule is one entry in `SCHEDULES`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

Schedule = Callable[[torch.Tensor], torch.Tensor]

SCHEDULES: dict[str, Schedule] = {
    "linear": lambda r: 1 - r,
    "cosine": lambda r: torch.cos(r * math.pi / 2),
    "square": lambda r: 1 - r ** 2,
    "sqrt": lambda r: 1 - torch.sqrt(r),
    # Generate boldly, then pull back and regenerate: rises again around r = 0.75.
    "sine_linear": lambda r: (1 - r) * (1 - 0.75 * torch.sin(2 * math.pi * r)),
    # One-shot decoding: everything is revealed at the first step.
    "constant": lambda r: torch.zeros_like(r),
    "arccos": lambda r: torch.arccos(r) / (math.pi / 2),
}

# Schedules that can rise again; the sampler re-masks generated tokens when they do.
NON_MONOTONE = {"sine_linear"}


def get_schedule(name: str) -> Schedule:
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown mask schedule {name!r}; choose from {', '.join(SCHEDULES)}") from None


def gamma(name: str, r) -> torch.Tensor:
    """gamma_name(r), clamped to [0, 1] and exactly 0 at r = 1."""
    r = torch.as_tensor(r, dtype=torch.float64).clamp(0, 1)
    g = get_schedule(name)(r).clamp(0, 1)
    return torch.where(r >= 1, torch.zeros_like(g), g)
