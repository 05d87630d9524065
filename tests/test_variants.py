"""The smoothing variants (unigram, masked, prior, graduated) and the eps schedule, each held
to a dense reference: the fused loss is sum_k q_k * (-log p_k) and its gradient softmax(z) - q,
with q built explicitly; and their distributions, labels, run names and optima by hand."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.data.dataset import Split
from nmt.objective import priors, smoothing
from nmt.objective.loss import TranslationLoss, label_smoothed_nll
from nmt.objective.smoothing import Smoothing

V = 30


def _distribution(name: str) -> torch.Tensor | None:
    """A (V,) distribution of the kind each convention is bound to, with zeros in it."""
    if not smoothing.get(name).needs_base:
        return None
    g = torch.Generator().manual_seed(3)
    base = torch.rand(V, generator=g)
    base[[0, 2, 7, 11]] = 0.0  # PAD, BOS and two pieces the target side never uses
    return (base > 0.3).float() if name == "masked" else base / base.sum()


def bound(name: str, params: dict | None = None):
    convention = smoothing.get(name)
    return (
        convention.bind(params or {}, _distribution(name)) if convention.needs_base else convention
    )


LINEAR = [n for n in smoothing.names() if n != "confidence-penalty"]
CASES = [(n, {}) for n in LINEAR] + [("masked", {"masked_form": "chen"})]


@pytest.mark.parametrize("name, params", CASES, ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("keep", [False, True], ids=["reference", "kept-softmax"])
def test_every_convention_is_the_cross_entropy_to_its_dense_target(name, params, eps, keep):
    torch.manual_seed(5)
    convention = smoothing.get(name).bind(params, _distribution(name))
    logits = (3 * torch.randn(48, V, dtype=torch.float64)).requires_grad_()
    labels = torch.randint(3, V, (48,))
    if name == "masked":  # gold pieces the target side uses (the chen form's q sums to 1)
        labels = torch.multinomial(convention.base, 48, replacement=True)
    labels[::7] = 0  # pad rows
    x = logits.float() if keep else logits  # the kept softmax is for float32 logits
    loss, nll, mask = label_smoothed_nll(x, labels, eps, 0, convention, keep_softmax=keep)
    loss.sum().backward()
    lp = torch.log_softmax(logits.detach()[mask], -1)
    q = convention.target(eps, labels[mask], V, lp.exp().gather(-1, labels[mask, None])[:, 0])
    assert torch.all(q >= 0)
    torch.testing.assert_close(q.sum(-1), torch.ones(len(q), dtype=q.dtype))
    assert loss.sum().item() == pytest.approx(-(q * lp).sum().item(), rel=1e-6)
    assert nll.sum().item() == pytest.approx(-lp.gather(-1, labels[mask, None]).sum().item())
    grad = torch.zeros_like(logits)
    grad[mask] = lp.exp() - q
    torch.testing.assert_close(logits.grad, grad, atol=1e-6, rtol=0)
    if eps == 0.0:  # plain NLL in every convention
        torch.testing.assert_close(loss, nll)


def test_graduated_eps_by_hand():
    """Wang et al.'s defaults: p > 0.7 gets 0.3, p < 0.3 gets 0, the rest 0.1 (eps 0.1)."""
    rows = smoothing.get("graduated").rows(0.1, 10)
    gold, scale = rows(torch.tensor([0.9, 0.7, 0.5, 0.3, 0.1]))
    torch.testing.assert_close(1 - gold, torch.tensor([0.3, 0.1, 0.1, 0.1, 0.0]))
    q = smoothing.get("graduated").target(0.1, torch.tensor([2, 2]), 10, torch.tensor([0.9, 0.1]))
    assert q[0, 2].item() == pytest.approx(0.7 + 0.03) and q[0, 0].item() == pytest.approx(0.03)
    assert q[1, 2].item() == pytest.approx(1.0) and q[1, 0].item() == 0.0
    other = smoothing.get("graduated").bind({"graduated_bounds": [0.2, 0.5],
                                             "graduated_factors": [0.5, 2.0]})  # fmt: skip
    gold, _ = other.rows(0.1, 10)(torch.tensor([0.6, 0.3, 0.1]))
    torch.testing.assert_close(1 - gold, torch.tensor([0.2, 0.1, 0.05]))


def test_masked_forms_by_hand():
    """M = {1, 3, 5} of 6: eps/|M| each (gold included), or Chen et al.'s gold 1 - eps and
    eps/(|M| - 1) to the others in M; a gold piece outside M then gets 1 - eps - eps/(|M| - 1)."""
    mask = torch.tensor([0.0, 1, 0, 1, 0, 1])
    uniform = smoothing.get("masked").bind({}, mask).target(0.3, torch.tensor([3, 4]), 6)
    torch.testing.assert_close(
        uniform[0], torch.tensor([0, 0.1, 0, 0.8, 0, 0.1], dtype=torch.float64)
    )
    chen = smoothing.get("masked").bind({"masked_form": "chen"}, mask)
    q = chen.target(0.3, torch.tensor([3, 4]), 6)
    torch.testing.assert_close(q[0], torch.tensor([0, 0.15, 0, 0.7, 0, 0.15], dtype=torch.float64))
    torch.testing.assert_close(
        q[1], torch.tensor([0, 0.15, 0, 0.15, 0.55, 0.15], dtype=torch.float64)
    )


