"""Inpainting throughput: the seed's way versus ours, same model, inputs and steps.

    python benchmarks/inpaint_throughput.py --preset base --device cpu --steps 8

(a) seed style: one image at a time, fp32, the tokenizer decodes the image after every step,
    a Python loop per image, global RNG (as in the lab's reference implementation);
(b) ours: `MaskGIT.inpaint` batched, one decode at the end, SDPA attention, no host sync in
    the step loop, the transformer in bf16 on GPU (`--precision auto`), optional torch.compile.
On CPU it also times ours with the transformer in bf16 (`--precision bf16` of the CLI) and, with
--int8, with its linear layers dynamically quantised to int8; each reports the top-1 agreement of
its logits with fp32 on the masked positions of the same inputs (one forward pass; meaningful
with trained weights, --model).
With --model, "ours" also runs that model's own sampler settings (context guidance included,
against its weak transformer when it has one: twice the transformer's work per step) and splits that time into its stages (hole fill + encode,
the sampling loop, decode, blend), on CPU once more with the transformer in bf16; the speed-ups compare like with like, without guidance.
Prints one JSON line. Weights are random unless --model is given: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import replace

import torch

from maskgit_inpaint.config import preset
from maskgit_inpaint.compositing import paste_known
from maskgit_inpaint.masks import generate_masks, harmonic_fill, pixel_to_token_mask
from maskgit_inpaint.model import MaskGIT, resolve_precision
from maskgit_inpaint.sampling import SamplerConfig, inpaint_tokens
from maskgit_inpaint.schedules import gamma as gamma_fn


@torch.no_grad()
def seed_style_inpaint(model: MaskGIT, images01, known, cfg: SamplerConfig):
    """The lab's loop: per image, per step: predict, sample, Gumbel-rank, decode the image."""
    outs = []
    V = model.codebook_size
    for i in range(len(images01)):
        x = model.normalize(images01[i:i + 1]) * known[i:i + 1, None]
        z = model.tokenizer.encode(x)
        unknown = pixel_to_token_mask(known[i:i + 1], model.latent_size)
        n = int(unknown.sum())
        cur = torch.where(unknown, torch.full_like(z, V), z)
        masked = unknown.clone()
        for t in range(1, cfg.stop + 1):
            logits = model.transformer(cur)[..., :V]
            probs = torch.softmax(logits / max(cfg.temperature, 1e-6), -1)
            pred = torch.distributions.Categorical(probs=probs).sample()
            conf = torch.log(probs.gather(-1, pred[..., None]).squeeze(-1))
            g = -torch.log(-torch.log(torch.rand_like(conf)))
            conf = torch.where(masked, conf + cfg.choice_temperature * (1 - t / cfg.steps) * g,
                               torch.full_like(conf, math.inf))
            keep = math.floor(n * float(gamma_fn(cfg.gamma, t / cfg.steps)))
            keep = min(keep, int(masked.sum()) - 1) if t < cfg.stop else 0
            order = conf.argsort(-1)
            new_mask = torch.zeros_like(masked)
            if keep > 0:
                new_mask[0, order[0, :keep]] = True
            cur = torch.where(masked & ~new_mask, pred, cur)
            masked = new_mask
            img = model.tokenizer.decode(torch.where(masked, pred, cur))  # the seed decodes every step
        outs.append(img)
    return torch.cat(outs)


def timed(fn, repeats: int, sync):
    fn()  # warm-up (and compile)
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


