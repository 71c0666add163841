"""One sampler/pipeline setting of the default model on the 747 val images: FID raw, plain paste, seamless.
Run from the repository root (after `maskgit masks ... --out out/val_masks`); writes out/diag/.
usage: python scripts/diagnostics/one_setting.py NAME key=value ... (keys: temperature, choice_temperature, steps, gamma, sweet_spot, guidance, guidance_schedule, token_threshold, dilate)"""
import sys, json, torch
from maskgit_inpaint.compositing import paste_known
from val_setup import raw_decodes, sampler_with, val_setup

name, kv = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
model, names, imgs, known, fid = val_setup()
dilate = int(kv.pop("dilate", 0))
sampler = sampler_with(model.sampler, kv)
raw, spi = raw_decodes(model, names, imgs, known, sampler, dilate=dilate)
torch.save(raw, f"out/diag/raw_{name}.pt")
res = {"name": name, "sampler": str(sampler), "dilate": dilate, "s_per_image": round(spi, 3), "raw": fid(raw),
       "paste": fid(paste_known(raw, imgs, known, "paste")), "poisson": fid(paste_known(raw, imgs, known, "poisson"))}
print(json.dumps(res), flush=True)
with open("out/diag/cfg_results.jsonl", "a") as f:
    f.write(json.dumps(res) + "\n")
