"""sacreBLEU wrapper equals sacrebleu's own corpus functions."""

from __future__ import annotations

import pytest
import sacrebleu

from nmt.metrics import corpus_scores, score_lines

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
