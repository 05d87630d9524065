"""The smoothing variants end to end on the cipher corpus: train, an exact resume across the eps
schedule, translate.py, nmt.sweep and nmt.report; and every bad input refused in one line."""

from __future__ import annotations

import json
import logging
import signal

import pytest
import torch

import train
from nmt.cli import parse_args
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.errors import NMTError
from nmt.train.checkpoint import load_checkpoint

from .conftest import cipher_flags, module, run, write_cipher
from .test_cli import scalars

STEPS = 24


@pytest.fixture(scope="module")
def cipher(tmp_path_factory):
    return write_cipher(tmp_path_factory.mktemp("variants") / "cipher", valid=20, test=20)


@pytest.fixture(scope="module")
def prior_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prior") / "prior.tsv"
    path.write_text("</s>\t2\n<unk>\t1\n\n<pad>\t0\n", encoding="utf-8")
    return path


pytestmark = pytest.mark.usefixtures("restore_root_logging")


def _train(cipher, run_dir, *flags: str, steps: int = 6) -> dict:
    argv = [*cipher_flags(cipher), "--max-steps", str(steps), "--valid-every", str(steps),
            "--train.log_every", "1", "--run-dir", str(run_dir), "--decode.final_beam", "0",
            *flags]  # fmt: skip
    assert train.main(argv) == 0
    return json.loads((run_dir / "results.json").read_text())


def test_each_variant_trains_and_keeps_its_distribution(cipher, prior_file, tmp_path):
    cases = {
        "unigram": (["--smoothing-type", "unigram"], "eps 0.1 (unigram)"),
        "masked": (["--smoothing-type", "masked", "--train.masked_form", "chen"],
                   "eps 0.1 (masked, chen)"),
        "prior": (["--smoothing-type", "prior", "--train.smoothing_prior", str(prior_file)],
                  None),
        "graduated": (["--smoothing-type", "graduated"],
                      "eps 0.1 (graduated x0/x1/x3 at p 0.3/0.7)"),
    }  # fmt: skip
    for name, (flags, label) in cases.items():
        results = _train(cipher, tmp_path / name, *flags)
        assert results["smoothing_type"] == name and results["optimal_logit_gap"] is None
        # p* = q: the optimum prob gap's mean over the split's tokens where it varies by piece
        assert ("optimal_prob_gap" in results["test"]) == (name != "graduated")
        if label:
            assert results["label"] == label
        base = load_checkpoint(tmp_path / name / "checkpoint_last.pt").get("criterion")
        if name == "graduated":
            assert base is None
            continue
        base = base["base"]
        assert base[PAD_ID] == 0 and base[BOS_ID] == 0 and base[EOS_ID] > 0
        if name == "unigram":  # add-one: every other entry above 0, summing to 1
            assert bool((base[[UNK_ID, *range(4, len(base))]] > 0).all())
            assert base.sum().item() == pytest.approx(1.0)
        elif name == "masked":  # 0/1: the pieces the cipher's target side uses
            assert set(base.tolist()) == {0.0, 1.0} and 4 < base.sum() < len(base)
        else:  # </s> 2, <unk> 1, nothing else
            expected = torch.zeros_like(base)
            expected[[EOS_ID, UNK_ID]] = torch.tensor([2 / 3, 1 / 3])
            torch.testing.assert_close(base, expected)
    sha = json.loads((tmp_path / "prior" / "results.json").read_text())["objective"]
    assert len(sha["smoothing_prior_sha256"]) == 64
    # translate.py reads a variant's checkpoint as any other
    out = run("translate.py", "--checkpoint", str(tmp_path / "masked" / "checkpoint_best.pt"),
              stdin="a red dog runs\nthe cat sits\n")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(out.stdout.splitlines()) == 2


def test_the_eps_schedule_is_logged_and_labels_the_run(cipher, tmp_path):
    results = _train(cipher, tmp_path / "ramp", "--train.smoothing_ramp", "4")
    assert results["label"] == "eps 0→0.1 over 4"
    logged = [v for _, v in scalars(tmp_path / "ramp")["train/smoothing"]]
    assert logged == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.1])  # update n: eps_at(n - 1)


