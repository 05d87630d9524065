"""sacreBLEU wrapper equals sacrebleu's own corpus functions; calibration by hand."""

from __future__ import annotations

import math

import pytest
import sacrebleu
import torch

from nmt.objective.loss import TranslationLoss
from nmt.study.metrics import Calibration, corpus_scores, optimal_logit_gap, score_lines

HYPS = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest."]
REFS = ["Ein Mann fährt ein Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch."]


def test_equals_sacrebleu():
    scores = corpus_scores(HYPS, REFS)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert scores["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    lower = corpus_scores([h.upper() for h in HYPS], REFS, lowercase=True)
    assert lower["bleu"] == pytest.approx(scores["bleu"])
    assert "case:lc" in lower["bleu_signature"]


def test_perfect_and_length_mismatch():
    assert corpus_scores(REFS, REFS)["bleu"] == pytest.approx(100.0)
    with pytest.raises(ValueError):
        corpus_scores(HYPS[:2], REFS)


def test_lowercase_and_tokenize_change_bleu_only_like_the_sacrebleu_cli():
    upper = [h.upper() for h in HYPS]
    scores = corpus_scores(upper, REFS, lowercase=True, tokenize="intl")
    assert scores["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(upper, [REFS], lowercase=True, tokenize="intl").score
    )
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(upper, [REFS]).score)
    bleu_text, chrf_text = score_lines(upper, REFS, lowercase=True, tokenize="intl")
    assert bleu_text.startswith("BLEU|nrefs:1|case:lc|eff:no|tok:intl|smooth:exp|")
    assert bleu_text.split(" = ")[1].startswith(f"{scores['bleu']:.2f} ")
    assert chrf_text.endswith(f" = {scores['chrf']:.2f}")


# ---- calibration ----------------------------------------------------------------------------
def test_ece_and_reliability_bins_by_hand():
    # 15 bins of width 1/15: 0.95 -> bin 14, 0.9 -> bin 13, 0.62 and 0.61 -> bin 9, 0.3 -> bin 4.
    cal = Calibration()
    cal.add_predictions(
        torch.tensor([0.95, 0.9, 0.62, 0.61, 0.3], dtype=torch.float64),
        torch.tensor([1, 0, 1, 0, 0]).bool(),
    )
    s = cal.summary()
    # (|1 - .95| + |0 - .9| + 2 * |.5 - .615| + |0 - .3|) / 5
    assert s["ece"] == pytest.approx(0.296, abs=1e-12)
    assert s["confidence"] == pytest.approx((0.95 + 0.9 + 0.62 + 0.61 + 0.3) / 5)
    assert s["calibration_accuracy"] == pytest.approx(0.4)
    filled = {m: b for m, b in enumerate(s["reliability"]) if b["count"]}
    assert sorted(filled) == [4, 9, 13, 14]
    assert filled[9]["count"] == 2
    assert filled[9]["confidence"] == pytest.approx(0.615)
    assert filled[9]["accuracy"] == pytest.approx(0.5)
    assert filled[13]["lower"] == pytest.approx(13 / 15) and filled[13]["upper"] == 14 / 15
    assert s["reliability"][0]["confidence"] is None


def test_ece_of_calibrated_and_overconfident_predictors():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(200_000, generator=g)
    calibrated = torch.rand(200_000, generator=g) < conf  # right with probability conf
    overconfident = torch.rand(200_000, generator=g) < 0.6 * conf
    a, b = Calibration(), Calibration()
    a.add_predictions(conf, calibrated)
    b.add_predictions(conf, overconfident)
    assert a.summary()["ece"] < 0.005
    # E|conf - 0.6 conf| = 0.4 * E[conf] = 0.2
    assert b.summary()["ece"] == pytest.approx(0.2, abs=0.005)


