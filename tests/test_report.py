"""nmt.report on hand-made runs: table numbers, seed statistics and p-values against sacrebleu."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys

import pytest

from nmt.errors import NMTError
from nmt.study.metrics import Calibration, corpus_scores, optimal_logit_gap
from nmt.study.report import write_report
from nmt.study.runs import load_run

from .conftest import module, synthetic_pairs

REFS = [p["translation"]["xx"] for p in synthetic_pairs(120, 7)]


def corrupt(refs: list[str], rate: float, seed: int) -> list[str]:
    """Drop each word with probability rate: a system of predictable quality."""
    rng = random.Random(seed)
    return [" ".join(w for w in r.split() if rng.random() > rate) for r in refs]


def fake_run(
    root, name: str, eps: float, seed: int, rate: float, nll: float, ece_conf: float,
    beam_rate: float | None = None,
):  # fmt: skip
    """A finished run directory as train.py leaves it (results.json, test/valid hyp and ref;
    with beam_rate also the final beam search's hypotheses and scores)."""
    run_dir = root / name
    run_dir.mkdir()
    hyps = corrupt(REFS, rate, seed)
    cal = Calibration()
    import torch

    conf = torch.full((10,), ece_conf, dtype=torch.float64)
    cal.add_predictions(conf, torch.arange(10) < 5)  # accuracy 0.5
    metrics = {
        "nll_loss": nll,
        "ppl": 2.718281828459045**nll,
        "accuracy": 0.5,
        **cal.summary(),
        **corpus_scores(hyps, REFS),
    }
    lc = corpus_scores(hyps, REFS, lowercase=True, tokenize="13a")
    metrics.update(bleu_lc=lc["bleu"], bleu_lc_signature=lc["bleu_signature"])
    results = {
        "smoothing": eps,
        "smoothing_type": "uniform",
        "seed": seed,
        "vocab_size": 60,
        "optimal_logit_gap": optimal_logit_gap(eps, 60),
        "step": 100,
        "last_step": 120,
        "command": f"python train.py --smoothing {eps} --seed {seed}",
        "valid": metrics,
        "test": metrics,
        "history": [{"step": 50, "bleu": 1.0}, {"step": 100, "bleu": metrics["bleu"]}],
    }
    if beam_rate is not None:
        beam_hyps = corrupt(REFS, beam_rate, seed + 100)
        scores = corpus_scores(beam_hyps, REFS)
        results["beam"] = {"beam": 5, "length_penalty": 1.0, "valid": scores, "test": scores}
        for split in ("test", "valid"):
            (run_dir / f"{split}.beam5.hyp.txt").write_text("".join(h + "\n" for h in beam_hyps))
    (run_dir / "results.json").write_text(json.dumps(results))
    for split in ("test", "valid"):
        (run_dir / f"{split}.hyp.txt").write_text("".join(h + "\n" for h in hyps))
        (run_dir / f"{split}.ref.txt").write_text("".join(r + "\n" for r in REFS))
    return run_dir


@pytest.fixture
def runs(tmp_path):
    spec = [  # name, eps, seed, drop rate, nll, confidence
        ("ls0-seed1", 0.0, 1, 0.30, 2.0, 0.9),
        ("ls0-seed2", 0.0, 2, 0.35, 2.2, 0.8),
        ("ls0.1-seed1", 0.1, 1, 0.10, 1.9, 0.6),
        ("ls0.1-seed2", 0.1, 2, 0.15, 1.7, 0.5),
    ]
    return [fake_run(tmp_path, *s) for s in spec]


def sacrebleu_paired_p(base, system, n: int, hyp: str = "test.hyp.txt") -> float:
    out = subprocess.run(
        [sys.executable, "-m", "sacrebleu", str(base / "test.ref.txt"), "-i",
         str(base / hyp), str(system / hyp), "-m", "bleu",
         "--paired-bs", "--paired-bs-n", str(n), "-f", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)[1]["BLEU"]["p_value"]


def test_table_is_mean_and_std_over_seeds_with_sacrebleu_p_values(runs, tmp_path):
    out = tmp_path / "report"
    write_report(runs, out, bootstrap_samples=300)
    md = (out / "report.md").read_text()
    report = json.loads((out / "report.json").read_text())
    bleus = {r.name: json.loads((r / "results.json").read_text())["test"]["bleu"] for r in runs}
    # Each run's BLEU is what sacrebleu's corpus_bleu gives for its files.
    for r in runs:
        import sacrebleu

        hyps = (r / "test.hyp.txt").read_text().splitlines()
        assert bleus[r.name] == sacrebleu.corpus_bleu(hyps, [REFS]).score
    row = {x["label"]: x for x in report["rows"]}["eps 0.1"]
    pair = [bleus["ls0.1-seed1"], bleus["ls0.1-seed2"]]
    assert row["test"]["bleu"]["mean"] == pytest.approx(statistics.fmean(pair))
    assert row["test"]["bleu"]["std"] == pytest.approx(statistics.stdev(pair))
    assert row["test"]["nll_loss"]["mean"] == pytest.approx(1.8)
    assert row["test"]["nll_loss"]["std"] == pytest.approx(statistics.stdev([1.9, 1.7]))
    # ECE of 10 predictions at confidence c, half right: |c - 0.5|
    assert row["test"]["ece"]["mean"] == pytest.approx(0.05)
    cell = f"{statistics.fmean(pair):.2f} ± {statistics.stdev(pair):.2f}"
    assert f"| eps 0.1 | 2 | {cell} |" in md
    # p-values: one per seed, each against eps 0 of the same seed, as the sacrebleu CLI says.
    root = runs[0].parent
    for seed, p in zip((1, 2), row["p_values"]):
        expected = sacrebleu_paired_p(root / f"ls0-seed{seed}", root / f"ls0.1-seed{seed}", 300)
        assert p == pytest.approx(expected, abs=1e-12)
    assert all(p < 0.05 for p in row["p_values"])  # 10% against 30-35% of the words dropped
    assert f"{row['p_values'][0]:.3f}*, {row['p_values'][1]:.3f}* |" in md
    assert row["bleu_deltas"] == [
        pytest.approx(bleus[f"ls0.1-seed{s}"] - bleus[f"ls0-seed{s}"]) for s in (1, 2)
    ]
    assert row["optimal_logit_gap"] == pytest.approx(optimal_logit_gap(0.1, 60))
    assert "Best test BLEU: eps 0.1" in md


def test_identical_systems_get_a_dash_not_a_significant_p(tmp_path):
    """sacreBLEU gives two identical systems p = 1/(n+1); the table must not call it significant."""
    base = fake_run(tmp_path, "ls0-seed1", 0.0, 1, 0.3, 2.0, 0.9)
    same = fake_run(tmp_path, "ls0.1-seed1", 0.1, 1, 0.3, 1.9, 0.6)  # same seed and rate
    assert (same / "test.hyp.txt").read_text() == (base / "test.hyp.txt").read_text()
    out = tmp_path / "report"
    write_report([base, same], out, bootstrap_samples=200)
    report = json.loads((out / "report.json").read_text())
    test = report["p_values"]["ls0.1-seed1"]
    expected = sacrebleu_paired_p(base, same, 200)
    assert test == {"p_value": pytest.approx(expected, abs=1e-12), "bleu_delta": 0.0}
    assert expected == pytest.approx(1 / 201)  # parity with sacreBLEU's number is kept
    row = {x["label"]: x for x in report["rows"]}["eps 0.1"]
    md = (out / "report.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| eps 0.1 |"))
    assert line.endswith("| – |") and "0.005" not in line and "*" not in line
    assert row["bleu_deltas"] == [0.0]
    assert "same BLEU as eps 0" in md  # the footnote says why


def test_report_needs_matching_references(runs, tmp_path):
    for run in runs[2:]:  # both seeds of eps 0.1 (one row), against eps 0's references
        (run / "test.ref.txt").write_text("".join("x\n" for _ in REFS))
    with pytest.raises(NMTError, match="different references"):
        write_report(runs, tmp_path / "out", bootstrap_samples=10)


def test_load_run_refuses_results_without_calibration(runs):
    path = runs[0] / "results.json"
    results = json.loads(path.read_text())
    del results["test"]["calibration_accuracy"]
    path.write_text(json.dumps(results))
    with pytest.raises(NMTError, match="older version without calibration"):
        load_run(runs[0])


def report_cli(*args: str):
    return module("nmt.report", *map(str, args), "--bootstrap-samples", "10")


def only_error(proc) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda r: "{not json", "is not readable JSON"),
        (lambda r: "[1, 2]", "is not a results.json written by train.py"),
        (lambda r: json.dumps({k: v for k, v in r.items() if k != "seed"}), "lacks seed"),
        (lambda r: json.dumps({**r, "smoothing": "0.1"}), "'smoothing' is not a number"),
        (lambda r: json.dumps({**r, "test": {k: v for k, v in r["test"].items() if k != "bleu"}}),
         "'test' lacks bleu"),
        (lambda r: json.dumps({**r, "valid": None}), "'valid' holds no metrics"),
    ],
)  # fmt: skip
def test_malformed_results_json_is_one_line(runs, tmp_path, damage, needle):
    path = runs[1] / "results.json"
    path.write_text(damage(json.loads(path.read_text())))
    assert needle in only_error(report_cli(*runs, "--out", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_runs_with_and_without_a_test_split_are_not_mixed(runs, tmp_path):
    path = runs[3] / "results.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "test": None}))
    line = only_error(report_cli(*runs, "--out", tmp_path / "out"))
    assert line.startswith(f"error: {runs[0]}, {runs[1]}, {runs[2]} were scored on a test split")
    assert line.endswith(f"but {runs[3]} were not; compare runs that used the same splits")


def test_out_that_is_a_file_is_refused(runs, tmp_path):
    out = tmp_path / "report.md"
    out.write_text("mine\n")
    assert only_error(report_cli(*runs, "--out", out)) == (
        f"error: --out {out} is a file; name a folder for the report"
    )
    assert out.read_text() == "mine\n"


def test_misaligned_hypotheses_and_references_are_refused(runs, tmp_path):
    (runs[2] / "test.ref.txt").write_text("".join(r + "\n" for r in REFS) + "one more\n")
    line = only_error(report_cli(*runs, "--out", tmp_path / "out"))
    assert line == (
        f"error: {runs[2] / 'test.hyp.txt'} has {len(REFS)} lines but test.ref.txt has "
        f"{len(REFS) + 1}: they are not aligned line by line, so no significance test can pair "
        "them; rewrite them with train.py"
    )


def test_baseline_names_the_row_every_other_is_tested_against(runs, tmp_path):
    """--baseline 'eps 0.1': eps 0 is tested against eps 0.1 of the same seed (the p-values
    are sacrebleu's with the roles swapped), and the table and prose say so."""
    out = tmp_path / "report"
    proc = module("nmt.report", *map(str, runs), "--out", str(out), "--bootstrap-samples",
                  "300", "--baseline", "eps 0.1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert set(report["p_values"]) == {"ls0-seed1", "ls0-seed2"}
    for seed in (1, 2):
        base, system = runs[2 + seed - 1], runs[seed - 1]
        expected = sacrebleu_paired_p(base, system, 300)
        assert report["p_values"][f"ls0-seed{seed}"]["p_value"] == pytest.approx(expected)
    md = (out / "report.md").read_text()
    assert "| p vs eps 0.1 | p beam vs eps 0.1 |" in md
    assert "of BLEU against eps 0.1 with the same seed" in md
    assert "the best test BLEU is eps 0.1's" in md and "no other objective beats eps 0.1" in md


def test_a_baseline_no_run_has_is_one_line(runs, tmp_path):
    proc = module("nmt.report", *map(str, runs), "--out", str(tmp_path / "r"), "--baseline",
                  "eps 0.3")  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        "error: --baseline 'eps 0.3' names no run; the runs' labels are eps 0 (no smoothing), "
        "eps 0.1\n"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("how", ["read-only folder", "write fails midway"])
def test_an_unwritable_out_folder_is_one_line(runs, tmp_path, monkeypatch, capsys, how):
    """As root a chmod'ed folder stays writable, so the refusals are simulated: os.access says
    read-only, or a figure cannot be written (EACCES); what the folder held stays."""
    import errno

    from nmt.study import report

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("an earlier report\n")
    if how == "read-only folder":
        monkeypatch.setattr(report.os, "access", lambda path, mode: False)
        expected = (
            f"error: cannot write the report into {out}: it is read-only; choose another --out"
        )
    else:

        def denied(*args):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(report, "plot_all", denied)
        expected = (
            f"error: cannot write the report into {out}: Permission denied; choose another "
            "--out (files already there are replaced whole or not at all)"
        )
    code = report.main([*map(str, runs), "--out", str(out), "--bootstrap-samples", "10"])
    assert code == 2 and capsys.readouterr().err.strip() == expected
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    assert (out / "report.md").read_text() == "an earlier report\n"
