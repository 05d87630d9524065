"""bench/time_to_bleu.py restarts only the runs it started itself and refuses a 0-minute
budget; each refusal is one 'error:' line, exit 2, and the folder is left as it was."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from .conftest import cipher_flags, run, write_cipher

SCRIPT = "bench/time_to_bleu.py"


def _sha(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.parametrize("minutes", ["0", "-5", "nan", "inf"])
def test_a_budget_of_no_time_is_refused(tmp_path, minutes):
    proc = run(SCRIPT, "--minutes", "30", minutes, "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        f"error: --minutes {float(minutes):g}: a budget must be a finite number of minutes > 0\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--beam", "0"], "--beam must be >= 1, got 0"),
        (["--length-penalty", "nan"], "--length-penalty must be a finite number >= 0, got nan"),
        (["--threads", "-1"], "--threads must be >= 0, got -1"),
        (["--name", "a/b"], "--name 'a/b' must be a plain name (run folders are OUT/NAME-m<M>)"),
    ],
)
def test_flags_that_would_fail_after_training_are_refused_before_it(tmp_path, flags, message):
    proc = run(SCRIPT, "--minutes", "1", "--out", str(tmp_path / "ttb"), *flags)
    assert proc.returncode == 2 and proc.stderr == f"error: {message}\n"
    assert not (tmp_path / "ttb").exists()  # nothing trained, nothing made
    (tmp_path / "file").write_text("x\n")
    proc = run(SCRIPT, "--minutes", "1", "--out", str(tmp_path / "file"))
    assert (
        proc.stderr == f"error: --out {tmp_path / 'file'} is a file; name a folder for the runs\n"
    )


def test_a_folder_it_did_not_start_is_never_replaced(tmp_path, multi30k_run):
    _, finished = multi30k_run  # a finished run of train.py, not of this benchmark
    out = tmp_path / "ttb"
    shutil.copytree(finished, out / "recipe-m1")
    (out / "notes-m1").mkdir()
    (out / "notes-m1" / "mine.txt").write_text("mine\n")
    before = {name: _sha(out / name) for name in ("recipe-m1", "notes-m1")}
    for name, what in (
        ("recipe", "a finished run"),
        ("notes", "files this benchmark did not write"),
    ):
        proc = run(SCRIPT, "--minutes", "1", "--out", str(out), "--name", name)
        assert proc.returncode == 2 and proc.stderr == (
            f"error: {out / f'{name}-m1'} exists and holds {what}; this benchmark restarts only "
            "runs it started itself: move it away, or choose another --out or --name\n"
        )
    assert {name: _sha(out / name) for name in before} == before


def test_its_own_runs_are_restarted_scored_or_reported(tmp_path):
    data = write_cipher(tmp_path / "cipher", valid=20, test=20)
    out = tmp_path / "ttb"
    flags = ["--minutes", "5", "--out", str(out), "--name", "toy", "--beam", "2",
             *cipher_flags(data), "--max-steps", "3", "--valid-every", "3"]  # fmt: skip
    (out / "toy-m5").mkdir(parents=True)
    (out / "toy-m5" / "time_to_bleu.started").write_text("an interrupted attempt\n")
    (out / "toy-m5" / "train.log").write_text("the attempt's log\n")
    first = run(SCRIPT, *flags)  # its own unfinished run: started again (--overwrite)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "--overwrite" in first.stdout.splitlines()[0]
    line = first.stdout.strip().splitlines()[-1]
    assert line.startswith("time_to_bleu: minutes=5 test_bleu=") and "updates=3" in line
    again = run(SCRIPT, *flags)  # finished and scored: reported, nothing trained
    assert again.returncode == 0 and again.stdout.strip() == line
    (out / "toy-m5" / "time_to_bleu.json").unlink()
    scored = run(SCRIPT, *flags)  # finished, no score: scored, not trained
    assert scored.returncode == 0 and not scored.stdout.startswith("+")
    assert scored.stdout.strip().splitlines()[-1].split(" wall")[0] == line.split(" wall")[0]
