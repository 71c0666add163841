"""Stage 1: the VQGAN tokenizer's LightningModule."""
from __future__ import annotations

import copy
import warnings

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import pixel_mask_bank
from ..tokenizer import COND_PARAMS, VQGAN, TokenizerConfig
from .config import _lr_lambda, training_config
from .losses import PatchDiscriminator, feature_matching, focal_frequency_loss, hinge_d_loss


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
        if self.t["ffl_weight"] > 0:
            ffl = focal_frequency_loss(xr, x)
            loss = loss + self.t["ffl_weight"] * ffl
            self.log("train/ffl", ffl)
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
                fm_loss = feature_matching(f_fake, f_real)
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
            d_loss = hinge_d_loss(d_real, d_fake)
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
        counts = torch.bincount(idx.flatten(), minlength=self.vqgan.codebook_size).to(self.usage)
        # summed over the ranks, so every rank sees the same usage and revives the same codes
        self.usage += self.trainer.strategy.reduce(counts, reduce_op="sum") if self.trainer.world_size > 1 else counts
        revive = self.vqgan.cfg.quantizer == "vq" and self.t["revive_every"] and not self._frozen_parts()
        if revive and (step + 1) % self.t["revive_every"] == 0:
            self._revive(x)
        self.step_count += 1
        self.log_dict({"train/l1": rec, "train/q_loss": q_loss, "train/loss": loss,
                       "lr": scheds[0].get_last_lr()[0]}, prog_bar=True)

    @torch.no_grad()
    def _revive(self, x):
        """Re-initialise codes unused since the last check from this batch's encoder outputs."""
        dead = (self.usage < self.t["revive_min_usage"]).nonzero().flatten()
        if len(dead):
            z = self.vqgan.quant_conv(self.vqgan.encoder(x)).permute(0, 2, 3, 1).reshape(-1, self.vqgan.cfg.latent_dim)
            pick = torch.randint(0, len(z), (len(dead),), device=z.device)
            new = z[pick].float()
            if self.trainer.world_size > 1:  # rank 0's picks, so the codebooks stay identical
                new = self.trainer.strategy.broadcast(new, src=0)
            self.vqgan.codebook.embedding.weight.data[dead] = new.to(
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


