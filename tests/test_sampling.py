"""Sampler invariants (with cheap deterministic fake logits functions) and token masks."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from maskgit_inpaint.masks import (GENERATORS, generate_masks, harmonic_fill, pixel_to_token_mask,
                                   token_to_pixel_mask)
from maskgit_inpaint.sampling import (SamplerConfig, critic_scores, guided_logits, guided_masked_logits, halton_rank,
                                      inpaint_tokens, masked_counts, uniform_noise)
from maskgit_inpaint.schedules import NON_MONOTONE, SCHEDULES, gamma

K = 64     # codebook size of the fake model; the mask id is K
N = 64     # tokens per image
ALL = sorted(SCHEDULES)
MONOTONE = [s for s in ALL if s not in NON_MONOTONE]


class FakeLM:
    """Deterministic, cheap, batch-independent logits: per-token and per-position tables plus
    a context term (mean over the image's tokens), so the prediction depends on what has been
    revealed. Records every input it is called with."""

    def __init__(self, k: int = K, n: int = N, seed: int = 0, extra: int = 0, context: bool = True,
                 scale: float = 2.0):
        g = torch.Generator().manual_seed(seed)
        out = k + extra
        self.E = torch.randn(k + 1, out, generator=g) * scale
        self.P = torch.randn(n, out, generator=g) * scale
        self.F = torch.randn(k + 1, out, generator=g) * scale if context else None
        self.calls: list[torch.Tensor] = []

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.calls.append(tokens.clone())
        logits = self.E[tokens] + self.P[: tokens.shape[1]]
        if self.F is not None:
            logits = logits + self.F[tokens].mean(1, keepdim=True)
        return logits


class MaskLovingLM(FakeLM):
    """Returns K + 1 logits with a huge logit on the mask token (index K)."""

    def __init__(self, **kw):
        super().__init__(extra=1, **kw)

    def __call__(self, tokens):
        logits = super().__call__(tokens)
        logits[..., K] = 1e6
        return logits


def make_batch(counts, n: int = N, seed: int = 0):
    """tokens (B, n) in [0, K) and an unknown mask with exactly counts[i] unknown tokens in row i."""
    g = torch.Generator().manual_seed(seed)
    b = len(counts)
    tokens = torch.randint(0, K, (b, n), generator=g)
    unknown = torch.zeros(b, n, dtype=torch.bool)
    for i, c in enumerate(counts):
        unknown[i, torch.randperm(n, generator=g)[:c]] = True
    return tokens, unknown


def run(cfg, counts=(10, 40, 64), seed=0, lm=None, data_seed=0, **kw):
    tokens, unknown = make_batch(counts, seed=data_seed)
    lm = lm or FakeLM()
    res = inpaint_tokens(lm, tokens, unknown, cfg, codebook_size=K, seed=seed, **kw)
    return tokens, unknown, res, lm


def expected_masked_counts(n: int, cfg: SamplerConfig) -> list[int]:
    """Still-masked count after each step, computed independently of the sampler:
    floor(n * gamma(t/T)), at least one revealed per step while any remain (monotone);
    a rising schedule re-masks up to its target; the last step reveals everything."""
    T = cfg.steps
    non_monotone = cfg.gamma in NON_MONOTONE
    if non_monotone:
        last = T
    else:
        last = next(t for t in range(1, T + 1) if float(gamma(cfg.gamma, t / T)) == 0.0)
    stop = min(cfg.sweet_spot or T, T, last)
    m, out = n, []
    for t in range(1, stop + 1):
        if t == stop:
            m = 0
        else:
            target = math.floor(n * float(gamma(cfg.gamma, t / T)))
            if non_monotone and target > m:
                m = target
            else:
                m = min(target, max(m - 1, 0))
        out.append(m)
    return out


# ----------------------------------------------------------------------------- basic invariants
@pytest.mark.parametrize("steps", [1, 2, 5, 8, 12])
@pytest.mark.parametrize("schedule", ALL)
def test_known_kept_all_revealed_no_mask_token(schedule, steps):
    cfg = SamplerConfig(gamma=schedule, steps=steps)
    tokens, unknown, res, lm = run(cfg, counts=(0, 1, 17, 40, 64), seed=3, return_steps=True)
    out = res.tokens
    assert out.shape == tokens.shape and out.dtype == torch.long
    assert torch.equal(out[~unknown], tokens[~unknown])
    assert (out >= 0).all() and (out < K).all()
    assert len(res.step_masks) == len(res.step_tokens) >= 1
    assert not res.step_masks[-1].any()
    assert torch.equal(res.step_tokens[-1], out)
    for m, st in zip(res.step_masks, res.step_tokens):
        assert not (m & ~unknown).any()                       # only unknown tokens are ever masked
        assert torch.equal(st[~unknown], tokens[~unknown])    # known tokens are never touched
        assert (st < K).all()
    # the model is called once per step and first sees the mask token exactly at the unknown tokens
    assert len(lm.calls) == len(res.step_masks)
    assert torch.equal(lm.calls[0], torch.where(unknown, torch.full_like(tokens, K), tokens))
    # at step t it sees the mask token exactly where tokens were still masked after step t-1
    for prev_mask, seen in zip(res.step_masks[:-1], lm.calls[1:]):
        assert torch.equal(seen == K, prev_mask)
        assert torch.equal(seen[~unknown], tokens[~unknown])


@pytest.mark.parametrize("schedule", ALL)
@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_mask_token_never_emitted_even_when_its_logit_is_huge(schedule, temperature):
    cfg = SamplerConfig(gamma=schedule, steps=6, token_temperature=temperature)
    tokens, unknown, res, _ = run(cfg, lm=MaskLovingLM(), return_steps=True)
    assert (res.tokens < K).all()
    assert all((st < K).all() for st in res.step_tokens)
    assert torch.equal(res.tokens[~unknown], tokens[~unknown])


def test_mask_token_never_emitted_on_early_stop():
    cfg = SamplerConfig(gamma="cosine", steps=10, sweet_spot=3)
    _, _, res, _ = run(cfg, lm=MaskLovingLM())
    assert (res.tokens < K).all()


# ----------------------------------------------------------------------------- counts per step
@pytest.mark.parametrize("steps", [1, 2, 3, 7, 8, 12, 20])
@pytest.mark.parametrize("schedule", MONOTONE)
def test_per_image_masked_counts_monotone(schedule, steps):
    counts = (0, 1, 2, 5, 13, 40, 64)
    cfg = SamplerConfig(gamma=schedule, steps=steps)
    _, unknown, res, _ = run(cfg, counts=counts, seed=11, return_steps=True)
    got = torch.stack([m.sum(1) for m in res.step_masks], 1)  # (B, steps run)
    for i, n in enumerate(counts):
        assert got[i].tolist() == expected_masked_counts(n, cfg), f"image {i} with {n} unknown"
    # masks only ever shrink for a monotone schedule
    prev = unknown
    for m in res.step_masks:
        assert not (m & ~prev).any()
        prev = m


def test_expected_counts_helper_sanity():
    # linear, 4 steps, 10 unknown: floor(7.5)=7, floor(5)=5, floor(2.5)=2, 0
    assert expected_masked_counts(10, SamplerConfig(gamma="linear", steps=4)) == [7, 5, 2, 0]
    # 3 unknown over 8 cosine steps: the "at least one per step" rule takes over
    c = expected_masked_counts(3, SamplerConfig(gamma="cosine", steps=8))
    assert c[:3] == [2, 1, 0] and len(c) == 8
    # one-shot schedule: one step
    assert expected_masked_counts(10, SamplerConfig(gamma="constant", steps=8)) == [0]


@pytest.mark.parametrize("steps", [1, 6, 12])
def test_per_image_counts_follow_masked_counts_where_not_clamped(steps):
    cfg = SamplerConfig(gamma="linear", steps=steps)
    counts = (64, 48)
    _, _, res, _ = run(cfg, counts=counts, return_steps=True)
    target = masked_counts(torch.tensor(counts), cfg)
    got = torch.stack([m.sum(1) for m in res.step_masks], 1)
    # with many unknown tokens and few steps, floor(n * gamma) drops by >= 1 each step
    assert torch.equal(got, target)


def test_constant_schedule_is_one_shot():
    cfg = SamplerConfig(gamma="constant", steps=8)
    tokens, unknown, res, lm = run(cfg, return_steps=True)
    assert len(lm.calls) == 1 and len(res.step_masks) == 1
    assert torch.equal(res.tokens[~unknown], tokens[~unknown])


def test_mixed_unknown_counts_in_one_batch():
    counts = (0, 3, 64, 31)
    cfg = SamplerConfig(gamma="cosine", steps=8)
    tokens, unknown, res, _ = run(cfg, counts=counts, return_steps=True)
    assert torch.equal(res.tokens[0], tokens[0])  # nothing to do for image 0
    for i, n in enumerate(counts):
        assert [int(m[i].sum()) for m in res.step_masks] == expected_masked_counts(n, cfg)


# ----------------------------------------------------------------------------- seeds and batches
def test_deterministic_for_same_seed_and_varies_with_seed():
    cfg = SamplerConfig(gamma="cosine", steps=8)
    a = run(cfg, seed=5)[2].tokens
    b = run(cfg, seed=5)[2].tokens
    c = run(cfg, seed=6)[2].tokens
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("schedule", ["cosine", "sine_linear", "linear"])
def test_batch_of_one_equals_in_batch(schedule):
    cfg = SamplerConfig(gamma=schedule, steps=8, sweet_spot=6)
    counts = (12, 40, 0, 64)
    tokens, unknown = make_batch(counts, seed=1)
    seeds = torch.tensor([101, 7, 3, 2 ** 31 - 1])
    lm = FakeLM()
    batch = inpaint_tokens(lm, tokens, unknown, cfg, codebook_size=K, seed=seeds, return_steps=True)
    for i in range(len(counts)):
        alone = inpaint_tokens(lm, tokens[i:i + 1], unknown[i:i + 1], cfg, codebook_size=K,
                               seed=seeds[i:i + 1], return_steps=True)
        assert torch.equal(alone.tokens[0], batch.tokens[i])
        for a, b in zip(alone.step_masks, batch.step_masks):
            assert torch.equal(a[0], b[i])
    # reversing the batch order reverses the results
    rev = inpaint_tokens(lm, tokens.flip(0), unknown.flip(0), cfg, codebook_size=K, seed=seeds.flip(0))
    assert torch.equal(rev.tokens.flip(0), batch.tokens)


def test_int_seed_equals_tensor_of_that_seed():
    cfg = SamplerConfig(gamma="cosine", steps=8)
    tokens, unknown = make_batch((20, 30))
    a = inpaint_tokens(FakeLM(), tokens, unknown, cfg, codebook_size=K, seed=9).tokens
    b = inpaint_tokens(FakeLM(), tokens, unknown, cfg, codebook_size=K, seed=torch.tensor([9, 9])).tokens
    c = inpaint_tokens(FakeLM(), tokens, unknown, cfg, codebook_size=K, seed=torch.tensor(9)).tokens
    assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("bad", [torch.tensor([1, 2, 3]), torch.tensor([[1], [2]]), torch.tensor([1])])
def test_seed_tensor_of_wrong_shape_raises(bad):
    tokens, unknown = make_batch((5, 6))
    with pytest.raises(ValueError, match="seed"):
        inpaint_tokens(FakeLM(), tokens, unknown, SamplerConfig(), codebook_size=K, seed=bad)


def test_different_seeds_within_batch_give_different_results():
    tokens, unknown = make_batch((64, 64))
    tokens[1] = tokens[0]
    res = inpaint_tokens(FakeLM(), tokens, unknown.clone().fill_(True), SamplerConfig(steps=8),
                         codebook_size=K, seed=torch.tensor([1, 2]))
    assert not torch.equal(res.tokens[0], res.tokens[1])
    same = inpaint_tokens(FakeLM(), tokens, unknown.clone().fill_(True), SamplerConfig(steps=8),
                          codebook_size=K, seed=torch.tensor([1, 1]))
    assert torch.equal(same.tokens[0], same.tokens[1])


# ----------------------------------------------------------------------------- sweet spot
@pytest.mark.parametrize("schedule", ["linear", "cosine", "sine_linear"])
@pytest.mark.parametrize("sweet_spot", [1, 3, 8])
def test_sweet_spot_stops_early_and_fills_everything(schedule, sweet_spot):
    cfg = SamplerConfig(gamma=schedule, steps=12, sweet_spot=sweet_spot)
    tokens, unknown, res, lm = run(cfg, counts=(5, 40, 64), return_steps=True)
    assert len(lm.calls) == sweet_spot == len(res.step_masks)
    assert not res.step_masks[-1].any()
    assert torch.equal(res.tokens[~unknown], tokens[~unknown])
    assert (res.tokens < K).all()
    # the final step fills every still-masked token with its most likely code
    before = res.step_masks[-2] if sweet_spot > 1 else unknown
    best = lm(lm.calls[-1])[..., :K].argmax(-1)
    assert torch.equal(res.tokens[before], best[before])
    # the steps before the stop follow the schedule
    for i, n in enumerate((5, 40, 64)):
        assert [int(m[i].sum()) for m in res.step_masks] == expected_masked_counts(n, cfg)


def test_sweet_spot_at_or_beyond_steps_is_a_full_run():
    base = run(SamplerConfig(gamma="cosine", steps=8), seed=4)[2].tokens
    for ss in (8, 20, None):
        assert torch.equal(run(SamplerConfig(gamma="cosine", steps=8, sweet_spot=ss), seed=4)[2].tokens, base)


# ----------------------------------------------------------------------------- non-monotone
@pytest.mark.parametrize("steps", [8, 12, 20])
def test_sine_linear_remasks_only_generated_tokens(steps):
    counts = (64, 40, 9, 0)
    cfg = SamplerConfig(gamma="sine_linear", steps=steps)
    tokens, unknown, res, lm = run(cfg, counts=counts, seed=2, return_steps=True)
    assert not res.step_masks[-1].any()
    assert torch.equal(res.tokens[~unknown], tokens[~unknown])
    assert (res.tokens < K).all()
    grew = False
    prev = unknown
    for m, st in zip(res.step_masks, res.step_tokens):
        assert not (m & ~unknown).any()      # never re-masks an originally known token
        assert torch.equal(st[~unknown], tokens[~unknown])
        grew |= bool((m & ~prev).any())
        prev = m
    assert grew, "sine_linear should re-mask some generated tokens when it rises"
    for i, n in enumerate(counts):
        assert [int(m[i].sum()) for m in res.step_masks] == expected_masked_counts(n, cfg), f"image {i}"
    # the model sees the mask token exactly where tokens were (re-)masked
    for prev_mask, seen in zip(res.step_masks[:-1], lm.calls[1:]):
        assert torch.equal(seen == K, prev_mask)


# ----------------------------------------------------------------------------- temperatures
@pytest.mark.parametrize("schedule", ["cosine", "linear", "sine_linear"])
def test_temperature_zero_takes_the_argmax_of_each_step(schedule):
    cfg = SamplerConfig(gamma=schedule, steps=8, token_temperature=0.0)
    tokens, unknown, res, lm = run(cfg, return_steps=True)
    prev = unknown
    for t, m in enumerate(res.step_masks):
        revealed = prev & ~m
        best = lm(lm.calls[t])[..., :K].argmax(-1)
        lm.calls.pop()
        assert torch.equal(res.step_tokens[t][revealed], best[revealed])
        prev = m
    assert torch.equal(res.tokens[~unknown], tokens[~unknown])


def test_temperature_zero_context_free_gives_argmax_for_any_seed():
    lm = FakeLM(context=False)
    cfg = SamplerConfig(gamma="cosine", steps=8, token_temperature=0.0)
    tokens, unknown = make_batch((30, 64))
    # a still-masked position always holds the mask token, so its prediction never changes
    best = lm(torch.where(unknown, torch.full_like(tokens, K), tokens))[..., :K].argmax(-1)
    for seed in (0, 1, 2):
        out = inpaint_tokens(lm, tokens, unknown, cfg, codebook_size=K, seed=seed).tokens
        assert torch.equal(out, torch.where(unknown, best, tokens))


def test_sampling_follows_the_distribution():
    """Two codes share all the probability: both appear, roughly equally, nothing else does."""
    class TwoCodes:
        def __call__(self, tokens):
            logits = torch.full((*tokens.shape, K + 1), -1e4)
            logits[..., 3] = 5.0
            logits[..., 7] = 5.0
            logits[..., K] = 1e4  # the mask token never wins
            return logits

    n = 4096
    tokens = torch.zeros(1, n, dtype=torch.long)
    unknown = torch.ones(1, n, dtype=torch.bool)
    out = inpaint_tokens(TwoCodes(), tokens, unknown, SamplerConfig(gamma="linear", steps=4),
                         codebook_size=K, seed=0).tokens
    assert set(out.unique().tolist()) == {3, 7}
    frac = (out == 3).float().mean().item()
    assert 0.45 < frac < 0.55


def test_validation_errors():
    tokens, unknown = make_batch((5,))
    for cfg in (SamplerConfig(gamma="nope"), SamplerConfig(steps=0), SamplerConfig(sweet_spot=0),
                SamplerConfig(token_temperature=-1.0), SamplerConfig(choice_temperature=-0.5),
                SamplerConfig(guidance=-1.0), SamplerConfig(guidance=float("nan"))):
        with pytest.raises(ValueError):
            inpaint_tokens(FakeLM(), tokens, unknown, cfg, codebook_size=K)


def test_uniform_noise_range_and_independence():
    seeds = torch.tensor([0, 1, 2, 123456789, -5])
    u = uniform_noise(seeds, step=3, stream=1, n=1000)
    assert u.shape == (5, 1000)
    assert (u > 0).all() and (u < 1).all()
    assert abs(u.mean().item() - 0.5) < 0.02
    assert torch.equal(uniform_noise(seeds[2:3], 3, 1, 1000)[0], u[2])
    assert not torch.equal(uniform_noise(seeds, 4, 1, 1000), u)
    assert not torch.equal(uniform_noise(seeds, 3, 0, 1000), u)
    assert not torch.equal(u[0], u[1])


def test_single_hole_pixel_marks_its_patch_token():
    for y, x in [(0, 0), (21, 38), (63, 63), (33, 4)]:
        known = torch.ones(1, 64, 64, dtype=torch.bool)
        known[0, y, x] = False
        unk = pixel_to_token_mask(known, 16)
        assert unk.shape == (1, 256) and unk.dtype == torch.bool
        assert unk.sum() == 1
        assert unk[0, (y // 4) * 16 + x // 4]


def test_dilate_grows_to_3x3_tokens():
    known = torch.ones(64, 64, dtype=torch.bool)  # 2-D input is accepted as a batch of one
    known[21, 38] = False
    unk = pixel_to_token_mask(known, 16, dilate=1).reshape(16, 16)
    ty, tx = 21 // 4, 38 // 4
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[ty - 1:ty + 2, tx - 1:tx + 2] = True
    assert torch.equal(unk, expected)
    # at a corner it is clipped to 2x2
    known = torch.ones(1, 64, 64, dtype=torch.bool)
    known[0, 0, 0] = False
    assert pixel_to_token_mask(known, 16, dilate=1).sum() == 4


def test_token_threshold_counts_the_hole_share_of_each_patch():
    """With a threshold, a token is unknown only when more than that share of its 4x4 patch is
    hole: 4 of 16 pixels is 0.25, so it stays known at 0.25 and is unknown just below."""
    known = torch.ones(1, 64, 64, dtype=torch.bool)
    known[0, 0, 0:4] = False          # token 0: 4 / 16 hole
    known[0, 4:6, 4:7] = False        # token 17: 6 / 16 hole
    known[0, 8:12, 8:12] = False      # token 34: all hole
    def unknown_at(t):
        return pixel_to_token_mask(known, 16, threshold=t)[0].nonzero().flatten().tolist()
    assert unknown_at(0.0) == unknown_at(0.2) == [0, 17, 34]
    assert unknown_at(0.25) == [17, 34]
    assert unknown_at(0.375) == [34] and unknown_at(0.9375) == [34]
    assert unknown_at(0.0) == pixel_to_token_mask(known, 16)[0].nonzero().flatten().tolist()
    # dilation grows what the threshold left
    assert pixel_to_token_mask(known, 16, dilate=1, threshold=0.375).sum() == 9
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            pixel_to_token_mask(known, 16, threshold=bad)
    with pytest.raises(ValueError, match="token_threshold"):
        SamplerConfig(token_threshold=1.0).validate()


def test_token_mask_of_full_and_empty_masks_and_roundtrip():
    assert not pixel_to_token_mask(torch.ones(2, 64, 64, dtype=torch.bool), 16).any()
    assert pixel_to_token_mask(torch.zeros(2, 64, 64, dtype=torch.bool), 16).all()
    unk = torch.rand(3, 256, generator=torch.Generator().manual_seed(0)) < 0.3
    px = token_to_pixel_mask(unk, 64)
    assert px.shape == (3, 64, 64)
    assert torch.equal(pixel_to_token_mask(~px, 16), unk)
    with pytest.raises(ValueError):
        pixel_to_token_mask(torch.ones(1, 60, 60, dtype=torch.bool), 16)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generate_masks_deterministic_per_index(kind):
    a = generate_masks(kind, 6, seed=3)
    assert a.shape == (6, 64, 64) and a.dtype == bool
    assert np.array_equal(a, generate_masks(kind, 6, seed=3))
    # mask i depends only on (kind, seed, i)
    assert np.array_equal(generate_masks(kind, 3, seed=3), a[:3])
    assert not np.array_equal(generate_masks(kind, 6, seed=4), a)
    assert not np.array_equal(a[0], a[1])
    assert (~a).any(axis=(1, 2)).all() and a.any(axis=(1, 2)).all()  # every mask has a hole and known pixels


def test_random_walk_coverage():
    holes = 1 - generate_masks("random-walk", 40, seed=0).mean(axis=(1, 2))
    assert (holes >= 0.15).all() and (holes <= 0.40).all(), holes
    assert 0.18 < holes.mean() < 0.32


def test_unknown_mask_kind():
    with pytest.raises(ValueError, match="random-walk"):
        generate_masks("blobs", 1)


# ----------------------------------------------------------------------------- hole fill
def test_harmonic_fill_keeps_known_pixels_and_reproduces_smooth_images():
    known = torch.from_numpy(generate_masks("random-walk", 3, 64, seed=4))
    known[:, :4] = known[:, -4:] = known[:, :, :4] = known[:, :, -4:] = True
    # a linear ramp is harmonic: the fill of a hole away from the border (where the fill has
    # zero slope, knowing nothing beyond) must give it back
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    ramp = torch.stack([0.3 * xx + 0.2 * yy, -0.5 * yy, 0.1 * xx + 0.05]).expand(3, 3, 64, 64).clone()
    out = harmonic_fill(ramp, known)
    k = known[:, None].expand_as(ramp)
    assert torch.equal(out[k], ramp[k])
    assert (out - ramp).abs().max() < 0.05
    # a flat colour stays that colour; the fill never leaves the range of the known values
    x = torch.rand(3, 3, 64, 64)
    flat = torch.full_like(x, 0.4)
    assert torch.allclose(harmonic_fill(flat, known), flat)
    f = harmonic_fill(x, known)
    assert f.min() >= x.min() - 1e-6 and f.max() <= x.max() + 1e-6


def test_harmonic_fill_uses_only_known_pixels():
    known = torch.from_numpy(generate_masks("brush", 2, 64, seed=1))
    x = torch.rand(2, 3, 64, 64)
    y = torch.where(known[:, None], x, torch.rand(2, 3, 64, 64))
    assert torch.equal(harmonic_fill(x, known), harmonic_fill(y, known))
    # no hole: unchanged; everything a hole: a flat fill, no NaN
    assert torch.equal(harmonic_fill(x, torch.ones(2, 64, 64, dtype=torch.bool)), x)
    empty = harmonic_fill(x, torch.zeros(2, 64, 64, dtype=torch.bool))
    assert torch.isfinite(empty).all()


def test_harmonic_fill_is_smoother_than_a_flat_hole():
    known = torch.from_numpy(generate_masks("random-walk", 4, 64, seed=2))
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=g), size=64, mode="bicubic",
                                          align_corners=False)  # smooth, varying colours
    mean = torch.where(known[:, None], img, img.mean((2, 3), keepdim=True))
    filled = harmonic_fill(img, known)
    err = lambda a: ((a - img) ** 2).mean()  # noqa: E731
    assert err(filled) < 0.3 * err(mean)


# ----------------------------------------------------------------------------- context guidance
def test_guided_logits_formula_and_the_free_pass_masks_every_known_token():
    lm = FakeLM()
    tokens, unknown = make_batch((10, 40))
    cur = torch.where(unknown, torch.full_like(tokens, K), tokens)
    cur[0, unknown[0].nonzero()[0, 0]] = 5  # one hole token already generated: it stays in the free pass
    out = guided_logits(lm, cur, unknown, 1.5, K)
    (both,) = lm.calls  # one forward pass of the doubled batch
    assert torch.equal(both[:2], cur)
    free = both[2:]
    assert bool((free[~unknown] == K).all())
    assert torch.equal(free[unknown], cur[unknown])
    cond, uncond = lm(cur)[..., :K], lm(free)[..., :K]
    assert torch.allclose(out, cond + 1.5 * (cond - uncond), atol=1e-5)
    lm.calls.clear()
    assert torch.equal(guided_logits(lm, cur, unknown, 0.0, K), lm(cur)[..., :K].float())


@pytest.mark.parametrize("weak", [False, True])
@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_guided_masked_logits_are_the_guided_logits_at_the_masked_rows(weak, guidance):
    """The sampler computes only the masked rows: the same values as the full (B, N, V) path
    there, whether the model hands compact rows itself or not."""
    lm, weak_lm = FakeLM(seed=0), (FakeLM(seed=3) if weak else None)
    tokens, unknown = make_batch((10, 40))
    cur = torch.where(unknown, torch.full_like(tokens, K), tokens)
    cur[0, unknown[0].nonzero()[:3, 0]] = 5  # some hole tokens already generated
    full = guided_logits(lm, cur, unknown, guidance, K, weak_lm)[cur == K]

    def compact(fn):
        f = lambda x, rows="masked": fn(x)[x == K] if rows == "compact" else fn(x)  # noqa: E731
        f.compact = True
        return f

    for a, b in ((lm, weak_lm), (compact(lm), compact(weak_lm) if weak else None)):
        got = guided_masked_logits(a, cur, unknown, guidance, K, b)
        assert got.shape == (int((cur == K).sum()), K)
        assert torch.allclose(got, full, atol=1e-5)


def test_guidance_zero_is_the_plain_sampler_and_guidance_changes_the_fill():
    base = SamplerConfig(gamma="cosine", steps=6, token_temperature=0.0)
    tokens, unknown, plain, lm = run(base)
    assert all(c.shape[0] == 3 for c in lm.calls)  # no second pass when off
    _, _, off, _ = run(SamplerConfig(gamma="cosine", steps=6, token_temperature=0.0, guidance=0.0))
    assert torch.equal(off.tokens, plain.tokens)
    _, _, on, lm2 = run(SamplerConfig(gamma="cosine", steps=6, token_temperature=0.0, guidance=2.0))
    assert all(c.shape[0] == 6 for c in lm2.calls)
    assert torch.equal(on.tokens[~unknown], tokens[~unknown])
    assert not torch.equal(on.tokens, plain.tokens)


class ContextLM:
    """A model whose clue to code 2 is a known token: code 1 (the prior) scores 1.0 with or
    without context, code 2 scores 0.9 when a known 9 is anywhere in the grid and 0.5 otherwise."""

    def __call__(self, toks):
        logits = torch.zeros(*toks.shape, K + 1)
        logits[..., 1] = 1.0
        logits[..., 2] = 0.5 + 0.4 * (toks == 9).any(1, keepdim=True).float()
        logits[..., K] = -1e4
        return logits


def test_guidance_follows_the_context_the_model_sees():
    """Without guidance the prior's code 1 wins (0.9 < 1.0); with w = 1 the context's pull
    counts double: 0.9 + (0.9 - 0.5) = 1.3 > 1.0."""
    tokens = torch.full((1, N), 9)
    unknown = torch.zeros(1, N, dtype=torch.bool)
    unknown[0, :20] = True

    def fill(w):
        cfg = SamplerConfig(gamma="linear", steps=4, token_temperature=0.0, guidance=w)
        return inpaint_tokens(ContextLM(), tokens, unknown, cfg, codebook_size=K).tokens[unknown]

    assert bool((fill(0.0) == 1).all())
    assert bool((fill(1.0) == 2).all())


def test_guidance_without_known_tokens_runs_one_pass_and_changes_nothing():
    cfg = SamplerConfig(gamma="cosine", steps=6, token_temperature=0.7)
    tokens, unknown = make_batch((64, 64))
    plain, guided_lm = FakeLM(), FakeLM()
    a = inpaint_tokens(plain, tokens, unknown, cfg, codebook_size=K, seed=1).tokens
    b = inpaint_tokens(guided_lm, tokens, unknown, SamplerConfig(gamma="cosine", steps=6, token_temperature=0.7,
                                                                 guidance=3.0), codebook_size=K, seed=1).tokens
    assert torch.equal(a, b)
    assert all(c.shape[0] == 2 for c in guided_lm.calls)


def test_guidance_steps_guides_only_the_first_steps():
    """guidance_steps = k: steps 1..k run the doubled batch, the rest one pass; k at or beyond
    the last step is the same as guiding every step."""
    cfg = SamplerConfig(gamma="cosine", steps=6, token_temperature=0.7, guidance=2.0)
    _, unknown, every, lm = run(cfg)
    assert [c.shape[0] for c in lm.calls] == [6] * 6
    _, _, two, lm2 = run(SamplerConfig(gamma="cosine", steps=6, token_temperature=0.7, guidance=2.0, guidance_steps=2))
    assert [c.shape[0] for c in lm2.calls] == [6, 6, 3, 3, 3, 3]
    assert not torch.equal(two.tokens, every.tokens)
    # the guided steps see the same tokens as with guidance throughout
    assert all(torch.equal(a, b) for a, b in zip(lm.calls[:2], lm2.calls[:2]))
    _, _, six, _ = run(SamplerConfig(gamma="cosine", steps=6, token_temperature=0.7, guidance=2.0, guidance_steps=6))
    _, _, many, _ = run(SamplerConfig(gamma="cosine", steps=6, token_temperature=0.7, guidance=2.0, guidance_steps=99))
    assert torch.equal(six.tokens, every.tokens) and torch.equal(many.tokens, every.tokens)
    _, _, off, lm0 = run(SamplerConfig(gamma="cosine", steps=6, token_temperature=0.7, guidance=0.0, guidance_steps=2))
    assert [c.shape[0] for c in lm0.calls] == [3] * 6


def test_linear_guidance_schedule_ramps_the_scale_up_to_w():
    """guidance_schedule = "linear": step t uses w * t / T, so the context's pull grows over the
    steps. With ContextLM and w = 0.8 over 4 steps the guided logit of code 2
    is 0.9 + 0.4 * w_t: 0.98 on step 1 (the prior's code 1 at 1.0 wins), 1.06 .. 1.22 after."""
    cfg = SamplerConfig(steps=4, guidance=0.8, guidance_schedule="linear")
    assert [cfg.guidance_at(t) for t in range(1, 5)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert [SamplerConfig(steps=4, guidance=0.8).guidance_at(t) for t in range(1, 5)] == [0.8] * 4
    assert SamplerConfig(steps=4, guidance=0.8, guidance_schedule="linear", guidance_steps=2).guidance_at(3) == 0
    tokens = torch.full((1, N), 9)
    unknown = torch.zeros(1, N, dtype=torch.bool)
    unknown[0, :20] = True

    def fill(ramp):
        cfg = SamplerConfig(gamma="linear", steps=4, token_temperature=0.0, guidance=0.8, guidance_schedule=ramp)
        return inpaint_tokens(ContextLM(), tokens, unknown, cfg, codebook_size=K).tokens[unknown]

    assert bool((fill("constant") == 2).all())
    ramped = fill("linear")
    assert int((ramped == 1).sum()) == 5 and int((ramped == 2).sum()) == 15  # step 1 placed 5 of 20


def test_guidance_schedule_must_be_known():
    with pytest.raises(ValueError, match="guidance_schedule must be one of constant, linear"):
        SamplerConfig(guidance=1.0, guidance_schedule="cosine").validate()


@pytest.mark.parametrize("k", [0, -1])
def test_guidance_steps_must_be_positive(k):
    with pytest.raises(ValueError, match="guidance_steps"):
        SamplerConfig(guidance=1.0, guidance_steps=k).validate()


def test_guided_sampling_is_deterministic_and_batch_independent():
    cfg = SamplerConfig(gamma="sqrt", steps=8, token_temperature=0.7, guidance=1.0)
    tokens, unknown = make_batch((10, 40, 64))
    a = inpaint_tokens(FakeLM(), tokens, unknown, cfg, codebook_size=K, seed=torch.tensor([3, 4, 5])).tokens
    b = inpaint_tokens(FakeLM(), tokens, unknown, cfg, codebook_size=K, seed=torch.tensor([3, 4, 5])).tokens
    one = inpaint_tokens(FakeLM(), tokens[1:2], unknown[1:2], cfg, codebook_size=K, seed=4).tokens
    assert torch.equal(a, b)
    assert torch.equal(a[1:2], one)


# ----------------------------------------------------------------------------- weak guidance
def test_weak_guidance_runs_the_free_pass_on_the_weak_model():
    """l + w * (l - l_weak(free)): the model sees the context, the weak model the hole alone."""
    lm, weak = FakeLM(seed=0), FakeLM(seed=1)
    tokens, unknown = make_batch((10, 40))
    cur = torch.where(unknown, torch.full_like(tokens, K), tokens)
    out = guided_logits(lm, cur, unknown, 2.0, K, weak)
    (seen,), (free,) = lm.calls, weak.calls  # one pass each, no doubled batch
    assert torch.equal(seen, cur)
    assert bool((free[~unknown] == K).all()) and torch.equal(free[unknown], cur[unknown])
    cond, uncond = lm(cur)[..., :K], weak(free)[..., :K]
    assert torch.allclose(out, cond + 2.0 * (cond - uncond), atol=1e-5)
    # a weak model equal to the model is the plain context guidance
    assert torch.allclose(guided_logits(FakeLM(seed=0), cur, unknown, 2.0, K, FakeLM(seed=0)),
                          guided_logits(FakeLM(seed=0), cur, unknown, 2.0, K), atol=1e-5)


def test_weak_guidance_changes_the_fill_only_when_on_and_guided():
    cfg = SamplerConfig(gamma="cosine", steps=6, token_temperature=0.7, guidance=2.0)
    tokens, unknown = make_batch((10, 40, 64))

    def fill(c, weak):
        return inpaint_tokens(FakeLM(), tokens, unknown, c, codebook_size=K, seed=3, weak_logits_fn=weak)

    plain = fill(cfg, None).tokens
    assert torch.equal(fill(cfg, FakeLM(seed=1)).tokens, plain)  # given but not asked for: unused
    weak = FakeLM(seed=1)
    on = fill(replace(cfg, weak_guidance=True), weak).tokens
    assert len(weak.calls) == 6 and not torch.equal(on, plain)
    assert torch.equal(on[~unknown], tokens[~unknown])
    # row 2 knows nothing: against a weak model the guidance still acts, so it differs too
    assert not torch.equal(on[2], plain[2])
    # without guidance it has nothing to do and needs no weak model
    off = replace(cfg, guidance=0.0, weak_guidance=True)
    assert torch.equal(fill(off, None).tokens, fill(replace(cfg, guidance=0.0), None).tokens)


def test_weak_guidance_without_a_weak_model_is_an_error():
    tokens, unknown = make_batch((10,))
    with pytest.raises(ValueError, match="weak_guidance needs a weak transformer"):
        inpaint_tokens(FakeLM(), tokens, unknown, SamplerConfig(guidance=1.0, weak_guidance=True), codebook_size=K)
    with pytest.raises(ValueError, match="weak_guidance must be true or false"):
        SamplerConfig(weak_guidance="yes").validate()


# ----------------------------------------------------------------------------- Halton order, ReMDM, critic
OPTIONS = {
    "halton": dict(order="halton"),
    "remdm": dict(remask="remdm", remask_rate=0.3),
    "critic": dict(critic_rounds=2, critic_fraction=0.2),
    "all": dict(order="halton", remask="remdm", remask_rate=0.2, critic_rounds=1, critic_fraction=0.3),
}


@pytest.mark.parametrize("guidance", [0.0, 2.0])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_options_keep_known_tokens_fill_every_hole_and_follow_the_seed(option, guidance):
    cfg = SamplerConfig(gamma="cosine", steps=8, token_temperature=0.8, guidance=guidance, **OPTIONS[option])
    counts = (0, 1, 17, 40, 64)
    tokens, unknown, res, lm = run(cfg, counts=counts, seed=3, return_steps=True)
    assert torch.equal(res.tokens[~unknown], tokens[~unknown])
    assert (res.tokens >= 0).all() and (res.tokens < K).all()
    assert not res.step_masks[-1].any() and torch.equal(res.step_tokens[-1], res.tokens)
    for m, st in zip(res.step_masks, res.step_tokens):
        assert not (m & ~unknown).any()
        assert torch.equal(st[~unknown], tokens[~unknown])
    for seen in lm.calls:  # the model never sees a known token changed or masked
        assert torch.equal(seen[: len(counts)][~unknown], tokens[~unknown])
    again = run(cfg, counts=counts, seed=3)[2].tokens
    other = run(cfg, counts=counts, seed=4)[2].tokens
    assert torch.equal(again, res.tokens)
    assert not torch.equal(other, res.tokens)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_options_never_emit_the_mask_token(option):
    for temperature in (1.0, 0.0):
        cfg = SamplerConfig(gamma="cosine", steps=6, token_temperature=temperature, **OPTIONS[option])
        tokens, unknown, res, _ = run(cfg, lm=MaskLovingLM(), return_steps=True)
        assert (res.tokens < K).all() and all((st < K).all() for st in res.step_tokens)
        assert torch.equal(res.tokens[~unknown], tokens[~unknown])


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_options_give_an_image_the_same_result_alone_as_in_a_batch(option):
    cfg = SamplerConfig(gamma="cosine", steps=8, sweet_spot=6, token_temperature=0.8, **OPTIONS[option])
    tokens, unknown = make_batch((12, 40, 0, 64), seed=1)
    seeds = torch.tensor([101, 7, 3, 2 ** 31 - 1])
    batch = inpaint_tokens(FakeLM(), tokens, unknown, cfg, codebook_size=K, seed=seeds).tokens
    for i in range(4):
        alone = inpaint_tokens(FakeLM(), tokens[i:i + 1], unknown[i:i + 1], cfg, codebook_size=K, seed=seeds[i:i + 1])
        assert torch.equal(alone.tokens[0], batch[i])


def test_defaults_are_the_plain_sampler():
    d = SamplerConfig()
    assert (d.order, d.remask, d.critic_rounds) == ("confidence", "none", 0)
    plain = run(SamplerConfig(steps=8, guidance=1.0))[2].tokens
    # the strengths alone do nothing while their option is off; a zero strength is off
    for kw in (dict(remask_rate=0.4, critic_fraction=0.4), dict(remask="remdm", remask_rate=0.0),
               dict(critic_rounds=3, critic_fraction=0.0)):
        _, _, res, lm = run(SamplerConfig(steps=8, guidance=1.0, **kw))
        assert torch.equal(res.tokens, plain) and len(lm.calls) == 8


def test_halton_rank_is_a_permutation_starting_where_the_sequence_starts():
    for side in (1, 2, 5, 8, 16):
        r = halton_rank(side)
        assert sorted(r.tolist()) == list(range(side * side))
    # Halton points 1, 2, 3 (bases 2 and 3): (1/2, 1/3), (1/4, 2/3), (3/4, 1/9) -> rows x, columns y
    r16 = halton_rank(16)
    assert [int((r16 == k).nonzero()) for k in range(3)] == [8 * 16 + 5, 4 * 16 + 10, 12 * 16 + 1]
    # evenly spread: any first 16, 32, 64 or 128 positions fall about equally in the four quadrants
    # (within one; a random order is typically off by 2 to 4)
    pos = r16.argsort()
    quadrant = (pos // 16 >= 8) * 2 + (pos % 16 >= 8)
    for n in (16, 32, 64, 128):
        assert (torch.bincount(quadrant[:n], minlength=4) - n // 4).abs().max() <= 1, n


@pytest.mark.parametrize("schedule", MONOTONE)
def test_halton_reveals_every_hole_token_once_in_halton_order(schedule):
    counts = (1, 5, 17, 40, 64)
    cfg = SamplerConfig(gamma=schedule, steps=8, order="halton")
    rank = halton_rank(8)
    tokens, unknown, res, _ = run(cfg, counts=counts, seed=5, return_steps=True)
    when = torch.full(unknown.shape, -1)
    prev = unknown
    for t, m in enumerate(res.step_masks):
        assert not (m & ~prev).any()                    # nothing is masked again
        when[prev & ~m] = t
        prev = m
    assert torch.equal(when >= 0, unknown)              # every hole token revealed, exactly one step each
    for i, n in enumerate(counts):
        assert [int(m[i].sum()) for m in res.step_masks] == expected_masked_counts(n, cfg)
        hole = unknown[i].nonzero()[:, 0]
        order = hole[rank[hole].argsort()]
        assert when[i, order].tolist() == sorted(when[i, order].tolist())  # revealed in Halton order
    # the order is fixed: which tokens are revealed when does not depend on the seed or the model
    other = run(cfg, counts=counts, seed=9, lm=FakeLM(seed=4), return_steps=True)[2]
    assert all(torch.equal(a, b) for a, b in zip(res.step_masks, other.step_masks))


def test_halton_ignores_the_choice_noise_and_needs_a_square_grid():
    a = run(SamplerConfig(order="halton", choice_temperature=0.0), seed=1)[2].tokens
    b = run(SamplerConfig(order="halton", choice_temperature=9.0), seed=1)[2].tokens
    assert torch.equal(a, b)
    tokens, unknown = make_batch((5,), n=N)
    with pytest.raises(ValueError, match="order 'halton' needs a square token grid, got 63"):
        inpaint_tokens(FakeLM(), tokens[:, :63], unknown[:, :63], SamplerConfig(order="halton"), codebook_size=K)


def test_remdm_remasks_generated_tokens_and_keeps_the_schedule():
    counts = (64, 40, 9, 0)
    cfg = SamplerConfig(gamma="cosine", steps=12, remask="remdm", remask_rate=0.25)
    tokens, unknown, res, lm = run(cfg, counts=counts, seed=2, return_steps=True)
    prev, back_total = unknown, 0
    for t, (m, seen_next) in enumerate(zip(res.step_masks, lm.calls[1:] + [None])):
        back = m & ~prev
        assert not (back & ~unknown).any()
        back_total += int(back.sum())
        # each step sends back floor(rate * generated) tokens, capped by what the schedule leaves masked
        generated = unknown & ~prev
        want = torch.minimum((generated.sum(1) * 0.25).floor().long(), m.sum(1))
        assert torch.equal(back.sum(1), want), f"step {t + 1}"
        if seen_next is not None:
            assert torch.equal(seen_next == K, m)      # a re-masked token is shown as the mask token
        prev = m
    assert back_total > 0
    for i, n in enumerate(counts):                      # the still-masked counts are the schedule's
        assert [int(m[i].sum()) for m in res.step_masks] == expected_masked_counts(n, cfg)
    assert not torch.equal(res.tokens, run(replace(cfg, remask="none"), counts=counts, seed=2)[2].tokens)


def test_remdm_sends_unlikely_tokens_back_more_often():
    """The tokens re-masked are drawn with weight 1 / p(token when placed): over many seeds the
    re-masked ones were placed with a lower log-probability than those kept."""
    cfg = SamplerConfig(gamma="linear", steps=4, token_temperature=1.0, remask="remdm", remask_rate=0.5)
    tokens, unknown = make_batch((64,))
    lower = 0
    for seed in range(20):
        lm = FakeLM(scale=0.6)  # flat enough that unlikely tokens get drawn
        res = inpaint_tokens(lm, tokens, unknown, cfg, codebook_size=K, seed=seed, return_steps=True)
        m1, m2 = res.step_masks[0], res.step_masks[1]
        gen = unknown & ~m1                              # placed at step 1, judged at step 2
        back = m2 & gen
        logp = torch.log_softmax(lm(lm.calls[0])[..., :K], -1).gather(-1, res.step_tokens[0][..., None])[..., 0]
        lower += int(logp[back].mean() < logp[gen & ~back].mean())
    assert lower >= 16


def test_critic_scores_equal_one_pass_per_token_for_a_context_free_model():
    """With a model whose logits at a position depend only on that position's token, the score
    of each token is its log-probability with only itself masked, found by N separate passes."""
    lm = FakeLM(context=False)
    tokens, unknown = make_batch((10, 64, 0))
    score = critic_scores(lm, tokens, unknown, K)
    assert bool(torch.isinf(score[~unknown]).all()) and bool(torch.isfinite(score[unknown]).all())
    want = torch.full(score.shape, float("inf"))
    for p in range(N):
        probe = tokens.clone()
        probe[:, p] = K
        logp = torch.log_softmax(lm(probe)[..., :K].float(), -1)[:, p].gather(-1, tokens[:, p:p + 1])[:, 0]
        want[:, p] = torch.where(unknown[:, p], logp, want[:, p])
    assert torch.allclose(score, want)
    # four passes, each masking one parity class of the hole and nothing else
    lm.calls.clear()
    critic_scores(lm, tokens, unknown, K)
    assert len(lm.calls) == 4
    seen = torch.stack([c == K for c in lm.calls])
    assert torch.equal(seen.sum(0), unknown.long()) and not (seen & ~unknown[None]).any()
    for c in lm.calls:
        pos = (c == K).nonzero()[:, 1]
        assert len({(int(p) // 8 % 2, int(p) % 8 % 2) for p in pos}) == 1


def test_critic_redraws_the_least_likely_fraction_each_round():
    counts = (64, 40, 9, 3)
    cfg = SamplerConfig(gamma="cosine", steps=6, token_temperature=0.8, critic_rounds=2, critic_fraction=0.25)
    tokens, unknown, res, lm = run(cfg, counts=counts, seed=1, return_steps=True)
    assert len(lm.calls) == 6 + 2 * (4 + 1)
    assert len(res.step_masks) == 6 + 2 * 2
    n_back = torch.tensor([16, 10, 2, 0])
    for r in range(2):
        before, back = res.step_tokens[6 + 2 * r], res.step_masks[6 + 2 * r]
        after, done = res.step_tokens[7 + 2 * r], res.step_masks[7 + 2 * r]
        assert torch.equal(back.sum(1), n_back) and not done.any()
        score = critic_scores(FakeLM(), before, unknown, K)
        for i in range(len(counts)):
            if n_back[i]:
                assert score[i][back[i]].max() <= score[i][unknown[i] & ~back[i]].min()
        assert torch.equal(after[~back], before[~back])  # only the re-masked tokens are drawn again
        # the redraw sees the mask token exactly at the re-masked tokens
        assert torch.equal(lm.calls[6 + 5 * r + 4] == K, back)
    assert not torch.equal(res.tokens, res.step_tokens[5])
    # the main steps are those of the run without the critic
    plain = run(replace(cfg, critic_rounds=0), counts=counts, seed=1, return_steps=True)[2]
    assert all(torch.equal(a, b) for a, b in zip(plain.step_tokens, res.step_tokens[:6]))


def test_option_validation_errors():
    for cfg in (SamplerConfig(order="random"), SamplerConfig(remask="yes"), SamplerConfig(remask_rate=-0.1),
                SamplerConfig(remask_rate=1.5), SamplerConfig(critic_rounds=-1), SamplerConfig(critic_rounds=1.5),
                SamplerConfig(critic_fraction=2.0)):
        with pytest.raises(ValueError, match=r"order|remask|critic"):
            cfg.validate()


def test_options_are_settings_flags_sweep_axes_and_in_the_token_key():
    import argparse

    from maskgit_inpaint.cli.options import add_settings_args, sweep_axes
    from maskgit_inpaint.settings import InpaintSettings

    new = ("order", "remask", "remask_rate", "critic_rounds", "critic_fraction")
    s = InpaintSettings()
    assert all(k in s.token_key() for k in new)
    assert s.override(order="halton", critic_rounds=2).token_key() != s.token_key()
    p = argparse.ArgumentParser()
    add_settings_args(p)
    a = p.parse_args(["--order", "halton", "--remask", "remdm", "--remask-rate", "0.2", "--critic-rounds", "1",
                      "--critic-fraction", "0.15"])
    assert (a.order, a.remask, a.remask_rate, a.critic_rounds, a.critic_fraction) == ("halton", "remdm", 0.2, 1, 0.15)
    q = argparse.ArgumentParser()
    add_settings_args(q, sweep=True)
    axes = sweep_axes(q.parse_args(["--order", "confidence,halton", "--critic-rounds", "0,1,2"]))
    assert axes == {"order": ["confidence", "halton"], "critic_rounds": [0, 1, 2]}


def test_step_strip_shows_remasked_tokens_in_red():
    from types import SimpleNamespace

    from maskgit_inpaint.visualize import REMASKED_RGB, decoding_frames, remasked_steps, step_strip

    size, n = 16, 16  # 4x4 tokens of 4x4 pixels
    unknown = torch.zeros(1, n, dtype=torch.bool)
    unknown[0, :6] = True
    m1 = unknown.clone()
    m1[0, :3] = False            # step 1 reveals tokens 0-2
    m2 = m1.clone()
    m2[0, 3:6] = False
    m2[0, 1] = True              # step 2 reveals 3-5 and sends token 1 back
    m3 = torch.zeros_like(m1)
    masks = [m1, m2, m3]
    assert [b.nonzero()[:, 1].tolist() for b in remasked_steps(masks, unknown)] == [[], [1], []]
    known = ~token_to_pixel_mask(unknown, size)
    imgs = torch.full((1, 3, size, size), 0.5)  # grey: a red tint shows as red > blue
    res = SimpleNamespace(unknown=unknown, step_masks=masks, step_images=[imgs] * 3, images=imgs)
    strip = step_strip(imgs, known, res, size, pad=0)[0]
    red = np.array([round(c * 255) for c in REMASKED_RGB])
    col = lambda k: strip[:size, k * size:(k + 1) * size]  # noqa: E731  (column 0: the input)
    assert (col(2)[0:4, 4:8] == red).all()        # token 1 (row 0, column 1) in step 2's column
    assert not (col(2) == red).all(-1)[:, 8:].any() and not (col(1) == red).all(-1).any()
    assert (col(1)[0:4, 12:16] == 255).all() and (col(2)[0:4, 12:16] == 128).all()  # token 3: masked, then generated
    frames = decoding_frames(imgs, known, res, size, scale=1)
    f2 = np.asarray(frames[2]).astype(int)
    assert (f2[0:4, 4:8, 0] > f2[0:4, 4:8, 2]).all()  # tinted red, not blue
