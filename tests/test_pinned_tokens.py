"""The bundled model's tokens for a fixed seed, recorded before the settings/pipeline refactor:
a refactor must not change what the sampler draws.

The known tokens must match exactly. Of the generated ones at least 90 % must: fp32 kernels may
round differently on another CPU, and one flipped near-tie changes the later steps' draws, while
a changed seed or schedule leaves only about a third of them equal (37 % for seed 1)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskgit_inpaint.pipeline import InpaintPipeline
from maskgit_inpaint.model import has_default_model

PINNED = Path(__file__).parent / "data" / "pinned_tokens.json"


def _inputs(tools):
    rng = np.random.default_rng(20261206)
    imgs = np.stack([tools.synthetic_image(rng) for _ in range(3)])
    known = np.ones((3, 64, 64), bool)
    known[0, 16:48, 12:44] = False
    known[1, :, 32:] = False
    known[2, 8:30, 20:60] = False
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(known)


@pytest.mark.skipif(not has_default_model(), reason="no bundled model")
def test_bundled_model_draws_the_pinned_tokens_for_seed_0(tools):
    from maskgit_inpaint.model import load_model

    model, _ = load_model(None, device="cpu")
    x, known = _inputs(tools)
    out = InpaintPipeline(model).generate(x, known, seed=0, precision="fp32")  # pinned in fp32 (auto may be bf16)
    want = json.loads(PINNED.read_text())
    tokens, unknown = torch.tensor(want["tokens"]), torch.tensor(want["unknown"])
    assert torch.equal(out.unknown, unknown)
    assert torch.equal(out.tokens[~unknown], tokens[~unknown])
    same = (out.tokens[unknown] == tokens[unknown]).float().mean().item()
    assert same >= 0.9, f"only {same:.0%} of the generated tokens match the pinned ones"
