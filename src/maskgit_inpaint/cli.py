"""The `maskgit` command line. Each subcommand is a thin layer over the Python API."""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from . import __version__


class CLIError(Exception):
    """An error to print as one line, with a non-zero exit."""


# ----------------------------------------------------------------------------- helpers
def add_precision_arg(p: argparse.ArgumentParser) -> None:
    from .model import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="of the transformer: auto = bf16 on a GPU, fp32 on CPU; bf16 on a CPU with "
                        "AVX-512 BF16 is about 1.6x faster (tokens then differ slightly from fp32); mixed = "
                        "fp32, but the guidance's pass on the weak transformer in bf16 (about 1.25x faster)")


def add_sampler_args(p: argparse.ArgumentParser, defaults_from_model: bool = True) -> None:
    from .sampling import GUIDANCE_SCHEDULES
    from .schedules import SCHEDULES

    g = p.add_argument_group("sampler (defaults: the model's config.yaml)")
    g.add_argument("--gamma", choices=sorted(SCHEDULES), help="mask schedule")
    g.add_argument("--steps", type=int, help="total iterations T of the schedule")
    g.add_argument("--sweet-spot", type=int, help="stop after this many steps")
    g.add_argument("--temperature", type=float, help="choice temperature: Gumbel noise on confidences")
    g.add_argument("--sample-temperature", type=float,
                   help="sampling temperature of the predicted tokens (0 = argmax)")
    g.add_argument("--guidance", type=float,
                   help="context guidance scale w: logits + w * (logits - logits with the known tokens masked); "
                        "0 = off, above 0 each step costs a second forward pass")
    g.add_argument("--guidance-steps", type=int,
                   help="guide only the first K steps (the rest cost one pass each); default: every step")
    g.add_argument("--guidance-schedule", choices=GUIDANCE_SCHEDULES,
                   help="the guidance scale per step: constant, or linear = rising as w * t / T")
    g.add_argument("--token-threshold", type=float,
                   help="regenerate a token when more than this share of its pixels is hole, in [0, 1); "
                        "0 = any hole pixel (the course lab's rule)")
    g.add_argument("--weak-guidance", action=argparse.BooleanOptionalAction,
                   help="run the guidance's free pass on the model's weak transformer (an earlier checkpoint, "
                        "weak_transformer.safetensors) instead of on the model itself; same cost")
    add_fill_args(g)
    add_precision_arg(g)


def add_fill_args(p) -> None:
    """--hole-fill (what the encoder sees in the holes) and --blend (how composites put the
    known pixels back)."""
    from .compositing import BLENDS
    from .model import HOLE_FILLS

    p.add_argument("--hole-fill", choices=HOLE_FILLS,
                   help="what the encoder sees in the holes: a smooth fill from the known pixels (harmonic) "
                        "or the flat mean colour (mean, the course lab's); default: the model's config, "
                        "else harmonic")
    p.add_argument("--blend", choices=BLENDS,
                   help="how the known pixels go back over the decoded image (composites only): poisson = "
                        "seamless cloning, the decoded hole content meets the known pixels without a seam; "
                        "paste = plain paste; default: the model's config, else poisson")
    p.add_argument("--decode-known", choices=("on", "off"),
                   help="for a mask-conditioned decoder (tokenizer.dec_cond): give it the known pixels (on) or "
                        "decode from the tokens alone (off); default: the model's config (decode_known), else "
                        "on; other decoders ignore it")


def decode_known_arg(args) -> bool | None:
    """--decode-known as a bool, None when not given (the model's config then decides)."""
    v = getattr(args, "decode_known", None)
    return None if v is None else v == "on"


def sampler_overrides(args) -> dict:
    """The SamplerConfig fields given on the command line (`add_sampler_args`), by field name."""
    return {k: v for k, v in (("gamma", args.gamma), ("steps", args.steps), ("sweet_spot", args.sweet_spot),
                              ("choice_temperature", args.temperature),
                              ("temperature", args.sample_temperature), ("guidance", args.guidance),
                              ("guidance_steps", args.guidance_steps),
                              ("guidance_schedule", args.guidance_schedule),
                              ("token_threshold", args.token_threshold),
                              ("weak_guidance", args.weak_guidance))
            if v is not None}


def on_off(text: str) -> bool:
    """A boolean list item of the sweep: on/off, true/false, yes/no, 1/0."""
    t = text.strip().lower()
    if t in ("on", "true", "yes", "1"):
        return True
    if t in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"{text!r} is not on or off")