@torch.no_grad()
def stage_times(model: MaskGIT, images01, known, cfg: SamplerConfig, bs: int, sync,
                precision: str | None = None) -> dict:
    """ms/image of each stage of `MaskGIT.inpaint` with the smooth hole fill, the same steps in order;
    `precision` is the transformer's (default: the model's)."""
    totals = dict.fromkeys(("fill_encode", "sampling", "decode", "blend"), 0.0)
    logits_fn = model.logits_fn(precision)
    weak_fn = model.logits_fn(precision, weak=True) if model.has_weak_transformer else None
    for i in range(0, len(images01), bs):
        x01, k = images01[i:i + bs], known[i:i + bs]
        t0 = time.perf_counter()
        tokens = model.tokenizer.encode(harmonic_fill(model.normalize(x01), k))
        unknown = pixel_to_token_mask(k, model.latent_size, threshold=cfg.token_threshold)
        sync(); t1 = time.perf_counter()
        res = inpaint_tokens(logits_fn, tokens, unknown, cfg, codebook_size=model.codebook_size, seed=i,
                             weak_logits_fn=weak_fn)
        sync(); t2 = time.perf_counter()
        out = model.decode(res.tokens, x01, k)
        sync(); t3 = time.perf_counter()
        paste_known(out, x01, k, model.blend)
        sync(); t4 = time.perf_counter()
        for name, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            totals[name] += dt
    return {name: round(1000 * v / len(images01), 2) for name, v in totals.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--model", help="model directory (overrides --preset)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--gamma", default=None, help="mask schedule (default: the model's, else cosine)")
    p.add_argument("--images", type=int, default=None, help="images for ours (default 64 CPU, 1024 GPU)")
    p.add_argument("--seed-images", type=int, default=None, help="images for the seed's way (default 8)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the transformer (ours)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--int8", action="store_true", help="also time int8 dynamic quantisation (CPU)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    gpu = dev.type == "cuda"
    n = a.images or (1024 if gpu else 64)
    n_seed = a.seed_images or (32 if gpu else 8)
    bs = a.batch_size or (512 if gpu else 64)
    model = (MaskGIT.from_dir(a.model, device=dev) if a.model else MaskGIT(preset(a.preset)).to(dev).eval())
    # Like for like with the seed's loop: the model's schedule and temperatures, no guidance.
    own = replace(model.sampler, steps=a.steps, sweet_spot=None, guidance_steps=None,
                  **({"gamma": a.gamma} if a.gamma else {})) if a.model else None
    cfg = (replace(own, guidance=0.0) if own
           else SamplerConfig(gamma=a.gamma or "cosine", steps=a.steps, sweet_spot=a.steps))
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, model.image_size, model.image_size, generator=g).to(dev)
    known = torch.from_numpy(generate_masks("random-walk", n, model.image_size, seed=0)).to(dev)
    sync = torch.cuda.synchronize if gpu else (lambda: None)

    t_seed = timed(lambda: seed_style_inpaint(model, images[:n_seed], known[:n_seed], cfg), 1, sync) / n_seed

    if a.compile:
        model.transformer = torch.compile(model.transformer, dynamic=False)

    def ours(precision="auto", sampler=cfg):
        for i in range(0, n, bs):
            model.inpaint(images[i:i + bs], known[i:i + bs], sampler, seed=i, precision=precision)

    t_ours = timed(ours, 1 if not gpu else 3, sync) / n
    extra = {"ours_precision": resolve_precision("auto", dev)}
    if own is not None and own.guidance:
        ours(sampler=own)  # warm-up
        stages = stage_times(model, images, known, own, bs, sync)
        extra.update(model_sampler=str(own), model_sampler_ms_per_image=round(sum(stages.values()), 2),
                     model_sampler_stages_ms_per_image=stages)
        if not gpu:  # the same with `--precision bf16`, the CLI's faster CPU option
            ours("bf16", own)  # warm-up, as for fp32 above
            stages = stage_times(model, images, known, own, bs, sync, precision="bf16")
            extra.update(model_sampler_bf16_ms_per_image=round(sum(stages.values()), 2),
                         model_sampler_bf16_stages_ms_per_image=stages)
    if not gpu:
        V = model.codebook_size
        x = model.encode(images[:bs])
        x = torch.where(torch.rand(x.shape, generator=g) < 0.5, torch.full_like(x, V), x)
        with torch.no_grad():
            ref = model.transformer(x)[..., :V].argmax(-1)

        def agreement(fn):
            with torch.no_grad():
                return round(float((fn(x)[..., :V].argmax(-1) == ref)[x == V].float().mean()), 4)

        t_bf16 = timed(lambda: ours("bf16"), 1, sync) / n
        with torch.autocast("cpu", dtype=torch.bfloat16):
            extra["bf16_top1_agreement"] = agreement(model.transformer)
        extra.update(ours_bf16_images_per_s=round(1 / t_bf16, 3), ours_bf16_ms_per_image=round(1000 * t_bf16, 2),
                     speedup_bf16=round(t_seed / t_bf16, 2))
        if a.int8:
            import copy
            import warnings

            fp32 = model.transformer
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao's deprecation notice
                model.transformer = torch.ao.quantization.quantize_dynamic(
                    copy.deepcopy(fp32), {torch.nn.Linear}, dtype=torch.qint8)
            t_int8 = timed(lambda: ours("fp32"), 1, sync) / n
            extra["int8_top1_agreement"] = agreement(model.transformer)
            model.transformer = fp32
            extra.update(ours_int8_images_per_s=round(1 / t_int8, 3), ours_int8_ms_per_image=round(1000 * t_int8, 2),
                         speedup_int8=round(t_seed / t_int8, 2))

    print(json.dumps({
        "preset": a.model or a.preset, "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if gpu
        else platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "steps": a.steps,
        "gamma": cfg.gamma, "images_seed": n_seed, "images_ours": n, "batch_size": bs, "compile": a.compile,
        "seed_style_images_per_s": round(1 / t_seed, 3), "seed_style_ms_per_image": round(1000 * t_seed, 2),
        "ours_images_per_s": round(1 / t_ours, 3), "ours_ms_per_image": round(1000 * t_ours, 2),
        "speedup": round(t_seed / t_ours, 2), **extra, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
