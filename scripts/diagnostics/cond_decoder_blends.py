"""A mask-conditioned decoder on the tokens the default sampler drew (from the sweep's token
cache, so run `maskgit sweep ... --seeds SEED --token-cache out/token_cache` first): FID of its raw
decodes, of its composites with each blend, and of the same tokens decoded with nothing known.

    PYTHONPATH=scripts/diagnostics python scripts/diagnostics/cond_decoder_blends.py MODEL_DIR [SEED]
"""
import sys

import torch

from maskgit_inpaint.compositing import paste_known
from maskgit_inpaint.experiments import TokenCache, decode_all
from maskgit_inpaint.model import load_model
from val_setup import val_setup

_, names, imgs, known, fid = val_setup()
model, _ = load_model(sys.argv[1], device="cpu")
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
hit = TokenCache("out/token_cache", model, imgs, known, names, 64).get(model.sampler, seed, len(names))
if hit is None:
    sys.exit(f"no cached tokens for this model's sampler at seed {seed}: run the sweep with --token-cache first")
print("seed", seed, flush=True)
tokens = hit[0]
cond = decode_all(model, tokens, 64, imgs, known)
plain = decode_all(model, tokens, 64)
print("raw, with the known pixels", fid(cond), flush=True)
for blend in ("poisson", "paste"):
    print(f"composite {blend}", fid(paste_known(cond, imgs, known, blend)), flush=True)
print("raw, nothing known", fid(plain), flush=True)
print("composite poisson, nothing known", fid(paste_known(plain, imgs, known, "poisson")), flush=True)
