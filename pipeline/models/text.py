"""A tiny transformer-style encoder classifier with a transformers-like signature:
``forward(input_ids, attention_mask, token_type_ids)`` (three int64 ``[batch, seq]`` tensors,
both dims dynamic) -> ``logits`` [batch, num_classes].

Token + segment + learned position embeddings, ``num_layers`` pre-norm encoder layers with
masked multi-head self-attention written out explicitly (no fused fast paths, so both ONNX
exporters trace the same math), masked mean pooling and a linear head.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).reshape(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias  # [b, h, s, s]
        ctx = scores.softmax(dim=-1) @ v  # [b, h, s, d/h]
        return self.out(ctx.transpose(1, 2).reshape(b, s, d))


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class TinyEncoder(nn.Module):
    def __init__(
        self,
        vocab_size: int = 32,
        num_classes: int = 4,
        dim: int = 32,
        heads: int = 2,
        num_layers: int = 1,
        max_len: int = 64,
        type_vocab_size: int = 2,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.segments = nn.Embedding(type_vocab_size, dim)
        self.positions = nn.Embedding(max_len, dim)
        self.layers = nn.ModuleList(_Layer(dim, heads) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.tokens(input_ids) + self.segments(token_type_ids) + self.positions(positions)
        mask = attention_mask.to(x.dtype)  # [b, s]
        bias = ((1.0 - mask) * -1e4)[:, None, None, :]  # padded keys get no attention
        for layer in self.layers:
            x = layer(x, bias)
        x = self.norm(x)
        pooled = (x * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return self.head(pooled)


def build(
    vocab_size: int = 32, num_classes: int = 4, dim: int = 32, heads: int = 2, num_layers: int = 1, max_len: int = 64
) -> TinyEncoder:
    """Factory for recipes: ``_target_: pipeline.models.text.build``."""
    return TinyEncoder(vocab_size, num_classes, dim, heads, num_layers, max_len)
