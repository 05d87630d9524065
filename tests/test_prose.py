"""The report's prose (nmt/study/prose.py): the question, the answer the runs give, unranked
one-seed extras, and runs that cannot be compared."""

from __future__ import annotations

import json
import statistics

import pytest

from nmt.study.report import write_report

from .test_report import REFS, fake_run, only_error, report_cli, sacrebleu_paired_p


@pytest.fixture
def study(tmp_path):
    """eps 0, 0.1, 0.2 x seeds 1, 2 with beam output: 0.1 best greedy, 0.2 best with beam."""
    spec = [  # name, eps, seed, drop rate, nll, confidence, beam drop rate
        ("ls0-seed1", 0.0, 1, 0.30, 1.50, 0.9, 0.28),
        ("ls0-seed2", 0.0, 2, 0.30, 1.50, 0.9, 0.28),
        ("ls0.1-seed1", 0.1, 1, 0.10, 1.55, 0.5, 0.12),
        ("ls0.1-seed2", 0.1, 2, 0.12, 1.55, 0.5, 0.12),
        ("ls0.2-seed1", 0.2, 1, 0.20, 1.70, 0.3, 0.05),
        ("ls0.2-seed2", 0.2, 2, 0.22, 1.70, 0.3, 0.06),
    ]
    return [fake_run(tmp_path, *s) for s in spec]


def test_the_report_opens_with_the_question_and_its_answer(study, tmp_path):
    import sacrebleu

    out = tmp_path / "report"
    write_report(study, out, bootstrap_samples=200)
    md = (out / "report.md").read_text()
    report = json.loads((out / "report.json").read_text())
    lines = md.splitlines()
    assert lines[0] == "# Label smoothing comparison"
    assert lines[2].startswith("Question: which label smoothing eps gives the best BLEU")
    answer = lines[4]
    assert answer.startswith("Answer: With greedy, the best test BLEU is eps 0.1's, ")

    def bleu(run, name):
        return sacrebleu.corpus_bleu((run / name).read_text().splitlines(), [REFS]).score

    greedy = {r.name: bleu(r, "test.hyp.txt") for r in study}
    beam = {r.name: bleu(r, "test.beam5.hyp.txt") for r in study}
    g01 = [greedy["ls0.1-seed1"], greedy["ls0.1-seed2"]]
    g0 = [greedy["ls0-seed1"], greedy["ls0-seed2"]]
    margin = statistics.fmean(g01) - statistics.fmean(g0)
    spread = max(statistics.stdev(g01), statistics.stdev(g0))
    assert (
        f"{statistics.fmean(g01):.2f} ± {statistics.stdev(g01):.2f} over 2 seed(s), "
        f"{margin:+.2f} over eps 0 ({statistics.fmean(g0):.2f} ± {statistics.stdev(g0):.2f}); "
        "the paired bootstrap finds the difference significant (p < 0.05) for 2 of 2 seed(s), "
        f"and the margin is larger than the larger seed-to-seed standard deviation of the two "
        f"({spread:.2f})."
    ) in answer
    b02 = [beam["ls0.2-seed1"], beam["ls0.2-seed2"]]
    assert (
        f"With beam search, the best test BLEU is eps 0.2's, {statistics.fmean(b02):.2f}" in answer
    )
    # The beam column and its p-values: sacreBLEU's, on the beam output.
    row = {x["label"]: x for x in report["rows"]}["eps 0.2"]
    assert row["test"]["bleu_beam"]["mean"] == pytest.approx(statistics.fmean(b02))
    root = study[0].parent
    expected = sacrebleu_paired_p(
        root / "ls0-seed2", root / "ls0.2-seed2", 200, hyp="test.beam5.hyp.txt"
    )
    assert row["p_values_beam"][1] == pytest.approx(expected, abs=1e-12)
    assert report["p_values_beam"]["ls0.2-seed2"]["p_value"] == row["p_values_beam"][1]
    # Perplexity e^nll and calibration (accuracy 0.5 in every run): hand values.
    ppl = [2.718281828459045**x for x in (1.50, 1.55, 1.70)]
    assert (
        f"Perplexity on test rises with eps: {ppl[0]:.2f} (eps 0), {ppl[1]:.2f} (eps 0.1), "
        f"{ppl[2]:.2f} (eps 0.2)."
    ) in answer
    assert (
        "Calibration on test is best at eps 0.1. eps 0: ECE 0.4000, confidence − accuracy "
        "+0.400 (over-confident); eps 0.1: ECE 0.0000, confidence − accuracy +0.000 "
        "(calibrated); eps 0.2: ECE 0.2000, confidence − accuracy -0.200 (under-confident)."
    ) in answer


