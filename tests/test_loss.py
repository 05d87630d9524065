"""TranslationLoss against F.cross_entropy, hand-computed values and its invariances."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from nmt.errors import NMTError
from nmt.objective import kernel as kernel_module
from nmt.objective.loss import TranslationLoss, label_smoothed_nll, split_target

PAD = 0


def random_batch(seed: int, batch: int, length: int, vocab: int):
    """Logits (B, T-1, V) and target ids (B, T) = [BOS, words.., EOS, PAD..] with ragged lengths."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(4, vocab, (batch, length), generator=g)
    target[:, 0] = 2
    for row in range(batch):
        n = int(torch.randint(2, length + 1, (1,), generator=g))
        target[row, n - 1] = 3
        target[row, n:] = PAD
    logits = torch.randn(batch, length - 1, vocab, generator=g) * 3
    return logits, target


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.2, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("shape", [(1, 2, 5), (3, 7, 11), (8, 13, 97), (4, 30, 1000)])
def test_matches_cross_entropy(eps, shape):
    logits, target = random_batch(hash(shape) % 1000, *shape)
    vocab = shape[2]
    out = TranslationLoss(vocab, pad_id=PAD, smoothing=eps)(logits, target)
    labels = target[:, 1:].reshape(-1)
    ref = F.cross_entropy(logits.reshape(-1, vocab), labels, ignore_index=PAD, label_smoothing=eps)
    ref_nll = F.cross_entropy(logits.reshape(-1, vocab), labels, ignore_index=PAD)
    assert torch.allclose(out["loss"], ref, atol=1e-6, rtol=0)
    assert torch.allclose(out["nll_loss"], ref_nll, atol=1e-6, rtol=0)
    assert out["num_tokens"] == int((labels != PAD).sum())


def test_eps_zero_loss_equals_nll():
    logits, target = random_batch(0, 4, 9, 50)
    out = TranslationLoss(50, smoothing=0.0)(logits, target)
    assert torch.equal(out["loss"], out["nll_loss"])


def test_gradient_is_softmax_minus_smoothed_target():
    eps, vocab = 0.1, 13
    logits, target = random_batch(3, 3, 8, vocab)
    logits.requires_grad_(True)
    out = TranslationLoss(vocab, smoothing=eps)(logits, target)
    out["loss"].backward()
    labels = target[:, 1:]
    mask = labels != PAD
    q = torch.full((*labels.shape, vocab), eps / vocab)
    q.scatter_add_(-1, labels[..., None], torch.full((*labels.shape, 1), 1 - eps))
    expected = (logits.detach().softmax(-1) - q) / mask.sum()
    expected[~mask] = 0
    assert torch.allclose(logits.grad, expected, atol=1e-7)
    assert torch.count_nonzero(logits.grad[~mask]) == 0


def test_gold_target_is_091_for_eps01_k10():
    # At uniform logits softmax is 0.1 everywhere, so target = softmax - grad per token.
    logits = torch.zeros(1, 1, 10, requires_grad=True)
    TranslationLoss(10, pad_id=PAD, smoothing=0.1)(logits, torch.tensor([[2, 7]]))[
        "loss"
    ].backward()
    target = 0.1 - logits.grad[0, 0]
    assert target[7].item() == pytest.approx(0.91, abs=1e-6)
    assert target[0].item() == pytest.approx(0.01, abs=1e-6)
    assert target.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_published_worked_example():
    logits = torch.tensor(
        [[2.0, 0.5, -1.0], [0.1, 1.8, 0.2], [1.2, 0.7, 0.3], [0.0, -0.2, 2.4]], requires_grad=True
    )
    # Labels [0, 1, 0, 2] use every id of K=3, so padding is an id outside the vocabulary here.
    target = torch.tensor([[2, 0, 1, 0, 2]])
    out = TranslationLoss(3, pad_id=-100, smoothing=0.1)(logits[None], target)
    out["loss"].backward()
    assert out["loss"].item() == pytest.approx(0.473108, abs=1e-6)
    assert logits.grad[0].tolist() == pytest.approx([-0.0369, 0.0355, 0.0014], abs=1e-4)


def test_more_padding_changes_nothing():
    logits, target = random_batch(5, 4, 10, 40)
    loss = TranslationLoss(40, smoothing=0.1)
    base = loss(logits, target)
    extra = 7
    padded_target = torch.cat([target, torch.full((4, extra), PAD)], dim=1)
    padded_logits = torch.cat([logits, torch.randn(4, extra, 40) * 5], dim=1)
    more = loss(padded_logits, padded_target)
    for key in ("loss", "nll_loss", "accuracy", "num_tokens", "num_correct"):
        assert torch.allclose(base[key].float(), more[key].float(), atol=1e-6), key