def test_target_counts_and_the_distributions_by_hand():
    split = Split("t", [], [], [[5], [5], [5]], [[2, 4, 4, 3], [2, 5, 3], [2, 3]])
    counts = priors.target_counts(split, 8)
    assert counts.tolist() == [0, 0, 0, 3, 2, 1, 0, 0]  # BOS never counted
    u = priors.unigram_base(counts)
    assert u.tolist() == pytest.approx([0, 1 / 12, 0, 4 / 12, 3 / 12, 2 / 12, 1 / 12, 1 / 12])
    assert priors.masked_base(counts).tolist() == [0, 0, 0, 1, 1, 1, 0, 0]


def test_the_arrow_training_split_counts_the_same(multi30k):
    """The Arrow table's slices give the counts of the same ids read as lists."""
    import datasets

    ids = [[2, 7, 7, 3], [2, 3], [2, 9, 4, 3]] * 20_000  # more than one slice of 50,000
    table = datasets.Dataset.from_dict({"tgt_ids": ids})

    class Arrow:
        def __init__(self):
            self.table = table

        def __len__(self):
            return len(ids)

    assert (
        priors.target_counts(Arrow(), 10).tolist()
        == priors.target_counts(Split("t", [], [], [[1]] * len(ids), ids), 10).tolist()
    )


