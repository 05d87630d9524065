"""UpdateStep (nmt/train/step.py): accumulation, token normalisation, precision, and that it
stands alone (no trainer, TensorBoard, run directory or data)."""

from __future__ import annotations

import pytest
import torch

from nmt.config import TrainConfig
from nmt.objective.loss import TranslationLoss, split_target
from nmt.train.precision import resolve_precision

from .test_trainer import A_SRC, A_TGT, B_SRC, B_TGT, V, batch, grads, updater


def test_accumulated_gradient_equals_one_big_batch():
    split = updater(update_freq=2)
    split.accumulate([batch(A_SRC, A_TGT), batch(B_SRC, B_TGT)])
    whole = updater()
    whole.accumulate([batch(A_SRC + B_SRC, A_TGT + B_TGT)])
    for g1, g2 in zip(grads(split.model), grads(whole.model)):
        assert torch.allclose(g1, g2, atol=1e-7)
    # And it is the gradient of the mean smoothed loss over all 9 target tokens (A: 5 + 2, B: 2).
    ref = updater()
    b = batch(A_SRC + B_SRC, A_TGT + B_TGT)
    assert b.num_tokens == 9 and torch.equal(b.labels, split_target(b.tgt)[1])
    out = TranslationLoss(V, smoothing=0.1)(ref.model(b.src, split_target(b.tgt)[0]), b.tgt)
    assert int(out["num_tokens"]) == 9
    out["loss"].backward()
    for g1, g2 in zip(grads(split.model), grads(ref.model)):
        assert torch.allclose(g1, g2, atol=1e-7)


def test_per_batch_means_would_differ():
    # Guard that the test above can fail: averaging per-batch means weights B's 2 tokens
    # like A's 7 and gives another gradient.
    t = updater()
    loss = TranslationLoss(V, smoothing=0.1)
    for src_seqs, tgt_seqs in ((A_SRC, A_TGT), (B_SRC, B_TGT)):
        b = batch(src_seqs, tgt_seqs)
        (loss(t.model(b.src, b.tgt_in), b.tgt)["loss"] / 2).backward()
    whole = updater()
    whole.accumulate([batch(A_SRC + B_SRC, A_TGT + B_TGT)])
    assert not all(
        torch.allclose(a, b, atol=1e-6) for a, b in zip(grads(t.model), grads(whole.model))
    )


def test_train_step_updates_and_schedules():
    t = updater()
    before = [p.detach().clone() for p in t.model.parameters()]
    stats = t.step([batch(A_SRC, A_TGT)])
    assert stats.tokens == 7 and stats.grad_norm > 0 and not stats.skipped
    assert any(not torch.equal(a, b) for a, b in zip(before, t.model.parameters()))
    assert all(p.grad is None for p in t.model.parameters())
    assert t.lr == pytest.approx(TrainConfig().lr * 2 / TrainConfig().warmup_steps)


def test_precision_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)


def test_bf16_autocast_step_on_cpu_tracks_fp32():
    losses = {}
    for precision in ("fp32", "bf16"):
        t = updater(precision=precision)
        assert t.amp_dtype == {"fp32": None, "bf16": torch.bfloat16}[precision]
        stats = t.accumulate([batch(A_SRC + B_SRC, A_TGT + B_TGT)])
        losses[precision] = stats.loss / stats.tokens
        assert all(torch.isfinite(p.grad).all() for p in t.model.parameters())
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)


def test_the_update_step_stands_alone():
    """What bench/ imports to time an update: no trainer, TensorBoard, run directory or data."""
    from .conftest import modules_loaded

    unwanted = ("tensorboard", "torch.utils.tensorboard", "nmt.train.trainer", "nmt.train.run",
                "nmt.data.dataset", "nmt.data.sources", "datasets")  # fmt: skip
    assert modules_loaded("nmt.train.step", unwanted) == []


class OpNames(torch.utils._python_dispatch.TorchDispatchMode):
    """The ATen operators called while it is active."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


def test_fast_kernels_take_the_math_attention_path_and_keep_the_losses():
    """train.kernels fast on the CPU: no fused CPU attention kernel in the update, the loss's
    kept softmax, and over 6 updates the losses of the reference path to 1e-5."""
    fast, ref = updater(kernels="fast"), updater(kernels="reference")
    assert (fast.math_attention, ref.math_attention) == (True, False)
    assert (fast.criterion.keep_softmax, ref.criterion.keep_softmax) == (True, False)
    flash = "_scaled_dot_product_flash_attention_for_cpu"
    for t in (fast, ref):
        with OpNames() as ops:
            t.step([batch(A_SRC, A_TGT)])
        assert (flash in ops.names) == (t is ref)
    for _ in range(5):
        b = batch(A_SRC + B_SRC, A_TGT + B_TGT)
        a, r = fast.step([b]), ref.step([b])
        assert a.loss == pytest.approx(r.loss, rel=1e-5)
    for p, q in zip(fast.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-4, rtol=0)  # Adam scales tiny gradients