def test_accuracy_and_token_count_by_hand():
    # Labels (after the shift): row 0 -> [5, 6, 3], row 1 -> [4, 3, PAD]
    target = torch.tensor([[2, 5, 6, 3], [2, 4, 3, PAD]])
    logits = torch.full((2, 3, 8), -5.0)
    logits[0, 0, 5] = 5  # right
    logits[0, 1, 1] = 5  # wrong (6 expected)
    logits[0, 2, 3] = 5  # right
    logits[1, 0, 4] = 5  # right
    logits[1, 1, 2] = 5  # wrong (3 expected)
    logits[1, 2, 7] = 5  # pad position: ignored
    out = TranslationLoss(8, smoothing=0.0)(logits, target)
    assert int(out["num_tokens"]) == 5
    assert int(out["num_correct"]) == 3
    assert out["accuracy"].item() == pytest.approx(3 / 5)


def test_sum_reduction_is_mean_times_tokens():
    logits, target = random_batch(7, 5, 9, 30)
    mean = TranslationLoss(30, smoothing=0.2)(logits, target)
    total = TranslationLoss(30, smoothing=0.2, reduction="sum")(logits, target)
    n = mean["num_tokens"].item()
    assert total["loss"].item() == pytest.approx(mean["loss"].item() * n, rel=1e-6)
    assert total["nll_loss"].item() == pytest.approx(mean["nll_loss"].item() * n, rel=1e-6)


@pytest.mark.parametrize("eps", [-0.1, 1.0, 1.5, float("nan")])
def test_refuses_eps_outside_unit_interval(eps):
    with pytest.raises(NMTError, match=r"\[0, 1\)"):
        TranslationLoss(10, smoothing=eps)


def test_shift_happens_in_one_place():
    ids = torch.tensor([[2, 10, 11, 3, 0]])
    dec_in, labels = split_target(ids)
    assert dec_in.tolist() == [[2, 10, 11, 3]]
    assert labels.tolist() == [[10, 11, 3, 0]]


