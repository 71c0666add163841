"""`maskgit train-tokenizer`, `train` and `export`."""
from __future__ import annotations

import argparse

from ..config import inference_settings, resolve


def _train_config(args, kind: str) -> dict:
    overrides = list(args.set or [])
    section = f"{kind}_training"
    for key in ("max_steps", "max_epochs", "batch_size", "accumulate", "devices", "num_nodes", "strategy"):
        v = getattr(args, key, None)
        if v is not None:
            overrides.append(f"{section}.{key}={v}")
    if getattr(args, "decoder_only", False):
        overrides.append(f"{section}.freeze_encoder=true")
    if getattr(args, "widen_decoder", None):
        overrides.append(f"{section}.widen_decoder={args.widen_decoder}")
    for key in ("init_decoder", "init_disc"):
        if getattr(args, key, None):
            overrides.append(f"{section}.{key}={getattr(args, key)}")
    overrides.append(f"data.train={args.data}")
    if args.val:
        overrides.append(f"data.val={args.val}")
    # a warm start keeps the init model's sampler, hole fill and blend: its export inpaints as it did
    base = inference_settings(args.init) if getattr(args, "init", None) and not args.resume else None
    return resolve(None if args.resume else (args.preset or "small"), args.config, overrides, base)


def cmd_train_tokenizer(args) -> int:
    from ..training import train_tokenizer

    run = train_tokenizer(_train_config(args, "tokenizer"), args.out, resume=args.resume,
                          accelerator=args.accelerator, init=args.init, overwrite=args.overwrite)
    print(f"tokenizer run in {run}; export it with: maskgit export {run} --out MODEL_DIR")
    return 0


def cmd_train(args) -> int:
    from ..training import train_transformer

    run = train_transformer(_train_config(args, "transformer"), args.out, args.tokenizer, resume=args.resume,
                            accelerator=args.accelerator, init=args.init, overwrite=args.overwrite)
    print(f"transformer run in {run}; export it with: maskgit export {run} --out MODEL_DIR")
    return 0


def cmd_export(args) -> int:
    import torch

    from ..training import export_decoder_parts, export_run

    dtype = torch.float16 if args.fp16 else None
    if args.decoder_parts:
        if args.weak or args.transformer_from:
            raise ValueError("--weak and --transformer-from make a model directory; --decoder-parts writes only a "
                             "tokenizer run's decoder side")
        files = export_decoder_parts(args.run, args.out, which=args.which or "last", dtype=dtype)
        print("wrote " + ", ".join(str(f) for f in files))
        return 0
    export_run(args.run, args.out, which=args.which or "best", dtype=dtype, weak=args.weak,
               transformer_from=args.transformer_from)
    print(f"wrote model directory {args.out}")
    return 0


def _add_train_args(q: argparse.ArgumentParser) -> None:
    q.add_argument("--data", required=True, help="folder of training images (searched recursively)")
    q.add_argument("--val", help="folder of validation images (default: a 5%% split of --data)")
    q.add_argument("--out", required=True, help="run directory (config, checkpoints, logs)")
    q.add_argument("--preset", choices=["tiny", "small", "base"], help="architecture preset (default: small)")
    q.add_argument("--config", help="YAML config merged over the preset")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="dotted override, e.g. transformer.dim=384")
    q.add_argument("--max-steps", type=int, help="stop after this many steps (with --max-epochs: whichever comes first)")
    q.add_argument("--max-epochs", type=int,
                   help="stop after this many epochs (default without --max-steps: 10 for the tokenizer, 50 for train)")
    q.add_argument("--batch-size", type=int)
    q.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest readable checkpoint (last.ckpt, else the "
                        "newest other one)")
    q.add_argument("--overwrite", action="store_true",
                   help="delete the run already in --out (checkpoints, logs) and start over")
    q.add_argument("--init", metavar="MODEL_DIR",
                   help="start a new run from the weights (and architecture) of a model directory, e.g. "
                        "the bundled default; optimiser and LR schedule start afresh; its sampler, hole fill "
                        "and blend carry over to the export unless --config/--set change them")
    q.add_argument("--accelerator", default="auto", help="auto, cpu, gpu (Lightning)")
    q.add_argument("--devices", help="devices per node, e.g. 4 (Lightning; default: auto)")
    q.add_argument("--num-nodes", type=int, help="machines, each running this command (Lightning; default: 1)")
    q.add_argument("--strategy", help="e.g. ddp for several devices or nodes (Lightning; default: auto)")



def register(sub) -> None:
    q = sub.add_parser("train-tokenizer", help="train the VQGAN tokenizer (stage 1) on an image folder")
    _add_train_args(q)
    q.add_argument("--decoder-only", action="store_true",
                   help="train only the decoder side: encoder and codes stay frozen, so every image keeps its "
                        "tokens and a transformer trained on them stays valid")
    q.add_argument("--widen-decoder", type=int, metavar="K",
                   help="with --init: a decoder K times as wide that starts as the init model's one")
    q.add_argument("--init-decoder", metavar="FILE",
                   help="decoder-side weights over --init's (decoder.safetensors from `export --decoder-parts`; "
                        "give the --widen-decoder it was trained with)")
    q.add_argument("--init-disc", metavar="FILE",
                   help="the discriminator to continue the GAN with (discriminator.safetensors from "
                        "`export --decoder-parts`)")
    q.set_defaults(func=cmd_train_tokenizer)

    q = sub.add_parser("train", help="train the transformer (stage 2) on an image folder")
    _add_train_args(q)
    q.add_argument("--tokenizer", help="tokenizer model directory (from `maskgit export` of a tokenizer run)")
    q.add_argument("--accumulate", type=int, help="gradient accumulation steps")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("export", help="write a model directory from a training run")
    q.add_argument("run", help="run directory")
    q.add_argument("--out", required=True, help="model directory to write")
    q.add_argument("--which", help="best, last, or a checkpoint path (default: best; last with --decoder-parts)")
    q.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size)")
    q.add_argument("--weak", metavar="CHECKPOINT|MODEL_DIR",
                   help="also store a weak transformer for --weak-guidance: an earlier checkpoint of the run "
                        "(a path, or best/last) or a model directory with a transformer of the same architecture")
    q.add_argument("--transformer-from", metavar="MODEL_DIR",
                   help="from a --decoder-only tokenizer run: a full model with MODEL_DIR's transformer, weak "
                        "transformer and inpainting settings (refused if the run's tokens differ from MODEL_DIR's)")
    q.add_argument("--decoder-parts", action="store_true",
                   help="from a tokenizer run, write what a later decoder run warm-starts from instead of a model "
                        "directory: decoder.safetensors (its EMA if kept), discriminator.safetensors, tokenizer.yaml")
    q.set_defaults(func=cmd_export)
