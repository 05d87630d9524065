"""End to end: train.py and translate.py run as a user runs them, on real and synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nmt.data.dataset import encode_split, load_dataset_dict, read_split
from nmt.objective.loss import TranslationLoss
from nmt.train.checkpoint import load_for_inference
from nmt.train.evaluate import evaluate_loss
from tests.conftest import cipher_flags, run

ROOT = Path(__file__).resolve().parent.parent
TRAIN_TAGS = [
    "loss",
    "nll_loss",
    "ppl",
    "accuracy",
    "num_tokens",
    "tokens_per_sec",
    "lr",
    "grad_norm",
]
VALID_TAGS = ["loss", "nll_loss", "ppl", "accuracy", "bleu", "chrf"]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_exits_0_and_writes_the_run(multi30k_run):
    proc, run_dir = multi30k_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in (
        "checkpoint_last.pt",
        "checkpoint_best.pt",
        "train.log",
        "results.json",
        "config.yaml",
        "spm.model",
        "test.hyp.txt",
        "test.ref.txt",
    ):
        assert (run_dir / name).is_file(), name
    assert "valid | step 30" in (run_dir / "train.log").read_text()


def test_tensorboard_has_every_tag_and_loss_falls(multi30k_run):
    _, run_dir = multi30k_run
    tags = scalars(run_dir)
    for tag in [f"train/{t}" for t in TRAIN_TAGS] + [f"valid/{t}" for t in VALID_TAGS]:
        assert tag in tags, tag
    assert [s for s, _ in tags["train/loss"]] == [5, 10, 15, 20, 25, 30]
    assert [s for s, _ in tags["valid/bleu"]] == [15, 30]
    losses = [v for _, v in tags["train/loss"]]
    assert losses[-1] < losses[0] - 0.5
    results = json.loads((run_dir / "results.json").read_text())
    assert tags["hparam/test_bleu"][0][1] == pytest.approx(results["test"]["bleu"], abs=1e-4)
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    assert "valid/samples/text_summary" in acc.Tags()["tensors"]


def test_results_json_and_hypotheses_rescore_with_sacrebleu(multi30k_run):
    _, run_dir = multi30k_run
    results = json.loads((run_dir / "results.json").read_text())
    assert results["smoothing"] == 0.1 and results["step"] in (15, 30)
    for split in ("valid", "test"):
        assert set(results[split]) >= {"bleu", "chrf", "loss", "nll_loss", "ppl", "accuracy"}
        assert results[split]["ppl"] == pytest.approx(2.718281828 ** results[split]["nll_loss"])
    hyps = (run_dir / "test.hyp.txt").read_text().splitlines()
    refs = (run_dir / "test.ref.txt").read_text().splitlines()
    assert len(hyps) == len(refs) == 100  # toy.yaml: max_valid_pairs 100 (test too)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "sacrebleu",
            str(run_dir / "test.ref.txt"),
            "-i",
            str(run_dir / "test.hyp.txt"),
            "-m",
            "bleu",
            "-b",
            "-w",
            "4",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(cli.stdout) == pytest.approx(results["test"]["bleu"], abs=1e-4)


def test_checkpoint_alone_reproduces_logged_validation_loss(multi30k_run):
    _, run_dir = multi30k_run
    model, tok, cfg, state = load_for_inference(run_dir / "checkpoint_best.pt")
    dd = load_dataset_dict(cfg.data)
    src, tgt = read_split(dd, cfg.data.valid_split, cfg.data, cfg.data.max_valid_pairs)
    valid = encode_split("valid", src, tgt, tok, cfg.data.max_len)
    loss_fn = TranslationLoss(len(tok), smoothing=cfg.train.smoothing, reduction="sum")
    metrics = evaluate_loss(model, valid, loss_fn, torch.device("cpu"), 4096)
    logged = dict(scalars(run_dir)["valid/loss"])[state["step"]]
    assert metrics["loss"] == pytest.approx(logged, abs=1e-5)
    results = json.loads((run_dir / "results.json").read_text())
    assert metrics["nll_loss"] == pytest.approx(results["valid"]["nll_loss"], abs=1e-6)


def test_synthetic_corpus_with_nested_columns_learns(synthetic_dataset, tmp_path):
    run_dir = tmp_path / "run"
    proc = run(
        "train.py",
        *cipher_flags(synthetic_dataset),
        "--max-steps",
        "80",
        "--valid-every",
        "40",
        "--train.lr",
        "1e-2",
        "--run-dir",
        str(run_dir),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tags = scalars(run_dir)
    losses = [v for _, v in tags["train/loss"]]
    assert losses[-1] < 0.6 * losses[0]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"]["nll_loss"] < dict(tags["valid/nll_loss"])[40] + 1e-6


def test_existing_run_is_not_overwritten(multi30k_run):
    _, run_dir = multi30k_run
    before = (run_dir / "checkpoint_last.pt").read_bytes()
    proc = run("train.py", "--config", "configs/toy.yaml", "--run-dir", str(run_dir))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: run directory {run_dir} already holds a finished run (results.json); pass "
        "--resume to continue it (e.g. with a larger --max-steps), --overwrite to replace it, "
        "or another --run-dir"
    ]
    assert (run_dir / "checkpoint_last.pt").read_bytes() == before


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--dataset", "./no/such/folder"], "dataset folder ./no/such/folder does not exist"),
        (["--smoothing", "1.2"], "'train.smoothing' must be in [0, 1)"),
        (["--model.layers", "3"], "unknown config key 'model.layers'"),
        (["--device", "cuda"], "no CUDA device is visible"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    proc = run("train.py", "--config", "configs/toy.yaml", "--run-dir", str(tmp_path / "r"), *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and needle in lines[-1]
    assert "Traceback" not in proc.stderr
