"""A wider decoder that starts as the trained one (function-preserving widening, Net2Net-style).

Training a wide decoder from scratch costs far more than a CPU session has; widening a trained
one keeps every output pixel as it was and lets the extra channels learn on top. Every channel
count of the decoder trunk is multiplied by `factor` and the trained weights are embedded in the
leading channels: the old channels never read the new ones (those weights start at zero), the
new channels start at random, and the output conv and the conditioning injections start at zero
for them, so the widened decoder's output equals the old one's exactly.
"""
from __future__ import annotations

import copy
import math

import torch

from .tokenizer import VQGAN, TokenizerConfig


def widened_config(cfg: TokenizerConfig, factor: int) -> TokenizerConfig:
    """`cfg` with the decoder trunk's widths (and GroupNorm groups, so each group keeps its
    channels) multiplied by `factor`; encoder, quantiser and conditioning branch unchanged."""
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"widen_decoder must be a whole number >= 1, got {factor}")
    factor = int(factor)
    new = copy.deepcopy(cfg)
    new.dec_in = cfg.dec_in * factor
    new.dec_stages = [[c * factor, n, attn, up] for c, n, attn, up in cfg.dec_stages]
    new.dec_norm_groups = (cfg.dec_norm_groups or cfg.norm_groups) * factor
    new.validate()
    return new


def _groups_kept(cfg: TokenizerConfig, new: TokenizerConfig) -> bool:
    g, ng = cfg.dec_norm_groups or cfg.norm_groups, new.dec_norm_groups
    widths = [cfg.dec_in] + [s[0] for s in cfg.dec_stages]
    f = new.dec_in // cfg.dec_in
    return all(c // math.gcd(g, c) == (c * f) // math.gcd(ng, c * f) for c in widths)


@torch.no_grad()
def widen_decoder(vqgan: VQGAN, factor: int, seed: int = 0) -> VQGAN:
    """A new VQGAN whose decoder is `factor` times as wide and decodes exactly as `vqgan` does."""
    new_cfg = widened_config(vqgan.cfg, factor)
    if not _groups_kept(vqgan.cfg, new_cfg):
        raise ValueError("widen_decoder: the decoder's GroupNorm groups would change size; "
                         "use channel counts that are multiples of tokenizer.norm_groups")
    torch.manual_seed(seed)
    wide = VQGAN(new_cfg)
    old_sd = vqgan.state_dict()
    new_sd = wide.state_dict()
    out = {}
    for k, new in new_sd.items():
        old = old_sd[k]
        if old.shape == new.shape:
            out[k] = old.clone()
            continue
        t = new.clone()
        idx = tuple(slice(0, s) for s in old.shape)
        if t.dim() >= 2 and t.shape[1] != old.shape[1]:
            t[: old.shape[0], old.shape[1]:] = 0  # old output channels do not read the new inputs
        if k.endswith(".q.weight") or k.endswith(".q.bias"):
            # attention scores are q.k / sqrt(channels): the new query channels start at zero and
            # the old ones are rescaled so the scores, hence the attention, stay the same
            t[old.shape[0]:] = 0
            t[idx] = old * math.sqrt(new.shape[0] / old.shape[0])
        else:
            t[idx] = old
        out[k] = t
    wide.load_state_dict(out)
    return wide


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
