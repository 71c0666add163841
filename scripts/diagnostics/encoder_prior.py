"""A soft prior from the encoder for partly known generated tokens, on the default model and the
747 val images (seed 0, shipped sampler settings): FID raw and seamless composite.
A generated token whose patch is partly known gets, on top of the transformer's (guided) logits,
the log-evidence -lam * known_share * |z - digits(c)|^2 for every code c, where z is the encoder's
bounded FSQ latent of the hole-filled image (in digit units) and known_share the known part of its
4x4 patch; fully hole tokens are unchanged. The evidence is added after the temperature.
Run from the repository root (after `maskgit masks ... --out out/val_masks`); appends to out/diag/encoder_prior.jsonl.
usage: python scripts/diagnostics/encoder_prior.py NAME lam=L [sampler key=value ...]"""
import sys, json, time, torch
import torch.nn.functional as F
import maskgit_inpaint.sampling as sampling
from maskgit_inpaint.compositing import paste_known
from maskgit_inpaint.masks import harmonic_fill
from maskgit_inpaint.sampling import seed_for_name
from val_setup import sampler_with, val_setup

name, kv = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
lam = float(kv.pop("lam"))
model, names, imgs, known, fid = val_setup()
sampler = sampler_with(model.sampler, kv)
tk, q = model.tokenizer, model.tokenizer.quant
idx = torch.arange(model.codebook_size)
code_digits = ((idx[:, None] // q.basis) % q.levels.long()).float() - torch.div(q.levels, 2, rounding_mode="floor")
orig = sampling.guided_logits
prior = {}


def with_prior(logits_fn, cur, unknown, guidance, V):
    return orig(logits_fn, cur, unknown, guidance, V) + sampler.temperature * prior["p"]


sampling.guided_logits = with_prior
t0, out = time.time(), []
for i in range(0, len(names), 64):
    sl = slice(i, i + 64)
    with torch.no_grad():
        h = tk.quant_conv(tk.encoder(harmonic_fill(model.normalize(imgs[sl]), known[sl])))
        b, d, s, _ = h.shape
        z = q._bound(h.permute(0, 2, 3, 1).reshape(b, s * s, d).float())
        known_share = F.avg_pool2d(known[sl][:, None].float(), 64 // s).reshape(b, -1)
        prior["p"] = -lam * known_share[..., None] * ((z[:, :, None] - code_digits) ** 2).sum(-1)
    seeds = torch.tensor([seed_for_name(0, n) for n in names[sl]])
    out.append(model.inpaint(imgs[sl], known[sl], sampler, seed=seeds, composite=False).images)
raw, spi = torch.cat(out), (time.time() - t0) / len(names)
res = {"name": name, "lam": lam, "sampler": str(sampler), "s_per_image": round(spi, 3), "raw": fid(raw),
       "poisson": fid(paste_known(raw, imgs, known, "poisson"))}
print(json.dumps(res), flush=True)
with open("out/diag/encoder_prior.jsonl", "a") as f:
    f.write(json.dumps(res) + "\n")