@pytest.mark.parametrize("name", ["unigram", "prior", "masked"])
def test_the_minimiser_of_the_smoothed_loss_is_q(name):
    """p* = q where the target is a distribution: found numerically from random logits."""
    convention = bound(name)
    labels = torch.tensor([3, 5, 9])
    if name == "masked":
        labels = torch.nonzero(convention.base)[:3, 0]
    q = convention.target(0.2, labels, V)
    support = q > 0  # entries with q = 0 have p -> 0 at the minimum: held at logit -40
    free = torch.zeros(3, V, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([free], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = torch.where(support, free, -40.0)
        loss, _, _ = label_smoothed_nll(z, labels, 0.2, -1, convention)
        loss.sum().backward()
        return loss.sum()

    opt.step(closure)
    p = torch.softmax(torch.where(support, free.detach(), -40.0), -1)
    # The loss is summed in float32, so where its minimum lands depends on the CPU and the
    # thread count (up to 2.4e-5 from q on a second machine); a wrong target is off by more.
    torch.testing.assert_close(p, q, atol=5e-5, rtol=0)
    assert smoothing.get(name).optimum_gap(0.2, V) is None  # per token, no single value


def test_graduated_has_no_closed_form_optimum():
    assert Smoothing("graduated", 0.1).optimum_gap(V) is None
    assert Smoothing("graduated", 0.0).optimum_gap(V) == math.inf


RAMP = {"ramp": 100, "ramp_start": 0.0, "ramp_shape": "linear"}


def test_the_eps_schedule_by_hand():
    linear = Smoothing("uniform", 0.1, RAMP)
    assert [linear.eps_at(n) for n in (0, 25, 50, 100, 500)] == pytest.approx(
        [0.0, 0.025, 0.05, 0.1, 0.1]
    )
    cosine = Smoothing("uniform", 0.1, {**RAMP, "ramp_start": 0.02, "ramp_shape": "cosine"})
    assert cosine.eps_at(50) == pytest.approx(0.06) and cosine.eps_at(25) == pytest.approx(
        0.02 + 0.08 * 0.5 * (1 - math.cos(math.pi / 4))
    )
    loss = TranslationLoss(V, objective=linear)
    assert loss.smoothing == 0.0 and loss.scalars() == {"smoothing": 0.0}
    loss.at_update(40)
    assert loss.smoothing == pytest.approx(0.04)
    assert TranslationLoss(V, smoothing=0.1).scalars() == {}


@pytest.mark.parametrize(
    "spec, label, suffix",
    [
        (Smoothing("uniform", 0.1, RAMP), "eps 0→0.1 over 100", "-ramp100"),
        (
            Smoothing("uniform", 0.1, {**RAMP, "ramp_start": 0.05, "ramp_shape": "cosine"}),
            "eps 0.05→0.1 over 100 (cosine)",
            "-ramp100from0.05cos",
        ),
        (Smoothing("unigram", 0.1), "eps 0.1 (unigram)", "-unigram"),
        (Smoothing("masked", 0.1, {"masked_form": "uniform"}), "eps 0.1 (masked)", "-masked"),
        (
            Smoothing("masked", 0.1, {"masked_form": "chen"}),
            "eps 0.1 (masked, chen)",
            "-masked-chen",
        ),
        (
            Smoothing(
                "prior", 0.1, {"smoothing_prior": "p.tsv", "smoothing_prior_sha256": "ab12cd34ef"}
            ),
            "eps 0.1 (prior ab12cd34)",
            "-prior-ab12cd34",
        ),
        (
            Smoothing(
                "graduated", 0.1, {"graduated_bounds": [0.3, 0.7], "graduated_factors": [0, 3]}
            ),
            "eps 0.1 (graduated x0/x1/x3 at p 0.3/0.7)",
            "-graduated",
        ),
        (
            Smoothing(
                "graduated", 0.1, {"graduated_bounds": [0.2, 0.7], "graduated_factors": [0, 3]}
            ),
            "eps 0.1 (graduated x0/x1/x3 at p 0.2/0.7)",
            "-graduated-0.2-0.7-x0-3",
        ),
    ],  # fmt: skip
)
def test_variant_labels_and_run_names(spec, label, suffix):
    assert spec.label == label and spec.run_suffix() == suffix
    assert Smoothing.from_dict(spec.to_dict()) == spec


def test_the_spec_of_a_train_config():
    from nmt.config import TrainConfig

    t = TrainConfig(smoothing_type="graduated", smoothing_ramp=1500)
    spec = Smoothing.of(t)
    assert spec.params == {"graduated_bounds": [0.3, 0.7], "graduated_factors": [0.0, 3.0],
                           "ramp": 1500, "ramp_start": 0.0, "ramp_shape": "linear"}  # fmt: skip
    assert Smoothing.of(TrainConfig()) == Smoothing("uniform", 0.1)  # the committed runs' label


def test_the_per_token_optimum_prob_gap_by_hand():
    """log(q_gold / mean of the other q) at p = q, for a prior that varies by piece; None
    where one value holds for every token (optimum_gap), for graduated and at eps 0."""
    u = torch.tensor([0.0, 0.1, 0.0, 0.4, 0.3, 0.2])
    gaps = smoothing.get("unigram").bind({}, u).optimum_prob_gaps(0.2, torch.tensor([3, 1]), 6)
    q3, q1 = 0.8 + 0.2 * 0.4, 0.8 + 0.2 * 0.1
    expected = [math.log(q3 / ((1 - q3) / 5)), math.log(q1 / ((1 - q1) / 5))]
    assert gaps.tolist() == pytest.approx(expected)
    assert smoothing.get("unigram").bind({}, u).optimum_prob_gaps(0.0, torch.tensor([3]), 6) is None
    assert smoothing.get("uniform").optimum_prob_gaps(0.1, torch.tensor([3]), 6) is None
    assert smoothing.get("graduated").optimum_prob_gaps(0.1, torch.tensor([3]), 6) is None
    loss = TranslationLoss(6, objective=Smoothing("unigram", 0.2), base=u)
    target = torch.tensor([[2, 3, 1, 0]])  # BOS, two labels, pad
    assert loss.optimum_prob_gaps(target).tolist() == pytest.approx(expected)


def test_graduated_reads_a_reference_models_confidence_when_given():
    """With a frozen reference model, each token's eps follows the reference's probability of
    the gold token, not the trained model's: the loss equals the dense target built from it."""
    from types import SimpleNamespace

    torch.manual_seed(4)
    ref_logits = 3 * torch.randn(2, 5, V)

    class Fixed(torch.nn.Module):
        def forward(self, src, tgt_in):
            return ref_logits

    target = torch.randint(3, V, (2, 6))
    target[1, 4:] = 0
    batch = SimpleNamespace(src=torch.zeros(2, 3, dtype=torch.long), tgt_in=target[:, :-1])
    logits = torch.randn(2, 5, V, dtype=torch.float64, requires_grad=True)
    loss = TranslationLoss(V, 0, 0.1, "sum", "graduated", reference=Fixed())
    assert loss.wants_batch and not any(p.requires_grad for p in loss.reference.parameters())
    out = loss(logits, target, batch=batch)
    labels = target[:, 1:].reshape(-1)
    keep = labels != 0
    p_ref = torch.softmax(ref_logits.reshape(-1, V), -1)[keep].gather(-1, labels[keep, None])[:, 0]
    q = smoothing.get("graduated").target(0.1, labels[keep], V, p_ref)
    lp = torch.log_softmax(logits.detach().reshape(-1, V)[keep], -1)
    assert out["loss"].item() == pytest.approx(-(q * lp).sum().item(), rel=1e-6)
    own = TranslationLoss(V, 0, 0.1, "sum", "graduated")(logits, target)  # its own p differs
    assert abs(own["loss"].item() - out["loss"].item()) > 1e-3
    with pytest.raises(ValueError, match="needs the batch"):
        loss(logits, target)
