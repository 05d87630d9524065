"""Decoding over model.encode / model.decode: batched greedy search."""

from __future__ import annotations

import numpy as np
import torch

from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID


@torch.no_grad()
def greedy_search(
    model,
    src: torch.Tensor,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    max_positions: int | None = None,
) -> list[list[int]]:
    """Argmax decoding of src (B, S); returns each hypothesis' ids without BOS/EOS.

    Output length is capped at max_len_a * source_length + max_len_b tokens.
    """
    memory, src_mask = model.encode(src)
    src_lens = (src != PAD_ID).sum(1)  # (B,)
    limits = (src_lens.float() * max_len_a + max_len_b).long()  # (B,)
    max_steps = int(limits.max())
    if max_positions is not None:
        max_steps = min(max_steps, max_positions - 1)
    ys = torch.full((src.size(0), 1), BOS_ID, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for step in range(max_steps):
        logits = model.decode(ys, memory, src_mask)[:, -1]  # (B, V)
        nxt = logits.argmax(-1)
        nxt = torch.where(finished, torch.full_like(nxt, PAD_ID), nxt)
        nxt = torch.where(~finished & (step + 1 >= limits), torch.full_like(nxt, EOS_ID), nxt)
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        finished |= nxt == EOS_ID
        if bool(finished.all()):
            break
    out = []
    for row in ys[:, 1:].tolist():
        out.append(row[: row.index(EOS_ID)] if EOS_ID in row else [t for t in row if t != PAD_ID])
    return out


def decode_corpus(
    model,
    src_ids: list[list[int]],
    device: torch.device,
    max_tokens: int = 8192,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> list[list[int]]:
    """Greedy-decode each source id list: length-sorted batches, results in input order."""
    from tqdm import tqdm

    from nmt.data import make_batches, pad

    lens = np.fromiter(map(len, src_ids), dtype=np.int64, count=len(src_ids))
    # Output length bounds the decoder's work, so budget the batch by the longest output too.
    widths = (lens * max(max_len_a, 1.0) + max_len_b).astype(lens.dtype)
    batches = make_batches(lens, widths, max(max_tokens, int(widths.max(initial=1))), shuffle=False)
    max_positions = model.cfg.max_positions
    out: list[list[int]] = [[] for _ in src_ids]
    was_training = model.training
    model.eval()
    try:
        for idx in tqdm(batches, desc="decode", disable=None if progress else True, leave=False):
            src = pad([src_ids[i] for i in idx]).to(device)
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                hyps = greedy_search(model, src, max_len_a, max_len_b, max_positions)
            for i, hyp in zip(idx, hyps):
                out[i] = hyp
    finally:
        model.train(was_training)
    return out
