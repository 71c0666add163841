"""How much could a hole-robust encoder gain? The default model on the 747 val images (sqrt, T = 8,
seed 0) with the known tokens taken from the full image instead of from the hole-filled one; the
hole tokens still come from the transformer. Prints the share of known tokens the hole-filled
encoding gets right, and FID raw / seamless composite. Run from the repository root after
`maskgit masks --kind random-walk --seed 0 --count 747 --out out/val_masks`; caches out/diag/gt_f.pt."""
import json, torch
from maskgit_inpaint.compositing import paste_known
from maskgit_inpaint.sampling import seed_for_name
from maskgit_inpaint.masks import pixel_to_token_mask
from val_setup import val_setup

model, names, imgs, known, fid = val_setup()
orig = model.tokenizer.encode
out, right, total = [], 0.0, 0.0
for i in range(0, len(names), 64):
    sl = slice(i, i + 64)
    full = orig(model.normalize(imgs[sl]))
    unk = pixel_to_token_mask(known[sl], model.latent_size)

    def enc(x, full=full, unk=unk):  # stands in for the encoder inside model.inpaint
        global right, total
        t = orig(x)
        right += float(((t == full) & ~unk).sum())
        total += float((~unk).sum())
        return torch.where(unk, t, full)

    model.tokenizer.encode = enc
    seeds = torch.tensor([seed_for_name(0, n) for n in names[sl]])
    out.append(model.inpaint(imgs[sl], known[sl], seed=seeds, composite=False).images)
raw = torch.cat(out)
print(json.dumps({"known_tokens_right_with_harmonic_fill": round(right / total, 4), "raw": fid(raw),
                  "poisson": fid(paste_known(raw, imgs, known, "poisson"))}), flush=True)