def test_the_report_sets_vaswani_table_3_beside_our_validation_rows(study, tmp_path):
    write_report(study, tmp_path / "report", bootstrap_samples=50)
    md = (tmp_path / "report" / "report.md").read_text()
    ppl = [2.718281828459045**x for x in (1.50, 1.55, 1.70)]
    assert "## Against Vaswani et al. (2017), Table 3" in md
    assert f"| 0.1 | 4.92 | 25.8 | {ppl[1]:.2f} ± 0.00 |" in md
    assert (
        "Perplexity relative to eps 0 (eps 0.1, 0.2): theirs +5.4%, +17.1%, ours +5.1%, "
        "+22.1%; both rise with eps."
    ) in md
    assert "Theirs peaks at eps 0.1; ours at eps 0.2 (a different peak), and smoothing beats" in md


def test_a_one_seed_extra_is_listed_but_never_crowned(study, tmp_path):
    """Beside two-seed settings, a one-seed eps 0.05 with the best BLEU (greedy and beam) and
    a perfect calibration is named with its value, not ranked against the seed means."""
    import sacrebleu

    extra = fake_run(study[0].parent, "ls0.05-seed1", 0.05, 1, 0.0, 1.52, 0.5, 0.0)
    out = tmp_path / "report"
    write_report([*study, extra], out, bootstrap_samples=50)
    lines = (out / "report.md").read_text().splitlines()
    answer = lines[4]
    assert answer.startswith("Answer: With greedy, the best test BLEU is eps 0.1's, ")
    assert "With beam search, the best test BLEU is eps 0.2's, " in answer
    top = sacrebleu.corpus_bleu(REFS, [REFS]).score  # rate 0.0: the references themselves
    assert top == pytest.approx(100.0)
    greedy = {
        prefix: [
            sacrebleu.corpus_bleu((r / "test.hyp.txt").read_text().splitlines(), [REFS]).score
            for r in study
            if r.name.startswith(prefix)
        ]
        for prefix in ("ls0-", "ls0.1-", "ls0.2-")
    }
    assert max(statistics.fmean(v) for v in greedy.values()) < top  # the extra would win
    assert answer.count("Not ranked, with fewer seeds: eps 0.05 100.00 (1 seed(s) each).") == 2
    assert "Calibration on test is best at eps 0.1." in answer  # 0.05 ties at ECE 0, unranked
    g01 = greedy["ls0.1-"]
    assert lines[6].startswith(
        f"7 runs, 4 settings. Best test BLEU: eps 0.1 ({statistics.fmean(g01):.2f} ± "
        f"{statistics.stdev(g01):.2f}, among the settings with the most seeds). "
    )


def test_runs_with_different_final_beams_are_refused(study, tmp_path):
    path = study[3] / "results.json"
    results = json.loads(path.read_text())
    results["beam"]["length_penalty"] = 0.6
    path.write_text(json.dumps(results))
    line = only_error(report_cli(*study, "--out", tmp_path / "out"))
    assert line == (
        "error: the runs were scored with different final beam searches (beam 5 (length "
        "penalty 0.6), beam 5 (length penalty 1)); compare runs with the same "
        "decode.final_beam and decode.length_penalty"
    )
    (study[3] / "test.beam5.hyp.txt").unlink()
    line = only_error(report_cli(*study, "--out", tmp_path / "out"))
    assert (
        line
        == f"error: {study[3]} lacks test.beam5.hyp.txt, the beam search's output; rerun that run"
    )


def test_a_calibration_win_within_the_seeds_spread_is_called_level():
    from nmt.study.prose import calibration_answer

    def row(label, ece, std):
        stat = {"ece": {"mean": ece, "std": std}, "confidence": {"mean": 0.65},
                "accuracy": {"mean": 0.66}}  # fmt: skip
        return {"label": label, "smoothing": 0.1, "smoothing_type": "uniform", "seeds": [1, 2, 3],
                "test": stat}  # fmt: skip

    # 0.0190 against 0.0213 and 0.0204: within sd 0.0029; 0.0657 is not.
    rows = [row("eps 0.1", 0.0213, 0.0009), row("masked", 0.0204, 0.0009),
            row("ramp", 0.0190, 0.0029), row("graduated", 0.0657, 0.0025)]  # fmt: skip
    text = calibration_answer(rows, "test", every_row=True)
    assert text.startswith("Calibration on test is best at ramp, level within the seeds' "
                           "spread with eps 0.1, masked. ")  # fmt: skip
    rows[2]["test"]["ece"]["std"] = 0.0005  # now 0.0014 and 0.0023 are beyond every sd
    assert calibration_answer(rows, "test", every_row=True).startswith(
        "Calibration on test is best at ramp. "
    )
