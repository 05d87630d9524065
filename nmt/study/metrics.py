"""sacreBLEU BLEU and chrF (with signatures), and calibration under teacher forcing (ECE)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from sacrebleu.metrics import BLEU, CHRF

from nmt.objective import smoothing as registry


def _corpus(hyps: Sequence[str], refs: Sequence[str], lowercase: bool, tokenize: str | None):
    """(metric, score) for BLEU and chrF; lowercase/tokenize change BLEU only, as in the CLI."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    metrics = (BLEU(lowercase=lowercase, tokenize=tokenize), CHRF())
    return [(m, m.corpus_score(list(hyps), [list(refs)])) for m in metrics]


def corpus_scores(
    hyps: Sequence[str], refs: Sequence[str], lowercase: bool = False, tokenize: str | None = None
) -> dict[str, float | str]:
    """Corpus BLEU and chrF of hyps against one reference each, with sacreBLEU signatures.

    The default (cased, 13a-tokenized inside sacreBLEU, on detokenized text) is the number to
    report; lowercase/tokenize are for comparisons with papers and must be labelled as such.
    As in the sacrebleu command line (-lc, -tok), they change BLEU only: chrF stays cased.
    """
    (bleu, bleu_score), (chrf, chrf_score) = _corpus(hyps, refs, lowercase, tokenize)
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def score_lines(
    hyps: Sequence[str], refs: Sequence[str], lowercase: bool = False, tokenize: str | None = None
) -> list[str]:
    """The BLEU and chrF lines `sacrebleu REF -i HYP -m bleu chrf -f text -w 2` prints."""
    return [
        score.format(width=2, signature=str(metric.get_signature()))
        for metric, score in _corpus(hyps, refs, lowercase, tokenize)
    ]


# ---- calibration under teacher forcing --------------------------------------------------------
ECE_BINS = 15


def optimal_logit_gap(eps: float, vocab: int, kind: str = registry.DEFAULT) -> float | None:
    """Gold-minus-other logit gap at the minimum of the smoothed loss (inf for eps = 0).

    The smoothed loss is minimised by p = q, the smoothed target; where its non-gold entries
    are all equal the gap is log(q_gold / q_other). The convention (nmt.objective.smoothing)
    says; None where there is no closed form.
    """
    return registry.get(kind).optimum_gap(eps, vocab)


@dataclass
class Calibration:
    """Running reliability statistics over predicted tokens; summary() gives ECE and the bins.

    Confidence is the largest predicted probability, a prediction is correct when its argmax is
    the reference token; bin m of M holds confidences in ((m - 1) / M, m / M] (Guo et al., 2017).
    """

    bins: int = ECE_BINS
    count: torch.Tensor = field(init=False)  # (M,) predictions per bin
    confidence: torch.Tensor = field(init=False)  # (M,) sum of confidences per bin
    correct: torch.Tensor = field(init=False)  # (M,) correct predictions per bin
    entropy: float = 0.0  # sum over predictions, nats
    gap: float = 0.0  # sum of gold logit minus the mean of the other logits
    prob_gap: float = 0.0  # sum of log p_gold minus log of the mean other probability
    tokens: int = 0

    def __post_init__(self) -> None:
        self.count, self.confidence, self.correct = (
            torch.zeros(self.bins, dtype=torch.float64) for _ in range(3)
        )

    def add_predictions(self, confidence: torch.Tensor, correct: torch.Tensor) -> None:
        """Add predictions given by their confidence in [0, 1] and correctness (both (N,))."""
        confidence = confidence.detach().double().cpu()
        idx = (confidence * self.bins).ceil().long().sub(1).clamp(0, self.bins - 1)
        self.count += torch.bincount(idx, minlength=self.bins).double()
        self.confidence += torch.bincount(idx, confidence, minlength=self.bins)
        self.correct += torch.bincount(idx, correct.detach().double().cpu(), minlength=self.bins)
        self.tokens += confidence.numel()

    @torch.no_grad()
    def add(self, logits: torch.Tensor, labels: torch.Tensor, pad_id: int) -> None:
        """Add the non-pad positions of logits (..., V) against their labels (...)."""
        mask = labels != pad_id
        logits, labels = logits[mask].float(), labels[mask]  # (N, V), (N,)
        lprobs = F.log_softmax(logits, dim=-1)
        conf, pred = lprobs.max(dim=-1)
        self.add_predictions(conf.exp(), pred == labels)
        self.entropy += float(-(lprobs.exp() * lprobs).sum(-1).double().sum())
        gold = logits.gather(-1, labels[:, None]).squeeze(-1)
        others = (logits.sum(-1) - gold) / (logits.size(-1) - 1)
        self.gap += float((gold - others).double().sum())
        # log p_gold - log(mean of the K - 1 other probabilities), by a logsumexp over the
        # others (stable where p_gold is close to 1, where log(1 - p_gold) would lose it).
        gold_lp = lprobs.gather(-1, labels[:, None]).squeeze(-1)
        rest = lprobs.scatter(-1, labels[:, None], float("-inf")).logsumexp(-1)
        mean_other = rest - math.log(logits.size(-1) - 1)
        self.prob_gap += float((gold_lp - mean_other).double().sum())

    def summary(self) -> dict:
        """ECE, mean confidence, accuracy, entropy, the logit and probability gaps and the
        reliability bins.

        logit_gap (gold logit minus the mean other logit) reaches optimal_logit_gap at the
        smoothed loss's minimum only when the other logits are equal; prob_gap (log p_gold minus
        log of the mean other probability) reaches the same value at that minimum whatever they
        are, and is at most logit_gap (Jensen: log of a mean exp >= the mean).
        """
        n = max(self.tokens, 1)
        bins = [
            {
                "lower": m / self.bins,
                "upper": (m + 1) / self.bins,
                "count": int(self.count[m]),
                "confidence": float(self.confidence[m] / self.count[m]) if self.count[m] else None,
                "accuracy": float(self.correct[m] / self.count[m]) if self.count[m] else None,
            }
            for m in range(self.bins)
        ]
        return {
            "ece": float((self.correct - self.confidence).abs().sum()) / n,
            "confidence": float(self.confidence.sum()) / n,
            "calibration_accuracy": float(self.correct.sum()) / n,
            "entropy": self.entropy / n,
            "logit_gap": self.gap / n,
            "prob_gap": self.prob_gap / n,
            "reliability": bins,
        }
