"""The fused loss's kept softmax (train.kernels fast): the recomputing path's loss bit for bit,
its gradient to rounding, one tokens x V tensor, and a clear error on a second backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nmt.objective import kernel as kernel_module
from nmt.objective.loss import TranslationLoss

from .test_loss import PAD, AllocationCounter, random_batch


def _loss_and_grad(logits, labels, keep, prior=0.02, gold=0.8):
    x = logits.clone().requires_grad_()
    mask = labels != PAD
    loss, nll = kernel_module.SmoothedNLL.apply(x, labels.masked_fill(~mask, 0), mask, gold,
                                               prior, keep)  # fmt: skip
    (loss.sum() + 0.5 * nll.sum()).backward()
    return loss.detach(), nll.detach(), x.grad


@pytest.mark.parametrize("chunk", [2**24, 3 * 97])
@pytest.mark.parametrize("prior", ["number", "vector", "none"])
def test_kept_softmax_gives_the_recomputed_loss_and_gradient(monkeypatch, chunk, prior):
    # train.kernels fast keeps exp(z - max) for backward: the forward is the same arithmetic
    # (bit-equal) and the gradient equal to rounding, over one chunk and over ragged chunks.
    monkeypatch.setattr(kernel_module, "CHUNK_ELEMENTS", chunk)
    logits, target = random_batch(13, 5, 10, 97)
    labels = target[:, 1:].reshape(-1)
    flat = logits.reshape(-1, 97) * 2
    p = {"number": (0.8, 0.2 / 97), "none": (1.0, 0.0)}.get(prior)
    if p is None:  # a (K,) prior, e.g. a unigram distribution
        weights = torch.rand(97, generator=torch.Generator().manual_seed(2)) + 0.1
        p = (0.7, 0.3 * weights / weights.sum())
    gold, mass = p
    ref = _loss_and_grad(flat, labels, False, mass, gold)
    kept = _loss_and_grad(flat, labels, True, mass, gold)
    assert torch.equal(kept[0], ref[0]) and torch.equal(kept[1], ref[1])
    torch.testing.assert_close(kept[2], ref[2], atol=1e-8, rtol=1e-5)
    assert (kept[2] - ref[2]).abs().max() > 0 or prior == "none"  # another rounding, not a copy


def test_kept_softmax_matches_cross_entropy_and_allocates_one_tokens_by_vocab_tensor():
    logits, target = random_batch(17, 6, 12, 301)
    labels = target[:, 1:].reshape(-1)
    x = logits.clone().requires_grad_()
    n_tokens_by_v = logits[..., 0].numel() * 301
    with AllocationCounter(n_tokens_by_v) as counter:
        out = TranslationLoss(301, smoothing=0.1, keep_softmax=True)(x, target)
        out["loss"].backward()
    # The kept exponentials, turned into the gradient in place (recomputing: two tensors).
    assert counter.count == 1
    ref_x = logits.clone().requires_grad_()
    ref = F.cross_entropy(ref_x.reshape(-1, 301), labels, ignore_index=PAD, label_smoothing=0.1)
    ref.backward()
    assert out["loss"].item() == pytest.approx(ref.item(), abs=1e-6)
    torch.testing.assert_close(x.grad, ref_x.grad, atol=1e-8, rtol=1e-5)


def test_kept_softmax_refuses_a_second_backward_and_skips_non_float32():
    logits, target = random_batch(19, 3, 8, 50)
    x = logits.clone().requires_grad_()
    out = TranslationLoss(50, smoothing=0.1, keep_softmax=True)(x, target)
    out["loss"].backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out["loss"].backward()  # the kept tensor became the gradient: no silent wrong answer
    b = logits.to(torch.bfloat16).requires_grad_()
    TranslationLoss(50, smoothing=0.1, keep_softmax=True)(b, target)["loss"].backward()
    c = logits.to(torch.bfloat16).requires_grad_()
    TranslationLoss(50, smoothing=0.1)(c, target)["loss"].backward()
    assert torch.equal(b.grad, c.grad)  # bf16 logits: the recomputing path, whatever asked
