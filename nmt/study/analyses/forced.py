"""One teacher-forced pass over a split: the logits of every non-pad target position, its label,
and, when asked, the decoder's final hidden state there (what the output projection sees)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nmt.data.batching import Pairs, collate, make_batches
from nmt.data.tokenizer import PAD_ID
from nmt.train.precision import autocast


@dataclass
class Forced:
    """logits (N, V) float32, labels (N,) and hidden (N, D) or None, in split order."""

    logits: torch.Tensor
    labels: torch.Tensor
    hidden: torch.Tensor | None = None


def output_weight(model) -> torch.Tensor:
    """The (V, D) output projection: row k is piece k's template (tied to the embedding by
    default)."""
    return model.tgt_embed.weight if model.output is None else model.output.weight


@torch.no_grad()
def forced_pass(
    model,
    split: Pairs,
    device: torch.device,
    max_tokens: int,
    amp_dtype: torch.dtype | None = None,
    hidden: bool = False,
) -> Forced:
    """Teacher-forced outputs of every non-pad target token of split, pairs in order.

    hidden: also keep the output of the decoder's final layer norm (a forward hook on
    model.decoder_norm; the model is not changed).
    """
    was_training = model.training
    model.eval()
    kept: list[torch.Tensor] = []
    handle = None
    if hidden:
        handle = model.decoder_norm.register_forward_hook(lambda m, i, out: kept.append(out))
    src_lens, tgt_lens = split.lengths()
    batches = make_batches(src_lens, tgt_lens, max_tokens, shuffle=False)
    parts: dict[int, tuple] = {}
    try:
        for idx in batches:
            batch = collate(split, idx).to(device)
            kept.clear()
            with autocast(device, amp_dtype):
                logits = model(batch.src, batch.tgt_in)  # (B, T, V)
            mask = batch.labels != PAD_ID  # (B, T)
            for row, i in enumerate(idx.tolist()):  # pair i's positions, in order
                m = mask[row]
                parts[i] = (
                    logits[row][m].float().cpu(),
                    batch.labels[row][m].cpu(),
                    kept[-1][row][m].float().cpu() if hidden else None,
                )
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    order = [parts[i] for i in range(len(split))]
    return Forced(
        torch.cat([p[0] for p in order]),
        torch.cat([p[1] for p in order]),
        torch.cat([p[2] for p in order]) if hidden else None,
    )
