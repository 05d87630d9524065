"""The committed studies in docs/results/ regenerate from their committed run artifacts.

A study folder with a runs/ subfolder holds each run's small artifacts (results.json, the
hypothesis and reference files, train.log, ...) and the report built from them by the command
its report.md ends with, e.g.

    python -m nmt.report docs/results/STUDY/runs/* --out docs/results/STUDY
    python -m nmt.report docs/results/multi30k-eps-3seeds/runs/ls0.1-seed* \
        docs/results/STUDY/runs/* --baseline "eps 0.1" --out docs/results/STUDY

Rebuilding it from the repository alone with that command must give the committed report.json
byte for byte (every number: BLEU, p-values, seed means and deviations, calibration) and the
same report.md (the prose answer and its tables).
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest
import yaml

from nmt.cli import parse_args
from nmt.study.report import build_parser, write_report

from .conftest import ROOT

RESULTS = ROOT / "docs" / "results"
STUDIES = sorted(p.parent for p in RESULTS.glob("*/runs") if p.is_dir())


def test_a_study_with_runs_is_committed():
    """The parametrised test below must not pass by finding nothing."""
    assert "multi30k-eps-3seeds" in [s.name for s in STUDIES]


def report_command(study: Path) -> str:
    """The command the committed report.md says wrote it."""
    text = (study / "report.md").read_text(encoding="utf-8")
    return text.split("The command that wrote this report:\n\n```\n", 1)[1].split("\n```")[0]


@pytest.mark.parametrize("study", STUDIES, ids=[s.name for s in STUDIES])
def test_report_regenerates_from_committed_runs(study: Path, tmp_path):
    command = report_command(study)
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "nmt.report"], command
    args = build_parser().parse_args(words[3:])
    assert Path(args.out) == study.relative_to(ROOT)
    own = sorted(str(p.relative_to(ROOT)) for p in (study / "runs").iterdir() if p.is_dir())
    assert own and set(own) <= set(args.runs), f"{study}/runs holds runs the report leaves out"
    assert all((ROOT / r / "results.json").is_file() for r in args.runs)  # all committed
    runs = [ROOT / r for r in args.runs]
    write_report(runs, tmp_path, args.bootstrap_samples, command, args.baseline, args.allow_mixed)
    for name in ("report.json", "report.md"):
        rebuilt = (tmp_path / name).read_text(encoding="utf-8")
        committed = (study / name).read_text(encoding="utf-8")
        assert rebuilt == committed, (
            f"{study.name}/{name} differs from the report rebuilt from its runs; rerun {command}"
        )


def test_results_round_trip_through_the_one_schema(tmp_path):
    """make() -> write() -> read(): the objective, its label and the format version."""
    from nmt import results
    from nmt.objective.smoothing import Smoothing

    made = results.make(Smoothing("fairseq", 0.1), 10, seed=3, step=5, last_step=6,
                        valid=_metrics(), test=None)  # fmt: skip
    results.write(tmp_path, made)
    back = results.read(tmp_path / "results.json")
    assert back == made and (tmp_path / "results.json").stat().st_mode & 0o777 == 0o644
    assert back["format_version"] == 2 and back["label"] == "eps 0.1 (fairseq)"
    assert back["objective"] == {"convention": "fairseq", "eps": 0.1}
    assert back["optimal_logit_gap"] == pytest.approx(math.log(0.9 * 9 / 0.1))
    assert list(tmp_path.iterdir()) == [tmp_path / "results.json"]  # no temp file left


@pytest.mark.parametrize(
    "old, label",
    [({"smoothing": 0.1}, "eps 0.1"), ({"smoothing": 0.1, "smoothing_type": "fairseq"},
      "eps 0.1 (fairseq)"), ({"smoothing": 0.0, "smoothing_type": "fairseq"},
      "eps 0 (no smoothing)")],
)  # fmt: skip
def test_version_1_results_read_with_the_same_fields(tmp_path, old, label):
    """Files written before the objective was recorded: the reader fills it in."""
    from nmt import results

    path = tmp_path / "results.json"
    path.write_text(json.dumps({**old, "seed": 1, "step": 5, "last_step": 5,
                                "valid": _metrics()}))  # fmt: skip
    run = results.read(path)
    assert run["label"] == label and run["objective"]["eps"] == old["smoothing"]
    assert run["smoothing_type"] == old.get("smoothing_type", "uniform")


def test_every_committed_results_json_still_reads():
    from nmt import results

    paths = sorted(RESULTS.glob("*/runs/*/results.json"))
    assert len(paths) >= 12
    labels = {results.read(p)["label"] for p in paths}
    assert {"eps 0 (no smoothing)", "eps 0.1", "eps 0.1 (fairseq)"} <= labels


def _metrics() -> dict:
    from nmt import results

    return {key: 1.0 for key in results.SPLIT_KEYS}


def test_a_committed_runs_config_reproduces_it_on_the_path_it_ran_on(tmp_path):
    """A run from before train.kernels (its config.yaml names none) reproduces on the reference
    path; a newer run's config.yaml records the path it ran on, and reading it keeps that."""
    committed = {
        p: yaml.safe_load(p.read_text()) for p in sorted(RESULTS.glob("*/runs/*/config.yaml"))
    }
    assert sum("kernels" not in raw["train"] for raw in committed.values()) >= 12
    for i, (path, raw) in enumerate(committed.items()):
        recorded = raw["train"].get("kernels", "reference")
        assert recorded in ("fast", "reference"), path
        if raw["train"].get("teacher"):  # a student: its teacher's checkpoint is not committed
            train = {k: v for k, v in raw["train"].items() if not k.startswith(("teacher", "kd_"))}
            path = tmp_path / f"{i}.yaml"  # read without --train.teacher and its kd_ values
            path.write_text(yaml.safe_dump({**raw, "train": train}))
        cfg, _ = parse_args(["--config", str(path)])
        assert cfg.train.kernels == recorded, path


