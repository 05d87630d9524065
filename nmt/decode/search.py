"""Greedy and beam search over model.encode / model.decode_step, with a KV cache.

Rows of every decoder batch are hypotheses grouped by sentence (sentence a owns rows
a * n .. a * n + n - 1). A sentence whose search has ended leaves the batch at once, so the
work of a step is proportional to the sentences still being decoded.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from nmt.config import DecodeConfig
from nmt.data.batching import make_batches, pad
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.train.precision import autocast


class Hypothesis(NamedTuple):
    """One translation: ids without BOS/EOS, its ranking score and its log-probability."""

    tokens: list[int]
    score: float  # logprob / length_penalty(len(tokens) + 1): what beam search ranks by
    logprob: float  # sum of the natural-log probabilities of the tokens and EOS


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al., 2016); alpha 0 ranks by logprob."""
    return ((5.0 + length) / 6.0) ** alpha


def rank(hyps: list[Hypothesis], alpha: float) -> list[Hypothesis]:
    """Finished hypotheses re-scored and ranked, best first, under length penalty alpha.

    Beam search's live beams rank by logprob alone and its finished set does not depend on
    alpha, so one search with nbest = beam gives every alpha's choice by this re-ranking.
    """
    scored = [h._replace(score=h.logprob / length_penalty(len(h.tokens) + 1, alpha)) for h in hyps]
    return sorted(scored, key=lambda x: -x.score)


