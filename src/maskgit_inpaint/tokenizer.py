"""Stage 1: the VQGAN tokenizer (image <-> grid of discrete tokens).

The layout is generic (stages of residual blocks described by the config) but its
building blocks and parameter names follow the course lab's VQGAN exactly, so the
lab's `VQGAN.pt` is just one configuration of this class (see `LAB_TOKENIZER`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import dataclass_from_dict


@dataclass
class TokenizerConfig:
    image_channels: int = 3
    image_size: int = 64
    latent_dim: int = 256
    # encoder: conv_in width, then stages of [channels, residual blocks, attention, downsample after]
    enc_in: int = 128
    enc_stages: list = field(default_factory=lambda: [
        [128, 2, False, False], [128, 2, False, False], [256, 2, False, True],
        [256, 2, False, False], [512, 2, False, True]])
    # decoder: conv_in width, then stages of [channels, residual blocks, attention, upsample after]
    dec_in: int = 512
    dec_stages: list = field(default_factory=lambda: [
        [512, 3, True, True], [256, 6, False, True], [128, 6, False, False]])
    norm_groups: int = 32
    dec_norm_groups: int = 0       # the decoder's GroupNorm groups (0 = norm_groups)
    quantizer: str = "vq"          # "vq" (learned codebook, lab-compatible) or "fsq"
    codebook_size: int = 1024      # for fsq: the product of fsq_levels
    beta: float = 0.25             # commitment weight on the encoder term
    l2_norm: bool = False          # cosine-similarity VQ (l2-normalised codes and latents)
    fsq_levels: list = field(default_factory=list)
    # mask-conditioned decoder (as in Zhu et al. 2023, "Designing a Better Asymmetric VQGAN"):
    # a small conv branch sees the known pixels and their mask and feeds every decoder
    # resolution, so an inpainted image keeps its known pixels and matches them at the seams.
    dec_cond: bool = False
    dec_cond_width: int = 32
    dec_cond_levels: int = 0       # feed only this many of the finest resolutions (0 = every one)

    @property
    def latent_size(self) -> int:
        downs = sum(1 for s in self.enc_stages if s[3])
        return self.image_size // (2 ** downs)

    @property
    def num_tokens(self) -> int:
        return self.latent_size ** 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        return dataclass_from_dict(cls, d, "tokenizer")

    def validate(self) -> None:
        if self.quantizer not in ("vq", "fsq"):
            raise ValueError(f"tokenizer.quantizer must be 'vq' or 'fsq', got {self.quantizer!r}")
        if self.quantizer == "fsq":
            if not self.fsq_levels:
                raise ValueError("tokenizer.fsq_levels is required for the fsq quantizer")
            if math.prod(self.fsq_levels) != self.codebook_size:
                raise ValueError(f"tokenizer.codebook_size ({self.codebook_size}) must equal the product "
                                 f"of fsq_levels {self.fsq_levels} ({math.prod(self.fsq_levels)})")
        downs = sum(1 for s in self.enc_stages if s[3])
        ups = sum(1 for s in self.dec_stages if s[3])
        if downs != ups:
            raise ValueError(f"the encoder downsamples {downs} times but the decoder upsamples {ups} times")
        if self.dec_cond and self.dec_cond_width < 1:
            raise ValueError(f"tokenizer.dec_cond_width must be positive, got {self.dec_cond_width}")
        if self.dec_norm_groups < 0:
            raise ValueError(f"tokenizer.dec_norm_groups must be 0 (= norm_groups) or more, got {self.dec_norm_groups}")
        if self.dec_cond_levels < 0:
            raise ValueError(f"tokenizer.dec_cond_levels must be 0 (every level) or more, got {self.dec_cond_levels}")
        if self.image_size % (2 ** downs):
            raise ValueError(f"image_size {self.image_size} is not divisible by the downsampling factor {2 ** downs}")


# The course lab's pretrained VQGAN (VQGAN.yml, `model_param`).
LAB_TOKENIZER = TokenizerConfig()


# ----------------------------------------------------------------------------- blocks
class GroupNorm(nn.Module):
    """GroupNorm wrapped so its keys read `...gn.weight` as in the lab checkpoint."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.gn = nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6, affine=True)

    def forward(self, x):
        return self.gn(x)


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.block = nn.Sequential(
            GroupNorm(cin, groups), Swish(), nn.Conv2d(cin, cout, 3, 1, 1),
            GroupNorm(cout, groups), Swish(), nn.Conv2d(cout, cout, 3, 1, 1))
        if cin != cout:
            self.channel_up = nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x):
        skip = self.channel_up(x) if hasattr(self, "channel_up") else x
        return skip + self.block(x)


class DownSampleBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class UpSampleBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class NonLocalBlock(nn.Module):
    """Single-head spatial self-attention (scale c^-0.5), residual."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = GroupNorm(ch, groups)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).reshape(b, 1, c, h * w).transpose(-1, -2) for m in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v)  # default scale is c^-0.5
        a = a.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj_out(a)


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        g = cfg.norm_groups
        layers: list[nn.Module] = [nn.Conv2d(cfg.image_channels, cfg.enc_in, 3, 1, 1)]
        ch = cfg.enc_in
        for out_ch, n_res, attn, down in cfg.enc_stages:
            for _ in range(n_res):
                layers.append(ResidualBlock(ch, out_ch, g))
                ch = out_ch
                if attn:
                    layers.append(NonLocalBlock(ch, g))
            if down:
                layers.append(DownSampleBlock(ch))
        layers += [ResidualBlock(ch, ch, g), NonLocalBlock(ch, g), ResidualBlock(ch, ch, g),
                   GroupNorm(ch, g), Swish(), nn.Conv2d(ch, cfg.latent_dim, 3, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


# the weights a mask-conditioned decoder adds (its branch and the 1x1 injections)
COND_PARAMS = ("decoder.cond.", "decoder.inject.")
# the weights that turn an image into tokens, and the rest, which turn tokens into an image
TOKEN_SIDE = ("encoder.", "quant_conv.", "codebook.")
DECODER_SIDE = ("decoder.", "post_quant_conv.")


class CondEncoder(nn.Module):
    """The decoder's view of the known pixels: (normalised image * known, known) -> one feature
    map per decoder resolution, finest first."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        g, w = cfg.norm_groups, cfg.dec_cond_width
        levels = sum(1 for s in cfg.dec_stages if s[3]) + 1
        if cfg.dec_cond_levels:
            levels = min(levels, cfg.dec_cond_levels)
        self.widths = [w * min(2 ** k, 4) for k in range(levels)]
        self.stem = nn.Conv2d(cfg.image_channels + 1, w, 3, 1, 1)
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        ch = w
        for k, out in enumerate(self.widths):
            self.blocks.append(ResidualBlock(ch, out, g))
            ch = out
            if k < levels - 1:
                self.downs.append(DownSampleBlock(ch))

    def forward(self, c):
        x = self.stem(c)
        feats = []
        for k, block in enumerate(self.blocks):
            x = block(x)
            feats.append(x)
            if k < len(self.downs):
                x = self.downs[k](x)
        return feats


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        g = cfg.dec_norm_groups or cfg.norm_groups
        ch = cfg.dec_in
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_dim, ch, 3, 1, 1),
                                   ResidualBlock(ch, ch, g), NonLocalBlock(ch, g), ResidualBlock(ch, ch, g)]
        ups = self.ups = sum(1 for s in cfg.dec_stages if s[3])
        inject = []  # (layer index, channels, level of the conditioning pyramid)
        level = ups
        for out_ch, n_res, attn, up in cfg.dec_stages:
            inject.append((len(layers), ch, level))
            for _ in range(n_res):
                layers.append(ResidualBlock(ch, out_ch, g))
                ch = out_ch
                if attn:
                    layers.append(NonLocalBlock(ch, g))
            if up:
                layers.append(UpSampleBlock(ch))
                level -= 1
        inject.append((len(layers), ch, level))
        layers += [GroupNorm(ch, g), nn.Conv2d(ch, cfg.image_channels, 3, 1, 1)]
        self.model = nn.Sequential(*layers)
        self.cond = CondEncoder(cfg) if cfg.dec_cond else None
        if self.cond is not None:
            inject = [p for p in inject if p[2] < len(self.cond.widths)]
            self._inject = [(i, lvl) for i, _, lvl in inject]
            # zero-initialised, so a conditioned decoder starts as the unconditioned one it is made from
            self.inject = nn.ModuleList(nn.Conv2d(self.cond.widths[lvl], c, 1) for _, c, lvl in inject)
            for conv in self.inject:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, x, cond=None):
        """`cond` (B, C+1, H, W): the known pixels (zero elsewhere) and the known mask, for a
        conditioned decoder; None means nothing is known (plain decoding from tokens)."""
        if self.cond is None:
            return self.model(x)
        if cond is None:
            h = x.shape[-1] * 2 ** self.ups
            cond = x.new_zeros(x.shape[0], self.cond.stem.in_channels, h, h)
        feats = self.cond(cond.to(x.dtype))
        points = {i: (conv, lvl) for (i, lvl), conv in zip(self._inject, self.inject)}
        for i, layer in enumerate(self.model):
            if i in points:
                conv, lvl = points[i]
                x = x + conv(feats[lvl])
            x = layer(x)
        return x