def test_the_distillation_study_holds_the_runs_issue_33_lists():
    """Teachers at eps 0 and 0.1; d_model-64 students at eps 0.1, 3,000 updates: no teacher and
    token-level alpha 0.5 T 1 at seeds 1-3, T 4 and sequence-level at seed 1; within each way
    of teaching, all students of one teacher objective learnt from one teacher file."""
    study = RESULTS / "multi30k-distill" / "runs"
    found: dict[tuple, list[tuple[int, str]]] = {}  # way of teaching -> (seed, teacher sha)
    for run in sorted(p for p in study.iterdir() if p.is_dir()):
        res = json.loads((run / "results.json").read_text())
        obj, cfg = res["objective"], yaml.safe_load((run / "config.yaml").read_text())
        assert (obj["convention"], obj["eps"], res["last_step"]) == ("uniform", 0.1, 3000), run
        assert cfg["model"]["d_model"] == 64, run
        if "teacher_sha256" in obj:
            how = ("token", obj["kd_alpha"], obj["kd_temperature"], obj["teacher_label"])
            sha = obj["teacher_sha256"]
        elif "data_teacher_sha256" in obj:
            how, sha = ("sequence", obj["data_teacher_label"]), obj["data_teacher_sha256"]
        else:
            how, sha = ("none",), ""
        found.setdefault(how, []).append((res["seed"], sha))
    assert {how: sorted(seed for seed, _ in runs) for how, runs in found.items()} == {
        ("none",): [1, 2, 3],
        ("token", 0.5, 1.0, "eps 0"): [1, 2, 3],
        ("token", 0.5, 1.0, "eps 0.1"): [1, 2, 3],
        ("token", 0.5, 4.0, "eps 0"): [1],
        ("token", 0.5, 4.0, "eps 0.1"): [1],
        ("sequence", "eps 0"): [1],
        ("sequence", "eps 0.1"): [1],
    }
    assert all(len({sha for _, sha in runs}) == 1 for runs in found.values()), found
