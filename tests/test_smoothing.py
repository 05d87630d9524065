"""The registry of smoothing conventions: every entry against its own dense target, labels,
run names and refusals."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.errors import NMTError
from nmt.objective import smoothing
from nmt.objective.loss import TranslationLoss, label_smoothed_nll
from nmt.objective.smoothing import Smoothing

LINEAR = [smoothing.get("uniform"), smoothing.get("fairseq")]  # test_variants: the others


def test_the_registry_holds_the_shipped_conventions_default_first():
    assert smoothing.names() == ("uniform", "fairseq", "confidence-penalty", "unigram", "masked",
                                 "prior", "graduated")  # fmt: skip
    assert smoothing.DEFAULT == "uniform"


@pytest.mark.parametrize("convention", LINEAR, ids=lambda c: c.name)
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_each_linear_convention_is_the_cross_entropy_to_its_own_target(convention, eps):
    torch.manual_seed(1)
    logits = torch.randn(40, 30, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(1, 30, (40,))
    labels[::7] = 0  # pad
    loss, nll, mask = label_smoothed_nll(logits, labels, eps, 0, convention.name)
    loss.sum().backward()
    q = convention.target(eps, labels[mask], 30)
    assert torch.all(q >= 0) and torch.allclose(q.sum(-1), torch.ones(len(q), dtype=q.dtype))
    lp = torch.log_softmax(logits.detach()[mask], -1)
    assert loss.sum().item() == pytest.approx(-(q * lp).sum().item(), rel=1e-6)
    assert nll.sum().item() == pytest.approx(-lp.gather(-1, labels[mask, None]).sum().item())
    grad = torch.zeros_like(logits)
    grad[mask] = lp.exp() - q
    torch.testing.assert_close(logits.grad, grad, atol=1e-6, rtol=0)


def test_targets_by_hand():
    labels = torch.tensor([2])
    uniform = smoothing.get("uniform").target(0.1, labels, 10)[0]
    fairseq = smoothing.get("fairseq").target(0.1, labels, 10)[0]
    assert uniform[2].item() == pytest.approx(0.91) and uniform[0].item() == pytest.approx(0.01)
    assert fairseq[2].item() == pytest.approx(0.9) and fairseq[0].item() == pytest.approx(0.1 / 9)
    assert smoothing.get("confidence-penalty").target(0.1, labels, 10) is None


def test_optimum_gaps_by_hand():
    assert Smoothing("uniform", 0.1).optimum_gap(10) == pytest.approx(math.log(0.91 / 0.01))
    assert Smoothing("fairseq", 0.1).optimum_gap(10) == pytest.approx(math.log(0.9 * 9 / 0.1))
    assert Smoothing("confidence-penalty", 0.1).optimum_gap(10) is None
    assert all(Smoothing(name, 0.0).optimum_gap(10) == math.inf for name in smoothing.names())


@pytest.mark.parametrize(
    "spec, label, suffix",
    [
        (Smoothing("uniform", 0.0), "eps 0 (no smoothing)", ""),
        (Smoothing("fairseq", 0.0), "eps 0 (no smoothing)", "-fairseq"),
        (Smoothing("uniform", 0.1), "eps 0.1", ""),
        (Smoothing("fairseq", 0.1), "eps 0.1 (fairseq)", "-fairseq"),
        (
            Smoothing("confidence-penalty", 0.5),
            "beta 0.5 (confidence penalty)",
            "-confidence-penalty",
        ),
        (Smoothing("uniform", 0.1, {"schedule": "linear"}), "eps 0.1 [schedule=linear]", ""),
        (Smoothing("uniform", 0.0, {"schedule": "linear"}), "eps 0 [schedule=linear]", ""),
    ],  # fmt: skip
)
def test_labels_and_run_name_suffixes(spec, label, suffix):
    """eps 0 is the plain NLL in every convention: one label, one baseline row; a spec with
    parameters never takes the label of the constant eps (nor of the baseline)."""
    assert spec.label == label and spec.run_suffix() == suffix
    assert Smoothing.from_dict(spec.to_dict()) == spec


def test_unknown_and_duplicate_conventions_are_refused():
    with pytest.raises(NMTError, match="unknown smoothing type 'gauss'; choose one of uniform, "):
        smoothing.get("gauss")
    with pytest.raises(ValueError, match="already registered"):
        smoothing.register(smoothing.get("fairseq"))
    with pytest.raises(NMTError, match=r"must be in \[0, 1\)"):
        TranslationLoss(10, smoothing=1.0, smoothing_type="uniform")


def test_help_and_report_notes_come_from_the_registry():
    assert smoothing.help_text() == (
        "uniform (eps/K to every entry, the default), fairseq (eps/(K-1) to non-gold entries), "
        "confidence-penalty (NLL - eps * entropy), unigram (eps by the target side's piece "
        "frequencies), masked (eps/|M| over the pieces the target side uses), prior (eps by the "
        "weights of --train.smoothing_prior FILE) or graduated (per-token eps by the model's "
        "confidence, Wang et al.)"
    )
    assert smoothing.optimum_notes() == (
        "log((1 - eps + eps/K) / (eps/K)) for uniform smoothing over K entries "
        "(log((1 - eps) / (eps/(K - 1))) for fairseq's; none for the confidence penalty)"
    )


def test_the_default_run_directory_names_the_objective():
    """Two conventions at one eps never share a default run directory."""
    from nmt.config import Config, TrainConfig
    from nmt.train.run import default_run_dir

    def path(kind, eps=0.1):
        return str(default_run_dir(Config(train=TrainConfig(smoothing=eps, smoothing_type=kind))))

    assert path("uniform") == "runs/multi30k-en-de-ls0.1"
    assert path("fairseq") == "runs/multi30k-en-de-ls0.1-fairseq"
    assert path("confidence-penalty", 0.5) == "runs/multi30k-en-de-ls0.5-confidence-penalty"
