"""Temperature scaling (Guo et al., 2017): one T per run fitted on the validation set's
teacher-forced NLL, and what it does to test NLL, perplexity and calibration.

The fit is a golden-section search over log T in [T_LOW, T_HIGH]. NLL is a convex function of
the inverse temperature 1/T (a log-sum-exp of linear functions minus a linear one), so it is
unimodal in log T too and the search finds the one minimiser to within TOLERANCE in log T.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nmt.data.tokenizer import PAD_ID
from nmt.study.metrics import Calibration
from nmt.train.evaluate import perplexity

T_LOW, T_HIGH = 0.05, 20.0
TOLERANCE = 1e-5  # in log T: T to within 0.001%
METHOD = (
    f"golden-section search over log T in [{T_LOW:g}, {T_HIGH:g}] to {TOLERANCE:g} in log T, "
    "minimising the validation set's teacher-forced NLL (unimodal: NLL is convex in 1/T)"
)
_CHUNK = 4096  # rows per log_softmax, so no second (N, V) copy is made


def nll_at(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean NLL (nats) of labels (N,) under softmax(logits / T), logits (N, V)."""
    total = 0.0
    for start in range(0, len(labels), _CHUNK):
        z = logits[start : start + _CHUNK].float() / temperature
        y = labels[start : start + _CHUNK]
        total += float(F.cross_entropy(z, y, reduction="sum").double())
    return total / max(len(labels), 1)


def fit_temperature(
    logits: torch.Tensor,
    labels: torch.Tensor,
    low: float = T_LOW,
    high: float = T_HIGH,
    tol: float = TOLERANCE,
) -> float:
    """The T in [low, high] that minimises nll_at(logits, labels, T) (golden-section search)."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = math.log(low), math.log(high)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll_at(logits, labels, math.exp(c)), nll_at(logits, labels, math.exp(d))
    while b - a > tol:
        if fc <= fd:  # the minimum is in [a, d]
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll_at(logits, labels, math.exp(c))
        else:  # in [c, b]
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll_at(logits, labels, math.exp(d))
    return math.exp((a + b) / 2.0)


def scaled_metrics(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict:
    """Teacher-forced NLL, PPL, ECE, mean confidence and accuracy under softmax(logits / T)."""
    calibration = Calibration()
    for start in range(0, len(labels), _CHUNK):
        z = logits[start : start + _CHUNK].float() / temperature
        calibration.add(z, labels[start : start + _CHUNK], PAD_ID)
    summary = calibration.summary()
    nll = nll_at(logits, labels, temperature)
    return {
        "nll_loss": nll,
        "ppl": perplexity(nll),
        "ece": summary["ece"],
        "confidence": summary["confidence"],
        "accuracy": summary["calibration_accuracy"],
        "reliability": summary["reliability"],
    }


def temperature_section(valid, test, step: int) -> dict:
    """analysis.json's 'temperature': the fitted T (on valid), and valid/test metrics at T = 1
    and at the fitted T. valid, test: forced.Forced passes of the best checkpoint."""
    fitted = fit_temperature(valid.logits, valid.labels)
    out: dict = {"method": METHOD, "step": step, "fitted": fitted}
    for name, forced in (("valid", valid), ("test", test)):
        out[name] = {
            "before": scaled_metrics(forced.logits, forced.labels, 1.0),
            "after": scaled_metrics(forced.logits, forced.labels, fitted),
        }
    return out
