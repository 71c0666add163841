"""Stage-2 training throughput: cached tokens versus encoding images at every step (the seed's way).

    python benchmarks/train_throughput.py --preset small --device cpu
    python benchmarks/train_throughput.py --preset base --device cuda

Both paths run the same optimiser step (AdamW, fused on CUDA; bf16 autocast) on the same
transformer; the seed's way additionally encodes the batch through the tokenizer each step.
On CUDA it also reports MFU against a bf16 matmul peak measured in the same run.
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from maskgit_inpaint.config import preset
from maskgit_inpaint.model import MaskGIT
from maskgit_inpaint.training import mvtm_mask


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


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
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

    def step(tokens):
        mask = mvtm_mask(tokens)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            logits = net(torch.where(mask, torch.full_like(tokens, V), tokens))[..., :V]
        loss = F.cross_entropy(logits.float()[mask], tokens[mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def encode_step():
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
            tokens = tok.encode(images)
        step(tokens)

    def run(fn, n):
        fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        return bs * n / (time.perf_counter() - t0)

    cached_ips = run(lambda: step(cached), steps)
    seed_ips = run(encode_step, max(2, steps // 3))
    params = sum(p.numel() for p in tf.parameters())
    n_tok, d, L = tf.cfg.num_tokens, tf.cfg.dim, tf.cfg.layers
    flops_per_img = 6 * params * n_tok + 12 * L * n_tok * n_tok * d  # fwd+bwd, with attention
    out = {"preset": a.preset, "device": str(dev), "batch_size": bs, "compile": a.compile,
           "transformer_params": params, "cached_tokens_images_per_s": round(cached_ips, 2),
           "encode_every_step_images_per_s": round(seed_ips, 2), "speedup": round(cached_ips / seed_ips, 2),
           "achieved_tflops": round(cached_ips * flops_per_img / 1e12, 3), "torch": torch.__version__}
    if gpu:
        peak = matmul_peak_tflops(dev)
        out |= {"device_name": torch.cuda.get_device_name(dev), "bf16_matmul_peak_tflops": round(peak, 1),
                "mfu": round(cached_ips * flops_per_img / 1e12 / peak, 4)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
