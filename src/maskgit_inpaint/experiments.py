"""Experiments behind the lab report's figures, each one command whose numbers can be trusted:

- `sweep`: FID (raw decode and composite) over schedules x steps x stop points x temperatures x seeds;
- `fid-curve`: FID of every epoch checkpoint of a training run (inpainting for a transformer run,
  reconstruction for a tokenizer run);
- `reconstruction_metrics`: the tokenizer's reconstruction FID, the ceiling for any inpainting result.

Every result file records the command, the resolved config, a hash of the model and the seeds.
Ground-truth Inception features are computed once per command and reused by every FID in it.
"""
from __future__ import annotations

import csv
import itertools
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

import torchmetrics

from . import __version__
from .checkpoints import atomic_write
from .compositing import paste_known
from .images import list_images, load_pairs, quantize as to_uint8, read_image, resize_known, to_tensor
from .model import MaskGIT, model_hash
from .pipeline import InpaintPipeline, resize_rgb
from .precision import cpu_name, native_bf16
from .settings import InpaintSettings, resolve_precision
from .token_cache import TokenCache
from .training import load_checkpoint_state, load_run_config, model_from_checkpoint
from .evaluation import _json_safe, evaluate_images
from .fid import default_inception_path, frechet_distance, inception_features, kernel_inception_distance, load_inception


# ----------------------------------------------------------------------------- inputs
def load_eval_set(images_dir, masks_dir, size: int, limit: int | None = None, invert: bool = False):
    """(names, images01 (N,3,H,W) float, known (N,H,W) bool) for paired image/mask folders
    (white = hole, black with `invert`), all checked before any work starts. `limit` keeps the
    first N pairs (sorted by name)."""
    pairs, imgs, known = load_pairs(images_dir, masks_dir, invert)
    if limit:
        pairs, imgs, known = pairs[:limit], imgs[:limit], known[:limit]
    imgs = [resize_rgb(a, size) for a in imgs]
    known = [resize_known(k, size) for k in known]
    return [p.stem for p, _ in pairs], to_tensor(imgs), torch.from_numpy(np.ascontiguousarray(np.stack(known)))


def load_images(images_dir, size: int, limit: int | None = None):
    """(names, images01) of a folder, resized to the model's size."""
    files = list_images(images_dir, "image")
    if limit:
        files = files[:limit]
    return [f.stem for f in files], to_tensor([read_image(f, size) for f in files])


# ----------------------------------------------------------------------------- running the model
def inpaint_all(model, images01: torch.Tensor, known: torch.Tensor, settings, seed: int,
                batch_size: int = 64, tokens_out: list | None = None, desc: str = "inpaint") -> tuple[torch.Tensor, float]:
    """Raw decoded outputs (N,3,H,W) in [0,1] and seconds per image, through the pipeline's
    evaluation loop (seeded as `maskgit inpaint` seeds the same images), with a progress bar."""
    with progress_bar(len(images01), desc) as bar:
        return InpaintPipeline(model, settings).inpaint_tensors(
            images01, known, seed, settings, batch_size, composite=False, tokens_out=tokens_out,
            progress=lambda done: bar.update(done - bar.n))


def progress_bar(total: int, desc: str):
    """A progress bar on stderr for work over `total` images (off when stderr is not a terminal
    and for tiny jobs)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="image", file=sys.stderr, leave=False, disable=total < 2 or None)


@torch.no_grad()
def decode_all(model, tokens: torch.Tensor, batch_size: int = 64, images01: torch.Tensor | None = None,
               known: torch.Tensor | None = None, decode_known: bool | None = None,
               precision: str = "fp32") -> torch.Tensor:
    """Token grids (N, n_tokens) -> images (N,3,H,W) in [0,1]; `images01` and `known` are the
    known pixels a mask-conditioned decoder sees (see `MaskGIT.decode`)."""
    out = []
    for i in range(0, len(tokens), batch_size):
        sl = slice(i, i + batch_size)
        im, kn = (images01[sl], known[sl]) if images01 is not None else (None, None)
        out.append(model.decode(tokens[sl].to(model.device), im, kn, decode_known, precision).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def reconstruct_all(model, images01: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenizer round trip: (reconstructions in [0,1], token indices)."""
    recs, toks = [], []
    for i in range(0, len(images01), batch_size):
        t = model.encode(images01[i:i + batch_size].to(model.device))
        toks.append(t.cpu())
        recs.append(model.decode(t).float().cpu())
    return torch.cat(recs), torch.cat(toks)


