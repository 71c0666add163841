"""Guidance against the transformer's prior instead of a second pass: l + w * (l - l_prior), where
l_prior is the prediction for an all-masked grid (one forward pass for the whole run, the same for
every image), on the default model and the 747 val images (seed 0, shipped sampler settings with
its own context guidance off): FID raw and seamless composite.
Run from the repository root (after `maskgit masks ... --out out/val_masks`); appends to out/diag/prior_guidance.jsonl.
usage: python scripts/diagnostics/prior_guidance.py NAME w=W"""
import sys, json, torch
from maskgit_inpaint.compositing import paste_known
from val_setup import raw_decodes, sampler_with, val_setup

name, kv = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
w = float(kv.pop("w"))
model, names, imgs, known, fid = val_setup()
kv["guidance"] = "0"
sampler = sampler_with(model.sampler, kv)
net, V, N = model.transformer, model.codebook_size, model.latent_size ** 2
with torch.no_grad():
    prior = net(torch.full((1, N), V)).float()[..., :V]


class PriorGuided(torch.nn.Module):
    def forward(self, cur):
        l = net(cur).float()[..., :V]
        return l + w * (l - prior)


model.transformer = PriorGuided()
raw, spi = raw_decodes(model, names, imgs, known, sampler)
res = {"name": name, "w": w, "sampler": str(sampler), "s_per_image": round(spi, 3), "raw": fid(raw),
       "poisson": fid(paste_known(raw, imgs, known, "poisson"))}
print(json.dumps(res), flush=True)
with open("out/diag/prior_guidance.jsonl", "a") as f:
    f.write(json.dumps(res) + "\n")
