"""The stage-1 adversary and its losses: a PatchGAN discriminator (hinge loss) and feature matching."""
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