class StepDecoder:
    """Next-token log-probabilities for every row's prefix.

    With use_cache the decoder sees only each row's newest token and reuses the keys/values of
    earlier positions; without it the whole prefix is re-run at every step (the reference
    implementation, and the benchmark's baseline).
    """

    def __init__(self, model, src: torch.Tensor, use_cache: bool = True, scorer=None):
        self.model, self.scorer = model, scorer  # scorer: logits -> log-probs (nmt.decode.adjust)
        self.memory, self.src_mask = model.encode(src)  # (A, S, D), (A, 1, 1, S)
        self.cache = model.start_decoding(self.memory, self.src_mask) if use_cache else None

    def log_probs(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix (N, t) ids, BOS first -> float32 log-probabilities (N, V) of token t + 1."""
        if self.cache is not None:
            logits = self.model.decode_step(prefix[:, -1], self.cache)
        else:
            n = prefix.size(0) // self.memory.size(0)
            memory = self.memory.repeat_interleave(n, dim=0)
            mask = self.src_mask.repeat_interleave(n, dim=0)
            logits = self.model.decode(prefix, memory, mask)[:, -1]
        if self.scorer is not None:
            return self.scorer(logits.float())
        return F.log_softmax(logits.float(), dim=-1)

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> None:
        """Keep (and repeat) rows; sentences, when given, are the sentences still decoded."""
        if self.cache is not None:
            self.cache.reorder(rows, sentences)
        elif sentences is not None:
            self.memory = self.memory.index_select(0, sentences)
            self.src_mask = self.src_mask.index_select(0, sentences)


def length_limits(
    src_lens: torch.Tensor, max_len_a: float, max_len_b: int, max_positions: int | None
) -> torch.Tensor:
    """Most decoding steps per sentence, EOS included: a * source length (EOS included) + b,
    within positions; src_lens (B,) -> (B,) long."""
    limits = (src_lens.float() * max_len_a + max_len_b).long().clamp(min=1)  # (B,)
    return limits if max_positions is None else limits.clamp(max=max_positions)


def _length_limits(
    src: torch.Tensor, max_len_a: float, max_len_b: int, max_positions: int | None
) -> torch.Tensor:
    """length_limits of a padded source batch (B, S)."""
    return length_limits((src != PAD_ID).sum(1), max_len_a, max_len_b, max_positions)


# Never an output token (fairseq sets their log-probabilities to -inf too): PAD and BOS mean
# nothing there, and UNK would print as a placeholder instead of a word.
NEVER_OUTPUT = (PAD_ID, BOS_ID, UNK_ID)


def _constrain(lp: torch.Tensor, step: int, min_len: int, must_end: torch.Tensor) -> torch.Tensor:
    """Never PAD/BOS/UNK; no EOS before min_len tokens; only EOS, at its own logprob, in rows
    at their limit. lp is a fresh log_softmax output and is changed in place."""
    lp[:, list(NEVER_OUTPUT)] = float("-inf")
    ending = bool(must_end.any())
    if ending:
        forced = torch.full_like(lp, float("-inf"))
        forced[:, EOS_ID] = lp[:, EOS_ID]
    if step < min_len:
        lp[:, EOS_ID] = float("-inf")
    return torch.where(must_end[:, None], forced, lp) if ending else lp


@torch.inference_mode()
def greedy_search(
    model,
    src: torch.Tensor,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    max_positions: int | None = None,
    alpha: float = 0.0,
    use_cache: bool = True,
    min_len: int = 0,
    scorer=None,
) -> list[Hypothesis]:
    """Argmax decoding of src (B, S); one hypothesis per sentence, in input order.

    Output length is at most max_len_a * source length + max_len_b tokens, EOS included, and
    at least min_len tokens before EOS (unless the maximum comes first). scorer: what turns
    logits into the log-probabilities searched (nmt.decode.adjust; None: log_softmax).
    """
    dec = StepDecoder(model, src, use_cache, scorer)
    limits = _length_limits(src, max_len_a, max_len_b, max_positions)
    sent = torch.arange(src.size(0), device=src.device)  # sentence of each active row
    prefix = torch.full((src.size(0), 1), BOS_ID, dtype=torch.long, device=src.device)
    logprob = torch.zeros(src.size(0), device=src.device)
    out: list[Hypothesis | None] = [None] * src.size(0)
    for step in range(int(limits.max())):
        lp = _constrain(dec.log_probs(prefix), step, min_len, step + 1 >= limits[sent])  # (N, V)
        best, tok = lp.max(dim=-1)
        logprob += best
        prefix = torch.cat([prefix, tok[:, None]], dim=1)
        done = tok == EOS_ID
        if not bool(done.any()):
            continue
        for row in done.nonzero().view(-1).tolist():
            tokens, score = prefix[row, 1:-1].tolist(), float(logprob[row])
            out[int(sent[row])] = Hypothesis(tokens, score / length_penalty(step + 1, alpha), score)
        keep = (~done).nonzero().view(-1)
        if keep.numel() == 0:
            break
        dec.reorder(keep, keep)
        sent, prefix, logprob = sent[keep], prefix[keep], logprob[keep]
    return out  # type: ignore[return-value]  # every sentence ends by its limit


@torch.inference_mode()
def beam_search(
    model,
    src: torch.Tensor,
    beam: int = 5,
    max_len_a: float = 1.2,
    max_len_b: int = 10,
    max_positions: int | None = None,
    alpha: float = 1.0,
    nbest: int = 1,
    use_cache: bool = True,
    min_len: int = 0,
    scorer=None,
) -> list[list[Hypothesis]]:
    """Batched beam search of src (B, S); each sentence's nbest hypotheses, best first.

    Each step scores every live beam's continuations, keeps the 2 * beam best per sentence,
    finishes those ending in EOS among the first beam of them, and carries the best beam that
    do not end on. A sentence ends when it has beam finished hypotheses (as in fairseq), which
    are then ranked by logprob / length_penalty. scorer: as in greedy_search.
    """
    dec = StepDecoder(model, src, use_cache, scorer)
    limits = _length_limits(src, max_len_a, max_len_b, max_positions)
    device = src.device
    finished: list[list[Hypothesis]] = [[] for _ in range(src.size(0))]
    sent = torch.arange(src.size(0), device=device)  # active sentences (A,)
    prefix = torch.full((src.size(0), 1), BOS_ID, dtype=torch.long, device=device)  # (A * n, t)
    scores = torch.zeros(src.size(0), 1, device=device)  # (A, n): one beam per sentence at first
    for step in range(int(limits.max())):
        active, n = scores.shape
        lp = dec.log_probs(prefix)  # (A * n, V)
        vocab = lp.size(1)
        lp = _constrain(lp, step, min_len, (step + 1 >= limits[sent]).repeat_interleave(n))
        cand = lp.add_(scores.view(-1, 1)).view(active, n * vocab)
        top, idx = cand.topk(min(2 * beam, n * vocab), dim=1)  # (A, 2k)
        origin, tok = idx // vocab, idx % vocab  # beam of the candidate, its new token
        is_eos = (tok == EOS_ID) & torch.isfinite(top)
        ends, sent_ids = is_eos[:, :beam].nonzero().tolist(), sent.tolist()
        for a, j in ends:
            hyps = finished[sent_ids[a]]
            if len(hyps) < beam:
                tokens, score = prefix[a * n + origin[a, j], 1:].tolist(), float(top[a, j])
                hyps.append(Hypothesis(tokens, score / length_penalty(step + 1, alpha), score))
        # A sentence goes on while it lacks beam finished hypotheses and has steps left.
        counts = torch.tensor([len(finished[s]) for s in sent_ids], device=device)
        go_on = (counts < beam) & (step + 1 < limits[sent])
        if not bool(go_on.any()):
            break
        # The beam best candidates that do not end in EOS carry on (stable sort keeps ranks).
        live = is_eos.int().sort(dim=1, stable=True).indices[:, :beam]  # (A, k)
        keep = go_on.nonzero().view(-1)
        live = live[keep]
        rows = (keep[:, None] * n + origin[keep].gather(1, live)).view(-1)  # (A' * k,)
        dec.reorder(rows, keep if keep.numel() < active else None)
        prefix = torch.cat([prefix[rows], tok[keep].gather(1, live).view(-1, 1)], dim=1)
        scores, sent = top[keep].gather(1, live), sent[keep]
    return [sorted(h, key=lambda x: -x.score)[:nbest] for h in finished]


def decode_corpus(
    model,
    src_ids: list[list[int]],
    cfg: DecodeConfig,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    nbest: int = 1,
    batch_size: int | None = None,
    min_len: int = 0,
    use_cache: bool = True,
    progress: bool = False,
    scorer=None,
) -> list[list[Hypothesis]]:
    """Decode each source id list with cfg's search (greedy when cfg.beam == 1); nbest lists
    in input order.

    Batches are length-sorted and hold at most cfg.max_tokens decoder positions (sentences x
    beam x longest output) and at most batch_size sentences; an output has at most
    cfg.max_len_a * source length + cfg.max_len_b tokens; beams rank by the GNMT length penalty
    cfg.length_penalty; scorer (nmt.decode.adjust) changes what is searched."""
    from tqdm import tqdm

    beam, alpha, max_len_a, max_len_b = cfg.beam, cfg.length_penalty, cfg.max_len_a, cfg.max_len_b
    lens = np.fromiter(map(len, src_ids), dtype=np.int64, count=len(src_ids))
    # Output length bounds the decoder's work, so budget the batch by the longest output too.
    widths = ((lens * max(max_len_a, 1.0) + max_len_b) * beam).astype(lens.dtype)
    budget = max(cfg.max_tokens, int(widths.max(initial=1)))
    batches = make_batches(lens, widths, budget, shuffle=False, max_sentences=batch_size)
    max_positions = model.cfg.max_positions
    out: list[list[Hypothesis]] = [[] for _ in src_ids]
    was_training = model.training
    model.eval()
    try:
        for idx in tqdm(batches, desc="decode", disable=None if progress else True, leave=False):
            src = pad([src_ids[i] for i in idx]).to(device)
            with autocast(device, amp_dtype):
                if beam == 1:
                    found = greedy_search(model, src, max_len_a, max_len_b, max_positions,
                                          alpha, use_cache, min_len, scorer)  # fmt: skip
                    nbests = [[h] for h in found]
                else:
                    nbests = beam_search(
                        model,
                        src,
                        beam,
                        max_len_a,
                        max_len_b,
                        max_positions,
                        alpha,
                        nbest,
                        use_cache,
                        min_len,
                        scorer,
                    )
            for i, hyps in zip(idx, nbests):
                out[i] = hyps
    finally:
        model.train(was_training)
    return out
