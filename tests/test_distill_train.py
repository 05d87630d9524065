"""train.py --train.teacher: what a distilled run records and logs, alpha 0 as no teacher, a
frozen teacher, exact resume, and the refusals."""

from __future__ import annotations

import hashlib
import json
import signal

import pytest
import torch
import yaml

import train
from nmt.train.checkpoint import load_checkpoint

from .conftest import cipher_flags, run, write_cipher
from .test_cli import scalars

STEPS = 24


@pytest.fixture(scope="module")
def cipher(tmp_path_factory):
    return write_cipher(tmp_path_factory.mktemp("distill") / "cipher", valid=40, test=30)


@pytest.fixture(scope="module")
def teacher(cipher, tmp_path_factory):
    """A toy teacher without smoothing, and its checkpoint's SHA-256."""
    run_dir = tmp_path_factory.mktemp("teacher") / "t0"
    proc = run("train.py", *cipher_flags(cipher), "--smoothing", "0", "--max-steps", "12",
               "--seed", "5", "--run-dir", str(run_dir))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, hashlib.sha256((run_dir / "checkpoint_best.pt").read_bytes()).hexdigest()


def flags(cipher, run_dir, *extra: str, steps: int = STEPS) -> list[str]:
    return [
        *cipher_flags(cipher), "--max-steps", str(steps), "--valid-every", "12",
        "--save-every", "5", "--train.log_every", "1", "--train.lr", "1e-2",
        "--run-dir", str(run_dir), *extra,
    ]  # fmt: skip


def student(teacher_dir, alpha: str = "0.5", temperature: str = "2") -> list[str]:
    return ["--train.teacher", str(teacher_dir), "--train.kd_alpha", alpha,
            "--train.kd_temperature", temperature]  # fmt: skip