def test_calibration_from_logits_by_hand():
    # Labels (0, 2) and a pad; K = 3.
    logits = torch.tensor([[[2.0, 0.0, 0.0], [1.0, 1.0, 4.0], [9.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, 2, -1]])
    cal = Calibration()
    cal.add(logits, labels, pad_id=-1)
    s = cal.summary()
    p1 = torch.softmax(logits[0, 0], -1)
    p2 = torch.softmax(logits[0, 1], -1)
    assert cal.tokens == 2
    assert s["confidence"] == pytest.approx((p1.max() + p2.max()).item() / 2, abs=1e-6)
    assert s["calibration_accuracy"] == 1.0
    entropy = -(p1 * p1.log()).sum() - (p2 * p2.log()).sum()
    assert s["entropy"] == pytest.approx(entropy.item() / 2, abs=1e-6)
    assert s["logit_gap"] == pytest.approx((2.0 + 3.0) / 2, abs=1e-6)  # 2 - 0 and 4 - 1
    # log p_gold - log mean p_other = gold logit - log mean exp(other logits):
    # 2 - log((1 + 1) / 2) = 2 and 4 - log((e + e) / 2) = 3.
    assert s["prob_gap"] == pytest.approx((2.0 + 3.0) / 2, abs=1e-6)


def test_prob_gap_differs_from_the_logit_gap_when_the_others_differ():
    logits = torch.tensor([[4.0, 1.0, 0.0]])
    cal = Calibration()
    cal.add(logits, torch.tensor([0]), pad_id=-1)
    s = cal.summary()
    assert s["logit_gap"] == pytest.approx(4.0 - 0.5, abs=1e-6)
    assert s["prob_gap"] == pytest.approx(4.0 - math.log((math.e + 1.0) / 2), abs=1e-6)  # 3.3799


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_prob_gap_at_the_smoothed_optimum_is_the_closed_form_with_unequal_other_logits(eps):
    """At p = q (the smoothed target) prob_gap is optimal_logit_gap; adding noise to the
    non-gold logits while keeping their total probability keeps prob_gap, not logit_gap."""
    k = 6
    q = torch.full((k,), eps / k)
    q[2] += 1 - eps
    gen = torch.Generator().manual_seed(0)
    other = torch.rand(k - 1, generator=gen) + 0.5
    other = other / other.sum() * (q.sum() - q[2])  # unequal, same total as eps/K * (K - 1)
    p = torch.cat([other[:2], q[2:3], other[2:]])
    cal = Calibration()
    cal.add(p.log()[None], torch.tensor([2]), pad_id=-1)
    s = cal.summary()
    assert s["prob_gap"] == pytest.approx(optimal_logit_gap(eps, k), abs=1e-5)
    assert s["logit_gap"] > optimal_logit_gap(eps, k) + 1e-3  # Jensen: the logit gap is larger


@pytest.mark.parametrize("kind", ["uniform", "fairseq"])
@pytest.mark.parametrize("vocab", [3, 5, 12])
@pytest.mark.parametrize("eps", [0.05, 0.1, 0.3])
def test_optimal_logit_gap_matches_numerical_minimisation(kind, vocab, eps):
    logits = torch.zeros(1, 1, vocab, dtype=torch.float64, requires_grad=True)
    loss_fn = TranslationLoss(vocab, pad_id=-100, smoothing=eps, smoothing_type=kind)
    target = torch.tensor([[0, 1]])  # BOS then gold token 1
    opt = torch.optim.LBFGS([logits], lr=1, max_iter=500, tolerance_grad=1e-12)

    def closure():
        opt.zero_grad()
        loss = loss_fn(logits, target)["loss"]
        loss.backward()
        return loss

    opt.step(closure)
    z = logits.detach()[0, 0]
    gap = (z[1] - (z.sum() - z[1]) / (vocab - 1)).item()
    # TranslationLoss works in float32, which bounds how exactly the minimum is found; the two
    # conventions differ by 0.1 or more at these sizes.
    assert gap == pytest.approx(optimal_logit_gap(eps, vocab, kind), abs=2e-4)


def test_optimal_logit_gap_values():
    assert optimal_logit_gap(0.0, 8000) == math.inf
    assert optimal_logit_gap(0.1, 8000) == pytest.approx(math.log(0.9000125 / 0.0000125))
    assert optimal_logit_gap(0.1, 10, "fairseq") == pytest.approx(math.log(0.9 * 9 / 0.1))
    assert optimal_logit_gap(0.1, 10, "confidence-penalty") is None
