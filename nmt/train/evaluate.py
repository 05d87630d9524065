"""Scoring one split: teacher-forced loss and calibration, then decoding and BLEU/chrF."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from nmt.config import DecodeConfig
from nmt.data.batching import Pairs, collate, make_batches
from nmt.data.dataset import Split, one_line
from nmt.decode.search import decode_corpus
from nmt.objective.criterion import Criterion
from nmt.study.metrics import Calibration, corpus_scores
from nmt.train.precision import autocast

# Logged to TensorBoard at each validation and kept in results.json's history.
VALID_SCALARS = (
    "loss",
    "nll_loss",
    "ppl",
    "accuracy",
    "bleu",
    "chrf",
    "bleu_lc",
    "ece",
    "confidence",
    "entropy",
    "logit_gap",
    "prob_gap",
)


def perplexity(nll: float) -> float:
    """exp(nll), inf where that overflows (a diverged run must still validate and report)."""
    return math.exp(nll) if nll < 709.0 else math.inf


@torch.no_grad()
def evaluate_loss(
    model,
    split: Pairs,
    loss_fn: Criterion,
    device: torch.device,
    max_tokens: int,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Teacher-forced smoothed loss, NLL, perplexity, accuracy and calibration per target token.

    Calibration (metrics.Calibration): ECE over 15 confidence bins, mean confidence, entropy,
    the gold-vs-other logit gap, and the reliability bins.
    """
    was_training = model.training
    model.eval()
    src_lens, tgt_lens = split.lengths()
    totals = torch.zeros(4, dtype=torch.float64)  # loss, nll, correct, tokens
    calibration = Calibration()
    optimum = 0.0  # the sum of the per-token optimum prob gaps, where the criterion has them
    for idx in make_batches(src_lens, tgt_lens, max_tokens, shuffle=False):
        batch = collate(split, idx).to(device)
        with autocast(device, amp_dtype):
            logits = model(batch.src, batch.tgt_in)
        if loss_fn.wants_batch:
            out = loss_fn(logits, batch.tgt, batch=batch)
        else:
            out = loss_fn(logits, batch.tgt)
        calibration.add(logits, batch.labels, loss_fn.pad_id)
        gaps = loss_fn.optimum_prob_gaps(batch.tgt)
        optimum = None if gaps is None or optimum is None else optimum + float(gaps.sum())
        totals += torch.tensor(
            [
                float(out["loss"]),
                float(out["nll_loss"]),
                float(out["num_correct"]),
                float(out["num_tokens"]),
            ],
            dtype=torch.float64,
        )
    model.train(was_training)
    loss, nll, correct, tokens = totals.tolist()
    tokens = max(tokens, 1.0)
    return {
        "loss": loss / tokens,
        "nll_loss": nll / tokens,
        "ppl": perplexity(nll / tokens),
        "accuracy": correct / tokens,
        "num_tokens": int(tokens),
        **calibration.summary(),
        **({} if optimum is None else {"optimal_prob_gap": optimum / tokens}),
    }


def evaluate_split(
    model,
    split: Split,
    loss_fn: Criterion,
    tokenizer,
    decode: DecodeConfig,
    *,
    device: torch.device,
    max_tokens: int,
    amp_dtype: torch.dtype | None = None,
) -> tuple[dict, list[str]]:
    """Loss metrics plus BLEU/chrF of decoded output on one split; returns (metrics, hyps).

    decode is the search validation uses (the run's DecodeConfig); BLEU is cased sacreBLEU
    against the split's raw references, bleu_lc its lowercased 13a variant for papers.
    """
    metrics = evaluate_loss(model, split, loss_fn, device, max_tokens, amp_dtype)
    scores, hyps = decode_and_score(model, split, tokenizer, decode, device, amp_dtype)
    metrics.update(scores)
    return metrics, hyps


def decode_and_score(
    model,
    split: Split,
    tokenizer,
    decode: DecodeConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> tuple[dict, list[str]]:
    """Decode a split with decode's search; cased BLEU/chrF and lowercased-tokenized BLEU."""
    nbests = decode_corpus(
        model, split.src_ids, decode, device=device, amp_dtype=amp_dtype, progress=True
    )
    hyps = tokenizer.decode([hyps[0].tokens for hyps in nbests])
    scores = corpus_scores(hyps, split.tgt_text)
    # Lowercased, 13a-tokenized BLEU: only for comparisons with papers that report it.
    lc = corpus_scores(hyps, split.tgt_text, lowercase=True, tokenize="13a")
    scores.update(bleu_lc=lc["bleu"], bleu_lc_signature=lc["bleu_signature"])
    return scores, hyps


def write_outputs(folder: Path, split: Split, hyps: list[str], search: str = "") -> None:
    """<split>[.<search>].hyp.txt and <split>.ref.txt, one line per pair, for rescoring with
    sacrebleu (search: e.g. "beam5" for the final beam search's output)."""
    # one_line: a line break inside a sentence would shift every later line.
    hyp_name = f"{split.name}.{search}.hyp.txt" if search else f"{split.name}.hyp.txt"
    for name, lines in ((hyp_name, hyps), (f"{split.name}.ref.txt", split.tgt_text)):
        text = "".join(one_line(x) + "\n" for x in lines)
        (folder / name).write_text(text, encoding="utf-8")
