"""Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself") for
the token draw: guide the default model's logits away from those of a weaker transformer of the same
architecture (an earlier, less trained one), on the 747 val images (seed 0, shipped sampler
settings otherwise): FID raw and seamless composite.
Run from the repository root (after `maskgit masks ... --out out/val_masks`); appends to out/diag/autoguidance.jsonl.
usage: python scripts/diagnostics/autoguidance.py NAME BAD_MODEL_DIR wa=A [wc=C] [bad_ctx=1] [seed=S] [sampler key=value ...]
  logits = l + wc * (l - l_free) + wa * (l - l_bad), where l_free is the default model with every
  known token masked too (the shipped context guidance, wc = 0 turns it off) and l_bad the weak
  model, given the context (bad_ctx=1, the default) or not (bad_ctx=0)."""
import sys, torch
import maskgit_inpaint.sampling as sampling
from maskgit_inpaint.compositing import paste_known
from maskgit_inpaint.model import load_model
from val_setup import raw_decodes, record, sampler_with, val_setup

name, bad_dir, kv = sys.argv[1], sys.argv[2], dict(a.split("=") for a in sys.argv[3:])
wa, bad_ctx, seed = float(kv.pop("wa")), kv.pop("bad_ctx", "1") == "1", int(kv.pop("seed", 0))
model, names, imgs, known, fid = val_setup()
wc = float(kv.pop("wc", model.sampler.guidance))
sampler = sampler_with(model.sampler, kv)
bad_fn = load_model(bad_dir, device="cpu")[0].logits_fn(None)


def guided(logits_fn, cur, unknown, guidance, V):
    free = torch.where(unknown, cur, torch.full_like(cur, V))
    batch = [cur] + ([free] if wc else [])
    out = logits_fn(torch.cat(batch))[..., :V].float().chunk(len(batch))
    l = out[0]
    bad = bad_fn(cur if bad_ctx else free)[..., :V].float()
    res = l + wa * (l - bad)
    return res + wc * (l - out[1]) if wc else res


sampling.guided_logits = guided  # inpaint_tokens calls it by its module-level name
raw, spi = raw_decodes(model, names, imgs, known, sampler, seed=seed)
res = {"name": name, "bad": bad_dir, "wa": wa, "wc": wc, "bad_ctx": bad_ctx, "seed": seed, "sampler": str(sampler),
       "s_per_image": round(spi, 3), "raw": fid(raw), "poisson": fid(paste_known(raw, imgs, known, "poisson"))}
record("autoguidance.jsonl", res)
