"""Iterative MaskGIT decoding for inpainting: pure tensor code, batched, no files.

At step t = 1..T every unknown token is predicted at once; the most confident predictions
are kept and the rest are re-masked so that floor(n_i * gamma(t/T)) tokens stay masked,
where n_i is image i's own count of unknown tokens.

Three options change that loop (all off by default): `order="halton"` reveals the hole's tokens
in a fixed, evenly spread quasi-random order instead of by confidence (Besnier et al. 2025);
`remask="remdm"` sends some already generated tokens back to the mask at each step (ReMDM,
Wang et al. 2025); `critic_rounds` re-masks the generated tokens the transformer itself finds
least likely given all the others after the last step and draws them again (the idea of
Token-Critic, Lezama et al. 2022, without a second network).

Randomness comes from a counter-based hash of (seed, step, position, stream) rather than
a global generator, so an image gives the same result alone or anywhere in a batch, and
on any device.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .schedules import NON_MONOTONE, gamma as gamma_fn
from .settings import SamplerConfig  # noqa: F401  (the sampler takes it; callers import it from here too)

_M32 = 0xFFFFFFFF
@dataclass
class SampleResult:
    tokens: torch.Tensor                                   # (B, N) final tokens
    # per step: current full guess, and which tokens are masked after it (B, N). A token masked
    # after a step that was not masked after the one before was re-masked there. A critic round
    # adds two entries: its re-masked tokens (over the tokens it judged), then the tokens drawn.
    step_tokens: list[torch.Tensor] = field(default_factory=list)
    step_masks: list[torch.Tensor] = field(default_factory=list)


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 integer hash on int64 tensors holding 32-bit values."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def uniform_noise(seeds: torch.Tensor, step: int, stream: int, n: int) -> torch.Tensor:
    """Uniforms in (0, 1), shape (B, n), a pure function of (seed_b, step, position, stream)."""
    pos = torch.arange(n, device=seeds.device, dtype=torch.int64)
    h = _hash32(seeds.to(torch.int64)[:, None] * 0x9E3779B1 + stream * 0x85EBCA77)
    h = _hash32(h ^ (step * 0xC2B2AE3D))
    h = _hash32(h ^ pos[None] * 0x27D4EB2F)
    return (h.double() + 0.5) / 2.0 ** 32


def _radical_inverse(i: int, base: int) -> float:
    f, r = 1.0, 0.0
    while i > 0:
        f /= base
        r += f * (i % base)
        i //= base
    return r


@functools.lru_cache(maxsize=16)
def halton_rank(side: int) -> torch.Tensor:
    """(side * side,) long: each position of a side x side grid (row-major) numbered in the order
    the 2-D Halton sequence (bases 2 and 3, from index 1) first lands in its cell. Consecutive
    positions are spread over the grid, so every step's reveals are evenly spread, as in
    Halton-MaskGIT's `build_halton_mask`."""
    rank = torch.full((side * side,), -1, dtype=torch.long)
    found, i = 0, 0
    while found < side * side:
        i += 1
        if i > 10_000 * side * side:  # never happens: the sequence is dense in the unit square
            raise RuntimeError(f"the Halton sequence did not cover a {side}x{side} grid")
        pos = int(_radical_inverse(i, 2) * side) * side + int(_radical_inverse(i, 3) * side)
        if rank[pos] < 0:
            rank[pos] = found
            found += 1
    return rank


def _grid_side(n: int, what: str) -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{what} needs a square token grid, got {n} tokens per image")
    return side


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank of each entry within its row (0 = smallest); ties broken by position."""
    order = values.argsort(dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(values.shape[1], device=values.device).expand_as(order))
    return ranks


def guided_logits(logits_fn: Callable[[torch.Tensor], torch.Tensor], cur: torch.Tensor, unknown: torch.Tensor,
                  guidance: float, codebook_size: int,
                  weak_logits_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Logits over the codebook, (B, N, codebook_size), with context guidance when `guidance` > 0.

    Like classifier-free guidance with the known tokens as the condition: the prediction with
    every known token masked as well (what the model guesses from the hole's own tokens alone)
    is the unconditional one, and l + w * (l - l_free) pushes the hole tokens towards what the
    surroundings imply. Both predictions come from one forward pass of a doubled batch.

    With `weak_logits_fn` the free prediction comes from a weaker transformer instead (an
    earlier checkpoint of the same kind): the guidance then also pushes away from the errors a
    less trained model makes, as in autoguidance (Karras et al. 2024). The cost is the same.
    """
    if not guidance:
        return logits_fn(cur)[..., :codebook_size].float()
    free = torch.where(unknown, cur, torch.full_like(cur, codebook_size))
    if weak_logits_fn is not None:
        cond = logits_fn(cur)[..., :codebook_size].float()
        uncond = weak_logits_fn(free)[..., :codebook_size].float()
    else:
        both = logits_fn(torch.cat([cur, free]))[..., :codebook_size].float()
        cond, uncond = both.chunk(2)
    return cond + guidance * (cond - uncond)


