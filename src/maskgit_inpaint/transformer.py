"""Stage 2: the bidirectional transformer that predicts masked visual tokens.

Two layouts share one interface `forward(tokens (B,N) long) -> logits (B,N,V')`:
- "prenorm" (ours): pre-LayerNorm blocks, untied linear head over the codebook only.
- "lab": the course lab's post-norm layout, whose output is tied to the token embedding
  plus a per-position bias and therefore has codebook_size + 1 logits; the sampler
  never lets the mask token win.
The mask token is always index `codebook_size`.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import dataclass_from_dict


@dataclass
class TransformerConfig:
    layout: str = "prenorm"     # "prenorm" or "lab"
    codebook_size: int = 1024
    num_tokens: int = 256
    dim: int = 768
    heads: int = 16
    layers: int = 15
    mlp_hidden: int = 1536
    dropout: float = 0.1

    @property
    def mask_token_id(self) -> int:
        return self.codebook_size

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        return dataclass_from_dict(cls, d, "transformer")

    def validate(self) -> None:
        if self.layout not in ("prenorm", "lab"):
            raise ValueError(f"transformer.layout must be 'prenorm' or 'lab', got {self.layout!r}")
        if self.dim % self.heads:
            raise ValueError(f"transformer.dim ({self.dim}) must be divisible by heads ({self.heads})")


class Attention(nn.Module):
    """Multi-head self-attention, fused qkv (the lab's `Attention.qkv` / `Attention.proj`)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rows: torch.Tensor | None = None):
        """`rows` (B, K) long: the output only at those positions (queries there, keys and values
        everywhere), shape (B, K, D)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if rows is not None:
            q = q.gather(2, rows[:, None, :, None].expand(-1, self.heads, -1, d // self.heads))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, y.shape[2], d))


def _take(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """x (B, N, D) at `rows` (B, K), or x itself."""
    return x if rows is None else x.gather(1, rows[..., None].expand(-1, -1, x.shape[-1]))


class PreNormBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.dropout)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.mlp_hidden), nn.GELU(),
                                 nn.Linear(cfg.mlp_hidden, cfg.dim), nn.Dropout(cfg.dropout))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rows: torch.Tensor | None = None):
        x = _take(x, rows) + self.drop(self.attn(self.ln1(x), rows))
        return x + self.mlp(self.ln2(x))


class LabBlock(nn.Module):
    """Post-norm block with the lab's parameter names."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.Attention = Attention(cfg.dim, cfg.heads, cfg.dropout)
        self.LayerNorm1 = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.LayerNorm2 = nn.LayerNorm(cfg.dim, eps=1e-12)
        self.MLP = nn.Sequential(nn.Linear(cfg.dim, cfg.mlp_hidden), nn.GELU(),
                                 nn.Linear(cfg.mlp_hidden, cfg.dim), nn.Dropout(cfg.dropout))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, rows: torch.Tensor | None = None):
        x = self.LayerNorm1(_take(x, rows) + self.dropout(self.Attention(x, rows)))
        return self.LayerNorm2(x + self.MLP(x))


class MaskTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos_emb = nn.Parameter(torch.zeros(cfg.num_tokens, cfg.dim))
        nn.init.trunc_normal_(self.pos_emb, std=0.02)
        if cfg.layout == "lab":
            self.LN = nn.LayerNorm(cfg.dim, eps=1e-12)
            self.drop = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList([LabBlock(cfg) for _ in range(cfg.layers)])
            self.Token_Prediction = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.GELU(),
                                                  nn.LayerNorm(cfg.dim, eps=1e-12))
            self.bias = nn.Parameter(torch.zeros(cfg.num_tokens, cfg.vocab_size))
        else:
            self.drop = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList([PreNormBlock(cfg) for _ in range(cfg.layers)])
            self.ln_f = nn.LayerNorm(cfg.dim)
            self.head = nn.Linear(cfg.dim, cfg.codebook_size)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def mask_token_id(self) -> int:
        return self.cfg.mask_token_id

    def forward(self, tokens: torch.Tensor, rows: torch.Tensor | None = None,
                fp32_head: bool = False) -> torch.Tensor:
        """tokens (B, N) long, mask token = codebook_size -> logits (B, N, >= codebook_size).

        With `rows` (B, K) long, the logits at those positions only, (B, K, ...): the last block
        then computes its queries, MLP and the output head for those rows alone (every row
        still attends to all N), which is where the sampler reads them: the masked positions.
        `fp32_head`: under bf16 autocast, the output head still runs in fp32. bf16 logits are
        rounded to about 0.1 at their size, and guidance multiplies that error by 1 + w."""
        x = self.tok_emb(tokens) + self.pos_emb[: tokens.shape[1]]
        last = len(self.blocks) - 1
        if self.cfg.layout == "lab":
            x = self.drop(self.LN(x))
            for i, blk in enumerate(self.blocks):
                x = blk(x, rows if i == last else None)
            bias = self.bias[: tokens.shape[1]]
            with _full_precision(fp32_head, x):
                h = self.Token_Prediction(x.float() if fp32_head else x)
                return h @ self.tok_emb.weight.t() + (bias if rows is None else bias[rows])
        x = self.drop(x)
        for i, blk in enumerate(self.blocks):
            x = blk(x, rows if i == last else None)
        with _full_precision(fp32_head, x):
            return self.head(self.ln_f(x.float() if fp32_head else x))


def _full_precision(on: bool, x: torch.Tensor):
    """Autocast switched off (for the output head), or nothing."""
    return torch.autocast(x.device.type, enabled=False) if on else contextlib.nullcontext()
