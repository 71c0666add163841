"""A soft prior from the encoder for partly known generated tokens, on the default model and the
747 val images (seed 0, shipped sampler settings): FID raw and seamless composite.
A generated token whose patch is partly known gets, on top of the transformer's (guided) logits,
the log-evidence -lam * known_share * |z - digits(c)|^2 for every code c, where z is the encoder's
bounded FSQ latent of the hole-filled image (in digit units) and known_share the known part of its
4x4 patch; fully hole tokens are unchanged. The evidence is added after the temperature.
Run from the repository root (after `maskgit masks ... --out out/val_masks`); appends to out/diag/encoder_prior.jsonl.
usage: python scripts/diagnostics/encoder_prior.py NAME lam=L [sampler key=value ...]"""
import sys, torch
import torch.nn.functional as F
import maskgit_inpaint.sampling as sampling
from maskgit_inpaint.compositing import paste_known
from val_setup import fsq_latents, raw_decodes, record, sampler_with, val_setup

name, kv = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
lam = float(kv.pop("lam"))
model, names, imgs, known, fid = val_setup()
sampler = sampler_with(model.sampler, kv)
orig = sampling.guided_logits
prior = {}


def set_prior(sl):
    z, code_digits = fsq_latents(model, imgs[sl], known[sl])
    known_share = F.avg_pool2d(known[sl][:, None].float(), imgs.shape[-1] // model.latent_size).flatten(1)
    prior["p"] = -lam * known_share[..., None] * ((z[:, :, None] - code_digits) ** 2).sum(-1)


def with_prior(logits_fn, cur, unknown, guidance, V):
    return orig(logits_fn, cur, unknown, guidance, V) + sampler.temperature * prior["p"]


sampling.guided_logits = with_prior  # inpaint_tokens calls it by its module-level name
raw, spi = raw_decodes(model, names, imgs, known, sampler, on_batch=set_prior)
record("encoder_prior.jsonl", {"name": name, "lam": lam, "sampler": str(sampler), "s_per_image": round(spi, 3),
                               "raw": fid(raw), "poisson": fid(paste_known(raw, imgs, known, "poisson"))})
