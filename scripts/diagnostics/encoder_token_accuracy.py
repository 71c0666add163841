"""How often the encoder's token of the smooth-filled image, the guided transformer's most likely code,
and the two combined (`encoder_prior.py`'s prior at several lam) give the full image's token, by how
much of the token's patch is hole: the default model, the first 128 val images with out/val_masks,
the first sampling step (every generated token still masked), sampling temperature 0.7.
Run from the repository root (after `maskgit masks ... --out out/val_masks`); prints a table.
usage: PYTHONPATH=scripts/diagnostics python scripts/diagnostics/encoder_token_accuracy.py"""
import torch
import torch.nn.functional as F
from maskgit_inpaint.experiments import load_eval_set
from maskgit_inpaint.masks import harmonic_fill, pixel_to_token_mask
from maskgit_inpaint.model import load_model
from maskgit_inpaint.sampling import guided_logits
from val_setup import fsq_latents

model, _ = load_model(None, device="cpu")
_, imgs, known = load_eval_set("../shared/datasets/cat-faces-64/val", "out/val_masks", 64)
imgs, known = imgs[:128], known[:128]
s, sampler = model.latent_size, model.sampler
z, digits = fsq_latents(model, imgs, known)
dist = ((z[:, :, None] - digits) ** 2).sum(-1)
with torch.no_grad():
    tok = model.tokenizer.encode(harmonic_fill(model.normalize(imgs), known))
    true = model.tokenizer.encode(model.normalize(imgs))
    unk = pixel_to_token_mask(known, s, threshold=sampler.token_threshold)
    hole = 1 - F.avg_pool2d(known[:, None].float(), 64 // s).flatten(1)
    cur = torch.where(unk, torch.full_like(tok, model.codebook_size), tok)
    logits = guided_logits(model.logits_fn(None), cur, unk, sampler.guidance, model.codebook_size)
print("hole share | tokens | encoder token right | lam: transformer (+ prior) top-1 right, NLL of the true token")
for lo, hi in ((0.25, 0.5), (0.5, 0.75), (0.75, 0.99), (0.99, 1.01)):
    sel = unk & (hole > lo) & (hole <= hi)
    t = true[sel]
    cells = []
    for lam in (0, 1, 3, 10):
        lp = torch.log_softmax(logits[sel] / sampler.temperature - lam * (1 - hole[sel])[:, None] * dist[sel], -1)
        cells.append(f"{lam}: {(lp.argmax(-1) == t).float().mean():.3f}, {-lp.gather(-1, t[:, None]).mean():.2f}")
    print(f"({lo}, {min(hi, 1)}] | {int(sel.sum())} | {(tok[sel] == t).float().mean():.3f} | " + "; ".join(cells))