def test_a_student_records_its_teacher_and_logs_both_losses(cipher, teacher, tmp_path):
    teacher_dir, digest = teacher
    proc = run("train.py", *flags(cipher, tmp_path / "s", *student(teacher_dir)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert results["label"] == f"eps 0.1 + KD from eps 0 (alpha 0.5, T 2, teacher {digest[:8]})"
    assert results["objective"]["teacher_sha256"] == digest
    config = yaml.safe_load((tmp_path / "s" / "config.yaml").read_text())
    assert config["train"]["teacher_sha256"] == digest
    assert (
        load_checkpoint(tmp_path / "s" / "checkpoint_best.pt")["config"]["train"]["teacher_sha256"]
        == digest
    )
    logged = scalars(tmp_path / "s")
    ce, kd, loss = (dict(logged[f"train/{k}"]) for k in ("ce_loss", "kd_loss", "loss"))
    for step in (1, 12, STEPS):  # the logged loss is the mix of the two logged terms
        assert loss[step] == pytest.approx(0.5 * ce[step] + 0.5 * kd[step], rel=1e-5)
    assert hashlib.sha256((teacher_dir / "checkpoint_best.pt").read_bytes()).hexdigest() == digest


def test_alpha_0_trains_exactly_as_without_a_teacher(cipher, teacher, tmp_path):
    teacher_dir, _ = teacher
    for name, extra in (("plain", []), ("alpha0", student(teacher_dir, alpha="0"))):
        proc = run("train.py", *flags(cipher, tmp_path / name, *extra, steps=8))
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (
        load_checkpoint(tmp_path / n / "checkpoint_last.pt")["model"] for n in ("plain", "alpha0")
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert scalars(tmp_path / "plain")["train/loss"] == scalars(tmp_path / "alpha0")["train/loss"]


@pytest.mark.usefixtures("restore_root_logging")
def test_the_teacher_is_frozen_in_eval_mode_and_never_changes(
    cipher, teacher, tmp_path, monkeypatch
):
    import nmt.train.trainer as trainer_module

    teacher_dir, _ = teacher
    seen = []

    def capture(train_cfg, tok):
        model = real(train_cfg, tok)
        seen.append((model, {k: v.clone() for k, v in model.state_dict().items()}))
        return model

    real = trainer_module.teacher_model
    monkeypatch.setattr(trainer_module, "teacher_model", capture)
    assert train.main(flags(cipher, tmp_path / "s", *student(teacher_dir))) == 0
    ((model, before),) = seen
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_sigkill_then_resume_equals_the_uninterrupted_distilled_run(cipher, teacher, tmp_path):
    teacher_dir, _ = teacher
    extra = student(teacher_dir, alpha="0.7", temperature="4")
    ref = run("train.py", *flags(cipher, tmp_path / "ref", *extra))
    assert ref.returncode == 0, ref.stderr[-3000:]
    killed = run("train.py", *flags(cipher, tmp_path / "run", *extra),
                 env={"NMT_TEST_KILL_AT_STEP": "9"})  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    resumed = run("train.py", *flags(cipher, tmp_path / "run", *extra))
    assert resumed.returncode == 0 and "resumed at update 5" in resumed.stderr
    a, b = scalars(tmp_path / "ref"), scalars(tmp_path / "run")
    for key in ("train/loss", "train/kd_loss"):
        assert [s for s, _ in b[key]] == list(range(1, STEPS + 1))
        for (step, x), (_, y) in zip(a[key], b[key]):
            assert abs(x - y) <= 1e-6, f"{key} step {step}: {x} vs {y}"
    w_a, w_b = (
        load_checkpoint(tmp_path / n / "checkpoint_last.pt")["model"] for n in ("ref", "run")
    )
    assert all(torch.allclose(w_a[k], w_b[k], atol=1e-6, rtol=0) for k in w_a)


def test_resuming_with_another_teacher_file_is_refused(cipher, teacher, tmp_path):
    teacher_dir, _ = teacher
    copy = tmp_path / "teacher"
    copy.mkdir()
    (copy / "checkpoint_best.pt").write_bytes((teacher_dir / "checkpoint_best.pt").read_bytes())
    killed = run("train.py", *flags(cipher, tmp_path / "s", *student(copy)),
                 env={"NMT_TEST_KILL_AT_STEP": "7"})  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    state = torch.load(copy / "checkpoint_best.pt", weights_only=True)
    torch.save({**state, "step": state["step"] + 1}, copy / "checkpoint_best.pt")  # other bytes
    again = run("train.py", *flags(cipher, tmp_path / "s", *student(copy)))
    assert again.returncode == 2 and "train.teacher_sha256" in again.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--train.kd_alpha", "1.5"], "'train.kd_alpha' must be in [0, 1], got 1.5"),
        (["--train.kd_alpha", "-0.1"], "'train.kd_alpha' must be in [0, 1], got -0.1"),
        (["--train.kd_temperature", "0"], "'train.kd_temperature' must be > 0, got 0"),
        (["--train.kd_temperature", "-2"], "'train.kd_temperature' must be > 0, got -2"),
        (["--train.kd_temperature", "nan"], "'train.kd_temperature' must be a finite number, got "),
        (["--train.kd_temperature", "inf"], "'train.kd_temperature' must be a finite number, got "),
        (["--vocab-size", "50"], "--vocab-size 50 differs from the teacher's 60 pieces"),
        (["--train.teacher", "NOWHERE"], "--train.teacher NOWHERE: no checkpoint at"),
        (["--train.teacher", "TEXT"], "is not a readable checkpoint"),
    ],
)
@pytest.mark.usefixtures("restore_root_logging")
def test_bad_distillation_input_is_one_line(cipher, teacher, tmp_path, capsys, extra, needle):
    teacher_dir, _ = teacher
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    names = {"NOWHERE": str(tmp_path / "nowhere"), "TEXT": str(tmp_path / "text.pt")}
    given = {"--train.teacher": str(teacher_dir), "--train.kd_alpha": "0.5"}
    given.update(zip(extra[::2], (names.get(x, x) for x in extra[1::2])))  # each flag once
    needle = needle.replace("NOWHERE", names["NOWHERE"])
    argv = [x for pair in given.items() for x in pair]
    base = flags(cipher, tmp_path / "s")
    if "--vocab-size" in given:  # cipher_flags gives 60: give the other value instead
        at = base.index("--vocab-size")
        base[at : at + 2] = []
    assert train.main([*base, *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("key", ["kd_alpha", "kd_temperature"])
@pytest.mark.usefixtures("restore_root_logging")
def test_distillation_settings_without_a_teacher_are_refused(cipher, tmp_path, capsys, key):
    assert train.main(flags(cipher, tmp_path / "s", f"--train.{key}", "0.3")) == 2
    assert f"'train.{key}' is read with --train.teacher only" in capsys.readouterr().err
