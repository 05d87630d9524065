"""The model: the Transformer encoder-decoder (logits only; it never sees the loss)."""

from nmt.model.transformer import Transformer

__all__ = ["Transformer"]
