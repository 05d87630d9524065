"""Data that would train on the wrong thing, or fail deep inside a library, is refused in one
line naming the file and line or row, and a refused run leaves no run directory."""

from __future__ import annotations

import gzip
import json

import pytest

from .conftest import synthetic_pairs
from .test_bad_input import one_error_line, train


def _tsv(path, rows, stray_at=None):
    lines = ["en\txx"] + [f"{r['translation']['en']}\t{r['translation']['xx']}" for r in rows]
    if stray_at is not None:
        lines[stray_at] += "\ta stray field"
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("stray_at", [1, 57])
def test_a_tsv_row_with_a_stray_field_is_refused_by_line(tmp_path, stray_at):
    data = tmp_path / "tsv"
    data.mkdir()
    _tsv(data / "train.tsv", synthetic_pairs(300, 1), stray_at)
    _tsv(data / "validation.tsv", synthetic_pairs(20, 2))
    line = one_error_line(train(data, tmp_path))
    assert line == (
        f"error: data file {data / 'train.tsv'} line {stray_at + 1} has 3 tab-separated fields "
        "but its header has 2 (en, xx); fix or remove that line"
    )
    assert not (tmp_path / "run").exists()


def test_translation_rows_without_a_language_name_the_first_one(tmp_path):
    rows = synthetic_pairs(300, 1)
    rows[40] = {"translation": {"en": "a red dog"}}  # no xx
    rows[90] = {"translation": {"fr": "un chien", "xx": "god der"}}
    data = tmp_path / "data"
    data.mkdir()
    for name, part in (("train", rows), ("validation", synthetic_pairs(20, 2))):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    line = one_error_line(train(data, tmp_path))
    assert line == (
        "error: split 'train' row 41: its translation has no xx (it has en); every row needs "
        "both en and xx: fix or remove that row"
    )
    assert not (tmp_path / "run").exists()  # the refused run removes the directory it made


def test_compressed_files_are_named_not_silently_skipped(tmp_path):
    data = tmp_path / "gz"
    data.mkdir()
    for name, n in (("train", 300), ("validation", 20)):
        with gzip.open(data / f"{name}.jsonl.gz", "wt") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in synthetic_pairs(n, 1))
    line = one_error_line(train(data, tmp_path))
    assert line == (
        f"error: split 'train' is only in compressed files in {data} (train.jsonl.gz); "
        "compressed files are not read: decompress them (e.g. gunzip) and run again"
    )