def codebook_stats(tokens: torch.Tensor, codebook_size: int) -> dict:
    counts = torch.bincount(tokens.flatten().long(), minlength=codebook_size).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    return {"codebook_used": int((counts > 0).sum()), "codebook_size": int(codebook_size),
            "perplexity": float(torch.exp(-(nz * nz.log()).sum()))}


def reconstruction_metrics(model, images01: torch.Tensor, inception=None, batch_size: int = 64,
                           device="cpu") -> dict:
    """FID / PSNR / SSIM / L1 of the tokenizer's reconstructions against the originals, plus
    codebook usage and perplexity on these images."""
    rec, toks = reconstruct_all(model, images01, batch_size)
    metrics = evaluate_images(to_uint8(rec), to_uint8(images01), None, inception, 50, device)
    metrics.update(codebook_stats(toks, model.codebook_size))
    return metrics


# ----------------------------------------------------------------------------- records
_COMMAND: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """Remember the command line a result came from (set by `cli.main`, which may be called
    with an argv that is not `sys.argv`, e.g. from tests or another program)."""
    global _COMMAND
    _COMMAND = list(argv)


def record(model_dir=None, config: dict | None = None, seeds=None, **extra) -> dict:
    """The provenance every result file carries."""

    argv = _COMMAND if _COMMAND is not None else [Path(sys.argv[0]).name] + sys.argv[1:]
    rec = {"command": " ".join(argv), "argv": list(argv), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "model_dir": str(Path(model_dir).resolve()) if model_dir else None,
           "model_hash": model_hash(model_dir) if model_dir and Path(model_dir).is_dir() else None,
           "config": config, "seeds": seeds,
           "versions": {"maskgit_inpaint": __version__, "torch": torch.__version__,
                        "torchmetrics": torchmetrics.__version__},
           "threads": torch.get_num_threads(), "processor": cpu_name(), "native_bf16_cpu": native_bf16("cpu")}
    rec.update(extra)
    return rec


def write_json(path: Path, data: dict) -> Path:
    text = json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n"
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))
    return Path(path)


