"""What the diagnostics share: the default model, the val images with out/val_masks, the Inception
network and the val images' features (cached in out/diag/gt_f.pt), and an FID helper."""
import json
import os
import time
import torch
from maskgit_inpaint.model import load_model
from maskgit_inpaint.experiments import load_eval_set, to_uint8
from maskgit_inpaint.evaluation import inception_features, frechet_distance, load_inception


def val_setup():
    """(model, names, imgs, known, fid) where fid(images01) is the FID against the val images."""
    model, _ = load_model(None, device="cpu")
    names, imgs, known = load_eval_set("../shared/datasets/cat-faces-64/val", "out/val_masks", 64)
    inc = load_inception(device="cpu")
    os.makedirs("out/diag", exist_ok=True)
    if not os.path.exists("out/diag/gt_f.pt"):
        torch.save(inception_features(to_uint8(imgs), inc), "out/diag/gt_f.pt")
    gt_f = torch.load("out/diag/gt_f.pt")

    def fid(x):
        return round(frechet_distance(inception_features(to_uint8(x), inc), gt_f), 3)

    return model, names, imgs, known, fid


SAMPLER_KEYS = {"steps": int, "sweet_spot": int, "temperature": float, "choice_temperature": float, "gamma": str,
                "guidance": float, "guidance_schedule": str, "token_threshold": float,
                "weak_guidance": lambda x: x.lower() in ("1", "true", "on")}


def sampler_with(base, kv: dict):
    """`base` (a SamplerConfig) with the key=value strings of a command line applied."""
    from dataclasses import replace

    return replace(base, **{k: SAMPLER_KEYS[k](x) for k, x in kv.items()})


def raw_decodes(model, names, imgs, known, sampler, seed=0, on_batch=None, **inpaint_kw):
    """(raw decodes of every val image with `seed`, seconds per image), in batches of 64;
    `on_batch(slice)`, if given, runs before each batch (for per-batch state of a patched sampler)."""
    from maskgit_inpaint.sampling import seed_for_name

    t0 = time.time()
    out = []
    for i in range(0, len(names), 64):
        sl = slice(i, i + 64)
        if on_batch:
            on_batch(sl)
        seeds = torch.tensor([seed_for_name(seed, n) for n in names[sl]])
        out.append(model.inpaint(imgs[sl], known[sl], sampler, seed=seeds, composite=False, **inpaint_kw).images)
    return torch.cat(out), (time.time() - t0) / len(names)


def record(jsonl: str, res: dict) -> None:
    """Print one result line and append it to out/diag/`jsonl`."""
    print(json.dumps(res), flush=True)
    with open(f"out/diag/{jsonl}", "a") as f:
        f.write(json.dumps(res) + "\n")


def fsq_latents(model, imgs, known):
    """(z, code_digits): the encoder's bounded FSQ latents of the smooth-filled images, (B, N, d) in
    digit units centred on 0, and every code's digits on the same scale, (codebook_size, d)."""
    from maskgit_inpaint.masks import harmonic_fill

    tk, q = model.tokenizer, model.tokenizer.quant
    with torch.no_grad():
        h = tk.quant_conv(tk.encoder(harmonic_fill(model.normalize(imgs), known)))
    b, d = h.shape[:2]
    z = q._bound(h.permute(0, 2, 3, 1).reshape(b, -1, d).float())
    idx = torch.arange(model.codebook_size)
    digits = ((idx[:, None] // q.basis) % q.levels.long()).float() - torch.div(q.levels, 2, rounding_mode="floor")
    return z, digits
