"""Calibration of what is generated (Wang et al., "On the inference calibration of neural
machine translation", ACL 2020): each generated piece's model probability, labelled correct or
not by its alignment to the reference, next to the teacher-forced calibration.

The alignment: a minimum-edit (Levenshtein) alignment of the hypothesis's SentencePiece pieces
to the reference's, unit cost for a substitution, an insertion and a deletion, and no block
shifts (TER's edit alignment without its shifts; Wang et al. use TER with shifts). A generated
piece is correct when the alignment matches it to an identical reference piece. Among
alignments of minimum cost the backtrace prefers, from the end, a match, then a substitution,
then a hypothesis piece left unmatched, then a reference piece left unmatched. EOS is not
scored (it has no counterpart in the reference's pieces).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nmt.data.dataset import Split
from nmt.data.tokenizer import frame_target
from nmt.study.analyses.forced import forced_pass
from nmt.study.metrics import Calibration

ALIGNMENT = (
    "Levenshtein alignment of SentencePiece pieces (unit substitution/insertion/deletion "
    "costs, no block shifts); a generated piece is correct when matched to an identical "
    "reference piece; EOS not scored"
)


def aligned_matches(hyp: Sequence, ref: Sequence) -> list[bool]:
    """For each hypothesis item, whether a minimum-edit alignment to ref matches it to an
    identical item (the tie-breaking is in the module's text)."""
    n, m = len(hyp), len(ref)
    cost = np.zeros((n + 1, m + 1), dtype=np.int64)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diag = cost[i - 1, j - 1] + (hyp[i - 1] != ref[j - 1])
            cost[i, j] = min(diag, cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    matched = [False] * n
    i, j = n, m
    while i > 0 and j > 0:
        same = hyp[i - 1] == ref[j - 1]
        if cost[i, j] == cost[i - 1, j - 1] + (not same):
            matched[i - 1] = bool(same)
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1  # a hypothesis piece with no reference piece
        else:
            j -= 1  # a reference piece with no hypothesis piece
    return matched


def generated_calibration(
    model,
    src_ids: list[list[int]],
    hyp_ids: list[list[int]],
    ref_ids: list[list[int]],
    device: torch.device,
    max_tokens: int,
    temperature: float = 1.0,
) -> dict:
    """ECE, mean confidence, accuracy, confidence - accuracy and the reliability bins of the
    generated pieces hyp_ids (without BOS/EOS) of each source, confidence = the model's
    probability of the piece it generated (softmax(logits / temperature)), correct = aligned
    to the reference pieces ref_ids (aligned_matches)."""
    pairs = Split("generated", [], [], src_ids, [frame_target(h) for h in hyp_ids])
    forced = forced_pass(model, pairs, device, max_tokens)
    probs = torch.softmax(forced.logits / temperature, dim=-1)
    chosen = probs.gather(1, forced.labels[:, None]).squeeze(1)  # (N,) EOS included
    correct, keep = [], []
    at = 0
    for hyp, ref in zip(hyp_ids, ref_ids):
        correct += aligned_matches(hyp, ref)
        keep += range(at, at + len(hyp))  # the pieces; the EOS after them is not scored
        at += len(hyp) + 1
    calibration = Calibration()
    calibration.add_predictions(chosen[keep], torch.tensor(correct, dtype=torch.bool))
    summary = calibration.summary()
    return {
        "ece": summary["ece"],
        "confidence": summary["confidence"],
        "accuracy": summary["calibration_accuracy"],
        "overconfidence": summary["confidence"] - summary["calibration_accuracy"],
        "tokens": calibration.tokens,
        "reliability": summary["reliability"],
    }
