"""Training both stages with Lightning (precision, accumulation, checkpointing, DDP, logging).

A run directory holds `config.yaml` (the resolved config), `checkpoints/` (last, best and one per
epoch), `logs/` (TensorBoard and CSV), `loss_curve.png` and, for the tokenizer, `recon/`.
"""
from __future__ import annotations

import copy
import datetime
import logging
import math
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, Timer
from torch.utils.data import DataLoader, TensorDataset

from .checkpoints import atomic_write
from .config import INFERENCE_KEYS
from .schedules import gamma as gamma_fn
from .tokenizer import COND_PARAMS, VQGAN, TokenizerConfig
from .transformer import MaskTransformer, TransformerConfig
from .widen import widen_decoder

log = logging.getLogger("maskgit_inpaint")

TOKENIZER_TRAINING = {
    "batch_size": 32, "lr": 2.0e-4, "betas": [0.5, 0.9], "weight_decay": 0.0, "warmup_steps": 200,
    "min_lr_ratio": 0.1, "max_steps": -1, "max_epochs": 10, "grad_clip": 1.0, "precision": "auto",
    "gan_weight": 0.1, "disc_start": 5000, "disc_warmup_steps": 0, "disc_lr": 2.0e-4, "disc_channels": 64, "disc_layers": 2,
    "revive_every": 200, "revive_min_usage": 1, "ckpt_every_steps": 500, "log_every": 25,
    "num_workers": 0, "seed": 0, "accumulate": 1, "time_budget_s": None, "epoch_checkpoints": True,
    "freeze_encoder": False,
    # mask-conditioned decoder (tokenizer.dec_cond): the share of samples decoded with nothing
    # known (plain decoding must keep working), and the pixel-mask bank the others draw from
    "cond_empty_prob": 0.1, "cond_masks": 4096,
    # its conditioning branch starts at zero when added to a trained decoder: a higher LR there
    "cond_lr_mult": 1.0,
    # weight of a hole pixel against a known one in its L1 loss: the known pixels are most of
    # the image, so an unweighted loss lets the branch trade hole quality for copying them
    "cond_hole_weight": 1.0,
    # train the conditioning branch alone: the encoder, codebook and decoder trunk keep their
    # weights, so the branch can add to the trunk's decoding of the hole but not retune it
    "cond_only": False,
    # extra losses: MSE beside the L1, and discriminator feature matching (L1 between the
    # discriminator's features of real and decoded images, pix2pixHD) while the GAN is on
    "mse_weight": 0.0, "fm_weight": 0.0,
    # EMA of the decoder side's weights (0 = off): validated, kept in checkpoints, exported
    "ema_decay": 0.0,
    # with --init: widen the decoder by this factor, starting as the trained one (see widen.py)
    "widen_decoder": 1,
}
TRANSFORMER_TRAINING = {
    "batch_size": 64, "lr": 4.0e-4, "betas": [0.9, 0.95], "weight_decay": 0.05, "warmup_steps": 500,
    "min_lr_ratio": 0.05, "max_steps": -1, "max_epochs": 50, "grad_clip": 1.0, "precision": "auto",
    "label_smoothing": 0.1, "mask_mode": "gamma", "mask_gamma": "cosine", "loss_on": "masked",
    "ema_decay": 0.0, "accumulate": 1, "ckpt_every_steps": 500, "log_every": 25, "num_workers": 0,
    "seed": 0, "devices": "auto", "num_nodes": 1, "strategy": "auto", "flip": True,
    "time_budget_s": None, "epoch_checkpoints": True,
    # inpainting context: this many masked views per training image (0 = off), used for
    # a `context_prob` fraction of each batch (see `context_inputs`)
    "context_views": 0, "context_prob": 0.5,
}
DATA = {"train": None, "val": None, "val_fraction": 0.05, "normalization": "default"}


def training_config(config: dict, kind: str) -> dict:
    base = TOKENIZER_TRAINING if kind == "tokenizer" else TRANSFORMER_TRAINING
    section = f"{kind}_training"
    user = config.get(section) or {}
    unknown = set(user) - set(base)
    if unknown:
        raise ValueError(f"unknown {section} keys: {sorted(unknown)}")
    return {**base, **user}


def default_precision(requested: str) -> str:
    """bf16 autocast wherever it is fast: CUDA with bf16, and CPUs (2-3x on AVX-512 BF16)."""
    if requested != "auto":
        return requested
    return "bf16-mixed"


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