def masked_logits(logits_fn: Callable[..., torch.Tensor], cur: torch.Tensor, mask_id: int) -> torch.Tensor:
    """(M, >= codebook_size) logits at the positions of `cur` that hold the mask token, in
    row-major order (`cur[cur == mask_id]`'s order): the only rows the sampler reads. A
    `logits_fn` with `compact = True` (`MaskGIT.logits_fn`) returns them without the full
    (B, N, V) tensor; any other is called as `logits_fn(cur)` and indexed."""
    if getattr(logits_fn, "compact", False):
        return logits_fn(cur, rows="compact")
    return logits_fn(cur)[cur == mask_id]


def guided_masked_logits(logits_fn: Callable[..., torch.Tensor], cur: torch.Tensor, unknown: torch.Tensor,
                         guidance: float, codebook_size: int,
                         weak_logits_fn: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
    """`guided_logits` at the masked positions of `cur` only, (M, codebook_size) float in
    row-major order: the same values, without the softmax-sized work at every other row."""
    at = cur == codebook_size
    if not guidance:
        return masked_logits(logits_fn, cur, codebook_size)[:, :codebook_size].float()
    free = torch.where(unknown, cur, torch.full_like(cur, codebook_size))
    in_free = at[free == codebook_size]  # which of the free pass's masked rows are masked in cur
    if weak_logits_fn is not None:
        cond = masked_logits(logits_fn, cur, codebook_size)[:, :codebook_size].float()
        uncond = masked_logits(weak_logits_fn, free, codebook_size)[in_free, :codebook_size].float()
    else:
        both = masked_logits(logits_fn, torch.cat([cur, free]), codebook_size)[:, :codebook_size].float()
        m = int(at.sum())
        cond, uncond = both[:m], both[m:][in_free]
    return cond + guidance * (cond - uncond)


def _draw_at(logits: torch.Tensor, at: torch.Tensor, seeds: torch.Tensor, step: int, temperature: float,
             codebook_size: int) -> torch.Tensor:
    """One token (M,) per row of `logits` (M, V), the rows of the positions `at` (B, N), from
    softmax(logits / temperature) (argmax at 0), with the uniforms of stream 0 of `step` at
    those positions: a position draws the same token whatever else is computed."""
    if temperature <= 0:
        return logits.argmax(-1)
    cdf = torch.softmax(logits / temperature, dim=-1).cumsum(-1)
    u = uniform_noise(seeds, step, 0, at.shape[1])[at].to(cdf.dtype)[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, u).squeeze(-1).clamp_(max=codebook_size - 1)


@torch.no_grad()
def inpaint_tokens(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    tokens: torch.Tensor,
    unknown: torch.Tensor,
    cfg: SamplerConfig,
    *,
    codebook_size: int,
    seed: int | torch.Tensor = 0,
    return_steps: bool = False,
    weak_logits_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> SampleResult:
    """Fill the unknown tokens of `tokens` (B, N) where `unknown` (B, N) is True.

    `logits_fn(tokens)` returns (B, N, >= codebook_size) logits; index codebook_size is the
    mask token, which is never produced. Known tokens are never changed. `weak_logits_fn`,
    the same for a weaker transformer, is needed (and used) only with `cfg.weak_guidance` and
    guidance on.
    """
    cfg.validate()
    if cfg.weak_guidance and cfg.guidance and weak_logits_fn is None:
        raise ValueError("weak_guidance needs a weak transformer (weak_logits_fn), and none was given")
    non_monotone = cfg.gamma in NON_MONOTONE
    b, n = tokens.shape
    device = tokens.device
    mask_id = codebook_size
    unknown = unknown.to(device=device, dtype=torch.bool)
    seeds = torch.as_tensor(seed, dtype=torch.int64, device=device).expand(b).contiguous() \
        if not torch.is_tensor(seed) or seed.dim() == 0 else seed.to(device=device, dtype=torch.int64)
    if seeds.shape != (b,):
        raise ValueError(f"seed must be an int or a tensor of shape ({b},), got {tuple(seeds.shape)}")

    T = cfg.steps
    # With nothing known anywhere in the batch the free pass would equal the other one: skip it
    # (not so against a weak transformer, whose pass differs anyway).
    guided = bool(cfg.guidance) and (cfg.weak_guidance or bool((~unknown).any()))
    weak = weak_logits_fn if cfg.weak_guidance else None
    # A monotone schedule that reaches 0 before T has nothing left to do after that step.
    last = T if non_monotone else next(t for t in range(1, T + 1) if gamma_fn(cfg.gamma, t / T).item() == 0)
    stop = min(cfg.stop, last)
    early = cfg.stop < last  # the sweet spot cuts decoding short
    n_unknown = unknown.sum(1)
    masked = unknown.clone()
    cur = torch.where(unknown, torch.full_like(tokens, mask_id), tokens)
    inf = torch.tensor(float("inf"), device=device)
    gen_conf = torch.full((b, n), float("inf"), device=device)  # confidence of generated tokens
    halton = None
    if cfg.order == "halton":  # minus the rank: the order's earliest positions rank as most confident
        halton = -halton_rank(_grid_side(n, "order 'halton'")).to(device=device, dtype=torch.float32)[None]
    remdm = cfg.remask == "remdm" and cfg.remask_rate > 0
    result = SampleResult(tokens=cur)

    for t in range(1, stop + 1):
        # Early steps fix the layout of the hole; later ones mostly follow the tokens already
        # placed, so `guidance_steps` can save the second pass there.
        w = cfg.guidance_at(t) if guided else 0.0
        # only the masked rows: the draw and its log-probability are never read elsewhere
        logits = guided_masked_logits(logits_fn, cur, unknown, w, codebook_size, weak)
        if t == stop and early:
            drawn = logits.argmax(-1)  # early stop: every remaining token takes its best guess
        else:
            drawn = _draw_at(logits, masked, seeds, t, cfg.token_temperature, codebook_size)
        sampled = cur.masked_scatter(masked, drawn)
        sel_logp = torch.zeros(b, n, device=device).masked_scatter(
            masked, torch.log_softmax(logits, dim=-1).gather(-1, drawn[:, None]).squeeze(-1))

        if t == stop:
            cur = torch.where(masked, sampled, cur)
            masked = torch.zeros_like(masked)
        else:
            if halton is not None:
                conf = halton  # the earliest in the order count as the most confident
            else:
                g = -torch.log(-torch.log(uniform_noise(seeds, t, 1, n))).float()
                conf = sel_logp + cfg.choice_temperature * (1.0 - t / T) * g
            target = torch.floor(n_unknown.double() * gamma_fn(cfg.gamma, t / T).item()).long()
            n_masked = masked.sum(1)
            rising = (target > n_masked) if non_monotone else torch.zeros_like(n_masked, dtype=torch.bool)
            # falling (or flat) schedule: reveal the most confident, at least one while any remain
            keep = torch.minimum(target, (n_masked - 1).clamp(min=0))
            if remdm:
                # ReMDM with its cap: re-mask a share of the generated tokens and reveal as many
                # more, so the schedule's masked count holds; never more than it leaves masked.
                generated = unknown & ~masked
                n_back = torch.minimum(torch.floor(generated.sum(1).double() * cfg.remask_rate).long(), keep)
                n_back = n_back * ~rising
                keep = keep - n_back
            stay = masked & (_ranks(torch.where(masked, conf, inf)) < keep[:, None])
            reveal = masked & ~stay & ~rising[:, None]
            cur = torch.where(reveal, sampled, cur)
            if remdm:
                # which ones: a draw without replacement weighted by 1 / p(token when placed)
                # (Gumbel top-k), so unlikely tokens go back first (ReMDM's confidence variant)
                g2 = -torch.log(-torch.log(uniform_noise(seeds, t, 2, n))).float()
                back = generated & (_ranks(torch.where(generated, gen_conf - g2, inf)) < n_back[:, None])
                cur = torch.where(back, torch.full_like(cur, mask_id), cur)
                gen_conf = torch.where(back, inf, gen_conf)
                masked = masked | back
            gen_conf = torch.where(reveal, sel_logp, gen_conf)
            masked = masked & ~reveal
            if non_monotone and bool(rising.any()):
                # rising schedule: pull back the least confident tokens generated earlier
                extra = (target - n_masked).clamp(min=0) * rising
                generated = unknown & ~masked
                remask = generated & (_ranks(torch.where(generated, gen_conf, inf)) < extra[:, None])
                masked = masked | remask
                cur = torch.where(remask, torch.full_like(cur, mask_id), cur)
                gen_conf = torch.where(remask, inf, gen_conf)
        if return_steps:
            result.step_tokens.append(torch.where(masked, sampled, cur))
            result.step_masks.append(masked.clone())

    if cfg.critic_rounds and cfg.critic_fraction > 0:
        w = cfg.guidance_at(stop) if guided else 0.0
        cur = _critic(logits_fn, cur, unknown, cfg, codebook_size, seeds, w, weak, result if return_steps else None)
    result.tokens = cur
    return result


def critic_scores(logits_fn: Callable[[torch.Tensor], torch.Tensor], cur: torch.Tensor, unknown: torch.Tensor,
                  codebook_size: int) -> torch.Tensor:
    """log p(token | the others) for every unknown token of `cur` (B, N) (+inf at known ones).

    Scoring each token with only itself masked would take N passes; instead four passes each
    mask one class of the 2x2 grid parity (rows and columns even/odd), so every token is judged
    with all eight of its neighbours and all known tokens visible. The plain model, no guidance:
    the critic asks what the transformer itself believes."""
    b, n = cur.shape
    side = _grid_side(n, "the critic")
    pos = torch.arange(n, device=cur.device)
    parity = (pos // side % 2) * 2 + pos % side % 2
    score = torch.full((b, n), float("inf"), device=cur.device)
    for p in range(4):
        sel = unknown & (parity == p)[None]
        if not bool(sel.any()):
            continue
        probe = torch.where(sel, torch.full_like(cur, codebook_size), cur)
        logp = torch.log_softmax(masked_logits(logits_fn, probe, codebook_size)[:, :codebook_size].float(), dim=-1)
        score = score.masked_scatter(sel, logp.gather(-1, cur[sel][:, None]).squeeze(-1))
    return score


def _critic(logits_fn, cur, unknown, cfg: SamplerConfig, codebook_size: int, seeds, w: float, weak,
            result: SampleResult | None) -> torch.Tensor:
    """`cfg.critic_rounds` rounds: re-mask floor(critic_fraction * n_i) of image i's generated
    tokens, the least likely by `critic_scores`, and draw them again in one pass (with the
    last step's guidance and the token temperature)."""
    n_back = torch.floor(unknown.sum(1).double() * cfg.critic_fraction).long()
    if not bool((n_back > 0).any()):  # holes too small for the fraction: nothing to judge
        return cur
    for r in range(1, cfg.critic_rounds + 1):
        score = critic_scores(logits_fn, cur, unknown, codebook_size)
        back = unknown & (_ranks(score) < n_back[:, None])  # known tokens score +inf: never chosen
        if result is not None:
            result.step_tokens.append(cur)
            result.step_masks.append(back.clone())
        probe = torch.where(back, torch.full_like(cur, codebook_size), cur)
        logits = guided_masked_logits(logits_fn, probe, unknown, w, codebook_size, weak)
        # the draws' step numbers continue after the schedule's (T + r), so no stream repeats
        cur = cur.masked_scatter(back, _draw_at(logits, back, seeds, cfg.steps + r, cfg.token_temperature,
                                                codebook_size))
        if result is not None:
            result.step_tokens.append(cur)
            result.step_masks.append(torch.zeros_like(back))
    return cur


def masked_counts(n_unknown: torch.Tensor, cfg: SamplerConfig) -> torch.Tensor:
    """The schedule's target number of still-masked tokens after each step, (B, T) (for docs/plots)."""
    r = torch.arange(1, cfg.steps + 1, dtype=torch.float64) / cfg.steps
    g = gamma_fn(cfg.gamma, r)
    return torch.floor(n_unknown.double()[:, None] * g[None]).long()