def _flags(cipher, run_dir) -> list[str]:
    return [
        *cipher_flags(cipher), "--max-steps", str(STEPS), "--valid-every", "12",
        "--save-every", "5", "--train.log_every", "1", "--train.lr", "1e-2",
        "--smoothing-type", "unigram", "--train.smoothing_ramp", "20", "--run-dir", str(run_dir),
    ]  # fmt: skip


def test_sigkill_across_the_ramp_resumes_exactly_without_counting_again(cipher, tmp_path):
    ref = run("train.py", *_flags(cipher, tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert "unigram distribution computed" in ref.stderr
    killed = run("train.py", *_flags(cipher, tmp_path / "run"), env={"NMT_TEST_KILL_AT_STEP": "9"})
    assert killed.returncode == -signal.SIGKILL
    resumed = run("train.py", *_flags(cipher, tmp_path / "run"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at update 5" in resumed.stderr  # save_every 5
    assert "unigram distribution from the checkpoint" in resumed.stderr
    assert "distribution computed" not in resumed.stderr
    a, b = scalars(tmp_path / "ref"), scalars(tmp_path / "run")
    for key in ("train/loss", "train/smoothing"):
        assert [s for s, _ in b[key]] == list(range(1, STEPS + 1))
        for (step, x), (_, y) in zip(a[key], b[key]):
            assert abs(x - y) <= 1e-6, f"{key} step {step}: {x} vs {y}"
    assert [v for _, v in b["train/smoothing"]][:21:5] == pytest.approx(
        [0, 0.025, 0.05, 0.075, 0.1]
    )


def test_a_variant_sweep_names_its_runs_and_reports_them(cipher, tmp_path):
    sweep_dir = tmp_path / "sw"
    proc = module(
        "nmt.sweep", "--smoothing", "0.1", "--sweep-dir", str(sweep_dir), "--bootstrap-samples",
        "50", *cipher_flags(cipher), "--max-steps", "6", "--valid-every", "6",
        "--smoothing-type", "masked", "--train.smoothing_ramp", "3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep_dir / "ls0.1-masked-ramp3-seed1" / "results.json").is_file()
    report = json.loads((sweep_dir / "report.json").read_text())
    assert [r["label"] for r in report["rows"]] == ["eps 0→0.1 over 3 (masked)"]
    text = (sweep_dir / "report.md").read_text()
    assert "Unigram, masked and prior smoothing have no single optimum gap" in text
    masked_row = next(line for line in text.splitlines() if line.startswith("| eps 0→0.1 over 3"))
    assert "n/a" not in masked_row  # the per-token optimum gap's mean instead


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--smoothing-type", "prior"], "'train.smoothing_prior' must name a file"),
        (["--train.smoothing_prior", "p.tsv"], "is read by --smoothing-type prior only"),
        (
            ["--smoothing-type", "graduated", "--train.graduated_bounds", "0.7,0.3"],
            "'train.graduated_bounds' must be two probabilities in increasing order",
        ),
        (
            ["--smoothing-type", "graduated", "--smoothing", "0.4"],
            "'train.graduated_factors' must be >= 0 with every per-token eps",
        ),
        (["--train.graduated_factors", "-1,3"], "'train.graduated_factors' must be >= 0"),
        (["--train.smoothing_ramp", "-5"], "'train.smoothing_ramp' must be >= 0"),
        (["--train.smoothing_start", "1.5"], "'train.smoothing_start' must be in [0, 1)"),
        (["--train.smoothing_ramp_shape", "step"], "must be one of linear, cosine"),
        (["--train.masked_form", "fairseq"], "must be one of uniform, chen"),
    ],  # fmt: skip
)
def test_bad_variant_settings_are_one_error(flags, message):
    with pytest.raises(NMTError, match=message.replace("[", r"\[").replace(")", r"\)")):
        parse_args(flags)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("\n  \n", "is empty"),
        ("</s>\t-1\n", r"line 1: the weight of '</s>' must be a finite number >= 0, got -1"),
        ("</s>\t1\n<unk>\tnan\n", r"line 2: the weight of '<unk>' must be a finite number"),
        ("</s>\t1\n<unk> 1\n", r"line 2: expected 'piece<TAB>weight'"),
        ("</s>\t0\n<unk>\t0\n", "sum to 0"),
        ("</s>\t1\n\n</s>\t2\n", r"line 3: '</s>' is given again \(first on line 1\)"),
    ],
)
def test_bad_prior_files_are_refused_before_any_data_is_read(tmp_path, text, message):
    path = tmp_path / "prior.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(NMTError, match=message):
        parse_args(["--smoothing-type", "prior", "--train.smoothing_prior", str(path)])
    with pytest.raises(NMTError, match="does not exist"):
        parse_args(["--smoothing-type", "prior", "--train.smoothing_prior", str(tmp_path / "x")])


def test_unknown_pieces_are_refused_with_their_line_and_nothing_is_written(
    cipher, tmp_path, capsys
):
    path = tmp_path / "prior.tsv"
    path.write_text("</s>\t1\n▁zebra-crossing\t1\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    argv = [*cipher_flags(cipher), "--max-steps", "2", "--run-dir", str(run_dir),
            "--smoothing-type", "prior", "--train.smoothing_prior", str(path)]  # fmt: skip
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert "line 2: '▁zebra-crossing' is not a piece of the run's vocabulary" in err
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_a_ramp_longer_than_the_run_is_allowed_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="train"):
        cfg, _ = parse_args(["--max-steps", "100", "--train.smoothing_ramp", "400"])
    assert cfg.train.smoothing_ramp == 400
    assert "longer than the run (--max-steps 100): eps ends at 0.025, not 0.1" in caplog.text


