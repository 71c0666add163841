"""Training runs: a run directory, its resolved config, the Lightning trainer, resume and --init."""
from __future__ import annotations

import copy
import datetime
import logging
import math
import os
import shutil
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn as nn
import yaml
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from ..checkpoints import WeightsError, atomic_write, load_safetensors, load_strict
from ..config import merge
from ..data import (NORMALIZATIONS, ImageTensorDataset, ResumableLoader, context_cache, load_folder, split_files,
                    token_cache)
from ..model import MaskGIT, model_hash
from ..precision import cpu_name
from ..tokenizer import COND_PARAMS
from ..widen import widen_decoder
from .callbacks import AtomicCheckpointIO, LossCurve, ReconGrid, StepLimit, StepProgressBar, StepTimer, _checkpoints
from .config import DATA, default_precision, run_length, training_config
from .stage1 import TokenizerModule
from .stage2 import TransformerModule

log = logging.getLogger("maskgit_inpaint")


def save_run_config(run_dir: Path, config: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config, sort_keys=False)
    atomic_write(run_dir / "config.yaml", lambda tmp: Path(tmp).write_text(text))


def load_run_config(run_dir: Path) -> dict:
    p = Path(run_dir) / "config.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: not a training run (no config.yaml)")
    return yaml.safe_load(p.read_text())


def _normalization(config: dict) -> dict:
    norm = config.get("normalization")
    if isinstance(norm, str):
        norm = NORMALIZATIONS[norm]
    return norm or NORMALIZATIONS[(config.get("data") or {}).get("normalization", "default")]



