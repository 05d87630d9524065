"""Exact resume after SIGKILL and SIGTERM, atomic checkpoints, run-directory rules."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from nmt.cli import parse_args
from nmt.errors import NMTError
from nmt.train.checkpoint import load_checkpoint
from nmt.train.run import prepare_run_dir

from .conftest import ROOT, cipher_flags, run, write_cipher
from .test_cli import scalars

STEPS = 24


@pytest.fixture(scope="module")
def cipher(tmp_path_factory):
    return write_cipher(tmp_path_factory.mktemp("resume") / "cipher", valid=40, test=30)


def flags(cipher, run_dir) -> list[str]:
    return [
        *cipher_flags(cipher), "--max-steps", str(STEPS), "--valid-every", "12",
        "--save-every", "5", "--train.log_every", "1", "--train.lr", "1e-2",
        "--run-dir", str(run_dir),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference(cipher, tmp_path_factory):
    """The uninterrupted run every interrupted one must equal."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    proc = run("train.py", *flags(cipher, run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    epoch_ends = [
        int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if "done at update" in line
    ]
    return run_dir, epoch_ends


def assert_same_run(reference_dir, run_dir, resumed_at: int) -> None:
    ref, got = scalars(reference_dir)["train/loss"], scalars(run_dir)["train/loss"]
    assert [s for s, _ in got] == list(range(1, STEPS + 1))  # no step twice, none missing
    for (step, a), (_, b) in zip(ref, got):
        assert abs(a - b) <= 1e-6, f"step {step} (resumed at {resumed_at}): {a} vs {b}"
    w_ref = load_checkpoint(reference_dir / "checkpoint_last.pt")["model"]
    w_got = load_checkpoint(run_dir / "checkpoint_last.pt")["model"]
    for name in w_ref:
        assert torch.allclose(w_ref[name], w_got[name], atol=1e-6, rtol=0), name
    valid = [s for s, _ in scalars(run_dir)["valid/bleu"]]
    assert valid == [12, 24]


