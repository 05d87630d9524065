"""Beam-size curves: test BLEU, length ratio and the share of very short outputs per beam size
and length penalty, with the model's own scores or an inference-time change of them
(nmt.decode.adjust: rectified smoothing, a temperature)."""

from __future__ import annotations

import dataclasses
import logging

import torch
from sacrebleu.metrics import BLEU

from nmt.decode.search import decode_corpus, rank

log = logging.getLogger(__name__)

BEAMS = (1, 2, 4, 5, 10, 25, 50)
ALPHAS = (0.0, 1.0)  # raw logprob, and the recipe's GNMT length penalty
SHORT = 0.5  # an output is "short" when it has fewer than SHORT x its reference's words


def length_stats(hyps: list[str], refs: list[str]) -> dict:
    """Cased sacreBLEU BLEU, its length ratio (hypothesis / reference length, 13a tokens,
    corpus level) and the share of outputs with fewer than SHORT x their reference's
    whitespace-separated words."""
    score = BLEU().corpus_score(hyps, [refs])
    short = sum(len(h.split()) < SHORT * len(r.split()) for h, r in zip(hyps, refs))
    return {
        "bleu": score.score,
        "length_ratio": score.sys_len / max(score.ref_len, 1),
        "short_share": short / max(len(hyps), 1),
    }


def beam_curve(
    model,
    src_ids: list[list[int]],
    refs: list[str],
    tok,
    decode,
    device: torch.device,
    scorer=None,
    beams: tuple[int, ...] = BEAMS,
    alphas: tuple[float, ...] = ALPHAS,
    amp_dtype: torch.dtype | None = None,
) -> list[dict]:
    """One row per (beam, length penalty): beam, alpha and length_stats. Each beam size is
    searched once (nbest = beam) and ranked for every alpha (search.rank); beam 1 is greedy,
    where alpha changes nothing."""
    rows = []
    for beam in beams:
        search = dataclasses.replace(decode, beam=beam)
        nbests = decode_corpus(model, src_ids, search, device=device, amp_dtype=amp_dtype,
                               nbest=beam, scorer=scorer, progress=True)  # fmt: skip
        for alpha in alphas:
            best = [rank(h, alpha)[0].tokens for h in nbests]
            row = {"beam": beam, "alpha": alpha, **length_stats(tok.decode(best), refs)}
            rows.append(row)
        log.info("beam %d: bleu %s", beam, " / ".join(f"{r['bleu']:.2f}" for r in rows[-2:]))
    return rows
