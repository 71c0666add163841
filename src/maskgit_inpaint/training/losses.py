"""The stage-1 adversary and its losses (a PatchGAN discriminator, hinge loss, feature matching),
and the focal frequency loss. None needs downloaded weights."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def hinge_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean())


def feature_matching(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between the discriminator's features of decoded and real images (pix2pixHD)."""
    return sum(F.l1_loss(a.float(), b.float()) for a, b in zip(fake, real)) / len(real)


def focal_frequency_loss(fake: torch.Tensor, real: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Focal frequency loss (Jiang et al. 2021): the squared distance of the 2-D spectra, each
    frequency weighted by its own distance (detached, scaled to at most 1 per image and channel),
    so the high frequencies that a pixel loss lets blur get the weight."""
    d = (torch.fft.fft2(fake.float(), norm="ortho") - torch.fft.fft2(real.float(), norm="ortho")).abs() ** 2
    w = d.detach().sqrt() ** alpha
    w = w / w.flatten(-2).amax(-1).clamp_min(1e-12)[..., None, None]
    return (w * d).mean()
