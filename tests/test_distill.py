"""Token-level distillation: the fused KL against a dense float64 reference, the mixed loss,
and a frozen teacher."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nmt.config import ModelConfig
from nmt.data.batching import Batch, pad
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.model.transformer import Transformer
from nmt.objective import kernel
from nmt.objective.distill import Distillation, DistillKL
from nmt.objective.loss import TranslationLoss

V = 17
CFG = ModelConfig(encoder_layers=1, decoder_layers=1, d_model=16, heads=2, ffn_dim=32, dropout=0.3)


def dense_kl(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """sum_k p_t,k (log p_t,k - log p_s,k) per row, in float64."""
    log_t = F.log_softmax(teacher.double() / t, -1)
    log_s = F.log_softmax(student.double() / t, -1)
    return (log_t.exp() * (log_t - log_s)).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 0.5])
@pytest.mark.parametrize("chunk", [2**24, 3 * V])  # one chunk, and chunks of 3 rows
def test_the_fused_kl_and_its_gradient_equal_the_dense_reference(temperature, chunk, monkeypatch):
    monkeypatch.setattr(kernel, "CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(0)
    student = (torch.randn(11, V, generator=g, dtype=torch.float64) * 3).requires_grad_()
    teacher = torch.randn(11, V, generator=g, dtype=torch.float64) * 3
    mask = torch.ones(11, dtype=torch.bool)
    mask[[2, 7]] = False  # pad rows: 0, and no gradient
    weights = torch.rand(11, generator=g, dtype=torch.float64)
    fused = DistillKL.apply(student, teacher, mask, temperature)
    (fused * weights).sum().backward()
    ref_student = student.detach().clone().requires_grad_()
    ref = torch.where(mask, dense_kl(ref_student, teacher, temperature), 0.0)
    (ref * weights).sum().backward()
    assert torch.allclose(fused.double(), ref, atol=1e-6)
    assert torch.allclose(student.grad, ref_student.grad, atol=1e-6)
    assert float(student.grad[2].abs().sum()) == 0.0 and float(fused.detach()[7]) == 0.0


def test_the_kl_of_a_model_against_itself_is_zero_and_half_logits_work_in_float32():
    z = torch.randn(5, V, dtype=torch.float64)
    kl = DistillKL.apply(z, z.clone(), torch.ones(5, dtype=torch.bool), 2.0)
    assert float(kl.abs().max()) < 1e-12
    half = z.bfloat16().requires_grad_()
    out = DistillKL.apply(half, (z + 1).bfloat16(), torch.ones(5, dtype=torch.bool), 1.0)
    out.sum().backward()
    assert out.dtype == torch.float32 and half.grad.dtype == torch.bfloat16


def batch_of(seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    src = [torch.randint(4, V, (int(n),), generator=g).tolist() + [EOS_ID] for n in (3, 6, 4)]
    tgt = [[BOS_ID] + torch.randint(4, V, (int(n),), generator=g).tolist() + [EOS_ID]
           for n in (5, 2, 7)]  # fmt: skip
    return Batch.of(pad(src), pad(tgt))


@pytest.mark.parametrize("alpha, temperature", [(0.5, 1.0), (0.3, 4.0), (1.0, 2.0)])
def test_the_mixed_loss_is_ce_plus_t_squared_kl_over_non_pad_tokens(alpha, temperature):
    torch.manual_seed(0)
    student, teacher = Transformer(CFG, V).double(), Transformer(CFG, V).double()
    base = TranslationLoss(V, PAD_ID, smoothing=0.1, reduction="sum")
    crit = Distillation(base, teacher, alpha, temperature)
    batch = batch_of(1)
    student.eval()
    logits = student(batch.src, batch.tgt_in)
    out = crit(logits, batch.tgt, batch=batch)
    labels = batch.labels.reshape(-1)
    keep = labels != PAD_ID
    with torch.no_grad():
        t_logits = teacher.eval()(batch.src, batch.tgt_in).reshape(-1, V)
    s_logits = logits.reshape(-1, V)
    ce = F.cross_entropy(
        s_logits[keep], labels[keep], label_smoothing=0.1, reduction="sum"
    ).detach()
    kd = temperature**2 * dense_kl(s_logits[keep], t_logits[keep], temperature).sum().detach()
    # The smoothed CE is computed in float32 (its fused kernel), the KL in float64 here.
    mixed = float((1 - alpha) * ce + alpha * kd)
    assert float(out["loss"].detach()) == pytest.approx(mixed, rel=1e-6)
    assert float(out["kd_loss"]) == pytest.approx(float(kd), abs=1e-9)
    assert float(out["ce_loss"]) == pytest.approx(float(ce), rel=1e-6)
    assert crit.logged == ("loss", "nll_loss", "num_correct", "ce_loss", "kd_loss")


def test_alpha_0_is_the_base_criterion_and_the_teacher_stays_frozen_in_eval():
    torch.manual_seed(0)
    student, teacher = Transformer(CFG, V), Transformer(CFG, V)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    base = TranslationLoss(V, PAD_ID, smoothing=0.1, reduction="sum")
    crit = Distillation(base, teacher, 0.0, 1.0)
    crit.train()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    batch = batch_of(2)
    logits = student(batch.src, batch.tgt_in)
    out, ref = crit(logits, batch.tgt, batch=batch), base(logits, batch.tgt)
    assert torch.equal(out["loss"], ref["loss"]) and float(out["kd_loss"]) == 0.0
    crit = Distillation(base, teacher, 0.7, 2.0).train()
    crit(student(batch.src, batch.tgt_in), batch.tgt, batch=batch)["loss"].backward()
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("alpha, temperature", [(-0.1, 1.0), (1.5, 1.0), (0.5, 0.0)])
def test_bad_mixing_values_are_refused(alpha, temperature):
    base = TranslationLoss(V, PAD_ID, smoothing=0.1, reduction="sum")
    with pytest.raises(ValueError):
        Distillation(base, Transformer(CFG, V), alpha, temperature)


def test_a_distilled_objective_names_its_teacher_in_label_and_run_name():
    from dataclasses import replace

    from nmt.config import TrainConfig
    from nmt.objective.smoothing import Smoothing

    sha, other = "ab" * 32, "cd" * 32
    token = replace(TrainConfig(smoothing=0.1), teacher="t", teacher_sha256=sha,
                    teacher_label="eps 0", kd_alpha=0.5, kd_temperature=4.0)  # fmt: skip
    spec = Smoothing.of(token)
    assert spec.label == "eps 0.1 + KD from eps 0 (alpha 0.5, T 4, teacher abababab)"
    assert spec.run_suffix() == "-kd0.5-T4-tabababab"
    seq = replace(TrainConfig(smoothing=0.0), data_teacher_sha256=other,
                  data_teacher_label="eps 0.1")  # fmt: skip
    assert Smoothing.of(seq).label == "eps 0 + seq-KD from eps 0.1 (teacher cdcdcdcd)"
    assert Smoothing.of(seq).run_suffix() == "-seqkd-tcdcdcdcd"
    both = replace(token, data_teacher_sha256=other, data_teacher_label="eps 0.1")
    assert Smoothing.of(both).label.endswith(
        "+ seq-KD from eps 0.1 (teacher cdcdcdcd)"
        " + KD from eps 0 (alpha 0.5, T 4, teacher abababab)"
    )
    plain = Smoothing.of(TrainConfig(smoothing=0.1))
    assert plain.label == "eps 0.1" and plain.run_suffix() == ""
    assert Smoothing.from_dict(spec.to_dict()).label == spec.label  # results.json round trip