def test_sigkill_mid_epoch_then_resume_equals_the_uninterrupted_run(reference, cipher, tmp_path):
    ref_dir, epoch_ends = reference
    assert epoch_ends and epoch_ends[0] < STEPS  # the resumed stretch crosses an epoch end
    kill_at = next(k for k in range(16, STEPS) if k % 5 and k not in epoch_ends)
    run_dir = tmp_path / "run"
    killed = run("train.py", *flags(cipher, run_dir), env={"NMT_TEST_KILL_AT_STEP": str(kill_at)})
    assert killed.returncode == -signal.SIGKILL
    saved = load_checkpoint(run_dir / "checkpoint_last.pt")
    assert saved["step"] == kill_at - kill_at % 5 and 0 < saved["batch_pos"]
    # The same command again: an unfinished run with the same config resumes by itself.
    resumed = run("train.py", *flags(cipher, run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed at update {saved['step']}" in resumed.stderr
    assert_same_run(ref_dir, run_dir, saved["step"])


def test_sigterm_saves_at_the_next_update_and_resumes(reference, cipher, tmp_path):
    ref_dir, _ = reference
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *flags(cipher, run_dir)],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "train | step 7 |" in line:
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stderr.readlines()
    assert proc.wait(timeout=300) == 128 + signal.SIGTERM
    step = load_checkpoint(run_dir / "checkpoint_last.pt")["step"]
    assert 7 <= step < STEPS
    assert lines[-1].strip() == (
        f"stopped by SIGTERM after update {step}; saved {run_dir / 'checkpoint_last.pt'}; "
        "run the same command to resume"
    )
    assert not (run_dir / "results.json").exists()
    resumed = run("train.py", *flags(cipher, run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(ref_dir, run_dir, step)


def test_keep_last_numbered_checkpoints(reference):
    run_dir, _ = reference
    assert not list(run_dir.glob("checkpoint_step*.pt"))  # keep_last 0: none


def test_writer_killed_mid_save_leaves_the_previous_checkpoint(tmp_path):
    """A real SIGKILL inside torch.save; the next start removes the temporary file."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from nmt.train.checkpoint import save_checkpoint
        path = {str(run_dir / "checkpoint_last.pt")!r}
        save_checkpoint({{"step": 1, "w": torch.ones(10)}}, path)
        def half_then_die(obj, handle):
            handle.write(b"PK" * 5000)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = half_then_die
        save_checkpoint({{"step": 2, "w": torch.zeros(10)}}, path)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    temps = list(run_dir.glob(".checkpoint_last.pt.*.tmp"))
    assert len(temps) == 1 and temps[0].stat().st_size == 10000
    assert load_checkpoint(run_dir / "checkpoint_last.pt")["step"] == 1
    cfg, _ = parse_args(["--run-dir", str(run_dir)])
    (run_dir / "config.yaml").write_text("{}\n")
    rd = prepare_run_dir(cfg, overwrite=False, resume=True)
    rd.lock.release()
    assert (rd.path, rd.resuming) == (run_dir, True)
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == [".lock", "checkpoint_last.pt", "config.yaml"]


def test_run_directory_rules(reference, tmp_path):
    ref_dir, _ = reference
    finished, _ = parse_args(["--run-dir", str(ref_dir)])
    with pytest.raises(NMTError, match="already holds a finished run .* pass --resume"):
        prepare_run_dir(finished, overwrite=False)
    with pytest.raises(NMTError, match="contradict"):
        prepare_run_dir(finished, overwrite=True, resume=True)
    empty, _ = parse_args(["--run-dir", str(tmp_path / "new")])
    with pytest.raises(NMTError, match="has no checkpoint_last.pt to continue from"):
        prepare_run_dir(empty, overwrite=False, resume=True)
    assert not (tmp_path / "new").exists()  # a refused run leaves no directory behind
    rd = prepare_run_dir(empty, overwrite=False)
    rd.lock.release()
    assert (rd.path, rd.resuming) == (tmp_path / "new", False)


def test_unfinished_run_with_another_config_is_refused(reference, cipher, tmp_path):
    ref_dir, _ = reference
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("checkpoint_last.pt", "config.yaml"):
        (run_dir / name).write_bytes((ref_dir / name).read_bytes())
    proc = run("train.py", *flags(cipher, run_dir), "--train.lr", "2e-2")
    assert proc.returncode == 2
    assert "--train.lr is given 2 times; the last value, 2e-2, is used" in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error")] == [
        f"error: run directory {run_dir} holds an unfinished run with a different config "
        "(train.lr); a resume may change only its budget and bookkeeping: use another "
        "--run-dir, or --overwrite to replace it"
    ]
    proc = run("train.py", *flags(cipher, run_dir), "--patience", "3")  # bookkeeping only
    assert proc.stderr.strip().splitlines() == [
        f"error: run directory {run_dir} holds an unfinished run with a different config "
        "(train.patience); pass --resume to continue it with these settings, --overwrite to "
        "replace it, or another --run-dir"
    ]
    assert (run_dir / "checkpoint_last.pt").read_bytes() == (
        ref_dir / "checkpoint_last.pt"
    ).read_bytes()


def test_resuming_into_another_architecture_is_one_line(reference, cipher, tmp_path):
    ref_dir, _ = reference
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("checkpoint_last.pt", "config.yaml", "results.json"):
        (run_dir / name).write_bytes((ref_dir / name).read_bytes())
    proc = run("train.py", *flags(cipher, run_dir), "--resume", "--model.ffn_dim", "48")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (
        "error: --resume cannot change model.ffn_dim (64 -> 48): a resume may change only the "
        "budget and bookkeeping (steps, epochs, minutes, patience, validation, saving, device, "
        "precision, compile); start a new run with another --run-dir, or --overwrite"
    )
    assert "Traceback" not in proc.stderr
    assert (run_dir / "checkpoint_last.pt").read_bytes() == (
        ref_dir / "checkpoint_last.pt"
    ).read_bytes()


@pytest.mark.parametrize(
    "change, shown",
    [
        (["--smoothing", "0.3"], "train.smoothing (0.1 -> 0.3)"),
        (["--vocab-size", "61"], "data.vocab_size (60 -> 61)"),
        (["--seed", "4"], "train.seed (1 -> 4)"),
        (["--decode.beam", "3"], "decode.beam (1 -> 3)"),
    ],
)
def test_resume_refuses_to_change_what_the_run_is(reference, cipher, tmp_path, change, shown):
    """Another eps, vocabulary, seed or validation search would give a results.json that
    describes a run that never happened: refused, the run's files untouched."""
    ref_dir, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(ref_dir, run_dir, ignore=shutil.ignore_patterns(".lock"))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    proc = run("train.py", *flags(cipher, run_dir), "--resume", *change)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --resume cannot change {shown}: a resume may change only the budget and "
        "bookkeeping (steps, epochs, minutes, patience, validation, saving, device, precision, "
        "compile); start a new run with another --run-dir, or --overwrite"
    )
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    after.pop(".lock", None)
    assert after == before


def test_resume_records_every_budget_change(reference, cipher, tmp_path):
    """--resume with a larger --max-steps and another patience: logged, and results.json says
    which keys changed, from what, to what, at which update."""
    ref_dir, ref = reference
    run_dir = tmp_path / "run"
    shutil.copytree(ref_dir, run_dir, ignore=shutil.ignore_patterns(".lock"))
    steps = json.loads((ref_dir / "results.json").read_text())["last_step"]
    proc = run("train.py", *flags(cipher, run_dir), "--resume", "--max-steps", str(steps + 4),
               "--patience", "7")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["resume_changes"] == [
        {"key": "train.max_steps", "from": steps, "to": steps + 4, "step": steps},
        {"key": "train.patience", "from": 10, "to": 7, "step": steps},
        {"key": "train.run_dir", "from": str(ref_dir), "to": str(run_dir), "step": steps},
    ]  # the copy is another folder: recorded too
    log = (run_dir / "train.log").read_text()
    assert f"resume changes train.max_steps from {steps} to {steps + 4} at update {steps}" in log


def test_sigterm_in_the_final_scoring_says_how_to_finish_and_logs_nothing_twice(cipher, tmp_path):
    """SIGTERM while the best checkpoint is scored: one message, no results.json; the same
    command then scores it without validating again, and TensorBoard has each step once (the
    final hparams too, also after a --resume of the finished run)."""
    run_dir = tmp_path / "run"
    args = [*flags(cipher, run_dir), "--max-steps", "12", "--decode.final_beam", "2"]
    stopped = run("train.py", *args, env={"NMT_TEST_TERM_IN_FINAL_SEARCH": "1"})
    assert stopped.returncode == 128 + signal.SIGTERM
    assert stopped.stderr.strip().splitlines()[-1] == (
        "stopped by SIGTERM during the final scoring; training is complete (update 12, saved "
        f"in {run_dir / 'checkpoint_last.pt'}); run the same command to score it and write "
        "results.json"
    )
    assert not (run_dir / "results.json").exists()
    done = run("train.py", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "valid | step 12" not in done.stderr  # not validated again
    again = run("train.py", *args, "--resume")  # a finished run, resumed: scored again
    assert again.returncode == 0, again.stderr[-2000:]
    tags = scalars(run_dir)
    for tag in ("valid/bleu", "train/loss", "hparam/test_bleu", "hparam/valid_bleu"):
        steps = [s for s, _ in tags[tag]]
        assert len(steps) == len(set(steps)), (tag, steps)
    assert [s for s, _ in tags["valid/bleu"]] == [12]
    results = json.loads((run_dir / "results.json").read_text())
    assert tags["hparam/test_bleu"][0][1] == pytest.approx(results["test"]["bleu"], abs=1e-4)
