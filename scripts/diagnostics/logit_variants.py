"""Variants of the transformer's logits at sampling time, on the default model and the 747 val images
(seed 0, shipped sampler settings): FID raw and seamless composite.
Run from the repository root (after `maskgit masks ... --out out/val_masks`); appends to out/diag/logit_variants.jsonl.
usage: python scripts/diagnostics/logit_variants.py NAME [topk=K] [topp=P] [guide=W] [sampler key=value ...]
  topk / topp: sample only from the K most likely codes / the smallest set holding probability P;
  guide: the sampler's context guidance scale (`SamplerConfig.guidance`, `--guidance` of the CLI).
  The shipped default has guidance 3; `guide=0` gives the sampler without it."""
import sys, json, torch
from maskgit_inpaint.compositing import paste_known
from val_setup import raw_decodes, sampler_with, val_setup

name, kv = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
model, names, imgs, known, fid = val_setup()
topk, topp = int(kv.pop("topk", 0)), float(kv.pop("topp", 0))
kv["guidance"] = kv.pop("guide", "0")
sampler = sampler_with(model.sampler, kv)
net, V = model.transformer, model.codebook_size


class Variant(torch.nn.Module):
    def forward(self, cur):
        l = net(cur).float()[..., :V]
        if topk:
            kth = l.topk(topk, dim=-1).values[..., -1:]
            l = l.masked_fill(l < kth, -1e9)
        if topp:
            p = torch.softmax(l / max(sampler.temperature, 1e-6), -1)
            sp, idx = p.sort(-1, descending=True)
            drop = (sp.cumsum(-1) - sp) > topp
            l = l.masked_fill(drop.scatter(-1, idx, drop), -1e9)
        return l


wrap = Variant()
model.transformer = wrap
raw, spi = raw_decodes(model, names, imgs, known, sampler)
res = {"name": name, "topk": topk, "topp": topp, "guide": sampler.guidance, "sampler": str(sampler),
       "s_per_image": round(spi, 3), "raw": fid(raw), "poisson": fid(paste_known(raw, imgs, known, "poisson"))}
print(json.dumps(res), flush=True)
with open("out/diag/logit_variants.jsonl", "a") as f:
    f.write(json.dumps(res) + "\n")