# ----------------------------------------------------------------------------- quantisers
class Codebook(nn.Module):
    """Nearest-neighbour vector quantiser with a straight-through estimator.

    Loss = ||sg(z) - e||^2 + beta * ||z - sg(e)||^2 (beta on the encoder term).
    With `l2_norm` both latents and codes are projected to the unit sphere (cosine VQ),
    which keeps far more codes in use when training from scratch.
    """

    def __init__(self, num_codes: int, dim: int, beta: float, l2_norm: bool = False):
        super().__init__()
        self.num_codes, self.dim, self.beta, self.l2_norm = num_codes, dim, beta, l2_norm
        self.embedding = nn.Embedding(num_codes, dim)
        self.embedding.weight.data.uniform_(-1.0 / num_codes, 1.0 / num_codes)

    @property
    def code_dim(self) -> int:
        return self.dim

    def codes(self) -> torch.Tensor:
        w = self.embedding.weight
        return F.normalize(w, dim=-1) if self.l2_norm else w

    def forward(self, z):
        """z: (B, D, h, w) -> (z_q, indices (B, h*w), loss, z_flat)."""
        b, d, h, w = z.shape
        zf = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.l2_norm:
            zf = F.normalize(zf, dim=-1)
        e = self.codes()
        zf32, e32 = zf.float(), e.float()
        dist = (zf32.pow(2).sum(1, keepdim=True) - 2 * zf32 @ e32.t() + e32.pow(2).sum(1)[None])
        idx = dist.argmin(1)
        zq = e[idx]
        loss = F.mse_loss(zq, zf.detach()) + self.beta * F.mse_loss(zf, zq.detach())
        zq = zf + (zq - zf).detach()
        zq = zq.reshape(b, h, w, d).permute(0, 3, 1, 2).contiguous()
        return zq, idx.reshape(b, h * w), loss, zf.detach()

    def lookup(self, idx):
        """idx: (B, h*w) long -> (B, D, h, w)."""
        b, n = idx.shape
        s = int(math.isqrt(n))
        return self.codes()[idx].reshape(b, s, s, self.dim).permute(0, 3, 1, 2).contiguous()


class FSQ(nn.Module):
    """Finite scalar quantisation (Mentzer et al. 2023): every code is used by design."""

    def __init__(self, levels: list[int]):
        super().__init__()
        self.levels_list = list(levels)
        lv = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("levels", lv, persistent=False)
        basis = torch.cumprod(torch.tensor([1] + list(levels[:-1])), 0)
        self.register_buffer("basis", basis, persistent=False)
        self.num_codes = math.prod(levels)

    @property
    def code_dim(self) -> int:
        return len(self.levels_list)

    def _bound(self, z):
        eps = 1e-3
        half_l = (self.levels - 1) * (1 + eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def forward(self, z):
        b, d, h, w = z.shape
        zf = z.permute(0, 2, 3, 1).reshape(-1, d).float()
        bounded = self._bound(zf)
        q = bounded + (bounded.round() - bounded).detach()
        half_w = torch.div(self.levels, 2, rounding_mode="floor")
        digits = (q.round() + half_w).long()
        idx = (digits * self.basis).sum(-1)
        codes = q / half_w
        zq = codes.reshape(b, h, w, d).permute(0, 3, 1, 2).contiguous()
        return zq, idx.reshape(b, h * w), zf.new_zeros(()), codes.detach()

    def lookup(self, idx):
        b, n = idx.shape
        s = int(math.isqrt(n))
        digits = (idx[..., None] // self.basis) % self.levels.long()
        half_w = torch.div(self.levels, 2, rounding_mode="floor")
        codes = (digits.float() - half_w) / half_w
        return codes.reshape(b, s, s, -1).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- VQGAN
class VQGAN(nn.Module):
    """Encoder -> quant_conv -> quantiser -> post_quant_conv -> decoder.

    Pixels are in normalised space (see the model config's `normalization`).
    """

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if cfg.quantizer == "vq":
            self.codebook = Codebook(cfg.codebook_size, cfg.latent_dim, cfg.beta, cfg.l2_norm)
            qdim = cfg.latent_dim
        else:
            self.quantizer = FSQ(cfg.fsq_levels)
            qdim = len(cfg.fsq_levels)
        self.quant_conv = nn.Conv2d(cfg.latent_dim, qdim, 1)
        self.post_quant_conv = nn.Conv2d(qdim, cfg.latent_dim, 1)

    @property
    def quant(self) -> nn.Module:
        return self.codebook if self.cfg.quantizer == "vq" else self.quantizer

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    def quantize(self, x):
        """x: (B,3,H,W) -> (z_q, indices (B, N), q_loss, flat latents)."""
        return self.quant(self.quant_conv(self.encoder(x)))

    @torch.no_grad()
    def encode(self, x) -> torch.Tensor:
        """Images (B,3,H,W) in normalised space -> token indices (B, N) long."""
        return self.quantize(x)[1]

    def decode_latents(self, zq, cond=None):
        return self.decoder(self.post_quant_conv(zq), cond)

    def decode(self, idx, cond=None) -> torch.Tensor:
        """Token indices (B, N) -> images (B,3,H,W) in normalised space. `cond`: see
        `condition`; only a mask-conditioned decoder (`dec_cond`) uses it."""
        return self.decode_latents(self.quant.lookup(idx), cond)

    @staticmethod
    def condition(x, known) -> torch.Tensor:
        """The decoder's conditioning input: normalised images `x` (B,C,H,W) with the unknown
        pixels zeroed, and `known` (B,H,W) bool as one more channel."""
        k = known[:, None].to(x.dtype)
        return torch.cat([x * k, k], 1)

    @staticmethod
    def hole(cond) -> torch.Tensor:
        """The hole (B,1,H,W) bool of a conditioning input made by `condition`."""
        return cond[:, -1:] < 0.5

    def forward(self, x, cond=None):
        zq, idx, qloss, _ = self.quantize(x)
        return self.decode_latents(zq, cond), idx, qloss
