"""The report's 'Against the papers' section: each variant's published claim beside our paired
difference, with the verdict computed from the numbers."""

from __future__ import annotations

from nmt.study.claims import published_claims


def _row(label, kind, bleu, ece, deltas=(), pvalues=()):
    stat = {"bleu": {"mean": bleu - 1, "std": 0.1, "n": 3},
            "bleu_beam": {"mean": bleu, "std": 0.1, "n": 3},
            "ece": {"mean": ece, "std": 0.0, "n": 3}}  # fmt: skip
    return {"label": label, "smoothing_type": kind, "seeds": [1, 2, 3], "test": stat,
            "bleu_deltas": [None] * 3, "p_values": [None] * 3,
            "bleu_deltas_beam": list(deltas) or [None] * 3,
            "p_values_beam": list(pvalues) or [None] * 3}  # fmt: skip


def test_each_claim_gets_our_number_and_a_verdict():
    rows = [
        _row("eps 0.1", "uniform", 37.45, 0.021),
        _row("eps 0.1 (masked)", "masked", 38.05, 0.030, (0.5, 0.6, 0.7), (0.01, 0.02, 0.01)),
        _row("eps 0.1 (graduated x0/x1/x3 at p 0.3/0.7)", "graduated", 37.35, 0.015,
             (-0.1, 0.0, -0.2), (0.6, 0.5, 0.7)),
        _row("eps 0→0.1 over 1500", "uniform", 36.95, 0.02, (-0.5, -0.4, -0.6), (0.01,) * 3),
        _row("eps 0.1 (fairseq)", "fairseq", 37.5, 0.02, (0.0,) * 3, (0.5,) * 3),
    ]  # fmt: skip
    runs = [{"label": r["label"], "objective": {"ramp": 1500} if "→" in r["label"] else {}}
            for r in rows]  # fmt: skip
    blocks = published_claims(rows, runs, "test", "eps 0.1")
    assert blocks[0] == ("h", 2, "Against the papers")
    texts = [b[1] for b in blocks[1:]]
    assert len(texts) == 3  # fairseq has no claim, the baseline is not compared with itself
    assert texts[0].startswith("eps 0.1 (masked): Chen et al. (ACL 2022) report that")
    assert "test BLEU (beam) +0.60 against eps 0.1 (per seed +0.50, +0.60, +0.70; p < 0.05 " \
           "in 3 of 3), ECE 0.0300 against 0.0210" in texts[0]  # fmt: skip
    assert texts[0].endswith("So we find a gain too (+0.60 against their +0.56); teacher-forced "
                             "calibration (ECE) is worse here.")  # fmt: skip
    assert texts[1].endswith("So we find no difference the paired bootstrap supports in most "
                             "seeds; teacher-forced calibration (ECE) is better here.")  # fmt: skip
    assert "no published number" in texts[2] and "we find a loss instead" in texts[2]
    # ECE 0.020 against 0.021: level when the seeds spread more than the difference.
    assert texts[2].endswith("teacher-forced calibration (ECE) is better here.")
    rows[3]["test"]["ece"]["std"] = 0.0015
    texts = [b[1] for b in published_claims(rows, runs, "test", "eps 0.1")[1:]]
    assert texts[2].endswith("teacher-forced calibration (ECE) is level, the difference "
                             "(-0.0010) within the seeds' spread (0.0015).")  # fmt: skip
    assert published_claims(rows, runs, "test", "eps 0 (no smoothing)") == []


def test_figures_go_per_objective_when_the_rows_share_an_eps():
    from nmt.study.report_plots import PLOTS, by_objective, captions

    def row(kind, eps, label):
        return {"smoothing_type": kind, "smoothing": eps, "label": label}

    sweep = [row("uniform", 0.0, "eps 0"), row("uniform", 0.1, "eps 0.1"),
             row("fairseq", 0.1, "eps 0.1 (fairseq)")]  # fmt: skip
    assert not by_objective(sweep) and captions(sweep) == PLOTS
    variants = [row("uniform", 0.1, "eps 0.1"), row("uniform", 0.1, "eps 0→0.1 over 1500")]
    assert by_objective(variants) and by_objective(
        [row("masked", 0.1, "m"), row("unigram", 0.1, "u")]
    )
    assert captions(variants)["bleu_vs_eps.png"].startswith("Test BLEU per objective, greedy")
