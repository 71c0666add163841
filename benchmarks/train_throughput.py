"""Stage-2 training throughput: ours (cached tokens) versus the seed's loop (encoding the images
through the tokenizer at every step), in fp32 and in the precision `auto` picks, one run.

    python benchmarks/train_throughput.py --preset small --device cpu
    python benchmarks/train_throughput.py --preset base --device cuda
    python benchmarks/train_throughput.py --smoke            # tiny preset, one batch (CI)

Both paths run the same optimiser step (AdamW, fused on CUDA) on the same transformer, under
bf16 autocast where the precision is bf16 (training's `precision: auto`, see
`training.config.default_precision`); the seed's loop additionally encodes the batch each step.
On CUDA it also reports MFU against a bf16 matmul peak measured in the same run. A
torch.profiler table of one step of ours goes to stderr; stdout gets one JSON line, with the
processor's name and flags.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import torch
import torch.nn.functional as F

from maskgit_inpaint.config import preset
from maskgit_inpaint.model import MaskGIT
from maskgit_inpaint.precision import auto_precision, describe_processor
from maskgit_inpaint.training import default_precision, mvtm_mask


def matmul_peak_tflops(dev, n=8192, iters=20) -> float:
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * iters / (time.perf_counter() - t0) / 1e12


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--profile-rows", type=int, default=20, help="rows of the profiler table (0 = none)")
    p.add_argument("--smoke", action="store_true", help="tiny preset, batch 2, one step: checks it runs")
    a = p.parse_args(argv)
    if a.smoke:
        a.preset, a.batch_size, a.steps = "tiny", 2, 1
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    gpu = dev.type == "cuda"
    bs = a.batch_size or (256 if gpu else 32)
    steps = a.steps or (30 if gpu else 6)
    model = MaskGIT(preset(a.preset)).to(dev)
    tf, tok = model.transformer.train(), model.tokenizer.eval()
    net = torch.compile(tf) if a.compile else tf
    opt = torch.optim.AdamW(tf.parameters(), lr=1e-4, fused=gpu or None)
    V = model.codebook_size
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    images = torch.randn(bs, 3, model.image_size, model.image_size, device=dev)
    cached = torch.randint(0, V, (bs, tf.cfg.num_tokens), device=dev)

    def autocast(prec):
        return torch.autocast(dev.type, dtype=torch.bfloat16) if prec == "bf16" else contextlib.nullcontext()

    def step(tokens, prec):
        mask = mvtm_mask(tokens)
        with autocast(prec):
            logits = net(torch.where(mask, torch.full_like(tokens, V), tokens))[..., :V]
        loss = F.cross_entropy(logits.float()[mask], tokens[mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def encode_step(prec):
        with torch.no_grad(), autocast(prec):
            tokens = tok.encode(images)
        step(tokens, prec)

    def run(fn, n):
        fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        return bs * n / (time.perf_counter() - t0)

    auto = auto_precision(dev, "training")
    params = sum(p.numel() for p in tf.parameters())
    n_tok, d, L = tf.cfg.num_tokens, tf.cfg.dim, tf.cfg.layers
    flops_per_img = 6 * params * n_tok + 12 * L * n_tok * n_tok * d  # fwd+bwd, with attention
    out = {"preset": a.preset, "device": str(dev), **describe_processor(dev), "threads": torch.get_num_threads(),
           "training_precision_auto": default_precision("auto", "gpu" if gpu else "cpu"),
           "batch_size": bs, "steps": steps, "compile": a.compile, "transformer_params": params}
    for prec in dict.fromkeys(("fp32", auto)):
        ours = run(lambda: step(cached, prec), steps)
        seed = run(lambda: encode_step(prec), max(1, steps // 3))
        out.update({f"ours_{prec}_images_per_s": round(ours, 2), f"seed_loop_{prec}_images_per_s": round(seed, 2),
                    f"speedup_{prec}": round(ours / seed, 2),
                    f"ours_{prec}_tflops": round(ours * flops_per_img / 1e12, 3)})
    out["ours_auto_over_seed_loop_fp32"] = round(out[f"ours_{auto}_images_per_s"] / out["seed_loop_fp32_images_per_s"], 2)
    if gpu:
        peak = matmul_peak_tflops(dev)
        out |= {"bf16_matmul_peak_tflops": round(peak, 1),
                "mfu": round(out[f"ours_{auto}_tflops"] / peak, 4)}
    if a.profile_rows:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(cached, auto)
        print(f"torch.profiler, one training step of ours, batch {bs}, precision {auto}:", file=sys.stderr)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.profile_rows), file=sys.stderr)
    out["torch"] = torch.__version__
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
