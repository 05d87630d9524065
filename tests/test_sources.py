"""nmt/data/sources.py: which files make each split, and where the checkout is."""

from __future__ import annotations

import pytest

from .conftest import ROOT


def test_folder_resolution_by_name_folder_and_shards(tmp_path):
    from nmt.data.sources import resolve_folder
    from nmt.errors import NMTError

    roles = {"train": "train", "validation": "valid", "test": "test"}
    for name in (
        "train/a.jsonl",
        "train/b.jsonl",
        "data/dev.jsonl",
        "README.md",
        "notes.jsonl",
        "test-00000-of-00002.parquet",
        "test-00001-of-00002.parquet",
        ".git/x.jsonl",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")  # fmt: skip
    found = {k: [str(p.relative_to(tmp_path)) for p in v] for k, v in
             resolve_folder(tmp_path, roles).items()}  # fmt: skip
    assert found == {
        "train": ["train/a.jsonl", "train/b.jsonl"],  # a folder named for the split
        "validation": ["data/dev.jsonl"],
        "test": ["test-00000-of-00002.parquet", "test-00001-of-00002.parquet"],  # one, sharded
    }
    (tmp_path / "train.csv").write_text("en,xx\n")
    with pytest.raises(NMTError) as err:  # two formats of one name: only the file flag helps
        resolve_folder(tmp_path, {"train": "train"})
    assert str(err.value).endswith("keep one, or choose with --train-file FILE")
    assert "train.csv, train/" in str(err.value)


def test_the_project_root_is_the_checkout_whatever_the_package_depth():
    """The default data/multi30k and the sweep's train.py are found from the module's path."""
    from nmt.data.sources import DEFAULT_LOCAL_DIRS, PROJECT_ROOT
    from nmt.study.sweep import TRAIN_PY

    assert PROJECT_ROOT == ROOT and TRAIN_PY == ROOT / "train.py" and TRAIN_PY.is_file()
    assert DEFAULT_LOCAL_DIRS[1] == ROOT / "data" / "multi30k"
