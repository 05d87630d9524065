"""The committed studies in docs/results/ regenerate from their committed run artifacts.

A study folder with a runs/ subfolder holds each run's small artifacts (results.json, the
hypothesis and reference files, train.log, ...) and the report built from them by

    python -m nmt.report docs/results/STUDY/runs/* --out docs/results/STUDY

Rebuilding it from the repository alone must give the committed report.json byte for byte
(every number: BLEU, p-values, seed means and deviations, calibration) and the same report.md
(the prose answer and its tables).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from nmt.study.report import write_report

from .conftest import ROOT

RESULTS = ROOT / "docs" / "results"
STUDIES = sorted(p.parent for p in RESULTS.glob("*/runs") if p.is_dir())


def test_a_study_with_runs_is_committed():
    """The parametrised test below must not pass by finding nothing."""
    assert [s.name for s in STUDIES] == ["multi30k-eps-3seeds"]


@pytest.mark.parametrize("study", STUDIES, ids=[s.name for s in STUDIES])
def test_report_regenerates_from_committed_runs(study: Path, tmp_path):
    runs = sorted(p for p in (study / "runs").iterdir() if p.is_dir())
    assert runs, f"{study}/runs holds no run"
    rel = [str(r.relative_to(ROOT)) for r in runs]
    # The command the committed report was written with (the shell expands runs/* sorted).
    command = shlex.join(
        ["python", "-m", "nmt.report", *rel, "--out", str(study.relative_to(ROOT))]
    )
    write_report(runs, tmp_path, command=command)
    for name in ("report.json", "report.md"):
        rebuilt = (tmp_path / name).read_text(encoding="utf-8")
        committed = (study / name).read_text(encoding="utf-8")
        assert rebuilt == committed, (
            f"{study.name}/{name} differs from the report rebuilt from its runs; rerun "
            f"python -m nmt.report {study.relative_to(ROOT)}/runs/* --out {study.relative_to(ROOT)}"
        )
