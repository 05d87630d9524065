"""Nothing a user has is lost: --output paths, run/sweep locks, --overwrite, tokenizer cache."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nmt.files import FolderLock

from .conftest import ROOT, cipher_flags, module, run, write_cipher


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 10-update cipher run (its own cache dir: module fixtures precede autouse)."""
    base = tmp_path_factory.mktemp("safety")
    data = write_cipher(base / "cipher")
    run_dir = base / "run"
    env = {"NMT_CACHE": str(base / "cache"), "HF_HUB_OFFLINE": "1"}
    proc = run("train.py", *cipher_flags(data), "--run-dir", str(run_dir), "--max-steps", "10",
               "--valid-every", "5", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data, run_dir


def translate(run_dir: Path, *args: str, stdin: str = "red dog\nthe cat runs\n"):
    return run("translate.py", "--checkpoint", str(run_dir), "--beam", "1", *args, stdin=stdin)


# ---- translate.py --output ------------------------------------------------------------------
def test_output_to_a_fifo_writes_into_it(trained, tmp_path):
    _, run_dir = trained
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    proc = translate(run_dir, "--output", str(fifo))
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still a FIFO, not replaced by a file
    assert got and len(got[0].splitlines()) == 2


def test_output_to_a_character_device_keeps_the_device(trained, tmp_path):
    _, run_dir = trained
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the same device as /dev/null
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here: {exc}")
    proc = translate(run_dir, "--output", str(null))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(null.stat().st_mode) and null.stat().st_rdev == os.makedev(1, 3)
    assert not list(tmp_path.glob(".null*"))  # no temp file left beside it


def test_output_through_a_symlink_keeps_the_link(trained, tmp_path):
    _, run_dir = trained
    target = tmp_path / "real" / "out.txt"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    proc = translate(run_dir, "--output", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and Path(os.readlink(link)) == target
    assert len(target.read_text().splitlines()) == 2 and target.read_text() != "old\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the file keeps its permissions
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("which", ["input", "reference", "checkpoint", "input-symlink"])
def test_output_that_is_an_input_is_refused_before_any_work(trained, tmp_path, which):
    _, run_dir = trained
    src = tmp_path / "src.en"
    src.write_text("red dog\n")
    ref = tmp_path / "ref.xx"
    ref.write_text("derx godx\n")
    ckpt = run_dir / "checkpoint_best.pt"
    before = {p: p.read_bytes() for p in (src, ref, ckpt)}
    alias = tmp_path / "alias"
    if which == "input-symlink":
        alias.symlink_to(src)
    else:  # another name for the same file: a hard link through another folder
        (tmp_path / "sub").mkdir()
        alias = tmp_path / "sub" / ".." / "hard"
        os.link({"input": src, "reference": ref, "checkpoint": ckpt}[which], alias)
    flag = {"input-symlink": "input"}.get(which, which)
    proc = translate(run_dir, "--input", str(src), "--reference", str(ref), "--output", str(alias))
    line = one_error_line(proc)
    assert line == f"error: --output {alias} is the --{flag} file; choose another output path"
    assert {p: p.read_bytes() for p in before} == before


def test_output_folder_that_does_not_exist_is_refused_up_front(trained, tmp_path):
    _, run_dir = trained
    missing = tmp_path / "no" / "out.txt"
    line = one_error_line(translate(run_dir, "--output", str(missing)))
    assert line == f"error: --output {missing}: folder {missing.parent} does not exist"
    line = one_error_line(translate(run_dir, "--output", str(tmp_path)))
    assert line == f"error: --output {tmp_path} is a directory; name a file"


# ---- run-directory and sweep locks ----------------------------------------------------------
def test_second_train_on_a_running_directory_is_refused_then_a_killed_holder_frees_it(
    trained, tmp_path
):
    data, _ = trained
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), *cipher_flags(data), "--run-dir", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        lock = run_dir / ".lock"
        deadline = time.time() + 60
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGSTOP)  # the holder is alive (and stays so) while we try
        before = snapshot(run_dir)
        second = run("train.py", *cmd[2:])
        assert one_error_line(second) == (
            f"error: run directory {run_dir} is in use by another train.py (PID {first.pid}); "
            "wait for it to finish, stop it, or choose another run directory"
        )
        assert snapshot(run_dir) == before  # the refused process wrote nothing
    finally:
        first.kill()  # SIGKILL: the kernel drops its lock, no stale lock file state remains
        first.wait()
    again = run("train.py", *cmd[2:])
    assert again.returncode == 0, again.stderr[-2000:]
    assert (run_dir / "results.json").is_file()


