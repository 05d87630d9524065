"""The extension points, exercised from this file alone (nothing under nmt/ is edited).

- A new smoothing convention (all eps mass on one fixed token) is one class registered here:
  its loss is the cross-entropy to its own target, train.py trains 5 updates with it, and its
  label names the run in results.json and the row of an nmt.report table.
- A new criterion that logs an extra key: the key reaches train.log and TensorBoard without
  any change to the update step, the log window or the trainer.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import train
from nmt.objective import smoothing
from nmt.objective.loss import TranslationLoss
from nmt.objective.smoothing import Convention
from nmt.study.report import write_report

from .conftest import cipher_flags, write_cipher
from .test_cli import scalars

TOKEN = 4  # the piece that receives all of eps (any fixed id of the vocabulary)


class OneToken(Convention):
    """Gold 1 - eps, and all of eps on one fixed token: q = (1 - eps) one_hot(y) + eps e_t."""

    name = "one-token"
    help = "one-token (eps to one fixed token)"

    def kernel(self, eps, vocab):
        prior = torch.zeros(vocab)
        prior[TOKEN] = eps
        return 1.0 - eps, prior


pytestmark = pytest.mark.usefixtures("restore_root_logging")


@pytest.fixture
def one_token(monkeypatch):
    """OneToken registered for one test (the registry is left as it was afterwards)."""
    monkeypatch.setattr(smoothing, "CONVENTIONS", dict(smoothing.CONVENTIONS))
    return smoothing.register(OneToken())


def test_a_new_convention_is_the_cross_entropy_to_its_target(one_token):
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 50, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 50, (3, 7))
    target[0, 5:] = 0  # pad
    out = TranslationLoss(50, 0, 0.3, "sum", "one-token")(logits, target)
    out["loss"].backward()
    labels = target[:, 1:].reshape(-1)
    keep = labels != 0
    lp = torch.log_softmax(logits.detach().reshape(-1, 50), -1)[keep]
    q = torch.zeros_like(lp)  # by hand: 0.7 on the gold token, 0.3 on TOKEN
    q[torch.arange(len(lp)), labels[keep]] += 0.7
    q[:, TOKEN] += 0.3
    # The fused kernel computes in float32 whatever the logits' dtype.
    assert out["loss"].item() == pytest.approx(-(q * lp).sum().item(), rel=1e-6)
    grad = torch.zeros(len(labels), 50, dtype=torch.float64)
    grad[keep] = lp.exp() - q
    torch.testing.assert_close(logits.grad.reshape(-1, 50), grad, atol=1e-6, rtol=0)
    # The registry's dense target for tests is the same q; its optimum gap has no closed form.
    dense = one_token.target(0.3, labels[keep], 50)
    torch.testing.assert_close(dense, q, atol=1e-7, rtol=0)  # the prior is float32
    assert one_token.optimum_gap(0.3, 50) is None


def _train(tmp_path, name, *flags, build_criterion=None):
    data = tmp_path / "cipher"
    if not data.exists():
        write_cipher(data, valid=20, test=20)
    run_dir = tmp_path / name
    argv = [*cipher_flags(data), "--max-steps", "5", "--valid-every", "5", "--run-dir",
            str(run_dir), "--decode.final_beam", "0", *flags]  # fmt: skip
    assert train.main(argv, build_criterion=build_criterion) == 0
    return run_dir


def test_a_new_convention_trains_and_names_its_report_row(tmp_path, one_token):
    run_dir = _train(tmp_path, "one", "--smoothing-type", "one-token", "--smoothing", "0.1")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["label"] == "eps 0.1 (one-token)"
    assert results["objective"] == {"convention": "one-token", "eps": 0.1}
    assert results["optimal_logit_gap"] is None
    train_file = tmp_path / "cipher" / "train.jsonl"  # the data, by content (nmt.report checks)
    assert results["data_sha256"]["train"] == [hashlib.sha256(train_file.read_bytes()).hexdigest()]
    base = _train(tmp_path, "base", "--smoothing", "0")
    write_report([base, run_dir], tmp_path / "report", bootstrap_samples=10)
    table = (tmp_path / "report" / "report.md").read_text()
    first = [line.split(" | ")[0].removeprefix("| ") for line in table.splitlines()]
    assert first.count("eps 0.1 (one-token)") == 2  # a row of the test and validation tables
    assert first.count("eps 0 (no smoothing)") == 2
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [r["label"] for r in report["rows"]] == ["eps 0 (no smoothing)", "eps 0.1 (one-token)"]
    assert set(report["p_values"]) == {"one"}  # tested against eps 0 of its seed


class WithLogitNorm(TranslationLoss):
    """The label-smoothed NLL that also logs the mean squared logit per target token."""

    logged = (*TranslationLoss.logged, "logit_sq")

    def forward(self, logits, target_ids):
        out = super().forward(logits, target_ids)
        labels = target_ids[:, 1:]
        mask = (labels != self.pad_id)[..., None]
        out["logit_sq"] = (logits.detach().float().pow(2).mean(-1, keepdim=True) * mask).sum()
        return out


def test_a_criterion_logs_its_own_key(tmp_path):
    def build(cfg, vocab):
        return WithLogitNorm(vocab, 0, cfg.train.smoothing, "sum", cfg.train.smoothing_type)

    run_dir = _train(tmp_path, "crit", "--train.log_every", "1", build_criterion=build)
    lines = [
        line
        for line in (run_dir / "train.log").read_text().splitlines()
        if "| train | step" in line
    ]
    assert len(lines) == 5 and all(" | logit_sq " in line for line in lines)
    values = scalars(run_dir)["train/logit_sq"]
    assert [step for step, _ in values] == [1, 2, 3, 4, 5]
    assert all(v > 0 for _, v in values)
    # The usual keys are still there, and the logged loss is the criterion's own.
    assert [step for step, _ in scalars(run_dir)["train/nll_loss"]] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("name", ["sweep", "report", "export", "average"])
def test_the_old_module_paths_still_run(name):
    """python -m nmt.<name> keeps working after the move into stage packages."""
    from .conftest import module

    proc = module(f"nmt.{name}", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m nmt.{name}")
