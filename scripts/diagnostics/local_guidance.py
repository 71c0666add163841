"""Context guidance against a partial context, on the default model and the 747 val images (seed 0,
shipped sampler settings): FID raw and seamless composite. The shipped guidance masks every known
token in its second pass (l_free); here only the known tokens within Chebyshev distance R of the
unknown ones (part=near) or only those farther away (part=far), so l - l_free is what that part of
the context adds.
Run from the repository root (after `maskgit masks ... --out out/val_masks`); appends to out/diag/local_guidance.jsonl.
usage: python scripts/diagnostics/local_guidance.py NAME part=near|far r=R [seed=S] [sampler key=value ...]"""
import sys, torch
import torch.nn.functional as F
import maskgit_inpaint.sampling as sampling
from maskgit_inpaint.compositing import paste_known
from val_setup import raw_decodes, record, sampler_with, val_setup

name, kv = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
part, r, seed = kv.pop("part"), int(kv.pop("r")), int(kv.pop("seed", 0))
model, names, imgs, known, fid = val_setup()
sampler = sampler_with(model.sampler, kv)


def guided(logits_fn, cur, unknown, guidance, V):
    if not guidance:
        return logits_fn(cur)[..., :V].float()
    s = int(unknown.shape[1] ** 0.5)
    grid = unknown.view(-1, 1, s, s).float()
    near = F.max_pool2d(grid, 2 * r + 1, stride=1, padding=r).view_as(unknown).bool() & ~unknown
    drop = near if part == "near" else ~unknown & ~near
    free = torch.where(drop, torch.full_like(cur, V), cur)
    cond, uncond = logits_fn(torch.cat([cur, free]))[..., :V].float().chunk(2)
    return cond + guidance * (cond - uncond)


sampling.guided_logits = guided  # inpaint_tokens calls it by its module-level name
raw, spi = raw_decodes(model, names, imgs, known, sampler, seed=seed)
res = {"name": name, "part": part, "r": r, "seed": seed, "sampler": str(sampler), "s_per_image": round(spi, 3),
       "raw": fid(raw), "poisson": fid(paste_known(raw, imgs, known, "poisson"))}
record("local_guidance.jsonl", res)
