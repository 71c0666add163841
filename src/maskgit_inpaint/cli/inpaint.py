"""`maskgit inpaint`, `visualize`, `demo`, `masks`, `import-lab` and `serve`."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .options import CLIError, add_mask_args, add_settings_args, formatter, settings_from_args


def cmd_inpaint(args) -> int:
    from tqdm import tqdm

    from ..images import InputError, pair_files, read_mask, read_rgba, save_png
    from ..pipeline import InpaintPipeline, describe, with_alpha
    from ..visualize import step_strip

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    pipe = InpaintPipeline.from_pretrained(args.model, args.device, **settings_from_args(args))
    pairs = pair_files(args.images, args.masks)
    stems = [p.stem for p, _ in pairs]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise InputError(f"{args.images}: several images share the name {dup[0]!r}; outputs would collide")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bad: list[str] = []
    done = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(pairs), unit="image", desc="inpaint", disable=len(pairs) < 2 or None, file=sys.stderr)
    for j in range(0, len(pairs), args.batch_size):
        batch, imgs, alphas, known = [], [], [], []
        for ip, mp in pairs[j:j + args.batch_size]:
            try:
                rgb, alpha = read_rgba(ip, str(ip))
                if args.strict_size and rgb.shape[:2] != (pipe.size, pipe.size):
                    raise InputError(f"{ip}: image is {rgb.shape[1]}x{rgb.shape[0]}, expected "
                                     f"{pipe.size}x{pipe.size} (--strict-size)")
                k = read_mask(mp, rgb.shape[:2], invert=args.invert_mask)
            except InputError as e:
                if len(pairs) == 1:
                    raise
                bad.append(str(e))
                bar.update(1)
                continue
            batch.append(ip)
            imgs.append(rgb)
            alphas.append(alpha)
            known.append(k)
        if not batch:
            continue
        res = pipe.run(imgs, known, seed=args.seed, composite=not args.no_composite, dilate=args.dilate,
                       return_steps=args.save_steps, resize_mode=args.resize_mode, crop_margin=args.crop_margin,
                       names=[str(p) for p in batch], batch_size=args.batch_size)
        for ip, img, alpha in zip(batch, res.images, alphas):
            save_png(with_alpha(img, alpha), out / f"{ip.stem}.png")
        if args.save_steps:
            strips = step_strip(res.inputs01, res.known, res.output, pipe.size)
            for ip, strip in zip(batch, strips):
                save_png(strip, out / "steps" / f"{ip.stem}.png")
        done += len(batch)
        bar.update(len(batch))
    bar.close()
    if not done:
        raise InputError(f"no usable image in {args.images}: " + "; ".join(bad))
    dt = time.perf_counter() - t0
    print(f"inpainted {done} images into {out} in {dt:.1f} s ({1000 * dt / done:.0f} ms/image; "
          f"{describe(pipe.settings, pipe.model)}{' raw decode' if args.no_composite else ''} model={pipe.model_dir})")
    if bad:
        print(f"maskgit inpaint: error: {len(bad)} of {len(pairs)} inputs skipped:", file=sys.stderr)
        for msg in bad:
            print(f"  {msg}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- import-lab
def cmd_import_lab(args) -> int:
    from ..lab import import_lab

    out = import_lab(args.vqgan, args.transformer, args.out, args.config, args.heads)
    print(f"wrote model directory {out}")
    return 0


# ----------------------------------------------------------------------------- masks
def cmd_masks(args) -> int:
    import numpy as np

    from ..images import list_images, save_png
    from ..masks import generate_masks

    if (args.count is None) == (args.for_images is None):
        raise CLIError("give --count N (masks named 0000.png, ...) or --for-images DIR (one mask per image, "
                       "named after it)")
    if args.for_images:
        stems = [p.stem for p in list_images(args.for_images, "image")]
    else:
        if args.count < 1:
            raise CLIError(f"--count must be at least 1, got {args.count}")
        width = max(4, len(str(args.count - 1)))
        stems = [f"{i:0{width}d}" for i in range(args.count)]
    masks = generate_masks(args.kind, len(stems), args.size, args.seed)
    out = Path(args.out)
    for stem, m in zip(stems, masks):
        save_png(np.where(m, 0, 255).astype(np.uint8), out / f"{stem}.png")  # white = hole
    print(f"wrote {len(stems)} {args.kind} masks ({100 * (1 - masks.mean()):.1f}% hole pixels, white = hole) to {out}")
    return 0


# ----------------------------------------------------------------------------- visualize
def cmd_visualize(args) -> int:
    from ..images import load_pairs, save_png
    from ..pipeline import InpaintPipeline
    from ..visualize import decoding_frames, plot_schedules, plot_step_counts, save_gif, step_strip

    pipe = InpaintPipeline.from_pretrained(args.model, args.device, **settings_from_args(args))
    model, sampler = pipe.model, pipe.settings
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [plot_schedules(out / "gamma.png", steps=sampler.steps, highlight=sampler.gamma)]
    if args.image:
        if not args.mask:
            raise CLIError("--image needs --mask")
        for flag, path in (("--image", args.image), ("--mask", args.mask)):
            if not Path(path).is_file():
                raise CLIError(f"{path}: {flag} must be an image file")
        pairs, imgs, known = load_pairs(args.image, args.mask, args.invert_mask)
        batch = pipe.run(imgs, known, seed=args.seed, composite=not args.no_composite, return_steps=True,
                         resize_mode=args.resize_mode, crop_margin=args.crop_margin, names=[args.image])
        x, k, res = batch.inputs01, batch.known, batch.output
        save_png(step_strip(x, k, res, model.image_size)[0], out / "steps.png")
        save_gif(decoding_frames(x, k, res, model.image_size), out / "decoding.gif")
        plot_step_counts(out / "mask_counts.png", res, sampler)
        save_png(batch.images[0], out / "result.png")
        written += [out / "steps.png", out / "decoding.gif", out / "mask_counts.png", out / "result.png"]
    for p in written:
        print(p)
    return 0


# ----------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    from ..demo import make_samples, run_demo

    if args.make_samples:
        if not args.model:
            raise CLIError("--make-samples writes into a model directory: pass --model MODEL_DIR")
        for p in make_samples(args.model, args.make_samples, seed=args.seed, device=args.device):
            print(p)
        return 0
    path = run_demo(args.out, device=args.device, model_dir=args.model, seed=args.seed, precision=args.precision)
    print(f"demo sheet written to {path}")
    return 0


def cmd_serve(args) -> int:
    try:
        from ..app import serve  # Gradio is optional
    except ImportError as e:
        raise CLIError(f"the web app needs Gradio: pip install 'maskgit-inpaint[app]' ({e})") from None
    serve(args.model, host=args.host, port=args.port, device=args.device, precision=args.precision)
    return 0


def register(sub) -> None:
    q = sub.add_parser("inpaint", help="fill the holes of a folder of images", formatter_class=formatter,
                       usage="maskgit inpaint --images DIR --masks DIR --out DIR [options]",
                       description="Fill the holes of images (any size): the hole is inpainted at the model's "
                                   "size and pasted back; every other pixel is kept.")
    q.add_argument("--images", required=True, metavar="DIR|FILE", help="images, or one image file")
    q.add_argument("--masks", required=True, metavar="DIR|FILE",
                   help="masks paired with the images by file stem, or one mask file for all; white = hole")
    q.add_argument("--out", required=True, metavar="DIR", help="one PNG per image, at the image's size")
    q.add_argument("--model", metavar="DIR", help="model directory [the bundled model]")
    q.add_argument("--seed", type=int, default=0, metavar="N",
                   help="base seed; each image's also depends on its known pixels [0]")
    q.add_argument("--device", default="auto", help="auto, cpu, cuda [auto]")
    add_settings_args(q)
    more = q.add_argument_group("output and input")
    more.add_argument("--no-composite", action="store_true", help="write the raw decode (the lab's protocol)")
    more.add_argument("--save-steps", action="store_true", help="also write per-step strips to OUT/steps/")
    add_mask_args(more, regions=True)
    more.add_argument("--strict-size", action="store_true", help="refuse images not at the model's size")
    more.add_argument("--dilate", type=int, default=0, metavar="N", help="grow the regenerated tokens by N [0]")
    more.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per model call [64]")
    q.set_defaults(func=cmd_inpaint)

    q = sub.add_parser("visualize", help="figures: mask schedules, per-step strip, decoding GIF")
    q.add_argument("--model", help="model directory (default: the bundled model)")
    q.add_argument("--image", help="an image to inpaint step by step")
    q.add_argument("--mask", help="its mask (white = hole)")
    q.add_argument("--out", required=True, help="folder for the figures")
    add_settings_args(q)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default="auto")
    q.add_argument("--no-composite", action="store_true")
    add_mask_args(q, regions=True)
    q.set_defaults(func=cmd_visualize)

    q = sub.add_parser("demo", help="inpaint the bundled samples with the default model and write a sheet")
    q.add_argument("--out", default="maskgit-demo", help="output folder (default: ./maskgit-demo)")
    q.add_argument("--model", help="model directory with samples/ (default: the bundled model)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default="auto")
    q.add_argument("--make-samples", type=int, metavar="N",
                   help="instead: generate N sample images (all tokens masked) and masks into MODEL/samples")
    add_settings_args(q, only=("precision",))
    q.set_defaults(func=cmd_demo)

    q = sub.add_parser("masks", help="write a fixed, seeded set of mask PNGs")
    q.add_argument("--out", required=True)
    q.add_argument("--count", type=int, help="how many masks, named 0000.png, 0001.png, ...")
    q.add_argument("--for-images", metavar="DIR",
                   help="instead: one mask per image of DIR, named after it (the i-th in sorted order gets the "
                        "i-th mask, as --count would give)")
    q.add_argument("--kind", default="random-walk", choices=["random-walk", "rectangle", "brush", "outpaint"])
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--size", type=int, default=64)
    q.set_defaults(func=cmd_masks)

    q = sub.add_parser("import-lab", help="convert the course lab's checkpoints into a model directory")
    q.add_argument("--vqgan", required=True, help="VQGAN.pt (plain state dict)")
    q.add_argument("--transformer", help="the transformer checkpoint (.pth, lab layout)")
    q.add_argument("--config", help="MaskGit.yml (for the number of heads)")
    q.add_argument("--heads", type=int, help="attention heads (default: from --config, else 16)")
    q.add_argument("--out", required=True, help="model directory to write")
    q.set_defaults(func=cmd_import_lab)

    q = sub.add_parser("serve", help="web app: paint a hole and watch it fill")
    q.add_argument("--model", help="model directory (default: the bundled model)")
    q.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    q.add_argument("--port", type=int, default=7860)
    q.add_argument("--device", default="auto")
    add_settings_args(q, only=("precision",))
    q.set_defaults(func=cmd_serve)
