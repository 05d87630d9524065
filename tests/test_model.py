"""Transformer: shapes, pad and causal invariances, weight tying, SDPA attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nmt.config import ModelConfig
from nmt.data.tokenizer import PAD_ID
from nmt.model.transformer import Transformer

CFG = ModelConfig(encoder_layers=2, decoder_layers=2, d_model=32, heads=4, ffn_dim=64, dropout=0.1)
V = 50


def model(cfg=CFG):
    torch.manual_seed(0)
    return Transformer(cfg, V).eval()


def ids(b, t, seed):
    return torch.randint(4, V, (b, t), generator=torch.Generator().manual_seed(seed))


def test_forward_returns_logits_only():
    out = model()(ids(3, 7, 0), ids(3, 5, 1))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 5, V)


def test_extra_padding_changes_nothing():
    m = model()
    src, tgt = ids(2, 6, 0), ids(2, 5, 1)
    base = m(src, tgt)
    pad_src = torch.cat([src, torch.full((2, 4), PAD_ID)], 1)
    pad_tgt = torch.cat([tgt, torch.full((2, 3), PAD_ID)], 1)
    assert torch.allclose(m(pad_src, pad_tgt)[:, :5], base, atol=1e-5)


def test_decoder_is_causal():
    m = model()
    src, tgt = ids(2, 6, 0), ids(2, 8, 1)
    changed = tgt.clone()
    changed[:, 5:] = 4
    assert torch.allclose(m(src, tgt)[:, :5], m(src, changed)[:, :5], atol=1e-6)
    assert not torch.allclose(m(src, tgt)[:, 5:], m(src, changed)[:, 5:])


def test_shared_and_tied_embeddings():
    m = model()
    assert m.src_embed is m.tgt_embed and m.output is None
    names = [n for n, _ in m.named_parameters()]
    assert sum("embed" in n for n in names) == 1
    untied = model(
        ModelConfig(
            d_model=32,
            heads=4,
            ffn_dim=64,
            encoder_layers=1,
            decoder_layers=1,
            share_embeddings=False,
            tie_output=False,
        )
    )
    assert untied.src_embed is not untied.tgt_embed and untied.output is not None
    assert not untied.src_embed.weight[PAD_ID].any()


def test_attention_goes_through_sdpa(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(
        F,
        "scaled_dot_product_attention",
        lambda *a, **k: calls.append(k.get("is_causal")) or real(*a, **k),
    )
    model()(ids(1, 4, 0), ids(1, 3, 1))
    assert calls.count(False) == 2 + 2  # encoder self-attn + decoder cross-attn
    assert calls.count(True) == 2  # decoder self-attn


def test_decode_step_with_cache_equals_full_decode_after_reorders():
    m = model()
    src = torch.cat([ids(3, 6, 0), torch.full((3, 2), PAD_ID)], 1)
    src[1, 6:] = ids(1, 2, 5)  # sentence 1 is longer, the others padded
    memory, src_mask = m.encode(src)
    cache = m.start_decoding(memory, src_mask)
    prefix = torch.full((3, 1), 2)
    with torch.no_grad():
        for step, (rows, sentences) in enumerate(
            [(None, None), ([0, 0, 1, 1, 2, 2], None), ([1, 0, 3, 3, 4, 5], None), ([2, 3], [1])]
        ):
            if rows is not None:
                cache.reorder(
                    torch.tensor(rows), None if sentences is None else torch.tensor(sentences)
                )
                prefix = prefix[rows]
                if sentences is not None:
                    memory, src_mask = memory[sentences], src_mask[sentences]
            fast = m.decode_step(prefix[:, -1], cache)  # (N, V)
            n = prefix.size(0) // memory.size(0)
            full = m.decode(
                prefix, memory.repeat_interleave(n, 0), src_mask.repeat_interleave(n, 0)
            )
            assert cache.length == step + 1 and fast.shape == (prefix.size(0), V)
            assert torch.allclose(fast, full[:, -1], atol=1e-5)
            prefix = torch.cat([prefix, ids(prefix.size(0), 1, 10 + step)], 1)