def test_sweep_folder_in_use_is_refused(tmp_path):
    sweep_dir = tmp_path / "sw"
    sweep_dir.mkdir()
    holder = FolderLock(sweep_dir / ".lock")
    assert holder.acquire()
    try:
        proc = module("nmt.sweep", "--smoothing", "0", "--sweep-dir", str(sweep_dir))
    finally:
        holder.release()
    assert one_error_line(proc) == (
        f"error: sweep folder {sweep_dir} is in use by another nmt.sweep (PID {os.getpid()}); "
        "wait for it to finish, stop it, or choose another sweep folder"
    )
    assert sorted(p.name for p in sweep_dir.iterdir()) == [".lock"]


# ---- --overwrite ----------------------------------------------------------------------------
def finished_copy(trained, tmp_path) -> Path:
    _, run_dir = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns(".lock"))
    return copy


@pytest.mark.parametrize(
    "bad, needle",
    [
        (["--dataset", "./no-such-folder"], "dataset folder ./no-such-folder does not exist"),
        (["--vocab-size", "5000"], "--vocab-size 5000 is too large"),
        (["--src", "fr"], "has no fr->xx pairs"),
    ],
)
def test_overwrite_that_cannot_start_keeps_the_old_run_byte_identical(
    trained, tmp_path, bad, needle
):
    data, _ = trained
    run_dir = finished_copy(trained, tmp_path)
    before = snapshot(run_dir)
    proc = run("train.py", *cipher_flags(data), "--run-dir", str(run_dir), "--overwrite", *bad)
    assert needle in one_error_line(proc)
    after = snapshot(run_dir)
    after.pop(".lock", None)
    assert after == before


def test_overwrite_keeps_the_old_run_aside_until_the_first_checkpoint(trained, tmp_path):
    data, _ = trained
    run_dir = finished_copy(trained, tmp_path)
    before = snapshot(run_dir)
    flags = [*cipher_flags(data), "--run-dir", str(run_dir), "--overwrite", "--seed", "7"]
    # Killed at update 3, before any checkpoint (the first is at update 5).
    killed = run("train.py", *flags, "--valid-every", "5", env={"NMT_TEST_KILL_AT_STEP": "3"})
    assert killed.returncode == -signal.SIGKILL
    assert snapshot(run_dir / ".overwritten") == before  # the old run, whole, set aside
    assert not (run_dir / "results.json").exists()
    # The same command again: the attempt's files go, the old run stays aside until update 5.
    done = run("train.py", *flags, "--valid-every", "5")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (run_dir / ".overwritten").exists()
    assert json.loads((run_dir / "results.json").read_text())["seed"] == 7
    assert "--overwrite: the old run is in" in (run_dir / "train.log").read_text()


def test_an_interrupted_overwrite_is_finished_or_undone_only_when_asked(trained, tmp_path):
    """After an --overwrite killed before its first checkpoint, only --overwrite (confirming)
    or --restore-overwritten (undoing) may proceed; any other command is refused and the old
    run, set aside in .overwritten/, is left byte for byte."""
    data, _ = trained
    run_dir = finished_copy(trained, tmp_path)
    before = snapshot(run_dir)
    flags = [*cipher_flags(data), "--run-dir", str(run_dir), "--valid-every", "5"]
    killed = run("train.py", *flags, "--overwrite", "--seed", "7",
                 env={"NMT_TEST_KILL_AT_STEP": "3"})  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    aside = snapshot(run_dir / ".overwritten")
    assert aside == before
    refusal = (
        f"error: run directory {run_dir} holds a run that an interrupted --overwrite set aside "
        f"in {run_dir / '.overwritten'}; pass --restore-overwritten to put it back, or "
        "--overwrite to confirm replacing it"
    )
    for other in (["--seed", "9"], ["--seed", "7"], ["--resume"], ["--lr", "1e-3"]):
        proc = run("train.py", *flags, *other)
        assert one_error_line(proc) == refusal, other
        assert snapshot(run_dir / ".overwritten") == aside
    both = run("train.py", *flags, "--restore-overwritten", "--overwrite")
    assert one_error_line(both).startswith("error: --restore-overwritten puts an old run back")
    restored = run("train.py", *flags, "--restore-overwritten")
    assert restored.returncode == 0 and restored.stderr.strip() == (
        f"restored the run in {run_dir} that an interrupted --overwrite had set aside"
    )
    after = snapshot(run_dir)
    after.pop(".lock", None)
    assert after == before  # the old run, whole; nothing of the attempt is left
    again = run("train.py", *flags, "--restore-overwritten")
    assert one_error_line(again) == (
        f"error: --restore-overwritten: {run_dir} holds no run set aside (.overwritten)"
    )
