"""The README's bad-input catalogue: each case is one `error:` line, exit 2, nothing lost."""

from __future__ import annotations

import pytest

from .conftest import run, synthetic_pairs, write_jsonl


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", synthetic_pairs(300, 1))
    write_jsonl(data / "validation.jsonl", synthetic_pairs(20, 2))
    return data


def train(folder, tmp_path, *args: str, dataset: str | None = None):
    return run(
        "train.py", "--config", "configs/toy.yaml", "--src", "en", "--tgt", "xx",
        "--vocab-size", "60", "--dataset", dataset or str(folder),
        "--run-dir", str(tmp_path / "run"), *args,
    )  # fmt: skip


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("Generating ")]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return errors[0]


def test_hub_id_that_does_not_exist(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, dataset="no-such-user/no-such-data"))
    assert "could not load Hub dataset 'no-such-user/no-such-data'" in line


def test_missing_validation_split(folder, tmp_path):
    (folder / "validation.jsonl").unlink()
    write_jsonl(folder / "test.jsonl", synthetic_pairs(20, 3))
    line = one_error_line(train(folder, tmp_path))
    assert "the dataset has no 'validation' split (it has train, test)" in line


def test_languages_not_in_the_dataset_are_listed(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--tgt", "fr"))
    assert "has no en->fr pairs: its languages are en, xx" in line


def test_empty_training_split(folder, tmp_path):
    (folder / "train.jsonl").write_text("")
    line = one_error_line(train(folder, tmp_path))
    assert line == (
        f"error: data file {folder / 'train.jsonl'} is empty: that split has no pairs; fill it, "
        "or remove it and name another split"
    )


def test_training_split_of_only_empty_rows(folder, tmp_path):
    write_jsonl(folder / "train.jsonl", [{"translation": {"en": " ", "xx": "a"}}] * 5)
    line = one_error_line(train(folder, tmp_path))
    assert line == "error: split 'train' has no usable en-xx pairs"


def test_vocabulary_too_large_for_the_corpus(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--vocab-size", "5000"))
    assert "--vocab-size 5000 is too large for this training data" in line


def test_max_tokens_smaller_than_a_pair(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--max-tokens", "10"))
    assert line == (
        "error: 'data.max_tokens' must be at least data.max_len (64) so that the longest pair "
        "fits a batch"
    )


def test_yaml_that_does_not_parse(folder, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1, 2\n")
    line = one_error_line(run("train.py", "--config", str(bad), "--run-dir", str(tmp_path / "r")))
    assert line.startswith(f"error: config file {bad} is not valid YAML at line")


def test_smoothing_outside_the_unit_interval(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--smoothing", "1"))
    assert line == "error: 'train.smoothing' must be in [0, 1)"
    assert not (tmp_path / "run").exists()  # refused before anything was written
