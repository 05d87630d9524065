"""nmt.report averages only runs that differ in their seed (nmt/study/comparable.py)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from nmt.config import Config, TrainConfig
from nmt.errors import NMTError
from nmt.study.report import write_report

from .test_report import fake_run, module


def _with_config(run_dir, **train):
    cfg = Config(train=TrainConfig(**train)).to_dict()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**cfg, "data_files": {}}))
    return run_dir


@pytest.fixture
def row(tmp_path):
    """eps 0.1, seeds 1 and 2, each with its config.yaml; eps 0, seed 1."""
    return [
        _with_config(fake_run(tmp_path, "ls0-seed1", 0.0, 1, 0.3, 2.0, 0.9), seed=1, smoothing=0),
        _with_config(fake_run(tmp_path, "ls0.1-seed1", 0.1, 1, 0.1, 1.9, 0.6), seed=1),
        _with_config(fake_run(tmp_path, "ls0.1-seed2", 0.1, 2, 0.15, 1.7, 0.5), seed=2),
    ]


def test_runs_that_differ_in_their_seed_alone_make_one_row(row, tmp_path):
    write_report(row, tmp_path / "r", bootstrap_samples=10)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [r["seeds"] for r in report["rows"]] == [[1], [1, 2]]
    assert "--allow-mixed" not in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.parametrize(
    "change, keys",
    [
        (dict(max_steps=4000), "train.max_steps"),
        (dict(lr=1e-3, warmup_steps=100), "train.lr, train.warmup_steps"),
    ],
)
def test_runs_of_another_setting_are_not_seeds(row, tmp_path, change, keys):
    _with_config(row[2], seed=2, **change)
    proc = module("nmt.report", *map(str, row), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and proc.stderr == (
        f"error: {row[1]} and {row[2]} would be averaged as seeds of 'eps 0.1' but differ in "
        f"{keys}; compare runs that differ only in their seed, or pass --allow-mixed to "
        "average them anyway\n"
    )
    assert not (tmp_path / "r").exists()
    allowed = module("nmt.report", *map(str, row), "--out", str(tmp_path / "r"),
                     "--allow-mixed", "--bootstrap-samples", "10")  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    md = (tmp_path / "r" / "report.md").read_text()
    assert (
        "Averaged although they differ in more than their seed (--allow-mixed): eps 0.1: "
        f"ls0.1-seed2 differs from ls0.1-seed1 in {keys}." in md
    )


def test_other_data_or_vocabulary_is_not_a_seed(row, tmp_path):
    results = json.loads((row[2] / "results.json").read_text())
    results.update(vocab_size=8000, data_files={"train": ["other.jsonl"]})
    (row[2] / "results.json").write_text(json.dumps(results))
    with pytest.raises(NMTError, match=r"but differ in data_files, vocab_size; compare runs"):
        write_report(row, tmp_path / "r", bootstrap_samples=10)


def test_one_run_twice_is_never_two_seeds(row, tmp_path):
    copy = tmp_path / "copy" / "ls0.1-seed1-again"
    shutil.copytree(row[1], copy)
    for allow in (False, True):
        with pytest.raises(NMTError) as err:
            write_report([*row, copy], tmp_path / "r", bootstrap_samples=10, allow_mixed=allow)
        assert str(err.value) == (
            f"{row[1]} and {copy} are both seed 1 of 'eps 0.1': one row would count a run "
            "twice; leave one of them out"
        )
