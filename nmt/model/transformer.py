"""Pre-norm Transformer encoder-decoder: encode(), decode(), forward() -> logits only."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nmt.config import ModelConfig
from nmt.data.tokenizer import PAD_ID
from nmt.model.dropout import make_dropout


def _few_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh)) v for decoding steps (no dropout); mask True = attend.

    With one query (or one per beam) per sequence, two batched matmuls beat the SDPA kernels on
    CPU by 2-3x (bench/decode.py); the result equals SDPA's to float rounding (tests).
    """
    scores = (q * q.size(-1) ** -0.5) @ k.transpose(-1, -2)  # (B, H, T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v  # (B, H, T, Dh)


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

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None, causal=False
    ) -> torch.Tensor:
        """Heads (B, H, T, Dh) attending over (B, H, S, Dh) -> projected output (B, T, D)."""
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )  # (B, H, T, Dh)
        return self._merge(y)

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        b, h, t, dh = y.shape
        return self.out_proj(y.transpose(1, 2).reshape(b, t, h * dh))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Self-attention queries, keys and values of x in one matmul, split into heads."""
        return tuple(self._split(t) for t in self.in_proj(x).split(x.size(-1), dim=-1))

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        d = x.size(-1)
        return F.linear(x, self.in_proj.weight[:d], self.in_proj.bias[:d])

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected keys and values of the encoder output, split into heads (B, H, S, Dh)."""
        d = memory.size(-1)
        kv = F.linear(memory, self.in_proj.weight[d:], self.in_proj.bias[d:])
        k, v = kv.split(d, dim=-1)
        return self._split(k), self._split(v)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> torch.Tensor:
        """Self-attention when memory is None, else cross-attention over memory."""
        if memory is None:
            q, k, v = self._qkv(x)
        else:
            q, (k, v) = self._split(self._query(x)), self.memory_kv(memory)
        return self._attend(q, k, v, mask, causal)

    def step(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Self-attention of one new position x (N, 1, D) over the cached positions and itself.

        Returns the output and the keys/values extended by this position (N, H, t + 1, Dh).
        """
        q, k, v = self._qkv(x)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        return self._merge(_few_query_attention(q, k, v)), (k, v)

    def cross_step(
        self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Cross-attention of x (A * n, 1, D) over per-sentence keys/values (A, H, S, Dh).

        Rows are grouped by sentence, so a sentence's n beams act as its n queries: the encoder
        keys and values are never copied per beam.
        """
        rows, _, d = x.shape
        q = self._query(x).view(k.size(0), rows // k.size(0), d)  # (A, n, D)
        return self._merge(_few_query_attention(self._split(q), k, v, mask)).reshape(rows, 1, d)


class FeedForward(nn.Module):
    """Position-wise two-layer MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.d_model)
        self.act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.dropout = make_dropout(cfg.activation_dropout, cfg.dropout_masks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + feed-forward block."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.ffn = FeedForward(cfg)
        self.dropout = make_dropout(cfg.dropout, cfg.dropout_masks)

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
        self.dropout = make_dropout(cfg.dropout, cfg.dropout_masks)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor
    ) -> torch.Tensor:
        # Right padding + a causal mask: no real position ever attends to a pad key.
        x = x + self.dropout(self.self_attn(self.norm1(x), causal=True))
        x = x + self.dropout(self.cross_attn(self.norm2(x), memory, mask=src_mask))
        return x + self.dropout(self.ffn(self.norm3(x)))

    def step(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        src_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """forward() for one new position (N, 1, D), given the cached keys/values."""
        h, present = self.self_attn.step(self.norm1(x), past)
        x = x + self.dropout(h)
        x = x + self.dropout(self.cross_attn.cross_step(self.norm2(x), *cross_kv, src_mask))
        return x + self.dropout(self.ffn(self.norm3(x))), present


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sinusoidal position encodings of Vaswani et al. (2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


@dataclass
class DecoderCache:
    """What incremental decoding keeps between steps; rows are hypotheses grouped by sentence.

    cross holds each layer's projected encoder keys/values once per sentence (A, H, S, Dh);
    self_kv holds each layer's decoder keys/values per row (N, H, t, Dh), N = A * beams.
    """

    cross: list[tuple[torch.Tensor, torch.Tensor]]
    src_mask: torch.Tensor  # (A, 1, 1, S)
    self_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    length: int = 0  # positions decoded so far

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> None:
        """Keep (and repeat) the given rows; sentences, if given, selects the sentences kept."""
        self.self_kv = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.self_kv]
        if sentences is not None:
            self.cross = [
                (k.index_select(0, sentences), v.index_select(0, sentences)) for k, v in self.cross
            ]
            self.src_mask = self.src_mask.index_select(0, sentences)


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
        self.dropout = make_dropout(cfg.dropout, cfg.dropout_masks)
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
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.tgt_embed.weight if self.output is None else self.output.weight
        return F.linear(self.decoder_norm(x), weight)  # (B, T, V)

    def start_decoding(self, memory: torch.Tensor, src_mask: torch.Tensor) -> DecoderCache:
        """An empty cache for incremental decoding with each layer's encoder keys/values."""
        return DecoderCache(
            [layer.cross_attn.memory_kv(memory) for layer in self.decoder], src_mask
        )

    def decode_step(self, tokens: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """Logits (N, V) after feeding each row's newest token (N,); extends cache in place.

        Equals decode(prefix, ...)[:, -1] on the whole prefix, at the cost of one position.
        """
        x = self._embed(self.tgt_embed, tokens[:, None], offset=cache.length)  # (N, 1, D)
        past = cache.self_kv or [None] * len(self.decoder)
        present = []
        for layer, layer_past, cross_kv in zip(self.decoder, past, cache.cross):
            x, kv = layer.step(x, layer_past, cross_kv, cache.src_mask)
            present.append(kv)
        cache.self_kv, cache.length = present, cache.length + 1
        return self._logits(x)[:, 0]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) for decoder inputs tgt_in."""
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)
