"""Diagnostics behind the model card's seamless-compositing table: a second inpainting pass on the
re-encoded composite, and the seamless blend with and without smoothing the difference first.
Run from the repository root after `maskgit masks --kind random-walk --seed 0 --count 747 --out out/val_masks`:
    python scripts/diagnostics/second_pass_and_blend.py [LIMIT]"""
import sys, time, json, torch
import torch.nn.functional as F
from maskgit_inpaint.model import load_model
from maskgit_inpaint.experiments import load_eval_set
from maskgit_inpaint.evaluation import inception_features, frechet_distance, load_inception
from maskgit_inpaint.compositing import paste_known
from maskgit_inpaint.masks import harmonic_fill, pixel_to_token_mask
from maskgit_inpaint.sampling import inpaint_tokens, seed_for_name
from maskgit_inpaint.model import transformer_autocast

limit = int(sys.argv[1]) if len(sys.argv) > 1 else None
torch.manual_seed(0)
model, _ = load_model(None, device="cpu")
names, imgs, known = load_eval_set("../shared/datasets/cat-faces-64/val", "out/val_masks", 64, limit)
inc = load_inception(device="cpu")
t0 = time.time()
gt_f = inception_features(imgs, inc)
print("gt feats", time.time() - t0, flush=True)

def run_pass(fill_img, kn, seeds):
    x = model.normalize(fill_img)
    tokens = model.tokenizer.encode(x)
    unknown = pixel_to_token_mask(kn, model.latent_size)
    def lf(cur):
        with transformer_autocast("fp32", "cpu"):
            return model.transformer(cur)
    res = inpaint_tokens(lf, tokens, unknown, model.sampler, codebook_size=model.codebook_size, seed=seeds)
    return model.decode(res.tokens, fill_img, kn), tokens, unknown

def poisson(raw, img, kn, smooth=0):
    """The package's seamless blend; with `smooth`, the difference is first averaged over
    (2 smooth + 1)^2 known pixels (a variant that did worse)."""
    if not smooth:
        return paste_known(raw, img, kn, "poisson")
    k = kn[:, None].float()
    r = (img - raw) * k
    if smooth:
        num = F.avg_pool2d(r, 2 * smooth + 1, 1, smooth, count_include_pad=False)
        den = F.avg_pool2d(k, 2 * smooth + 1, 1, smooth, count_include_pad=False)
        r = torch.where(k > 0, num / den.clamp(min=1e-6), r)
    corr = harmonic_fill(r, kn)
    return torch.where(kn[:, None], img, (raw + corr).clamp(0, 1))

outs = {k: [] for k in ["raw1", "comp1", "pois1", "pois1s", "raw2", "comp2", "pois2"]}
changed = {"p1": [0, 0], "p2": [0, 0]}
t0 = time.time()
with torch.no_grad():
    for i in range(0, len(names), 64):
        sl = slice(i, i + 64)
        im, kn = imgs[sl], known[sl]
        seeds = torch.tensor([seed_for_name(0, n) for n in names[sl]])
        full = model.encode(im)
        raw1, tok1, unk = run_pass(model.denormalize(harmonic_fill(model.normalize(im), kn)), kn, seeds)
        comp1 = torch.where(kn[:, None], im, raw1)
        raw2, tok2, _ = run_pass(comp1, kn, seeds)
        comp2 = torch.where(kn[:, None], im, raw2)
        for key, tk in (("p1", tok1), ("p2", tok2)):
            changed[key][0] += int(((tk != full) & ~unk).sum()); changed[key][1] += int((~unk).sum())
        outs["raw1"].append(raw1); outs["comp1"].append(comp1)
        outs["pois1"].append(poisson(raw1, im, kn)); outs["pois1s"].append(poisson(raw1, im, kn, 2))
        outs["raw2"].append(raw2); outs["comp2"].append(comp2); outs["pois2"].append(poisson(raw2, im, kn))
        print(i, time.time() - t0, flush=True)
res = {k: frechet_distance(inception_features(torch.cat(v), inc), gt_f) for k, v in outs.items()}
res["changed"] = {k: v[0] / v[1] for k, v in changed.items()}
print(json.dumps(res, indent=1))