on_off.__name__ = "on/off value"  # what parse_list names in its error


def sampler_from_args(model, args):
    from dataclasses import replace

    cfg = replace(model.sampler, **sampler_overrides(args))
    if args.steps is not None and args.sweet_spot is None and cfg.sweet_spot and cfg.sweet_spot > cfg.steps:
        cfg = replace(cfg, sweet_spot=None)
    model.check_sampler(cfg)
    return cfg


# ----------------------------------------------------------------------------- inpaint
def load_inpaint_inputs(images_dir, masks_dir, size: int, hole_value: int = 0, strict_size: bool = False):
    """Read and check every image and mask before anything is written."""
    import numpy as np

    from .images import InputError, fit_image, list_images, open_image, pair_files, read_mask, resize_mask

    pairs = pair_files(list_images(images_dir, "image", allow_file=True),
                       list_images(masks_dir, "mask", allow_file=True))
    stems = [p.stem for p, _ in pairs]
    dup = {s for s in stems if stems.count(s) > 1}
    if dup:
        raise InputError(f"{images_dir}: several images share the name {sorted(dup)[0]!r}; outputs would collide")
    imgs, known = [], []
    for ip, mp in pairs:
        pil = open_image(ip)  # decoded once: its size checks the mask, then it is fitted to the model
        w, h = pil.size
        img = fit_image(pil, ip, size, strict=strict_size)
        m = read_mask(mp, (h, w), hole_value)
        if (h, w) != (size, size):
            m = resize_mask(m, size)
        imgs.append(img)
        known.append(m)
    return pairs, imgs, np.stack(known)


