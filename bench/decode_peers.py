"""The peers bench/decode.py times ours against: a random-weight Transformer-base, CTranslate2
translators of a model, and a transformers MarianMTModel of the same sizes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


class PieceList:
    """What nmt.decode.ct2_spec.build_spec reads of a Tokenizer, for a random-weight model."""

    def __init__(self, tok, size: int):
        self.size, self.sp = size, self
        self._real = tok

    def __len__(self) -> int:
        return self.size

    def id_to_piece(self, i: int) -> str:
        return self._real.sp.id_to_piece(i) if i < len(self._real) else f"<extra{i}>"

    def unk_id(self) -> int:
        return self._real.sp.unk_id()

    def bos_id(self) -> int:
        return self._real.sp.bos_id()

    def eos_id(self) -> int:
        return self._real.sp.eos_id()


def base_model(cfg, vocab: int):
    """A random-weight Transformer-base with the checkpoint's special ids (fixed lengths only)."""
    from nmt.model.transformer import Transformer

    base = dataclasses.replace(
        cfg.model, encoder_layers=6, decoder_layers=6, d_model=512, heads=8, ffn_dim=2048
    )
    torch.manual_seed(0)
    return dataclasses.replace(cfg, model=base), Transformer(base, vocab).eval()


def ct2_translators(model, tok, folder: Path, threads: int) -> dict:
    """CTranslate2 translators of model: float32 and int8 compute."""
    import ctranslate2

    from nmt.decode.ct2_spec import build_spec

    if not (folder / "model.bin").is_file():
        spec = build_spec(model, tok)
        spec.validate()
        spec.optimize()
        folder.mkdir(parents=True, exist_ok=True)
        spec.save(str(folder))
    return {
        name: ctranslate2.Translator(
            str(folder), device="cpu", compute_type=ctype, intra_threads=threads
        )
        for name, ctype in (("ct2-fp32", "float32"), ("ct2-int8", "int8"))
    }


def marian_like(cfg, vocab: int, attn: str):
    """A transformers MarianMTModel with our model's sizes and special ids (random weights)."""
    from transformers import MarianConfig, MarianMTModel

    m = cfg.model
    config = MarianConfig(
        vocab_size=vocab,
        d_model=m.d_model,
        encoder_layers=m.encoder_layers,
        decoder_layers=m.decoder_layers,
        encoder_attention_heads=m.heads,
        decoder_attention_heads=m.heads,
        encoder_ffn_dim=m.ffn_dim,
        decoder_ffn_dim=m.ffn_dim,
        activation_function=m.activation,
        max_position_embeddings=m.max_positions,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
        forced_eos_token_id=None,
    )
    config._attn_implementation = attn
    torch.manual_seed(0)
    return MarianMTModel(config).eval()
