"""python -m nmt.distill: a toy teacher's translations as a dataset folder train.py reads."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from .conftest import cipher_flags, module, run, write_cipher


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    base = tmp_path_factory.mktemp("seqkd")
    cipher = write_cipher(base / "cipher", valid=40, test=30)
    proc = run("train.py", *cipher_flags(cipher), "--smoothing", "0.1", "--max-steps", "10",
               "--run-dir", str(base / "teacher"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = module("nmt.distill", "--teacher", str(base / "teacher"), "--out", str(base / "kd"))
    assert out.returncode == 0, out.stderr[-3000:]
    return base, cipher


def test_the_folder_holds_the_teachers_translations_and_the_untouched_references(distilled):
    base, cipher = distilled
    original = [json.loads(line) for line in (cipher / "train.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (base / "kd" / "train.jsonl").read_text().splitlines()]
    assert [r["en"] for r in rows] == [o["translation"]["en"] for o in original]
    assert all(set(r) == {"en", "xx"} for r in rows)
    for name in ("validation.jsonl", "test.jsonl"):
        assert (base / "kd" / name).read_bytes() == (cipher / name).read_bytes()
    manifest = yaml.safe_load((base / "kd" / "distillation.yaml").read_text())
    teacher = (base / "teacher" / "checkpoint_best.pt").read_bytes()
    assert manifest["teacher_sha256"] == hashlib.sha256(teacher).hexdigest()
    assert manifest["beam"] == 5 and manifest["train_pairs"] == len(original)
    assert manifest["teacher_label"] == "eps 0.1"
    # the teacher's beam-5 output, as translate.py gives it
    proc = run("translate.py", "--checkpoint", str(base / "teacher"),
               stdin="".join(o["translation"]["en"] + "\n" for o in original[:25]))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [r["xx"] for r in rows[:25]]


def test_train_py_reads_the_folder(distilled, tmp_path):
    base, _ = distilled
    flags = cipher_flags(base / "kd")
    proc = run("train.py", *flags, "--max-steps", "3", "--run-dir", str(tmp_path / "student"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "student" / "results.json").read_text())
    assert results["data_files"]["train"] == [str(base / "kd" / "train.jsonl")]
    digest = hashlib.sha256((base / "teacher" / "checkpoint_best.pt").read_bytes()).hexdigest()
    assert results["label"] == f"eps 0.1 + seq-KD from eps 0.1 (teacher {digest[:8]})"
    assert results["objective"]["data_teacher_sha256"] == digest


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--out", "EXISTING"], "already exists; name a new folder"),
        (["--beam", "0"], "--beam must be >= 1, got 0"),
        (["--max-tokens", "-1"], "--max-tokens must be >= 1"),
        (["--out", "NOPARENT"], "its parent folder"),
        (["--teacher", "NOWHERE"], "does not exist"),
    ],
)
@pytest.mark.usefixtures("restore_root_logging")
def test_bad_input_is_one_line_and_writes_nothing(distilled, tmp_path, capsys, flags, needle):
    from nmt.decode.distill import main

    base, _ = distilled
    names = {"EXISTING": str(base / "kd"), "NOPARENT": str(tmp_path / "a" / "b"),
             "NOWHERE": str(tmp_path / "nowhere")}  # fmt: skip
    given = {"--teacher": str(base / "teacher"), "--out": str(tmp_path / "out")}
    given.update(zip(flags[::2], (names.get(x, x) for x in flags[1::2])))
    before = sorted(p.name for p in (base / "kd").iterdir())
    assert main([x for pair in given.items() for x in pair]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and needle in lines[-1]
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in (base / "kd").iterdir()) == before