class AllocationCounter(TorchDispatchMode):
    """Counts freshly allocated (not view) outputs of a given number of elements."""

    def __init__(self, numel: int):
        super().__init__()
        self.numel, self.count, self.dtypes, self.largest = numel, 0, [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [
            a
            for a in torch.utils._pytree.tree_flatten((args, kwargs))[0]
            if isinstance(a, torch.Tensor)
        ]
        storages = {a.untyped_storage().data_ptr() for a in inputs}
        for t in torch.utils._pytree.tree_flatten(out)[0]:
            if (
                isinstance(t, torch.Tensor)
                and t.numel() == self.numel
                and t.untyped_storage().data_ptr() not in storages
            ):
                self.count += 1
                self.dtypes.append(t.dtype)
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in storages:
                self.largest = max(self.largest, t.numel())
        return out


def test_no_tokens_by_vocab_target_tensor():
    logits, target = random_batch(9, 6, 12, 301)
    n_tokens_by_v = logits[..., 0].numel() * 301
    with AllocationCounter(n_tokens_by_v) as counter:
        TranslationLoss(301, smoothing=0.1)(logits, target)
    # Exactly one (tokens, V) tensor is allocated: the log-probabilities themselves.
    assert counter.count == 1


@pytest.mark.parametrize("kind", ["uniform", "fairseq"])
def test_row_chunks_give_the_same_loss_and_gradient(monkeypatch, kind):
    # Chunks of 3 rows over 45 tokens (the last chunk ragged) against one chunk.
    logits, target = random_batch(7, 5, 10, 97)
    outs = []
    for chunk in (2**24, 3 * 97):
        monkeypatch.setattr(kernel_module, "CHUNK_ELEMENTS", chunk)
        x = logits.clone().requires_grad_()
        out = TranslationLoss(97, smoothing=0.2, smoothing_type=kind)(x, target)
        (out["loss"] + 0.5 * out["nll_loss"]).backward()
        outs.append((out["loss"].item(), out["nll_loss"].item(), x.grad))
    assert outs[0][:2] == pytest.approx(outs[1][:2], abs=1e-6)
    torch.testing.assert_close(outs[0][2], outs[1][2], atol=1e-7, rtol=1e-6)


def test_bf16_logits_no_float32_copy_and_cross_entropy_values(monkeypatch):
    # Under autocast the logits are bf16. The loss is computed in float32 a few rows at a
    # time: the only (tokens, V) allocation in forward and backward is the bf16 gradient.
    monkeypatch.setattr(kernel_module, "CHUNK_ELEMENTS", 8 * 301)
    logits, target = random_batch(11, 6, 12, 301)
    x = logits.to(torch.bfloat16).requires_grad_()
    n_tokens_by_v = logits[..., 0].numel() * 301
    with AllocationCounter(n_tokens_by_v) as counter:
        out = TranslationLoss(301, smoothing=0.1)(x, target)
        out["loss"].backward()
    assert counter.dtypes == [torch.bfloat16] and x.grad.dtype == torch.bfloat16
    assert counter.largest <= n_tokens_by_v and out["loss"].dtype == torch.float32
    # Values: F.cross_entropy on the same bf16 numbers taken to float32.
    ref_x = x.detach().float().requires_grad_()
    labels = target[:, 1:]
    ref = F.cross_entropy(
        ref_x.reshape(-1, 301), labels.reshape(-1), ignore_index=PAD, label_smoothing=0.1
    )
    ref.backward()
    assert out["loss"].item() == pytest.approx(ref.item(), abs=1e-5)
    # The gradient is the float32 one rounded once to bf16.
    torch.testing.assert_close(x.grad, ref_x.grad.to(torch.bfloat16), atol=1e-6, rtol=1e-2)


def test_pure_function_zeroes_pad_rows():
    logits = torch.randn(4, 6)
    labels = torch.tensor([1, PAD, 5, PAD])
    loss, nll, mask = label_smoothed_nll(logits, labels, 0.1, PAD)
    assert mask.tolist() == [True, False, True, False]
    assert loss[1] == 0 and nll[3] == 0 and loss[0] > 0


def explicit_loss(logits, target, eps, kind):
    """Reference: build the full target distribution (or the entropy) in float64 and sum."""
    vocab = logits.size(-1)
    labels = target[:, 1:].reshape(-1)
    mask = labels != PAD
    lp = torch.log_softmax(logits.reshape(-1, vocab).double(), dim=-1)[mask]
    gold = labels[mask]
    if kind == "fairseq":
        q = torch.full_like(lp, eps / (vocab - 1))
        q[torch.arange(len(gold)), gold] = 1 - eps
        per_token = -(q * lp).sum(-1)
    else:  # confidence-penalty
        entropy = -(lp.exp() * lp).sum(-1)
        per_token = -lp[torch.arange(len(gold)), gold] - eps * entropy
    return per_token.mean()


@pytest.mark.parametrize("kind", ["fairseq", "confidence-penalty"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.9])
@pytest.mark.parametrize("shape", [(1, 2, 5), (3, 7, 11), (4, 30, 1000)])
def test_smoothing_variants_match_a_direct_computation(kind, eps, shape):
    logits, target = random_batch(hash((kind, shape)) % 1000, *shape)
    out = TranslationLoss(shape[2], pad_id=PAD, smoothing=eps, smoothing_type=kind)(logits, target)
    ref = explicit_loss(logits, target, eps, kind)
    assert out["loss"].item() == pytest.approx(ref.item(), abs=1e-5)
    ref_nll = explicit_loss(logits, target, 0.0, "confidence-penalty")
    assert out["nll_loss"].item() == pytest.approx(ref_nll.item(), abs=1e-5)


def test_fairseq_gold_target_by_hand():
    # K = 10, eps = 0.1: gold 0.9 and 0.1 / 9 elsewhere (the uniform convention gives 0.91).
    logits = torch.zeros(1, 1, 10, requires_grad=True)
    loss = TranslationLoss(10, pad_id=PAD, smoothing=0.1, smoothing_type="fairseq")
    loss(logits, torch.tensor([[2, 7]]))["loss"].backward()
    target = 0.1 - logits.grad[0, 0]
    assert target[7].item() == pytest.approx(0.9, abs=1e-6)
    assert target[0].item() == pytest.approx(0.1 / 9, abs=1e-6)


def test_confidence_penalty_rewards_entropy():
    # Same gold probability, flatter rest: equal NLL, lower confidence-penalty loss.
    peaked = torch.tensor([[[0.6, 0.38, 0.01, 0.01]]]).log()
    flat = torch.tensor([[[0.6, 0.14, 0.13, 0.13]]]).log()
    target = torch.tensor([[2, 0]])
    loss = TranslationLoss(4, pad_id=-100, smoothing=0.5, smoothing_type="confidence-penalty")
    a, b = loss(peaked, target), loss(flat, target)
    assert a["nll_loss"].item() == pytest.approx(b["nll_loss"].item(), abs=1e-5)
    assert b["loss"] < a["loss"]


def test_smoothing_type_checks():
    with pytest.raises(NMTError, match="unknown smoothing type 'gauss'"):
        TranslationLoss(10, smoothing=0.1, smoothing_type="gauss")
    with pytest.raises(NMTError, match=r"\[0, 1\)"):
        TranslationLoss(10, smoothing=1.0, smoothing_type="fairseq")
    assert TranslationLoss(10, smoothing=2.5, smoothing_type="confidence-penalty").smoothing == 2.5
    with pytest.raises(NMTError, match="beta"):
        TranslationLoss(10, smoothing=-0.5, smoothing_type="confidence-penalty")
