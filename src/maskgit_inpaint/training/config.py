"""Training settings of both stages as typed dataclasses (a misspelt key is an error naming it),
and the LR schedule they drive."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

import lightning as L
import torch
import torch.nn as nn
from lightning.pytorch.callbacks import Timer

from ..config import dataclass_from_dict
from ..precision import native_bf16


class _Settings:
    """Read like the dicts they replace (`t["lr"]`, `t.get("time_budget_s")`)."""

    def __getitem__(self, key: str):
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key, default)

    def keys(self):
        return [f.name for f in fields(self)]

    def validate(self) -> None:
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError(f"max_epochs must be at least 1 (or unset), got {self.max_epochs}")
        if self.keep_checkpoints < -1:
            raise ValueError(f"keep_checkpoints must be -1 (all) or at least 0, got {self.keep_checkpoints}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.accumulate < 1:
            raise ValueError(f"accumulate must be at least 1, got {self.accumulate}")


@dataclass
class TokenizerTraining(_Settings):
    # the length of a run when neither max_steps nor max_epochs is given
    default_epochs: ClassVar[int] = 10
    batch_size: int = 32
    lr: float = 2.0e-4
    betas: list = field(default_factory=lambda: [0.5, 0.9])
    weight_decay: float = 0.0
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    # each limits the run when given (both: the first reached); neither: `default_epochs`
    max_steps: int = -1
    max_epochs: int | None = None
    grad_clip: float = 1.0
    precision: str = "auto"
    gan_weight: float = 0.1
    disc_start: int = 5000
    # from disc_start the discriminator learns alone this many steps before the decoder sees it
    disc_warmup_steps: int = 0
    disc_lr: float = 2.0e-4
    disc_channels: int = 64
    disc_layers: int = 2
    revive_every: int = 200
    revive_min_usage: int = 1
    # last.ckpt (what --resume continues from) is refreshed every `ckpt_every_minutes` of
    # training, every `ckpt_every_steps` steps (0: off) and at each epoch end
    ckpt_every_minutes: float = 10.0
    ckpt_every_steps: int = 500
    log_every: int = 25
    num_workers: int = 0
    seed: int = 0
    accumulate: int = 1
    time_budget_s: float | None = None
    epoch_checkpoints: bool = True
    # epoch checkpoints kept beside last and best (the newest ones; -1: all)
    keep_checkpoints: int = 3
    # only the decoder side learns: every image keeps its tokens (`--decoder-only`)
    freeze_encoder: bool = False
    # mask-conditioned decoder (tokenizer.dec_cond): the share of samples decoded with nothing
    # known (plain decoding must keep working), and the pixel-mask bank the others draw from
    cond_empty_prob: float = 0.1
    cond_masks: int = 4096
    # its conditioning branch starts at zero when added to a trained decoder: a higher LR there
    cond_lr_mult: float = 1.0
    # weight of a hole pixel against a known one in its L1 loss: the known pixels are most of
    # the image, so an unweighted loss lets the branch trade hole quality for copying them
    cond_hole_weight: float = 1.0
    # train the conditioning branch alone: the encoder, codebook and decoder trunk keep their
    # weights, so the branch can add to the trunk's decoding of the hole but not retune it
    cond_only: bool = False
    # extra losses: MSE beside the L1, and discriminator feature matching (L1 between the
    # discriminator's features of real and decoded images, pix2pixHD) while the GAN is on
    mse_weight: float = 0.0
    fm_weight: float = 0.0
    # focal frequency loss (Jiang et al. 2021) beside the L1: weight 0 = off
    ffl_weight: float = 0.0
    # EMA of the decoder side's weights (0 = off): validated, kept in checkpoints, exported
    ema_decay: float = 0.0
    # with --init: widen the decoder by this factor, starting as the trained one (see widen.py)
    widen_decoder: int = 1
    # safetensors files laid over --init's weights (`maskgit export --decoder-parts` writes them):
    # the decoder side, e.g. a widened decoder trained in an earlier session, and the
    # discriminator, since a fresh one first pushes a trained decoder off for several epochs
    init_decoder: str | None = None
    init_disc: str | None = None
    # several GPUs or nodes (Lightning): devices per node, nodes, strategy (e.g. ddp)
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"

    def validate(self) -> None:
        super().validate()
        if not self.cond_hole_weight > 0:
            raise ValueError(f"tokenizer_training.cond_hole_weight must be positive, got {self.cond_hole_weight}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"tokenizer_training.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class TransformerTraining(_Settings):
    default_epochs: ClassVar[int] = 50
    batch_size: int = 64
    lr: float = 4.0e-4
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.05
    warmup_steps: int = 500
    min_lr_ratio: float = 0.05
    max_steps: int = -1
    max_epochs: int | None = None
    grad_clip: float = 1.0
    precision: str = "auto"
    label_smoothing: float = 0.1
    mask_mode: str = "gamma"
    mask_gamma: str = "cosine"
    loss_on: str = "masked"
    ema_decay: float = 0.0
    accumulate: int = 1
    ckpt_every_minutes: float = 10.0
    ckpt_every_steps: int = 500
    log_every: int = 25
    num_workers: int = 0
    seed: int = 0
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    flip: bool = True
    time_budget_s: float | None = None
    epoch_checkpoints: bool = True
    keep_checkpoints: int = 3
    # inpainting context: this many masked views per training image (0 = off), used for
    # a `context_prob` fraction of each batch (see `context_inputs`)
    context_views: int = 0
    context_prob: float = 0.5

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.context_prob <= 1.0:
            raise ValueError(f"transformer_training.context_prob must be in [0, 1], got {self.context_prob}")
        if self.loss_on not in ("masked", "all"):
            raise ValueError(f"transformer_training.loss_on must be masked or all, got {self.loss_on!r}")
        if self.mask_mode not in ("gamma", "seed", "inpaint"):
            raise ValueError(f"transformer_training.mask_mode must be gamma, seed or inpaint, got {self.mask_mode!r}")


DATA = {"train": None, "val": None, "val_fraction": 0.05, "normalization": "default"}


def training_config(config: dict, kind: str) -> TokenizerTraining | TransformerTraining:
    cls = TokenizerTraining if kind == "tokenizer" else TransformerTraining
    section = f"{kind}_training"
    return dataclass_from_dict(cls, config.get(section) or {}, section)


def run_length(t: TokenizerTraining | TransformerTraining, steps_per_epoch: int) -> tuple[int, int]:
    """(optimiser steps, epochs) of a run: `max_steps` and `max_epochs` each limit it when given
    (both: whichever is reached first), neither: the stage's `default_epochs`. The epochs are
    what the progress bar counts to; a run limited by steps stops inside its last one."""
    epochs = t.max_epochs if t.max_epochs is not None else (None if t.max_steps > 0 else t.default_epochs)
    total = min(s for s in (t.max_steps if t.max_steps > 0 else None,
                            epochs * steps_per_epoch if epochs else None) if s is not None)
    return total, math.ceil(total / steps_per_epoch)


def default_precision(requested: str, accelerator: str = "auto") -> str:
    """'auto': bf16 autocast where the processor has native bf16 (a GPU, AMX, AVX512-BF16), else
    fp32: emulated bf16 is several times slower (see `maskgit_inpaint.precision`)."""
    if requested != "auto":
        return requested
    gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if native_bf16("cuda" if gpu else "cpu") else "32-true"


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float, time_fraction: float = 0.0) -> float:
    """LR multiplier: linear warm-up, then cosine decay to `min_ratio` at `total`.

    `time_fraction`: the share of a wall-time budget already spent; after the warm-up the decay
    follows whichever of steps and time is further along, so a run stopped by its budget ends
    annealed instead of cut off at a high LR."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    if total <= warmup and time_fraction <= 0:
        return 1.0
    p = min(1.0, max((step - warmup) / max(1, total - warmup), time_fraction))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def _lr_lambda(module: L.LightningModule, t: dict, total: int):
    """The LR multiplier as a function of the step, reading the budget's clock from Lightning's
    Timer (its elapsed time survives --resume) when `time_budget_s` is set."""
    budget = t.get("time_budget_s")

    def fn(step: int) -> float:
        frac = 0.0
        if budget:
            trainer = module._trainer
            timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None) if trainer else None
            if timer is not None:
                frac = timer.time_elapsed("train") / float(budget)
        return warmup_cosine(step, t["warmup_steps"], total, t["min_lr_ratio"], frac)

    return fn


def _param_groups(module: nn.Module, weight_decay: float):
    """Weight decay on matrices only (not on norms, biases, embeddings of positions)."""
    decay, no_decay = [], []
    for n, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "pos_emb" not in n else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


