"""Seamless blend: Jacobi sweeps per level (8/32/128) and the sampling temperature (0.5/0.7/1.0) on the
747 val images. Run from the repository root (after `maskgit masks ... --out out/val_masks`); writes out/diag/."""
import sys, time, json, os, torch
from dataclasses import replace
from maskgit_inpaint.model import load_model
from maskgit_inpaint.experiments import load_eval_set, inpaint_all, to_uint8
from maskgit_inpaint.evaluation import inception_features, frechet_distance, load_inception
from maskgit_inpaint.compositing import poisson_paste

model, _ = load_model(None, device="cpu")
names, imgs, known = load_eval_set("../shared/datasets/cat-faces-64/val", "out/val_masks", 64)
inc = load_inception(device="cpu")
os.makedirs("out/diag", exist_ok=True)
gt_f = torch.load("out/diag/gt_f.pt") if os.path.exists("out/diag/gt_f.pt") else inception_features(to_uint8(imgs), inc)
torch.save(gt_f, "out/diag/gt_f.pt")
def fid(x): return round(frechet_distance(inception_features(to_uint8(x), inc), gt_f), 3)
def poisson(raw, iters):
    return poisson_paste(raw, imgs, known, iters).clamp(0, 1)
res = {}
for temp in [0.7, 0.5, 1.0]:
    p = f"out/diag/raw_t{temp}.pt"
    if os.path.exists(p):
        raw = torch.load(p)
    else:
        raw, spi = inpaint_all(model, imgs, known, names, replace(model.sampler, temperature=temp), 0)
        torch.save(raw, p)
    iters_list = [8, 32, 128] if temp == 0.7 else [32]
    for it in iters_list:
        res[f"t{temp}_it{it}"] = fid(poisson(raw, it))
        print(res, flush=True)
