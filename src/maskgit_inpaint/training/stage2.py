"""Stage 2: masked visual token modelling (the transformer's LightningModule and its masks)."""
from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F

from ..data import pixel_mask_bank
from ..masks import pixel_to_token_mask
from ..schedules import gamma as gamma_fn
from ..transformer import MaskTransformer, TransformerConfig
from .config import _lr_lambda, _param_groups, training_config


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


