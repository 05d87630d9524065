"""Pre-norm Transformer encoder-decoder: encode(), decode(), forward() -> logits only."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nmt.config import ModelConfig
from nmt.tokenizer import PAD_ID


class Attention(nn.Module):
    """Multi-head attention via scaled_dot_product_attention (flash/efficient kernels on GPU)."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.in_proj = nn.Linear(d_model, 3 * d_model)  # q, k, v stacked: one matmul for self-attn
        self.out_proj = nn.Linear(d_model, d_model)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, H, T, Dh)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        """Self-attention when memory is None, else cross-attention over memory."""
        d = x.size(-1)
        if memory is None:
            q, k, v = self.in_proj(x).split(d, dim=-1)
        else:
            w, b = self.in_proj.weight, self.in_proj.bias
            q = F.linear(x, w[:d], b[:d])
            k, v = F.linear(memory, w[d:], b[d:]).split(d, dim=-1)
        y = F.scaled_dot_product_attention(
            self._split(q),
            self._split(k),
            self._split(v),
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )  # (B, H, T, Dh)
        return self.out_proj(y.transpose(1, 2).reshape(x.shape))


class FeedForward(nn.Module):
    """Position-wise two-layer MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.d_model)
        self.act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.dropout = nn.Dropout(cfg.activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + feed-forward block."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.ffn = FeedForward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), mask=src_mask))
        return x + self.dropout(self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    """Pre-norm causal self-attention + cross-attention + feed-forward block."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.self_attn = Attention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.cross_attn = Attention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.ffn = FeedForward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor
    ) -> torch.Tensor:
        # Right padding + a causal mask: no real position ever attends to a pad key.
        x = x + self.dropout(self.self_attn(self.norm1(x), causal=True))
        x = x + self.dropout(self.cross_attn(self.norm2(x), memory, mask=src_mask))
        return x + self.dropout(self.ffn(self.norm3(x)))


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sinusoidal position encodings of Vaswani et al. (2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class Transformer(nn.Module):
    """Encoder-decoder with shared embeddings and a tied output projection by default."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.src_embed = nn.Embedding(vocab_size, cfg.d_model, padding_idx=PAD_ID)
        self.tgt_embed = (
            self.src_embed
            if cfg.share_embeddings
            else nn.Embedding(vocab_size, cfg.d_model, padding_idx=PAD_ID)
        )
        self.register_buffer(
            "positions", sinusoids(cfg.max_positions, cfg.d_model), persistent=False
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.output = None if cfg.tie_output else nn.Linear(cfg.d_model, vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=self.cfg.d_model**-0.5)
                with torch.no_grad():
                    module.weight[PAD_ID].zero_()

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        pos = self.positions[offset : offset + ids.size(1)]  # (T, D)
        return self.dropout(table(ids) * math.sqrt(self.cfg.d_model) + pos)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) ids -> memory (B, S, D) and the key mask (B, 1, 1, S), True = real token."""
        src_mask = (src != PAD_ID)[:, None, None, :]
        x = self._embed(self.src_embed, src)  # (B, S, D)
        for layer in self.encoder:
            x = layer(x, src_mask)
        return self.encoder_norm(x), src_mask

    def decode(
        self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor
    ) -> torch.Tensor:
        """Decoder inputs (B, T) -> logits (B, T, V)."""
        x = self._embed(self.tgt_embed, tgt_in)  # (B, T, D)
        for layer in self.decoder:
            x = layer(x, memory, src_mask)
        x = self.decoder_norm(x)
        weight = self.tgt_embed.weight if self.output is None else self.output.weight
        return F.linear(x, weight)  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for decoder inputs tgt_in."""
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)