def _load_split(train_files: list[Path], val_files: list[Path], size: int,
                train_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation images decoded in one pass, so the unreadable ones of both are
    listed together and skipped; refused only when no training image is left."""
    images, kept = load_folder(train_files + val_files, size)
    val = set(val_files)
    is_val = torch.tensor([p in val for p in kept], dtype=torch.bool)
    if not (~is_val).any():
        raise ValueError(f"{train_dir}: none of the {len(train_files)} training images could be read")
    if val_files and not is_val.any():
        log.warning("none of the %d validation images could be read: the run goes on without validation",
                    len(val_files))
    return images[~is_val], images[is_val]


def _check_batches(n_items: int, batch_size: int, what: str, data_dir) -> None:
    if n_items // batch_size == 0:
        raise ValueError(f"{data_dir}: {n_items} training {what} is fewer than one batch of {batch_size}; "
                         f"add images or lower --batch-size")


class _NoTips(logging.Filter):
    """Drops Lightning's advertising tips (e.g. for its cloud logger) from a training command's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip")


def _trainer(run_dir: Path, t: dict, callbacks: list, resume: bool = False, **kw) -> L.Trainer:
    """The trainer of a run, without a length: `_set_length` gives it one (`StepLimit`)."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in rank_zero.filters):
        rank_zero.addFilter(_NoTips())

    # a resumed run logs to its own CSV folder so the history before the resume is kept
    version = ""
    if resume:
        n = 1
        while (run_dir / "logs" / f"resume{n}").exists():
            n += 1
        version = f"resume{n}"
    loggers = [CSVLogger(run_dir, name="logs", version=version),
               TensorBoardLogger(run_dir, name="logs", version="tb")]
    if t.get("time_budget_s"):  # Lightning's Timer stops the run; its clock is checkpointed
        kw["max_time"] = datetime.timedelta(seconds=float(t["time_budget_s"]))
    # checkpoints written atomically; the training loader shards itself across DDP ranks (and
    # keeps its place for a mid-epoch resume), so Lightning must not swap its sampler
    precision = default_precision(t["precision"], kw.get("accelerator", "auto"))
    print(f"training precision {precision} ({t['precision']}; {cpu_name()})", flush=True)
    return L.Trainer(default_root_dir=run_dir, max_steps=-1, max_epochs=-1,
                     precision=precision, logger=loggers,
                     callbacks=callbacks + [StepLimit(), StepProgressBar()], plugins=[AtomicCheckpointIO()],
                     use_distributed_sampler=False, log_every_n_steps=t["log_every"], num_sanity_val_steps=0,
                     enable_model_summary=False, **kw)


def _set_length(trainer: L.Trainer, module, t, n_items: int, accumulate: int = 1) -> int:
    """Sets the run's length in steps on the module (its LR schedule), the callback that stops
    the run (`StepLimit`) and the progress bar; returns it. Steps per epoch as `ResumableLoader`
    makes them on this many devices. Lightning is given neither limit (see `StepLimit`): a limit
    in epochs is one in steps."""
    batches = n_items // (trainer.num_devices * trainer.num_nodes) // t["batch_size"]
    total, epochs = run_length(t, max(1, math.ceil(batches / accumulate)))
    module.total_steps = total
    for cb in trainer.callbacks:
        if isinstance(cb, StepLimit):
            cb.total_steps = total
        if isinstance(cb, StepProgressBar):
            cb.total_steps, cb.epochs, cb.accumulate = total, epochs, accumulate
    return total


# Lightning warnings that say nothing a user of these commands can act on
_QUIET = (
    # the stage-1 module steps its optimisers by hand; its periodic checkpoints are meant to hold
    # the weights after the step (the state a resume continues from)
    "Using ModelCheckpoint with manual optimization",
    # Lightning's own use of a torch API that newer torch deprecates
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # small datasets: steps are still logged every `log_every` steps, across epochs
    "The number of training batches .* is smaller than the logging interval",
    # a run without a val split (`val_fraction: 0`) skips validation by design
    "You defined a `validation_step` but have no `val_dataloader`",
)


def _fit(trainer: L.Trainer, module, loaders: dict, ckpt: str | None) -> None:
    """`trainer.fit`, without the Lightning warnings in `_QUIET` (and the one that the run's
    checkpoint folder is not empty: `_prepare_run_dir` has refused or cleared a run there)."""
    with warnings.catch_warnings():
        for message in _QUIET + ("Checkpoint directory .* exists and is not empty",):
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(module, **loaders, ckpt_path=ckpt)


def _is_first_process() -> bool:
    """Rank 0 of the launch (Lightning re-runs the command for the other local ranks)."""
    return all(int(os.environ.get(k, 0) or 0) == 0 for k in ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK"))


def _checkpoint_step(path: Path) -> tuple[int, int] | str:
    """(run step, epoch) of a checkpoint that --resume can continue from, or why it cannot."""
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        sd = ck["state_dict"]
        if not ck.get("optimizer_states") or "loops" not in ck:
            return "weights only, no training state"
        # stage 1 counts its own steps (two optimisers make global_step count double)
        return int(sd["step_count"]) if "step_count" in sd else int(ck["global_step"]), int(ck["epoch"])
    except Exception as e:  # a truncated or foreign file: any of several errors
        return f"unreadable ({' '.join(str(e).split())[:120]})"


def _resume_from(run_dir: Path) -> tuple[Path | None, int]:
    """The checkpoint --resume continues from: last.ckpt, or when it is missing or unreadable
    the newest readable other one; (None, 0) when the run was stopped before its first save."""
    ck = run_dir / "checkpoints"
    last = ck / "last.ckpt"
    found = _checkpoint_step(last) if last.is_file() else "missing"
    if not isinstance(found, str):
        log.info("resuming %s from %s at step %d", run_dir, last, found[0])
        return last, found[0]
    why = f"{last} is {found}"
    others = []
    for p in ck.glob("*.ckpt") if ck.is_dir() else []:
        if p != last and not isinstance(step := _checkpoint_step(p), str):
            others.append((step, p.stat().st_mtime, p))
    if not others:
        log.warning("%s and no other checkpoint is readable: the run starts again from step 0", why)
        return None, 0
    (step, _), _, path = max(others)
    log.warning("%s: resuming from %s at step %d instead", why, path, step)
    return path, step


def _prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> tuple[str | None, int]:
    """Refuses a run directory that already holds checkpoints unless the run is resumed or
    overwritten, clears it for --overwrite, and picks the checkpoint to resume from."""
    ck = run_dir / "checkpoints"
    if resume and overwrite:
        raise ValueError("--resume continues the run and --overwrite starts it over: give one of them")
    held = sorted(ck.glob("*.ckpt")) if ck.is_dir() else []
    first = _is_first_process()
    if not resume:
        if held and not overwrite:
            raise FileExistsError(f"{run_dir} already holds a run ({len(held)} checkpoints in {ck}); pass --resume to "
                                  f"continue it, --overwrite to delete it and start over, or choose another --out")
        if overwrite and first:
            for name in ("checkpoints", "logs", "recon"):
                shutil.rmtree(run_dir / name, ignore_errors=True)
            (run_dir / "loss_curve.png").unlink(missing_ok=True)
            if held:
                log.info("--overwrite: deleted the run in %s (%d checkpoints)", run_dir, len(held))
        return None, 0
    path, step = _resume_from(run_dir)
    if first and ck.is_dir():
        for tmp in ck.glob(".*.tmp"):  # the unfinished write of a killed run
            tmp.unlink(missing_ok=True)
        for p in ck.glob("epoch*.ckpt"):  # from after the resume point: the resumed run makes them again
            if not isinstance(found := _checkpoint_step(p), str) and found[0] > step:
                p.unlink()
    return (str(path) if path is not None else None), step


def _resumed_config(run_dir: Path, config: dict, section: str) -> dict:
    """The run's own config, with only the training settings given now laid over its section."""
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: nothing to resume (no config.yaml: not a training run)")
    return merge(load_run_config(run_dir), {section: config.get(section) or {}})


def _already_done(run_dir: Path, step: int | None, total: int) -> bool:
    if step is not None and step >= total:
        log.info("the run in %s is at step %d of its %d: nothing to train (raise --max-steps or --max-epochs "
                 "to go on)", run_dir, step, total)
        return True
    return False


def _check_init_resume(init, resume: bool) -> None:
    if init is not None and resume:
        raise ValueError("--init starts a new run from a model directory's weights and --resume continues "
                         "a run: give one of them")


def _load_init(init: str | Path, require_transformer: bool):
    """The model directory a new run starts from (`--init`): its weights and architecture are
    taken over, the optimiser and LR schedule start afresh. Not the same as --resume."""
    model = MaskGIT.from_dir(init, require_transformer=require_transformer)
    return model, {"model_dir": str(Path(init).resolve()), "model_hash": model_hash(init)}


def train_tokenizer(config: dict, run_dir: str | Path, resume: bool = False, accelerator: str = "auto",
                    init: str | Path | None = None, overwrite: bool = False) -> Path:
    """Stage 1. `init`: a model directory whose tokenizer weights (and architecture) to start from.
    `overwrite`: delete the run already in `run_dir` (else refused unless resumed)."""
    run_dir = Path(run_dir)
    _check_init_resume(init, resume)
    if resume:
        config = _resumed_config(run_dir, config, "tokenizer_training")
    init_model = None
    if init is not None:
        init_model, init_record = _load_init(init, require_transformer=False)
        config = copy.deepcopy(config)
        user_tok = config.get("tokenizer") or {}
        config["tokenizer"] = copy.deepcopy(init_model.config["tokenizer"])
        # the one architecture change allowed on top of --init: adding a mask-conditioned decoder
        if user_tok.get("dec_cond") and not config["tokenizer"].get("dec_cond"):
            for key in ("dec_cond", "dec_cond_width", "dec_cond_levels"):
                if key in user_tok:
                    config["tokenizer"][key] = user_tok[key]
        config["normalization"] = init_model.config.get("normalization") or config.get("normalization")
        config["init"] = init_record
        widen = training_config(config, "tokenizer")["widen_decoder"]
        if widen != 1:
            wide = widen_decoder(init_model.tokenizer.float(), widen)
            if user_tok.get("dec_cond") and not init_model.tokenizer.cfg.dec_cond:
                raise ValueError("widen_decoder and adding dec_cond are separate steps: add the branch first")
            init_model.tokenizer = wide
            config["tokenizer"] = wide.cfg.to_dict()
            config["tokenizer_training"] = {**config.get("tokenizer_training", {}), "widen_decoder": 1}
            config["init"]["widened_decoder"] = widen
    elif training_config(config, "tokenizer")["widen_decoder"] != 1 and not resume:
        raise ValueError("tokenizer_training.widen_decoder widens a trained decoder: give --init MODEL_DIR")
    ckpt, start = _prepare_run_dir(run_dir, resume, overwrite)
    config = copy.deepcopy(config)
    config["kind"] = "tokenizer"
    t = training_config(config, "tokenizer")
    if not t["cond_hole_weight"] > 0:
        raise ValueError(f"tokenizer_training.cond_hole_weight must be positive, got {t['cond_hole_weight']}")
    if t["cond_only"] and not config["tokenizer"].get("dec_cond"):
        raise ValueError("tokenizer_training.cond_only=true trains only a mask-conditioned decoder's branch: "
                         "set tokenizer.dec_cond=true as well")
    data = {**DATA, **(config.get("data") or {})}
    config["data"] = data
    config["normalization"] = _normalization(config)
    save_run_config(run_dir, config)
    L.seed_everything(t["seed"], workers=True)
    size = config["tokenizer"].get("image_size", 64)
    train_files, val_files = split_files(data["train"], data["val"], data["val_fraction"], t["seed"])
    train_u8, val_u8 = _load_split(train_files, val_files, size, data["train"])
    norm = config["normalization"]
    train_ds = ImageTensorDataset(train_u8, norm["mean"], norm["std"], flip=True)
    loaders = {"train_dataloaders": ResumableLoader(train_ds, t["batch_size"], seed=t["seed"], flip=True,
                                                    num_workers=t["num_workers"])}
    grid = None
    if len(val_u8):
        val_ds = ImageTensorDataset(val_u8, norm["mean"], norm["std"], flip=False)
        loaders["val_dataloaders"] = DataLoader(val_ds, batch_size=64, shuffle=False)
        grid = torch.stack([val_ds[i] for i in range(min(16, len(val_ds)))])
    _check_batches(len(train_ds), t["batch_size"], "images", data["train"])
    module = TokenizerModule(config)
    if init_model is not None:
        missing, unexpected = module.vqgan.load_state_dict(init_model.tokenizer.state_dict(), strict=False)
        new = [k for k in missing if not k.startswith(COND_PARAMS)]
        if new or unexpected:
            raise ValueError(f"--init {init}: its tokenizer weights do not fit this architecture "
                             f"(missing {new[:5]}, unexpected {unexpected[:5]})")
        log.info("tokenizer weights initialised from %s%s", init,
                 " (the decoder's conditioning branch starts at zero)" if missing else "")
    if not resume:
        _load_parts(module, t)
    module.reset_ema()
    cbs = _checkpoints(run_dir, "val/l1" if len(val_u8) else "train/l1", t)
    cbs += [LossCurve(run_dir, ("train/l1", "val/l1")), StepTimer()]
    if grid is not None:
        cbs.append(ReconGrid(run_dir, grid))
    trainer = _trainer(run_dir, t, cbs, resume=resume, accelerator=accelerator,
                       devices=t["devices"], num_nodes=t["num_nodes"], strategy=_stage1_strategy(t["strategy"]))
    total = _set_length(trainer, module, t, len(train_ds))
    if not _already_done(run_dir, ckpt and start, total):
        _fit(trainer, module, loaders, ckpt)
    return run_dir


def _load_parts(module: TokenizerModule, t) -> None:
    """`init_decoder` / `init_disc`: decoder-side and discriminator weights over the init ones,
    each file loaded whole or refused with the keys that do not fit."""
    if t["init_disc"] and module.disc is None:
        raise ValueError("tokenizer_training.init_disc: this run has no discriminator (gan_weight is 0)")
    parts = [("init_decoder", "decoder side",
              lambda: nn.ModuleDict({"decoder": module.vqgan.decoder, "post_quant_conv": module.vqgan.post_quant_conv}),
              "a widened decoder needs the same --widen-decoder and --init it was trained with"),
             ("init_disc", "discriminator", lambda: module.disc,
              "disc_channels and disc_layers must match the run that trained it")]
    for key, what, target, hint in parts:
        if not t[key]:
            continue
        try:
            sd = load_safetensors(t[key])
        except WeightsError as e:
            raise WeightsError(f"tokenizer_training.{key}: {e}") from None
        try:
            load_strict(target(), sd, t[key])
        except WeightsError as e:
            raise WeightsError(f"tokenizer_training.{key}: {e} ({hint})") from None
        log.info("%s initialised from %s", what, t[key])


def _stage1_strategy(strategy: str) -> str:
    """Stage 1 steps its generator and discriminator by hand, and each backward leaves the other
    side's parameters without a gradient: DDP must be told to expect unused parameters."""
    return "ddp_find_unused_parameters_true" if strategy == "ddp" else strategy


def train_transformer(config: dict, run_dir: str | Path, tokenizer_dir: str | Path | None, resume: bool = False,
                      accelerator: str = "auto", init: str | Path | None = None, overwrite: bool = False) -> Path:
    """Stage 2 on the tokens of `tokenizer_dir`. `init`: a full model directory whose transformer
    weights (and architecture) to start from; its tokenizer is used when `tokenizer_dir` is None."""
    run_dir = Path(run_dir)
    _check_init_resume(init, resume)
    if resume:
        config = _resumed_config(run_dir, config, "transformer_training")
        tokenizer_dir = tokenizer_dir or config.get("tokenizer_dir")
    init_model = None
    if init is not None:
        init_model, init_record = _load_init(init, require_transformer=True)
        tokenizer_dir = tokenizer_dir or init
        config = copy.deepcopy(config)
        # the architecture comes from the weights; dropout (no parameters) stays as configured
        arch = {k: v for k, v in init_model.config["transformer"].items() if k != "dropout"}
        config["transformer"] = {**(config.get("transformer") or {}), **copy.deepcopy(arch)}
        config["init"] = init_record
    ckpt, start = _prepare_run_dir(run_dir, resume, overwrite)
    if not tokenizer_dir:
        raise ValueError("stage 2 needs --tokenizer MODEL_DIR (a tokenizer exported with `maskgit export`)")
    tok_model = MaskGIT.from_dir(tokenizer_dir, require_transformer=False)
    # an fp16 export of the same tokenizer counts as the same (rtol: fp16 rounding)
    if init_model is not None and any(not torch.allclose(v, tok_model.tokenizer.state_dict()[k], rtol=1e-3, atol=1e-5)
                                      for k, v in init_model.tokenizer.state_dict().items()):
        log.warning("the transformer of %s was trained on the tokens of another tokenizer than %s: "
                    "expect it to start far from converged", init, tokenizer_dir)
    config = copy.deepcopy(config)
    config["kind"] = "transformer"
    config["tokenizer_dir"] = str(Path(tokenizer_dir).resolve())
    config["tokenizer"] = tok_model.config["tokenizer"]
    config["normalization"] = tok_model.config.get("normalization")
    tcfg = dict(config.get("transformer") or {})
    tcfg["codebook_size"] = tok_model.codebook_size
    tcfg["num_tokens"] = tok_model.tokenizer.cfg.num_tokens
    config["transformer"] = tcfg
    t = training_config(config, "transformer")
    if not 0.0 <= t["context_prob"] <= 1.0:  # checked before minutes of token caching
        raise ValueError(f"transformer_training.context_prob must be in [0, 1], got {t['context_prob']}")
    data = {**DATA, **(config.get("data") or {})}
    config["data"] = data
    save_run_config(run_dir, config)
    L.seed_everything(t["seed"], workers=True)
    norm = config["normalization"]
    size = tok_model.image_size
    train_files, val_files = split_files(data["train"], data["val"], data["val_fraction"], t["seed"])
    dev = "cuda" if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda") else "cpu"
    train_tok = token_cache(run_dir / "cache" / "train_tokens.safetensors", tok_model.tokenizer, train_files, size,
                            norm["mean"], norm["std"], flip=t["flip"], device=dev)
    train_set = [train_tok]
    if t["context_views"] > 0:
        train_set += context_cache(run_dir / "cache" / "train_context.safetensors", tok_model.tokenizer, train_files,
                                   size, norm["mean"], norm["std"], flip=t["flip"], views=t["context_views"],
                                   seed=t["seed"], device=dev)
    loaders = {"train_dataloaders": ResumableLoader(TensorDataset(*train_set), t["batch_size"], seed=t["seed"],
                                                    num_workers=t["num_workers"])}
    if val_files:
        val_tok = token_cache(run_dir / "cache" / "val_tokens.safetensors", tok_model.tokenizer, val_files, size,
                              norm["mean"], norm["std"], flip=False, device=dev)
        val_set = [val_tok]
        if t["context_views"] > 0:
            val_set += context_cache(run_dir / "cache" / "val_context.safetensors", tok_model.tokenizer, val_files,
                                     size, norm["mean"], norm["std"], flip=False, views=1, seed=t["seed"] + 1,
                                     device=dev)
        loaders["val_dataloaders"] = DataLoader(TensorDataset(*val_set), batch_size=128, shuffle=False)
    _check_batches(len(train_tok), t["batch_size"], "samples (images, with flips)", data["train"])
    module = TransformerModule(config)
    if init_model is not None:
        load_strict(module.transformer, init_model.transformer.state_dict(), Path(init) / "transformer.safetensors")
        log.info("transformer weights initialised from %s", init)
    cbs = _checkpoints(run_dir, "val/loss" if val_files else "train/loss", t)
    cbs += [LossCurve(run_dir, ("train/loss", "val/loss")), StepTimer()]
    if t["ema_decay"] > 0:
        cbs.append(EMAWeightAveraging(decay=t["ema_decay"]))
    trainer = _trainer(run_dir, t, cbs, accumulate_grad_batches=t["accumulate"],
                       gradient_clip_val=t["grad_clip"], resume=resume, accelerator=accelerator, devices=t["devices"],
                       num_nodes=t["num_nodes"], strategy=t["strategy"])
    total = _set_length(trainer, module, t, len(train_tok), accumulate=t["accumulate"])
    if not _already_done(run_dir, ckpt and start, total):
        _fit(trainer, module, loaders, ckpt)
    return run_dir


