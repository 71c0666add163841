"""Inpainting throughput: the seed's loop versus ours, same model, inputs, steps and sampler, one run.

    python benchmarks/inpaint_throughput.py --preset base --device cpu --steps 8
    python benchmarks/inpaint_throughput.py --smoke          # tiny preset, one small batch (CI)

(a) the seed's loop: one image at a time, fp32, the tokenizer decodes the image after every
    step, a Python loop per image, global RNG (the lab's reference implementation), no guidance;
(b) ours: `InpaintPipeline.generate` batched, one decode at the end, the last block and the output head
    only at masked positions, with the same sampler (no guidance), in fp32, in the precision
    `auto` picks on this processor and in bf16; optionally torch.compile'd (in bf16).
With --model, ours also runs the model's own settings (its guidance included: twice the
transformer's work per step), split into stages (hole fill + encode, sampling, decode, blend).
A torch.profiler table of one batch of ours (auto precision) goes to stderr; stdout gets one
JSON line, with the processor's name and flags. Weights are random unless --model is given:
speed does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from maskgit_inpaint.compositing import paste_known
from maskgit_inpaint.config import preset
from maskgit_inpaint.masks import generate_masks, harmonic_fill, pixel_to_token_mask
from maskgit_inpaint.model import MaskGIT
from maskgit_inpaint.pipeline import InpaintPipeline
from maskgit_inpaint.precision import auto_precision, describe_processor
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
        img = None
        for t in range(1, cfg.stop + 1):
            logits = model.transformer(cur)[..., :V]
            probs = torch.softmax(logits / max(cfg.token_temperature, 1e-6), -1)
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


def timed(fn, repeats: int, sync, warmup: bool = True):
    if warmup:
        fn()  # warm-up (and compile)
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


@torch.no_grad()
def stage_times(model: MaskGIT, images01, known, cfg, bs: int, sync, precision: str) -> dict:
    """ms/image of each stage of `InpaintPipeline.generate` (smooth hole fill), the same steps in order."""
    totals = dict.fromkeys(("fill_encode", "sampling", "decode", "blend"), 0.0)
    logits_fn = model.logits_fn(precision)
    weak_fn = model.logits_fn(precision, weak=True) if model.has_weak_transformer else None
    for i in range(0, len(images01), bs):
        x01, k = images01[i:i + bs], known[i:i + bs]
        t0 = time.perf_counter()
        tokens = model.per_image(model.tokenizer.encode, harmonic_fill(model.normalize(x01), k))
        unknown = pixel_to_token_mask(k, model.latent_size, threshold=cfg.token_threshold)
        sync(); t1 = time.perf_counter()
        res = inpaint_tokens(logits_fn, tokens, unknown, cfg, codebook_size=model.codebook_size, seed=i,
                             weak_logits_fn=weak_fn)
        sync(); t2 = time.perf_counter()
        out = model.decode(res.tokens, x01, k, cfg.decode_known, precision)
        sync(); t3 = time.perf_counter()
        paste_known(out, x01, k, cfg.blend)
        sync(); t4 = time.perf_counter()
        for name, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            totals[name] += dt
    return {name: round(1000 * v / len(images01), 2) for name, v in totals.items()}


def profile_table(fn, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--model", help="model directory (overrides --preset)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--gamma", default=None, help="mask schedule (default: the model's, else cosine)")
    p.add_argument("--images", type=int, default=None, help="images for ours (default 64 CPU, 1024 GPU)")
    p.add_argument("--seed-images", type=int, default=None, help="images for the seed's loop (default 8)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="also time ours with the transformer torch.compile'd")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--profile-rows", type=int, default=20, help="rows of the profiler table (0 = none)")
    p.add_argument("--smoke", action="store_true", help="tiny preset, a batch of 2, 2 steps: checks it runs")
    a = p.parse_args(argv)
    if a.smoke:
        a.preset, a.model, a.steps = "tiny", None, 2
        a.images, a.seed_images, a.batch_size = 2, 1, 2
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    gpu = dev.type == "cuda"
    n = a.images or (1024 if gpu else 64)
    n_seed = a.seed_images or (32 if gpu else 8)
    bs = a.batch_size or (512 if gpu else 64)
    model = (MaskGIT.from_dir(a.model, device=dev) if a.model else MaskGIT(preset(a.preset)).to(dev).eval())
    auto = auto_precision(dev)
    # Like for like with the seed's loop: the model's schedule and temperatures, no guidance.
    own = model.default_settings.override(steps=a.steps, sweet_spot=a.steps, gamma=a.gamma)
    pipe = InpaintPipeline(model)
    cfg = own.override(guidance=0.0, guidance_steps=None)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, model.image_size, model.image_size, generator=g).to(dev)
    known = torch.from_numpy(generate_masks("random-walk", n, model.image_size, seed=0)).to(dev)
    sync = torch.cuda.synchronize if gpu else (lambda: None)

    def ours(precision, sampler=cfg):
        for i in range(0, n, bs):
            pipe.generate(images[i:i + bs], known[i:i + bs], sampler, seed=i, precision=precision)

    t_seed = timed(lambda: seed_style_inpaint(model, images[:n_seed], known[:n_seed], cfg), 1, sync,
                   warmup=False) / n_seed
    out = {"preset": a.model or a.preset, "device": str(dev), **describe_processor(dev),
           "threads": torch.get_num_threads(), "steps": a.steps, "gamma": cfg.gamma,
           "images_seed": n_seed, "images_ours": n, "batch_size": bs,
           "seed_loop_ms_per_image": round(1000 * t_seed, 2)}
    for prec in dict.fromkeys(("fp32", auto, "bf16")):
        t = timed(lambda: ours(prec), 1, sync) / n
        out[f"ours_{prec}_ms_per_image"] = round(1000 * t, 2)
        out[f"speedup_{prec}"] = round(t_seed / t, 2)
    out["speedup_auto"] = out[f"speedup_{auto}"]
    if a.compile:
        eager = model.transformer
        t0 = time.perf_counter()
        model.transformer = torch.compile(eager, dynamic=True)
        ours("bf16")  # compiles
        out["compile_s"] = round(time.perf_counter() - t0, 1)
        t = timed(lambda: ours("bf16"), 1, sync, warmup=False) / n
        out.update({"ours_bf16_compiled_ms_per_image": round(1000 * t, 2),
                    "speedup_bf16_compiled": round(t_seed / t, 2)})
        model.transformer = eager
    if own.guidance:  # the model's own settings, guidance included, by stage
        for prec in dict.fromkeys(("fp32", auto, "bf16")):
            ours(prec, own)  # warm-up
            stages = stage_times(model, images, known, own, bs, sync, prec)
            out[f"own_settings_{prec}_ms_per_image"] = round(sum(stages.values()), 2)
            out[f"own_settings_{prec}_stages_ms_per_image"] = stages
        out["own_settings"] = str(own)
    if a.profile_rows:
        print(f"torch.profiler, ours, one batch of {min(bs, n)}, precision {auto}:", file=sys.stderr)
        print(profile_table(lambda: pipe.generate(images[:bs], known[:bs], cfg, precision=auto), a.profile_rows),
              file=sys.stderr)
    out["torch"] = torch.__version__
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