def cmd_inpaint(args) -> int:
    import torch

    from .images import save_png, to_tensor, to_uint8
    from .model import load_model
    from .sampling import seed_for_name
    from .visualize import step_strip

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    model, model_dir = load_model(args.model, args.device, args.precision, args.hole_fill, args.blend,
                                  decode_known_arg(args))
    sampler = sampler_from_args(model, args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs, imgs, known = load_inpaint_inputs(args.images, args.masks, model.image_size,
                                                 args.hole_value, args.strict_size)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    known_t = torch.from_numpy(known)
    t0 = time.perf_counter()
    for i in range(0, len(pairs), args.batch_size):
        sl = slice(i, i + args.batch_size)
        seeds = torch.tensor([seed_for_name(args.seed, p.stem) for p, _ in pairs[sl]])
        res = model.inpaint(to_tensor(imgs[sl]), known_t[sl], sampler, seed=seeds,
                            composite=not args.no_composite, dilate=args.dilate, return_steps=args.save_steps)
        arrays = to_uint8(res.images)
        for j, (ip, _) in enumerate(pairs[sl]):
            save_png(arrays[j], out / f"{ip.stem}.png")
        if args.save_steps:
            strips = step_strip(to_tensor(imgs[sl]), known_t[sl], res, model.image_size)
            for j, (ip, _) in enumerate(pairs[sl]):
                save_png(strips[j], out / "steps" / f"{ip.stem}.png")
    dt = time.perf_counter() - t0
    print(f"inpainted {len(pairs)} images into {out} in {dt:.1f} s ({1000 * dt / len(pairs):.0f} ms/image; "
          f"gamma={sampler.gamma} steps={sampler.steps} stop={sampler.stop} "
          f"guidance={sampler.guidance:g}{' vs weak' if sampler.weak_guidance and sampler.guidance else ''} "
          f"token threshold={sampler.token_threshold:g} hole fill={model.hole_fill} "
          f"{'raw decode' if args.no_composite else 'blend=' + model.blend} "
          + (f"decode known={'on' if model.decode_known else 'off'} " if model.conditioned_decoder else "")
          + f"model={model_dir})")
    return 0


# ----------------------------------------------------------------------------- import-lab
def cmd_import_lab(args) -> int:
    from .lab import import_lab

    out = import_lab(args.vqgan, args.transformer, args.out, args.config, args.heads)
    print(f"wrote model directory {out}")
    return 0


# ----------------------------------------------------------------------------- masks
def cmd_masks(args) -> int:
    from .images import save_png
    from .masks import generate_masks

    masks = generate_masks(args.kind, args.count, args.size, args.seed)
    out = Path(args.out)
    width = max(4, len(str(args.count - 1)))
    for i, m in enumerate(masks):
        save_png((m * 255).astype("uint8"), out / f"{i:0{width}d}.png")
    print(f"wrote {args.count} {args.kind} masks ({100 * (1 - masks.mean()):.1f}% hole pixels) to {out}")
    return 0


# ----------------------------------------------------------------------------- visualize
def cmd_visualize(args) -> int:
    import torch

    from .images import save_png, to_tensor
    from .model import load_model
    from .visualize import decoding_frames, plot_schedules, plot_step_counts, save_gif, step_strip

    model, _ = load_model(args.model, args.device, args.precision, args.hole_fill, args.blend,
                          decode_known_arg(args))
    sampler = sampler_from_args(model, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [plot_schedules(out / "gamma.png", steps=sampler.steps, highlight=sampler.gamma)]
    if args.image:
        if not args.mask:
            raise CLIError("--image needs --mask")
        for flag, path in (("--image", args.image), ("--mask", args.mask)):
            if not Path(path).is_file():
                raise CLIError(f"{path}: {flag} must be an image file")
        _, imgs, known = load_inpaint_inputs(args.image, args.mask, model.image_size, args.hole_value)
        x, k = to_tensor(imgs), torch.from_numpy(known)
        res = model.inpaint(x, k, sampler, seed=args.seed, composite=not args.no_composite, return_steps=True)
        save_png(step_strip(x, k, res, model.image_size)[0], out / "steps.png")
        save_gif(decoding_frames(x, k, res, model.image_size), out / "decoding.gif")
        plot_step_counts(out / "mask_counts.png", res, sampler)
        save_png((res.images[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy(), out / "result.png")
        written += [out / "steps.png", out / "decoding.gif", out / "mask_counts.png", out / "result.png"]
    for p in written:
        print(p)
    return 0


# ----------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    from .demo import make_samples, run_demo

    if args.make_samples:
        if not args.model:
            raise CLIError("--make-samples writes into a model directory: pass --model MODEL_DIR")
        for p in make_samples(args.model, args.make_samples, seed=args.seed, device=args.device):
            print(p)
        return 0
    path = run_demo(args.out, device=args.device, model_dir=args.model, seed=args.seed, precision=args.precision)
    print(f"demo sheet written to {path}")
    return 0


# ----------------------------------------------------------------------------- experiments
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_sweep(args) -> int:
    from .experiments import load_eval_set, parse_list, run_sweep, sweep_configs
    from .model import load_model, resolve_device

    model, model_dir = load_model(args.model, args.device, args.precision, args.hole_fill, args.blend,
                                  decode_known_arg(args))
    gammas = parse_list(args.gamma, str, "--gamma")
    steps = parse_list(args.steps, int, "--steps")
    stops = parse_list(args.sweet_spot, int, "--sweet-spot") if args.sweet_spot else [None]
    temps = parse_list(args.temperature, float, "--temperature") if args.temperature else None
    sample_temps = (parse_list(args.sample_temperature, float, "--sample-temperature")
                    if args.sample_temperature else None)
    guidances = parse_list(args.guidance, float, "--guidance") if args.guidance else None
    guidance_steps = parse_list(args.guidance_steps, int, "--guidance-steps") if args.guidance_steps else None
    ramps = parse_list(args.guidance_schedule, str, "--guidance-schedule") if args.guidance_schedule else None
    thresholds = (parse_list(args.token_threshold, float, "--token-threshold")
                  if args.token_threshold else None)
    weak = parse_list(args.weak_guidance, on_off, "--weak-guidance") if args.weak_guidance else None
    seeds = parse_list(args.seeds, int, "--seeds")
    if None in seeds:
        raise CLIError("--seeds: integers only")
    configs = sweep_configs(model.sampler, gammas, steps, stops, temps, sample_temps, guidances, guidance_steps,
                            ramps, thresholds, weak)
    if not configs:
        raise CLIError("no valid combination: every --sweet-spot is larger than every --steps")
    for cfg in configs:
        model.check_sampler(cfg)
    if args.token_cache and Path(args.token_cache).exists() and not Path(args.token_cache).is_dir():
        raise CLIError(f"--token-cache {args.token_cache}: exists and is not a folder")
    names, images01, known = load_eval_set(args.images, args.masks, model.image_size, args.limit, args.hole_value)
    _log(f"sweep: {len(configs)} sampler settings x {len(seeds)} seeds on {len(names)} images")
    rec = run_sweep(model, model_dir, images01, known, names, configs, seeds, args.out,
                    batch_size=args.batch_size, device=resolve_device(args.device), log=_log,
                    token_cache=args.token_cache)
    out = Path(args.out)
    print((out / "sweep.md").read_text())
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.md'}, {out / 'sweep.png'}, {out / 'sweep.json'}")
    return 0


def cmd_fid_curve(args) -> int:
    from .experiments import run_fid_curve
    from .model import resolve_device

    overrides = sampler_overrides(args)
    out = Path(args.out) if args.out else Path(args.run) / "fid_curve"
    run_fid_curve(args.run, args.images, args.masks, out, seed=args.seed, sampler_overrides=overrides,
                  limit=args.limit, batch_size=args.batch_size, device=resolve_device(args.device), log=_log,
                  precision=args.precision, hole_fill=args.hole_fill, blend=args.blend,
                  decode_known=decode_known_arg(args))
    print(f"wrote {out / 'fid_curve.csv'}, {out / 'fid_curve.png'}, {out / 'fid_curve.json'}")
    return 0


# ----------------------------------------------------------------------------- serve
def cmd_serve(args) -> int:
    try:
        from .app import serve
    except ImportError as e:
        raise CLIError(f"the web app needs Gradio: pip install 'maskgit-inpaint[app]' ({e})") from None
    serve(args.model, host=args.host, port=args.port, device=args.device, precision=args.precision)
    return 0


# ----------------------------------------------------------------------------- training
def _train_config(args, kind: str) -> dict:
    from .config import inference_settings, resolve

    overrides = list(args.set or [])
    section = f"{kind}_training"
    for name, key in (("max_steps", "max_steps"), ("max_epochs", "max_epochs"), ("batch_size", "batch_size"),
                      ("accumulate", "accumulate")):
        v = getattr(args, name, None)
        if v is not None:
            overrides.append(f"{section}.{key}={v}")
    if getattr(args, "decoder_only", False):
        overrides.append(f"{section}.freeze_encoder=true")
    if getattr(args, "widen_decoder", None):
        overrides.append(f"{section}.widen_decoder={args.widen_decoder}")
    overrides.append(f"data.train={args.data}")
    if args.val:
        overrides.append(f"data.val={args.val}")
    # a warm start keeps the init model's sampler, hole fill and blend: its export inpaints as it did
    base = inference_settings(args.init) if getattr(args, "init", None) and not args.resume else None
    return resolve(None if args.resume else (args.preset or "small"), args.config, overrides, base)


def cmd_train_tokenizer(args) -> int:
    from .training import train_tokenizer

    run = train_tokenizer(_train_config(args, "tokenizer"), args.out, resume=args.resume,
                          accelerator=args.accelerator, init=args.init)
    print(f"tokenizer run in {run}; export it with: maskgit export {run} --out MODEL_DIR")
    return 0


def cmd_train(args) -> int:
    from .training import train_transformer

    run = train_transformer(_train_config(args, "transformer"), args.out, args.tokenizer, resume=args.resume,
                            accelerator=args.accelerator, init=args.init)
    print(f"transformer run in {run}; export it with: maskgit export {run} --out MODEL_DIR")
    return 0


def cmd_export(args) -> int:
    import torch

    from .training import export_run

    export_run(args.run, args.out, which=args.which, dtype=torch.float16 if args.fp16 else None, weak=args.weak)
    print(f"wrote model directory {args.out}")
    return 0


def _add_train_args(q: argparse.ArgumentParser) -> None:
    q.add_argument("--data", required=True, help="folder of training images (searched recursively)")
    q.add_argument("--val", help="folder of validation images (default: a 5%% split of --data)")
    q.add_argument("--out", required=True, help="run directory (config, checkpoints, logs)")
    q.add_argument("--preset", choices=["tiny", "small", "base"], help="architecture preset (default: small)")
    q.add_argument("--config", help="YAML config merged over the preset")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="dotted override, e.g. transformer.dim=384")
    q.add_argument("--max-steps", type=int)
    q.add_argument("--max-epochs", type=int)
    q.add_argument("--batch-size", type=int)
    q.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    q.add_argument("--init", metavar="MODEL_DIR",
                   help="start a new run from the weights (and architecture) of a model directory, e.g. "
                        "the bundled default; optimiser and LR schedule start afresh; its sampler, hole fill "
                        "and blend carry over to the export unless --config/--set change them")
    q.add_argument("--accelerator", default="auto", help="auto, cpu, gpu (Lightning)")


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maskgit", description="MaskGIT image inpainting: train, inpaint, evaluate.")
    p.add_argument("--version", action="version", version=f"maskgit-inpaint {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("inpaint", help="fill the holes of a folder of images")
    q.add_argument("--images", required=True, help="folder of images, or one image file")
    q.add_argument("--masks", required=True,
                   help="folder of grayscale masks (255 = known, 0 = hole; paired by file stem, else by sorted "
                        "order), or one mask file")
    q.add_argument("--out", required=True, help="output folder (one PNG per image)")
    q.add_argument("--model", help="model directory (default: the bundled model)")
    add_sampler_args(q)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--device", default="auto")
    q.add_argument("--no-composite", action="store_true", help="return the raw decode (the lab's protocol)")
    q.add_argument("--save-steps", action="store_true", help="also write the per-step strip to OUT/steps/")
    q.add_argument("--hole-value", type=int, choices=(0, 255), default=0, help="mask value that marks a hole")
    q.add_argument("--strict-size", action="store_true", help="refuse images of another size instead of resizing")
    q.add_argument("--dilate", type=int, default=0, help="grow the unknown token region by this many tokens")
    q.set_defaults(func=cmd_inpaint)

    q = sub.add_parser("import-lab", help="convert the course lab's checkpoints into a model directory")
    q.add_argument("--vqgan", required=True, help="VQGAN.pt (plain state dict)")
    q.add_argument("--transformer", help="the transformer checkpoint (.pth, lab layout)")
    q.add_argument("--config", help="MaskGit.yml (for the number of heads)")
    q.add_argument("--heads", type=int, help="attention heads (default: from --config, else 16)")
    q.add_argument("--out", required=True, help="model directory to write")
    q.set_defaults(func=cmd_import_lab)

    q = sub.add_parser("masks", help="write a fixed, seeded set of mask PNGs")
    q.add_argument("--out", required=True)
    q.add_argument("--count", type=int, required=True)
    q.add_argument("--kind", default="random-walk", choices=["random-walk", "rectangle", "brush", "outpaint"])
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--size", type=int, default=64)
    q.set_defaults(func=cmd_masks)

    q = sub.add_parser("train-tokenizer", help="train the VQGAN tokenizer (stage 1) on an image folder")
    _add_train_args(q)
    q.add_argument("--decoder-only", action="store_true",
                   help="train only the decoder side: encoder and codes stay frozen, so every image keeps its "
                        "tokens and a transformer trained on them stays valid")
    q.add_argument("--widen-decoder", type=int, metavar="K",
                   help="with --init: a decoder K times as wide that starts as the init model's one")
    q.set_defaults(func=cmd_train_tokenizer)

    q = sub.add_parser("train", help="train the transformer (stage 2) on an image folder")
    _add_train_args(q)
    q.add_argument("--tokenizer", help="tokenizer model directory (from `maskgit export` of a tokenizer run)")
    q.add_argument("--accumulate", type=int, help="gradient accumulation steps")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("export", help="write a model directory from a training run")
    q.add_argument("run", help="run directory")
    q.add_argument("--out", required=True, help="model directory to write")
    q.add_argument("--which", default="best", help="best, last, or a checkpoint path")
    q.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size)")
    q.add_argument("--weak", metavar="CHECKPOINT|MODEL_DIR",
                   help="also store a weak transformer for --weak-guidance: an earlier checkpoint of the run "
                        "(a path, or best/last) or a model directory with a transformer of the same architecture")
    q.set_defaults(func=cmd_export)

    q = sub.add_parser("visualize", help="figures: mask schedules, per-step strip, decoding GIF")
    q.add_argument("--model", help="model directory (default: the bundled model)")
    q.add_argument("--image", help="an image to inpaint step by step")
    q.add_argument("--mask", help="its mask (255 = known, 0 = hole)")
    q.add_argument("--out", required=True, help="folder for the figures")
    add_sampler_args(q)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default="auto")
    q.add_argument("--no-composite", action="store_true")
    q.add_argument("--hole-value", type=int, choices=(0, 255), default=0)
    q.set_defaults(func=cmd_visualize)

    q = sub.add_parser("demo", help="inpaint the bundled samples with the default model and write a sheet")
    q.add_argument("--out", default="maskgit-demo", help="output folder (default: ./maskgit-demo)")
    q.add_argument("--model", help="model directory with samples/ (default: the bundled model)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default="auto")
    q.add_argument("--make-samples", type=int, metavar="N",
                   help="instead: generate N sample images (all tokens masked) and masks into MODEL/samples")
    add_precision_arg(q)
    q.set_defaults(func=cmd_demo)

    q = sub.add_parser("sweep", help="FID over mask schedules, step counts, stop points and seeds")
    q.add_argument("--model", help="model directory (default: the bundled model)")
    q.add_argument("--images", required=True, help="folder of ground-truth images")
    q.add_argument("--masks", required=True, help="folder of masks (255 = known, 0 = hole)")
    q.add_argument("--out", required=True, help="folder for sweep.csv/.md/.png/.json")
    q.add_argument("--gamma", default="linear,cosine,square,sqrt,sine_linear", help="comma-separated schedules")
    q.add_argument("--steps", default="8", help="comma-separated T values")
    q.add_argument("--sweet-spot", help="comma-separated stop points (default: run all T steps; "
                                        "combinations with a stop point above T are skipped)")
    q.add_argument("--temperature", help="comma-separated choice temperatures (default: the model's)")
    q.add_argument("--sample-temperature", help="comma-separated sampling temperatures of the token draw, "
                                                "0 = argmax (default: the model's)")
    q.add_argument("--guidance", help="comma-separated context guidance scales, 0 = off (default: the model's)")
    q.add_argument("--guidance-steps", help="comma-separated numbers of guided first steps, 'all' = every step "
                                            "(default: the model's)")
    q.add_argument("--guidance-schedule", help="comma-separated guidance schedules: constant, linear "
                                               "(default: the model's)")
    q.add_argument("--token-threshold", help="comma-separated token thresholds: a token is regenerated when "
                                             "more than this share of its pixels is hole (default: the model's)")
    q.add_argument("--weak-guidance", help="comma-separated on/off: guide against the model's weak transformer "
                                           "(default: the model's)")
    q.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (FID mean +- std over them)")
    q.add_argument("--limit", type=int, help="use only the first N image/mask pairs")
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--hole-value", type=int, choices=(0, 255), default=0)
    q.add_argument("--device", default="auto")
    q.add_argument("--token-cache", metavar="DIR",
                   help="keep the sampled tokens in DIR and reuse those of earlier sweeps with the same "
                        "transformer, encoder, sampler settings, seed and images (after fine-tuning only "
                        "the decoder, a sweep then just decodes)")
    add_fill_args(q)
    add_precision_arg(q)
    q.set_defaults(func=cmd_sweep)

    q = sub.add_parser("fid-curve", help="FID of every epoch checkpoint of a training run")
    q.add_argument("run", help="run directory (transformer: inpainting FID; tokenizer: reconstruction FID)")
    q.add_argument("--images", required=True, help="folder of ground-truth images")
    q.add_argument("--masks", help="folder of masks (needed for a transformer run)")
    q.add_argument("--out", help="output folder (default: RUN/fid_curve)")
    add_sampler_args(q)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--limit", type=int, help="use only the first N images")
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--device", default="auto")
    q.set_defaults(func=cmd_fid_curve)

    q = sub.add_parser("serve", help="web app: paint a hole and watch it fill")
    q.add_argument("--model", help="model directory (default: the bundled model)")
    q.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    q.add_argument("--port", type=int, default=7860)
    q.add_argument("--device", default="auto")
    add_precision_arg(q)
    q.set_defaults(func=cmd_serve)

    try:
        from .evaluation import add_evaluate_arguments, run_evaluate

        q = sub.add_parser("evaluate", help="FID and pixel metrics of inpainted images against ground truth")
        add_evaluate_arguments(q)
        q.set_defaults(func=run_evaluate)
    except ImportError:
        pass
    return p


def _setup_logging() -> None:
    """The package's progress messages (token cache, skipped files, ...) go to stderr."""
    import logging

    class ToStderr(logging.Handler):
        # the stderr of the moment (not the one at set-up), so redirections and captures see it
        def emit(self, record):
            print(self.format(record), file=sys.stderr, flush=True)

    log = logging.getLogger("maskgit_inpaint")
    if not any(type(h).__name__ == "ToStderr" for h in log.handlers):
        h = ToStderr()
        h.setFormatter(logging.Formatter("maskgit: %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    from .checkpoints import WeightsError
    from .images import InputError
    from .model import ModelDirError

    args = build_parser().parse_args(argv)
    _setup_logging()
    from . import experiments
    experiments.set_command(["maskgit"] + (list(argv) if argv is not None else sys.argv[1:]))
    try:
        return int(args.func(args) or 0)
    except (CLIError, InputError, ModelDirError, WeightsError, FileNotFoundError, FileExistsError, ValueError) as e:
        if os.environ.get("MASKGIT_DEBUG"):
            raise
        print(f"maskgit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