def test_graduated_with_a_frozen_reference_checkpoint(cipher, tmp_path, capsys):
    """The reference's SHA-256 names the run; the reference file is never changed; a reference
    with another tokenizer is one error line; resuming after the file changed is refused."""
    import hashlib

    _train(cipher, tmp_path / "ref", steps=4)
    ref = tmp_path / "ref" / "checkpoint_best.pt"
    digest = hashlib.sha256(ref.read_bytes()).hexdigest()
    flags = ["--smoothing-type", "graduated", "--train.graduated_reference", str(tmp_path / "ref")]
    results = _train(cipher, tmp_path / "student", *flags, steps=4)
    assert results["label"] == (
        f"eps 0.1 (graduated x0/x1/x3 at p 0.3/0.7, p of reference {digest[:8]})"
    )
    assert results["objective"]["graduated_reference_sha256"] == digest
    assert hashlib.sha256(ref.read_bytes()).hexdigest() == digest
    # another vocabulary: another tokenizer
    other = [*cipher_flags(cipher), "--vocab-size", "50", "--max-steps", "2",
             "--run-dir", str(tmp_path / "other"), *flags]  # fmt: skip
    assert train.main(other) == 2
    assert "was trained with another tokenizer than this run's" in capsys.readouterr().err
    # the same command after the reference file changed: another objective, refused
    _train(cipher, tmp_path / "ref2", "--seed", "2", steps=4)
    ref.write_bytes((tmp_path / "ref2" / "checkpoint_best.pt").read_bytes())
    again = run("train.py", *cipher_flags(cipher), "--max-steps", "6", "--resume",
                "--run-dir", str(tmp_path / "student"), *flags)  # fmt: skip
    assert again.returncode == 2
    assert "train.graduated_reference_sha256" in again.stderr.splitlines()[-1]


def test_a_reference_for_another_convention_or_missing_is_refused(tmp_path):
    with pytest.raises(NMTError, match="is read by --smoothing-type graduated only"):
        parse_args(["--train.graduated_reference", str(tmp_path)])
    with pytest.raises(NMTError, match="no checkpoint at"):
        parse_args(["--smoothing-type", "graduated", "--train.graduated_reference", str(tmp_path)])