# ============================================================================= stage 1
class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix / taming-transformers), GroupNorm instead of BatchNorm so
    it behaves the same at any batch size."""

    def __init__(self, channels: int = 64, layers: int = 2):
        super().__init__()
        seq = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = channels
        for i in range(1, layers + 1):
            nxt = channels * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            seq += [nn.Conv2d(ch, nxt, 4, stride, 1, bias=False), nn.GroupNorm(32 if nxt % 32 == 0 else 1, nxt),
                    nn.LeakyReLU(0.2, True)]
            ch = nxt
        seq += [nn.Conv2d(ch, 1, 4, 1, 1)]
        self.main = nn.Sequential(*seq)

    def forward(self, x, features: bool = False):
        """Patch logits; with `features`, (logits, the activations after each LeakyReLU)."""
        if not features:
            return self.main(x)
        feats = []
        for layer in self.main:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                feats.append(x)
        return x, feats


class TokenizerModule(L.LightningModule):
    """VQGAN training: L1 + codebook/commitment + hinge PatchGAN with the adaptive weight of
    taming-transformers, switched on after `disc_start` steps; dead codes are revived.

    `disc_warmup_steps`: from `disc_start` the discriminator learns alone for this many steps
    before the decoder sees its loss, so a fresh discriminator does not push an already trained
    decoder off with its first, meaningless verdicts (fine-tuning from exported weights)."""

    def __init__(self, config: dict, total_steps: int = 10_000):
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        self.t = training_config(config, "tokenizer")
        self.total_steps = total_steps
        self.vqgan = VQGAN(TokenizerConfig.from_dict(config["tokenizer"]))
        self.disc = PatchDiscriminator(self.t["disc_channels"], self.t["disc_layers"]) \
            if self.t["gan_weight"] > 0 else None
        self.automatic_optimization = False
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("usage", torch.zeros(self.vqgan.codebook_size))
        self._val_idx: list[torch.Tensor] = []
        if self.vqgan.cfg.dec_cond:  # pixel masks (True = known), rebuilt from the seed rather than saved
            from .data import pixel_mask_bank

            bank = pixel_mask_bank(self.t["cond_masks"], self.vqgan.cfg.image_size)
            self.register_buffer("cond_bank", bank, persistent=False)
        self.ema = None
        if self.t["ema_decay"] > 0:
            self.ema = nn.ModuleDict({"decoder": copy.deepcopy(self.vqgan.decoder),
                                      "post_quant_conv": copy.deepcopy(self.vqgan.post_quant_conv)})
            self.ema.requires_grad_(False)

    def _ema_pairs(self):
        live = [*self.vqgan.decoder.parameters(), *self.vqgan.post_quant_conv.parameters()]
        avg = [*self.ema["decoder"].parameters(), *self.ema["post_quant_conv"].parameters()]
        return live, avg

    @torch.no_grad()
    def reset_ema(self) -> None:
        """Start the average at the current weights (after loading --init weights)."""
        if self.ema is not None:
            for p, e in zip(*self._ema_pairs()):
                e.copy_(p)

    @torch.no_grad()
    def _swap_ema(self) -> None:
        """Validation (and the recon grid) see the averaged decoder; training swaps back."""
        if self.ema is not None:
            for p, e in zip(*self._ema_pairs()):
                tmp = p.data.clone()
                p.data.copy_(e.data)
                e.data.copy_(tmp)

    def on_validation_epoch_start(self):
        self._swap_ema()

    def _cond(self, x, train: bool):
        """The conditioning input of a mask-conditioned decoder for the batch `x`: each image gets
        a random mask from the bank (validation: a fixed one), and in training a `cond_empty_prob`
        share of them has nothing known."""
        if not self.vqgan.cfg.dec_cond:
            return None
        n = len(x)
        if train:
            pick = torch.randint(0, len(self.cond_bank), (n,), device=x.device)
            known = self.cond_bank[pick]
            empty = torch.rand(n, device=x.device) < self.t["cond_empty_prob"]
            known = known & ~empty[:, None, None]
        else:
            known = self.cond_bank[torch.arange(n, device=x.device) % len(self.cond_bank)]
        return VQGAN.condition(x, known)

    def _frozen_parts(self) -> list[nn.Module]:
        """`freeze_encoder`: only the decoder side learns, so every image keeps its tokens and a
        transformer trained on them stays valid (decoder fine-tuning, e.g. with the GAN on).
        `cond_only`: everything but the conditioning branch of a mask-conditioned decoder."""
        if self.t["cond_only"]:
            dec = self.vqgan.decoder
            return [m for m in self.vqgan.children() if m is not dec] + [dec.model]
        if not self.t["freeze_encoder"]:
            return []
        parts = [self.vqgan.encoder, self.vqgan.quant_conv]
        if getattr(self.vqgan, "codebook", None) is not None:
            parts.append(self.vqgan.codebook)
        return parts

    def configure_optimizers(self):
        t = self.t
        for part in self._frozen_parts():
            part.requires_grad_(False)
        named = [(n, p) for n, p in self.vqgan.named_parameters() if p.requires_grad]
        cond = [p for n, p in named if n.startswith(COND_PARAMS)]
        groups = [{"params": [p for n, p in named if not n.startswith(COND_PARAMS)]}]
        if cond:
            groups.append({"params": cond, "lr": t["lr"] * t["cond_lr_mult"]})
        opt_g = torch.optim.AdamW(groups, lr=t["lr"], betas=tuple(t["betas"]),
                                  weight_decay=t["weight_decay"])
        fn = _lr_lambda(self, t, self.total_steps)
        sched = [torch.optim.lr_scheduler.LambdaLR(opt_g, fn)]
        opts = [opt_g]
        if self.disc is not None:
            opt_d = torch.optim.AdamW(self.disc.parameters(), lr=t["disc_lr"], betas=tuple(t["betas"]),
                                      weight_decay=0.0)
            opts.append(opt_d)
            sched.append(torch.optim.lr_scheduler.LambdaLR(opt_d, fn))
        return opts, sched

    def _rec_loss(self, x, xr, cond):
        """L1 reconstruction loss; with a mask-conditioned decoder and `cond_hole_weight` != 1,
        a weighted mean in which each hole pixel counts `cond_hole_weight` times a known one."""
        err = (x - xr).abs()
        w = self.t["cond_hole_weight"]
        if cond is None or w == 1.0:
            return err.mean()
        weight = 1.0 + (w - 1.0) * VQGAN.hole(cond).to(err.dtype)
        return (err * weight).sum() / (weight.sum() * err.shape[1])

    def _adaptive_weight(self, rec_loss, g_loss):
        """The GAN weight that balances its gradient against the L1's at the last trained layer
        (the decoder's output conv; with `cond_only`, the finest injection of the branch)."""
        dec = self.vqgan.decoder
        last = dec.inject[-1].weight if self.t["cond_only"] else dec.model[-1].weight
        g1 = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
        g2 = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
        return (g1.norm() / (g2.norm() + 1e-4)).clamp(0, 1e4).detach()

    def training_step(self, x, batch_idx):
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        scheds = self.lr_schedulers()
        scheds = scheds if isinstance(scheds, list) else [scheds]
        step = int(self.step_count)
        cond = self._cond(x, train=True)
        xr, idx, q_loss = self.vqgan(x, cond)
        rec = self._rec_loss(x, xr, cond)
        loss = rec + q_loss
        if self.t["mse_weight"] > 0:
            mse = F.mse_loss(xr.float(), x.float())
            loss = loss + self.t["mse_weight"] * mse
            self.log("train/mse", mse)
        disc_on = self.disc is not None and step >= self.t["disc_start"]
        gan_on = disc_on and step >= self.t["disc_start"] + self.t["disc_warmup_steps"]
        if gan_on:
            fm = self.t["fm_weight"] > 0
            logits, f_fake = self.disc(xr, features=True) if fm else (self.disc(xr), None)
            g_loss = -logits.float().mean()
            w = self._adaptive_weight(rec, g_loss) * self.t["gan_weight"]
            loss = loss + w * g_loss
            self.log("train/g_loss", g_loss, prog_bar=False)
            if fm:
                with torch.no_grad():
                    f_real = self.disc(x, features=True)[1]
                fm_loss = sum(F.l1_loss(a.float(), b.float()) for a, b in zip(f_fake, f_real)) / len(f_real)
                loss = loss + self.t["fm_weight"] * fm_loss
                self.log("train/fm_loss", fm_loss)
        opts[0].zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self.clip_gradients(opts[0], gradient_clip_val=self.t["grad_clip"], gradient_clip_algorithm="norm")
        opts[0].step()
        scheds[0].step()
        if self.ema is not None:
            with torch.no_grad():
                live, avg = self._ema_pairs()
                torch._foreach_lerp_(avg, live, 1.0 - self.t["ema_decay"])
        if self.disc is not None:
            d_real = self.disc(x.detach())
            d_fake = self.disc(xr.detach())
            d_loss = 0.5 * (F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean())
            if disc_on:  # the discriminator learns only from its warm-up on
                opts[1].zero_grad(set_to_none=True)
                self.manual_backward(d_loss)
                opts[1].step()
                scheds[1].step()
            else:  # its schedule keeps to the run's step count; torch would warn that it ran before any optimiser step
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
                    scheds[1].step()
            self.log("train/d_loss", d_loss)
        self.usage += torch.bincount(idx.flatten(), minlength=self.vqgan.codebook_size).to(self.usage)
        revive = self.vqgan.cfg.quantizer == "vq" and self.t["revive_every"] and not self._frozen_parts()
        if revive and (step + 1) % self.t["revive_every"] == 0:
            self._revive(x)
        self.step_count += 1
        self.log_dict({"train/l1": rec, "train/q_loss": q_loss, "train/loss": loss,
                       "lr": scheds[0].get_last_lr()[0]}, prog_bar=True)
        if self.t["max_steps"] > 0 and int(self.step_count) >= self.t["max_steps"]:
            self.trainer.should_stop = True

    @torch.no_grad()
    def _revive(self, x):
        """Re-initialise codes unused since the last check from this batch's encoder outputs."""
        dead = (self.usage < self.t["revive_min_usage"]).nonzero().flatten()
        if len(dead):
            z = self.vqgan.quant_conv(self.vqgan.encoder(x)).permute(0, 2, 3, 1).reshape(-1, self.vqgan.cfg.latent_dim)
            pick = torch.randint(0, len(z), (len(dead),), device=z.device)
            self.vqgan.codebook.embedding.weight.data[dead] = z[pick].float().to(
                self.vqgan.codebook.embedding.weight.dtype)
            self.log("train/revived", float(len(dead)))
        self.usage.zero_()

    def validation_step(self, x, batch_idx):
        xr, idx, q_loss = self.vqgan(x)
        mean, std = self._norm(x)
        a = (x.float() * std + mean).clamp(0, 1)
        b = (xr.float() * std + mean).clamp(0, 1)
        psnr = -10 * torch.log10(((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10))
        self._val_idx.append(idx.flatten().cpu())
        self.log_dict({"val/l1": (x - xr).abs().mean(), "val/psnr": psnr.mean()}, prog_bar=True, sync_dist=True)
        cond = self._cond(x, train=False)
        if cond is not None:  # decoding with the known pixels of a fixed mask per image
            xc = self.vqgan.decode(idx, cond)
            hole = VQGAN.hole(cond).to(x.dtype)
            err = (x - xc).abs().mean(1, keepdim=True)
            self.log_dict({"val/l1_cond": err.mean(),
                           "val/l1_cond_hole": (err * hole).sum() / hole.sum().clamp_min(1)}, sync_dist=True)

    def _norm(self, x):
        norm = self.config.get("normalization") or {"mean": [0.5] * 3, "std": [0.5] * 3}
        mean = torch.tensor(norm["mean"], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(norm["std"], device=x.device).view(1, 3, 1, 1)
        return mean, std

    def on_validation_epoch_end(self):
        self._swap_ema()
        if self._val_idx:
            idx = torch.cat(self._val_idx)
            counts = torch.bincount(idx, minlength=self.vqgan.codebook_size).float()
            p = counts / counts.sum()
            perplexity = torch.exp(-(p[p > 0] * p[p > 0].log()).sum())
            self.log_dict({"val/codebook_usage": float((counts > 0).sum()), "val/perplexity": float(perplexity)})
            self._val_idx.clear()


# ============================================================================= stage 2
def mvtm_mask(tokens: torch.Tensor, mode: str = "gamma", schedule: str = "cosine",
              generator: torch.Generator | None = None, mask_bank: torch.Tensor | None = None) -> torch.Tensor:
    """Which tokens to mask for masked visual token modelling, (B, N) bool.

    - "gamma": r ~ U(0,1) per sample, ceil(gamma(r) * N) tokens masked (MaskGIT);
    - "seed": each token masked with probability p ~ U(0.25, 1) per sample (the lab's seed);
    - "inpaint": holes shaped like inpainting masks, drawn from `mask_bank` (M, N) bool.
    """
    b, n = tokens.shape
    dev = tokens.device
    if mode == "gamma":
        r = torch.rand(b, generator=generator, device="cpu")
        k = torch.ceil(gamma_fn(schedule, r) * n).clamp(1, n).long().to(dev)
        rank = torch.rand(b, n, generator=generator, device="cpu").to(dev).argsort(1).argsort(1)
        return rank < k[:, None]
    if mode == "seed":
        p = torch.empty(b, 1).uniform_(0.25, 1.0, generator=generator).to(dev)
        m = torch.rand(b, n, generator=generator).to(dev) < p
        m[m.sum(1) == 0, 0] = True
        return m
    if mode == "inpaint":
        if mask_bank is None:
            raise ValueError("mask_mode 'inpaint' needs a mask bank")
        pick = torch.randint(0, len(mask_bank), (b,), generator=generator)
        m = mask_bank[pick].to(dev).clone()
        m[m.sum(1) == 0, 0] = True
        return m
    raise ValueError(f"unknown mask_mode {mode!r}: choose gamma, seed or inpaint")


def inpaint_mask_bank(count: int = 4096, size: int = 64, latent: int = 16, seed: int = 1234) -> torch.Tensor:
    """Token masks pooled from a mix of the pixel-mask generators, for mask_mode 'inpaint'."""
    from .data import pixel_mask_bank
    from .masks import pixel_to_token_mask

    return pixel_to_token_mask(pixel_mask_bank(count, size, seed), latent)


def context_inputs(tokens: torch.Tensor, ctx_tokens: torch.Tensor, ctx_unknown: torch.Tensor, prob: float,
                   schedule: str = "cosine", generator: torch.Generator | None = None,
                   base_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Training inputs that look like inpainting: (context tokens (B,N), mask (B,N)).

    For a `prob` fraction of the samples, one of their masked views (ctx_tokens, ctx_unknown:
    (B,V,N)) is drawn: the known tokens are those encoded from the image with a hole, and a
    gamma(r) fraction of the hole's tokens is masked, the rest of the hole holding the true
    tokens (as if decoded in earlier steps). The other samples keep their own tokens and
    `base_mask` (the usual MVTM mask). The loss stays the cross-entropy against the
    full image's tokens on the masked positions.
    """
    b, v, n = ctx_tokens.shape
    dev = tokens.device
    use = torch.rand(b, generator=generator).to(dev) < prob
    view = torch.randint(0, v, (b,), generator=generator).to(dev)
    ctx = ctx_tokens[torch.arange(b, device=dev), view]
    hole = ctx_unknown[torch.arange(b, device=dev), view].bool()
    use &= hole.any(1)
    r = torch.rand(b, generator=generator)
    k = torch.ceil(gamma_fn(schedule, r).to(dev) * hole.sum(1)).clamp(min=1).long()
    score = torch.rand(b, n, generator=generator).to(dev).masked_fill(~hole, 2.0)
    rank = score.argsort(1).argsort(1)
    ctx_mask = (rank < k[:, None]) & hole
    inputs = torch.where(use[:, None], torch.where(hole, tokens, ctx), tokens)
    mask = ctx_mask if base_mask is None else torch.where(use[:, None], ctx_mask, base_mask)
    return inputs, mask


class TransformerModule(L.LightningModule):
    """Masked visual token modelling: cross-entropy on masked tokens."""

    def __init__(self, config: dict, total_steps: int = 10_000):
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        self.t = training_config(config, "transformer")
        self.total_steps = total_steps
        self.transformer = MaskTransformer(TransformerConfig.from_dict(config["transformer"]))
        self.mask_bank = None
        if self.t["mask_mode"] == "inpaint":  # pooled to this model's own token grid
            size = config["tokenizer"].get("image_size", config.get("image_size", 64))
            self.mask_bank = inpaint_mask_bank(size=size, latent=math.isqrt(self.transformer.cfg.num_tokens))

    @property
    def codebook_size(self) -> int:
        return self.transformer.cfg.codebook_size

    def loss(self, tokens: torch.Tensor, mask: torch.Tensor, smoothing: float | None = None,
             inputs: torch.Tensor | None = None):
        """Mean over samples of each sample's mean CE over its masked tokens: this makes
        gradient accumulation over k micro-batches equal one batch k times as large.
        `inputs`: the unmasked tokens the model sees, when not `tokens` (inpainting context)."""
        inputs = tokens if inputs is None else inputs
        inp = torch.where(mask, torch.full_like(tokens, self.transformer.mask_token_id), inputs)
        logits = self.transformer(inp)[..., : self.codebook_size].float()
        ce = F.cross_entropy(logits.transpose(1, 2), tokens,
                             label_smoothing=self.t["label_smoothing"] if smoothing is None else smoothing,
                             reduction="none")
        weight = mask.float() if self.t["loss_on"] == "masked" else torch.ones_like(ce)
        per_sample = (ce * weight).sum(1) / weight.sum(1).clamp_min(1)
        acc = ((logits.argmax(-1) == tokens).float() * mask).sum() / mask.sum().clamp_min(1)
        return per_sample.mean(), acc

    def training_step(self, batch, batch_idx):
        tokens = batch[0].long()
        mask = mvtm_mask(tokens, self.t["mask_mode"], self.t["mask_gamma"], mask_bank=self.mask_bank)
        inputs = None
        if len(batch) == 3:  # masked views from the context cache
            inputs, mask = context_inputs(tokens, batch[1].long(), batch[2], self.t["context_prob"],
                                          self.t["mask_gamma"], base_mask=mask)
        loss, acc = self.loss(tokens, mask, inputs=inputs)
        self.log_dict({"train/loss": loss, "train/acc": acc}, prog_bar=True)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def validation_step(self, batch, batch_idx):
        tokens = batch[0].long()
        g = torch.Generator().manual_seed(10_000 + batch_idx)  # same masks every epoch: comparable losses
        mask = mvtm_mask(tokens, self.t["mask_mode"], self.t["mask_gamma"], generator=g, mask_bank=self.mask_bank)
        loss, acc = self.loss(tokens, mask, smoothing=0.0)
        self.log_dict({"val/loss": loss, "val/acc": acc}, prog_bar=True, sync_dist=True)
        if len(batch) == 3:  # the inpainting task itself: every sample through one masked view
            inputs, cmask = context_inputs(tokens, batch[1].long(), batch[2], 1.0, self.t["mask_gamma"], generator=g)
            closs, cacc = self.loss(tokens, cmask, smoothing=0.0, inputs=inputs)
            self.log_dict({"val/context_loss": closs, "val/context_acc": cacc}, sync_dist=True)

    def configure_optimizers(self):
        t = self.t
        # Lightning cannot clip the gradients of a fused AdamW under mixed precision
        fused = torch.cuda.is_available() and self.device.type == "cuda" and not t["grad_clip"]
        opt = torch.optim.AdamW(_param_groups(self.transformer, t["weight_decay"]), lr=t["lr"],
                                betas=tuple(t["betas"]), fused=fused or None)
        fn = _lr_lambda(self, t, self.total_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ============================================================================= callbacks
class LossCurve(Callback):
    """Redraws RUN/loss_curve.png from the CSV log after every validation."""

    def __init__(self, run_dir: Path, keys: tuple[str, ...]):
        self.run_dir, self.keys = Path(run_dir), keys

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        try:
            plot_loss_curve(self.run_dir, self.keys)
        except Exception as e:  # a figure must never stop training
            log.warning("loss curve not drawn: %s", e)


def read_metrics(run_dir: Path) -> list[dict]:
    import csv

    rows = []
    for f in sorted(Path(run_dir, "logs").rglob("metrics.csv")):
        with open(f) as fh:
            rows += list(csv.DictReader(fh))
    return rows


def plot_loss_curve(run_dir: Path, keys: tuple[str, ...]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        pts = [(int(r["step"]), float(r[k])) for r in rows if r.get(k) not in (None, "")]
        if pts:
            xs, ys = zip(*sorted(pts))
            ax.plot(xs, ys, label=k, marker="o" if k.startswith("val") else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    else:  # a run stopped before its first logged step
        ax.text(0.5, 0.5, f"no {' / '.join(keys)} logged yet", ha="center", va="center", transform=ax.transAxes)
    out = Path(run_dir) / "loss_curve.png"
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return out


class ReconGrid(Callback):
    """Saves originals over reconstructions of the first val images after each validation."""

    def __init__(self, run_dir: Path, images: torch.Tensor):
        self.run_dir, self.images = Path(run_dir), images

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.global_rank != 0 or self.images is None:
            return
        from .images import save_png

        x = self.images.to(pl_module.device)
        xr = pl_module.vqgan(x)[0].float()
        mean, std = pl_module._norm(x)
        both = torch.cat([x * std + mean, xr * std + mean]).clamp(0, 1)
        n = len(x)
        grid = both.reshape(2, n, 3, *x.shape[2:]).permute(0, 3, 1, 4, 2).reshape(2 * x.shape[2], n * x.shape[3], 3)
        save_png((grid * 255).round().byte().cpu().numpy(), self.run_dir / "recon" / f"epoch{trainer.current_epoch:04d}.png")


class StepTimer(Callback):
    """Logs images/s so throughput is visible in the logs and progress bar."""

    def __init__(self):
        self.t0, self.n = None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.t0 is None:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.n += len(x)
        dt = time.perf_counter() - self.t0
        if dt > 5:
            pl_module.log("img_per_s", self.n / dt, prog_bar=True)
            self.t0, self.n = time.perf_counter(), 0


# ============================================================================= runs
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
    from .data import NORMALIZATIONS

    norm = config.get("normalization")
    if isinstance(norm, str):
        norm = NORMALIZATIONS[norm]
    return norm or NORMALIZATIONS[(config.get("data") or {}).get("normalization", "default")]


def _checkpoints(run_dir: Path, monitor: str, t: dict) -> list[Callback]:
    """Checkpoint callbacks from a stage's training settings (`ckpt_every_steps`, `epoch_checkpoints`)."""
    ck = run_dir / "checkpoints"
    # one per epoch (kept: `maskgit fid-curve` evaluates each; `epoch_checkpoints: false` turns
    # them off for runs of hundreds of short epochs), plus the best by `monitor`;
    # saved after validation when there is a val split, at the end of the epoch otherwise
    epochs = [ModelCheckpoint(dirpath=ck, filename="epoch{epoch:04d}", auto_insert_metric_name=False,
                              save_top_k=-1, every_n_epochs=1)] if t["epoch_checkpoints"] else []
    return epochs + [
        # with a val split, only after a validation: a run stopped mid-epoch (max_steps, time budget)
        # has no val metric for its last weights, and Lightning would warn that the key is missing
        ModelCheckpoint(dirpath=ck, filename="best", monitor=monitor, mode="min", save_top_k=1,
                        auto_insert_metric_name=False, enable_version_counter=False,
                        save_on_train_epoch_end=False if monitor.startswith("val/") else None),
        # frequent `last.ckpt` so a killed run loses little (overwritten in place, never last-v1)
        ModelCheckpoint(dirpath=ck, save_last=True, save_top_k=0, every_n_train_steps=t["ckpt_every_steps"],
                        enable_version_counter=False),
        FinalCheckpoint(ck / "last.ckpt"),
    ]


class FinalCheckpoint(Callback):
    """Writes `last.ckpt` at the very end when the periodic one is older: a run stopped by
    max_steps mid-epoch must still leave its final weights for export and resume."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_end(self, trainer, pl_module):
        if trainer.global_step == 0:
            return
        if self.path.is_file():
            try:
                step = torch.load(str(self.path), map_location="cpu", weights_only=True).get("global_step")
            except Exception:
                step = None
            if step == trainer.global_step:
                return
        trainer.save_checkpoint(str(self.path), weights_only=False)  # full: optimiser too, for --resume


def _check_batches(n_items: int, batch_size: int, what: str, data_dir) -> None:
    if n_items // batch_size == 0:
        raise ValueError(f"{data_dir}: {n_items} training {what} is fewer than one batch of {batch_size}; "
                         f"add images or lower --batch-size")


class _NoTips(logging.Filter):
    """Drops Lightning's advertising tips (e.g. for its cloud logger) from a training command's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip")


def _trainer(run_dir: Path, t: dict, callbacks: list, max_steps: int, max_epochs: int, resume: bool = False,
             **kw) -> L.Trainer:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

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
    return L.Trainer(default_root_dir=run_dir, max_steps=max_steps, max_epochs=max_epochs,
                     precision=default_precision(t["precision"]), logger=loggers, callbacks=callbacks,
                     log_every_n_steps=t["log_every"], num_sanity_val_steps=0, enable_model_summary=False,
                     **kw)


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
    """`trainer.fit`, without the Lightning warnings in `_QUIET` (and, when resuming, the one that
    the run's checkpoint folder is not empty)."""
    with warnings.catch_warnings():
        for message in _QUIET + (("Checkpoint directory .* exists and is not empty",) if ckpt else ()):
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(module, **loaders, ckpt_path=ckpt)


def _resume_path(run_dir: Path, resume: bool) -> str | None:
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"{last}: nothing to resume")
        return str(last)
    if last.is_file():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    return None


def _resumed_config(run_dir: Path, config: dict, section: str) -> dict:
    """The run's own config, with only the training settings given now laid over its section."""
    from .config import merge

    return merge(load_run_config(run_dir), {section: config.get(section) or {}})


def _check_init_resume(init, resume: bool) -> None:
    if init is not None and resume:
        raise ValueError("--init starts a new run from a model directory's weights and --resume continues "
                         "a run: give one of them")


def _load_init(init: str | Path, require_transformer: bool):
    """The model directory a new run starts from (`--init`): its weights and architecture are
    taken over, the optimiser and LR schedule start afresh. Not the same as --resume."""
    from .model import MaskGIT, model_hash

    model = MaskGIT.from_dir(init, require_transformer=require_transformer)
    return model, {"model_dir": str(Path(init).resolve()), "model_hash": model_hash(init)}


def train_tokenizer(config: dict, run_dir: str | Path, resume: bool = False, accelerator: str = "auto",
                    init: str | Path | None = None) -> Path:
    """Stage 1. `init`: a model directory whose tokenizer weights (and architecture) to start from."""
    from .data import ImageTensorDataset, load_folder, split_files

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
    ckpt = _resume_path(run_dir, resume)
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
    train_u8, _ = load_folder(train_files, size)
    norm = config["normalization"]
    train_ds = ImageTensorDataset(train_u8, norm["mean"], norm["std"], flip=True)
    loaders = {"train_dataloaders": DataLoader(train_ds, batch_size=t["batch_size"], shuffle=True, drop_last=True,
                                               num_workers=t["num_workers"])}
    grid = None
    if val_files:
        val_u8, _ = load_folder(val_files, size)
        val_ds = ImageTensorDataset(val_u8, norm["mean"], norm["std"], flip=False)
        loaders["val_dataloaders"] = DataLoader(val_ds, batch_size=64, shuffle=False)
        grid = torch.stack([val_ds[i] for i in range(min(16, len(val_ds)))])
    _check_batches(len(train_ds), t["batch_size"], "images", data["train"])
    steps_per_epoch = len(train_ds) // t["batch_size"]
    total = t["max_steps"] if t["max_steps"] > 0 else t["max_epochs"] * steps_per_epoch
    module = TokenizerModule(config, total_steps=total)
    if init_model is not None:
        missing, unexpected = module.vqgan.load_state_dict(init_model.tokenizer.state_dict(), strict=False)
        new = [k for k in missing if not k.startswith(COND_PARAMS)]
        if new or unexpected:
            raise ValueError(f"--init {init}: its tokenizer weights do not fit this architecture "
                             f"(missing {new[:5]}, unexpected {unexpected[:5]})")
        log.info("tokenizer weights initialised from %s%s", init,
                 " (the decoder's conditioning branch starts at zero)" if missing else "")
    module.reset_ema()
    cbs = _checkpoints(run_dir, "val/l1" if val_files else "train/l1", t)
    cbs += [LossCurve(run_dir, ("train/l1", "val/l1")), StepTimer()]
    if grid is not None:
        cbs.append(ReconGrid(run_dir, grid))
    # the module counts its own steps (two optimisers make trainer.global_step count double)
    trainer = _trainer(run_dir, t, cbs, max_steps=-1, max_epochs=t["max_epochs"] if t["max_steps"] <= 0 else -1,
                       resume=ckpt is not None, accelerator=accelerator)
    _fit(trainer, module, loaders, ckpt)
    return run_dir


def train_transformer(config: dict, run_dir: str | Path, tokenizer_dir: str | Path | None, resume: bool = False,
                      accelerator: str = "auto", init: str | Path | None = None) -> Path:
    """Stage 2 on the tokens of `tokenizer_dir`. `init`: a full model directory whose transformer
    weights (and architecture) to start from; its tokenizer is used when `tokenizer_dir` is None."""
    from .data import context_cache, split_files, token_cache
    from .model import MaskGIT

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
    ckpt = _resume_path(run_dir, resume)
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
    loaders = {"train_dataloaders": DataLoader(TensorDataset(*train_set), batch_size=t["batch_size"], shuffle=True,
                                               drop_last=True, num_workers=t["num_workers"])}
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
    steps_per_epoch = max(1, len(train_tok) // t["batch_size"] // t["accumulate"])
    total = t["max_steps"] if t["max_steps"] > 0 else t["max_epochs"] * steps_per_epoch
    module = TransformerModule(config, total_steps=total)
    if init_model is not None:
        from .checkpoints import load_strict

        load_strict(module.transformer, init_model.transformer.state_dict(), Path(init) / "transformer.safetensors")
        log.info("transformer weights initialised from %s", init)
    cbs = _checkpoints(run_dir, "val/loss" if val_files else "train/loss", t)
    cbs += [LossCurve(run_dir, ("train/loss", "val/loss")), StepTimer()]
    if t["ema_decay"] > 0:
        from lightning.pytorch.callbacks import EMAWeightAveraging

        cbs.append(EMAWeightAveraging(decay=t["ema_decay"]))
    trainer = _trainer(run_dir, t, cbs, max_steps=t["max_steps"], max_epochs=t["max_epochs"],
                       accumulate_grad_batches=t["accumulate"], gradient_clip_val=t["grad_clip"],
                       resume=ckpt is not None, accelerator=accelerator, devices=t["devices"], num_nodes=t["num_nodes"],
                       strategy=t["strategy"])
    _fit(trainer, module, loaders, ckpt)
    return run_dir


# ============================================================================= export
def find_checkpoint(run_dir: Path, which: str = "best") -> Path:
    ck = Path(run_dir) / "checkpoints"
    if which in ("best", "last"):
        for name in ([f"{which}.ckpt"] + (["last.ckpt"] if which == "best" else [])):
            if (ck / name).is_file():
                return ck / name
        epochs = sorted(ck.glob("epoch*.ckpt"))
        if epochs:
            return epochs[-1]
        raise FileNotFoundError(f"{ck}: no checkpoint found")
    p = Path(which)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint not found")
    return p


def load_checkpoint_state(path: Path) -> dict:
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as a checkpoint ({e})") from None
    return ckpt


def model_from_checkpoint(run_dir: str | Path, ckpt_path: str | Path, config: dict | None = None,
                          tokenizer=None):
    """A MaskGIT with a run's weights from one checkpoint: tokenizer-only for a tokenizer run,
    the full model (the run's tokenizer included) for a transformer run. Returns (model, kind).
    Pass `tokenizer` (a loaded MaskGIT) to skip re-reading the tokenizer for every checkpoint."""
    from .model import MaskGIT

    run_dir = Path(run_dir)
    config = config or load_run_config(run_dir)
    sd = load_checkpoint_state(Path(ckpt_path))["state_dict"]
    kind = config.get("kind")
    model_cfg = {"image_size": config["tokenizer"].get("image_size", 64),
                 "normalization": _normalization(config), "tokenizer": config["tokenizer"],
                 "transformer": config.get("transformer") if kind == "transformer" else None,
                 "sampler": {}, **{k: config[k] for k in INFERENCE_KEYS if config.get(k) is not None}}
    model = MaskGIT(model_cfg)
    if kind == "tokenizer":
        weights = {k[len("vqgan."):]: v for k, v in sd.items() if k.startswith("vqgan.")}
        # a run with a decoder EMA exports the averaged decoder side
        weights.update({k[len("ema."):]: v for k, v in sd.items() if k.startswith("ema.")})
        model.tokenizer.load_state_dict(weights)
    elif kind == "transformer":
        tok = tokenizer or MaskGIT.from_dir(config["tokenizer_dir"], require_transformer=False)
        model.tokenizer.load_state_dict(tok.tokenizer.state_dict())
        model.transformer.load_state_dict(
            {k[len("transformer."):]: v for k, v in sd.items() if k.startswith("transformer.")})
    else:
        raise ValueError(f"{run_dir}/config.yaml: unknown run kind {kind!r}")
    return model.eval(), kind


def export_run(run_dir: str | Path, out_dir: str | Path, which: str = "best",
               dtype: torch.dtype | None = None, weak: str | Path | None = None) -> Path:
    """Write a model directory from a run: tokenizer-only from a tokenizer run, the full model
    (tokenizer included) from a transformer run. `weak` adds the weak transformer that
    `sampler.weak_guidance` guides against: a checkpoint of the run (as `which`: an earlier,
    less trained one) or a model directory with a transformer of the same architecture."""
    from .model import MaskGIT

    ckpt_path = find_checkpoint(Path(run_dir), which)
    model, kind = model_from_checkpoint(run_dir, ckpt_path)
    note = ""
    if weak is not None:
        if kind != "transformer":
            raise ValueError(f"--weak: {run_dir} is a tokenizer run; a weak transformer needs a transformer run")
        if Path(weak).is_dir():
            source, weak_sd = Path(weak), MaskGIT.from_dir(weak).transformer.state_dict()
        else:
            source = find_checkpoint(Path(run_dir), str(weak))
            if source.resolve() == ckpt_path.resolve():
                raise ValueError(f"--weak {weak}: the same checkpoint as the exported one ({ckpt_path}); "
                                 "guiding a model against itself does nothing")
            sd = load_checkpoint_state(source)["state_dict"]
            weak_sd = {k[len("transformer."):]: v for k, v in sd.items() if k.startswith("transformer.")}
        model.set_weak_transformer(weak_sd, source)
        note = f", weak transformer from {source}"
    elif model.sampler.weak_guidance:
        # e.g. a warm start from a model that guides against its own weak transformer
        model.sampler = replace(model.sampler, weak_guidance=False)
        model.config = {**model.config, "sampler": {**(model.config.get("sampler") or {}), "weak_guidance": False}}
        note = (" (its sampler asked for weak guidance, but no --weak transformer was given: "
                "exported with weak_guidance off)")
    model.save(out_dir, dtype=dtype)
    print(f"exported {kind} from {ckpt_path} to {out_dir}{note}", file=sys.stderr)
    return Path(out_dir)