def write_csv(path: Path, rows: list[dict]) -> Path:
    def w(tmp):
        with open(tmp, "w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)

    atomic_write(Path(path), w)
    return Path(path)


def mean_std(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


# ----------------------------------------------------------------------------- sweep
def sweep_configs(base: InpaintSettings, axes: dict[str, list]) -> list[InpaintSettings]:
    """Every combination of the `axes` (settings field -> values; the others stay `base`'s). A
    stop point beyond T is skipped (it would equal stopping at T); a sweet spot of None means
    "run all T steps"."""
    names = list(axes)
    out = []
    for values in itertools.product(*(axes[n] for n in names)):
        change = dict(zip(names, values))
        steps = change.get("steps", base.steps)
        spot = change.get("sweet_spot", base.sweet_spot if "steps" not in change else None)
        if spot is not None and spot > steps:
            continue
        cfg = replace(base, **{**change, "sweet_spot": spot})
        cfg = replace(cfg, sweet_spot=None) if spot is not None and spot >= cfg.steps else cfg
        cfg.validate()
        out.append(cfg)
    return out


def run_sweep(model, model_dir, images01, known, names, configs, seeds, out_dir, inception=None,
              batch_size: int = 64, device="cpu", log=print, token_cache=None) -> dict:
    """Inpaint the set once per (config, seed); FID of raw decodes and of composites against the
    ground truth (its features computed once). Writes sweep.csv (one row per run, rewritten
    after each run), sweep.md (mean +- std over seeds), sweep.png (bar chart) and sweep.json
    (everything). With `token_cache` (a folder) the sampled tokens are kept there, and a run
    whose tokens are already there only decodes them (see `TokenCache`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inception = inception or load_inception(default_inception_path(), device)
    gt_u8 = to_uint8(images01)
    gt_f = inception_features(gt_u8, inception, 50, device)
    mhash = record(model_dir)["model_hash"]
    cache = TokenCache(token_cache, model, images01, known, names, batch_size, log) if token_cache else None
    rows = []
    for i, cfg in enumerate(configs):
        for seed in seeds:
            hit = cache.get(cfg, seed, len(names)) if cache else None
            if hit:
                raw, spi = decode_all(model, hit[0], batch_size, images01, known, cfg.decode_known, cfg.precision), hit[1]
            else:
                toks: list = []
                raw, spi = inpaint_all(model, images01, known, cfg, seed, batch_size, toks,
                                       desc=f"run {i + 1}/{len(configs)}, seed {seed}")
                if cache:
                    cache.put(cfg, seed, torch.cat(toks), spi)
            comp = paste_known(raw, images01, known, cfg.blend)
            raw_f = inception_features(to_uint8(raw), inception, 50, device)
            comp_f = inception_features(to_uint8(comp), inception, 50, device)
            fid_raw, fid_comp = frechet_distance(raw_f, gt_f), frechet_distance(comp_f, gt_f)
            kid_raw, kid_comp = kernel_inception_distance(raw_f, gt_f)[0], kernel_inception_distance(comp_f, gt_f)[0]
            rows.append(setting_columns(cfg, model) | {
                "seed": seed, "fid_raw": round(fid_raw, 4), "fid_composite": round(fid_comp, 4),
                "kid_raw": round(kid_raw, 6), "kid_composite": round(kid_comp, 6),
                "s_per_image": round(spi, 5), "images": len(names), "model_hash": mhash, "tokens_cached": bool(hit)})
            write_csv(out_dir / "sweep.csv", rows)  # a sweep stopped part-way keeps its finished runs
            log(f"[{i + 1}/{len(configs)}] " + " ".join(f"{k}={_fmt(rows[-1][k])}" for k in _varying(configs, model))
                + f" seed={seed}: FID raw {fid_raw:.2f}, composite {fid_comp:.2f}, {1000 * spi:.0f} ms/image"
                + (" (tokens from the cache)" if hit else ""))
    summary = summarize(rows)
    first = setting_columns(configs[0], model)
    rec = record(model_dir, model.config, list(seeds), images=len(names), precision=first["precision"],
                 hole_fill=first["hole_fill"], blend=first["blend"], decode_known=first["decode_known"],
                 settings=[asdict(c) for c in configs], runs=rows, summary=summary)
    write_json(out_dir / "sweep.json", rec)
    (out_dir / "sweep.md").write_text(markdown_table(summary, rec))
    plot_sweep(summary, out_dir / "sweep.png", title=f"{len(names)} images, seeds {list(seeds)}")
    return rec


def _guided(cfg) -> int:
    """How many steps a run guided: 0 without guidance, else its first `guidance_steps` (all by default)."""
    if not cfg.guidance:
        return 0
    return min(cfg.guidance_steps or cfg.stop, cfg.stop)


def setting_columns(cfg: InpaintSettings, model) -> dict:
    """A run's settings as result columns, one per InpaintSettings field: the stop point and the
    guided steps as run, the precision as resolved, decode_known None for a decoder without it."""
    d = asdict(cfg)
    d.update(sweet_spot=cfg.stop, guidance_steps=_guided(cfg),
             precision=resolve_precision(cfg.precision, model.device),
             decode_known=cfg.decode_known if model.conditioned_decoder else None)
    return d


SETTING_KEYS = tuple(InpaintSettings.field_names())
# the columns every sweep table shows; the other settings only where they vary
ALWAYS = ("gamma", "steps", "sweet_spot")
LABELS = {"gamma": "gamma", "steps": "T", "sweet_spot": "stop", "choice_temperature": "choice temp",
          "token_temperature": "token temp", "guidance_steps": "guided steps"}


def _varying(rows_or_configs, model=None) -> list[str]:
    rows = [setting_columns(c, model) if model is not None else c for c in rows_or_configs]
    return [k for k in SETTING_KEYS if k in ALWAYS or len({r.get(k) for r in rows}) > 1]


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return f"{v:g}" if isinstance(v, float) else str(v)


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in SETTING_KEYS), []).append(r)
    out = []
    for k, rs in groups.items():
        raw_m, raw_s = mean_std([r["fid_raw"] for r in rs])
        comp_m, comp_s = mean_std([r["fid_composite"] for r in rs])
        spi, _ = mean_std([r["s_per_image"] for r in rs])
        kid_m, kid_s = mean_std([r["kid_composite"] for r in rs])
        out.append(dict(zip(SETTING_KEYS, k)) | {"seeds": len(rs), "fid_raw_mean": raw_m, "fid_raw_std": raw_s,
                                                 "fid_composite_mean": comp_m, "fid_composite_std": comp_s,
                                                 "kid_composite_mean": kid_m, "kid_composite_std": kid_s,
                                                 "s_per_image": spi})
    return out


def _cached_note(runs: list[dict]) -> str:
    n = sum(bool(r.get("tokens_cached")) for r in runs)
    return (f" {n} of {len(runs)} runs decoded tokens sampled by an earlier sweep (--token-cache); "
            "their s/image is that of the run that sampled them.") if n else ""


def markdown_table(summary: list[dict], rec: dict) -> str:
    cols = _varying(summary)
    fixed = {k: summary[0].get(k) for k in SETTING_KEYS if k not in cols} if summary else {}
    lines = [f"<!-- {rec['command']} -->",
             f"Model hash `{rec['model_hash']}`, {rec['images']} images, seeds {rec['seeds']}; "
             + ", ".join(f"{LABELS.get(k, k.replace('_', ' '))} {_fmt(v)}" for k, v in fixed.items()
                         if v is not None)
             + "; FID mean +- std over seeds." + _cached_note(rec.get("runs", [])),
             "",
             "| " + " | ".join(LABELS.get(k, k.replace("_", " ")) for k in cols)
             + " | FID raw | FID composite | KID composite (x1000) | s/image |",
             "|" + "---|" * len(cols) + "---:|---:|---:|---:|"]
    for r in summary:
        lines.append("| " + " | ".join(_fmt(r[k]) for k in cols)
                     + f" | {r['fid_raw_mean']:.2f} +- {r['fid_raw_std']:.2f} | "
                       f"{r['fid_composite_mean']:.2f} +- {r['fid_composite_std']:.2f} | "
                       f"{1000 * r['kid_composite_mean']:.2f} +- {1000 * r['kid_composite_std']:.2f} | "
                       f"{r['s_per_image']:.3f} |")
    return "\n".join(lines) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(summary: list[dict], path: Path, title: str = "") -> Path:
    """Grouped bars (raw, composite) per sampler setting with +-std error bars (Figures 4 and 9)."""
    plt = _plt()
    cols = [k for k in _varying(summary) if k not in ALWAYS]
    labels = [f"{r['gamma']}\nT={r['steps']} stop={r['sweet_spot']}"
              + "".join(f"\n{LABELS.get(k, k)}={_fmt(r[k])}" for k in cols) for r in summary]
    x = np.arange(len(summary))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(summary) + 2), 4.2))
    w = 0.4
    ax.bar(x - w / 2, [r["fid_raw_mean"] for r in summary], w, yerr=[r["fid_raw_std"] for r in summary],
           label="raw decode", capsize=3, color="#4c72b0")
    ax.bar(x + w / 2, [r["fid_composite_mean"] for r in summary], w,
           yerr=[r["fid_composite_std"] for r in summary], label="known pixels pasted back", capsize=3,
           color="#dd8452")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("FID (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------- fid-curve
def run_checkpoints(run_dir) -> list[Path]:
    ck = Path(run_dir) / "checkpoints"
    files = sorted(ck.glob("epoch*.ckpt"))
    if not files:
        raise FileNotFoundError(f"{ck}: no per-epoch checkpoints (epochNNNN.ckpt) to evaluate")
    return files


def run_fid_curve(run_dir, images_dir, masks_dir=None, out_dir=None, seed: int = 0, settings: dict | None = None,
                  limit: int | None = None, batch_size: int = 64, device="cpu", inception=None,
                  log=print, invert_mask: bool = False) -> dict:
    """FID of every epoch checkpoint of a run: inpainting FID (raw and composite) for a
    transformer run, reconstruction FID for a tokenizer run. `settings`: InpaintSettings fields
    over the run's own. Writes fid_curve.{csv,json,png}."""
    # checked before minutes of inpainting, not when the first composite is made
    InpaintSettings().override(**(settings or {}))
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    kind = config.get("kind")
    ckpts = run_checkpoints(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "fid_curve"
    out_dir.mkdir(parents=True, exist_ok=True)
    size = config["tokenizer"].get("image_size", 64)
    if kind == "transformer":
        if masks_dir is None:
            raise ValueError(f"{run_dir} is a transformer run: pass --masks DIR to measure inpainting FID")
        names, images01, known = load_eval_set(images_dir, masks_dir, size, limit, invert_mask)
        tok = MaskGIT.from_dir(config["tokenizer_dir"], require_transformer=False)
    else:
        names, images01 = load_images(images_dir, size, limit)
        known, tok = None, None
    inception = inception or load_inception(default_inception_path(), device)
    gt_f = inception_features(to_uint8(images01), inception, 50, device)
    rows = []
    sampler = None
    for path in ckpts:
        meta = load_checkpoint_state(path)
        model, _ = model_from_checkpoint(run_dir, path, config, tokenizer=tok)
        model = model.to(device)
        row = {"checkpoint": path.name, "epoch": int(meta.get("epoch", -1)) + 1,
               "step": int(meta.get("global_step", -1))}
        if kind == "transformer":
            # a checkpoint has no weak transformer: weak guidance (e.g. kept from an --init model) is off
            sampler = model.default_settings.override(**({"weak_guidance": False} | (settings or {})))
            raw, spi = inpaint_all(model, images01, known, sampler, seed, batch_size, desc=path.name)
            row["fid_raw"] = frechet_distance(inception_features(to_uint8(raw), inception, 50, device), gt_f)
            comp = paste_known(raw, images01, known, sampler.blend)
            row["fid_composite"] = frechet_distance(inception_features(to_uint8(comp), inception, 50, device), gt_f)
            row["s_per_image"] = spi
        else:
            rec, toks = reconstruct_all(model, images01, batch_size)
            row["fid_reconstruction"] = frechet_distance(inception_features(to_uint8(rec), inception, 50, device),
                                                         gt_f)
            row.update(codebook_stats(toks, model.codebook_size))
        rows.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
        log(" ".join(f"{k}={v}" for k, v in rows[-1].items()))
    write_csv(out_dir / "fid_curve.csv", rows)
    rec = record(None, config, [seed], run_dir=str(run_dir.resolve()), kind=kind, images=len(names),
                 precision=resolve_precision(sampler.precision if sampler else "auto", device),
                 sampler=asdict(sampler) if sampler else None,
                 hole_fill=sampler.hole_fill if sampler else None,
                 blend=sampler.blend if sampler else None,
                 rows=rows)
    write_json(out_dir / "fid_curve.json", rec)
    plot_fid_curve(rows, out_dir / "fid_curve.png", kind, title=f"{run_dir.name}: {len(names)} images")
    return rec


def plot_fid_curve(rows: list[dict], path: Path, kind: str, title: str = "") -> Path:
    """FID against epoch (the report's Figure 10)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["epoch"] for r in rows]
    keys = [("fid_raw", "raw decode"), ("fid_composite", "known pixels pasted back")] if kind == "transformer" \
        else [("fid_reconstruction", "tokenizer reconstruction")]
    for k, label in keys:
        ax.plot(xs, [r[k] for r in rows], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_xticks(xs)  # whole epochs only
    ax.set_ylabel("FID")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return Path(path)
