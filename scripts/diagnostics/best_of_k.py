"""Best-of-K: per image, keep the decode that matches the known pixels best within r pixels of the
hole (r = 2, 4, 64), then composite seamlessly and measure FID (and of the worst pick, as a check).
The candidates are raw decodes saved by one_setting.py (out/diag/raw_NAME.pt) from runs on the same
747 val images. usage: python scripts/diagnostics/best_of_k.py NAME1,NAME2,...  (e.g. t0.7,c8,c2,T12)"""
import sys, json, torch, torch.nn.functional as F
from maskgit_inpaint.experiments import load_eval_set, to_uint8
from maskgit_inpaint.evaluation import inception_features, frechet_distance, load_inception
from maskgit_inpaint.compositing import paste_known
torch.set_num_threads(1)
names, imgs, known = load_eval_set("../shared/datasets/cat-faces-64/val", "out/val_masks", 64)
inc = load_inception(device="cpu"); gt_f = torch.load("out/diag/gt_f.pt")
cands = sys.argv[1].split(",")
raws = torch.stack([torch.load(f"out/diag/raw_{c}.pt") for c in cands])  # K,N,3,H,W
hole = (~known)[:, None].float()
res = {}
for r in [2, 4, 64]:
    ring = (F.max_pool2d(hole, 2 * r + 1, 1, r) > 0).float() * (1 - hole)
    err = ((raws - imgs[None]).abs().mean(2, keepdim=True) * ring[None]).sum((2, 3, 4)) / ring.sum((1, 2, 3)).clamp(min=1)[None]
    pick = err.argmin(0)
    best = raws[pick, torch.arange(len(names))]
    worst = raws[err.argmax(0), torch.arange(len(names))]
    fid = lambda x: round(frechet_distance(inception_features(to_uint8(paste_known(x, imgs, known, "poisson")), inc), gt_f), 3)
    res[f"ring{r}"] = {"best": fid(best), "worst": fid(worst), "picks": torch.bincount(pick, minlength=len(cands)).tolist()}
    print(r, res[f"ring{r}"], flush=True)
print(json.dumps({"cands": cands, **res}))
