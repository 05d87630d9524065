"""Token-level knowledge distillation (Hinton et al., 2015): the run's smoothed cross-entropy
mixed with the KL divergence from a frozen teacher's temperature-softened distribution.

    loss = (1 - alpha) * CE + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))

summed over non-pad target tokens like the CE, so the update step divides both by the same
token count. The KL is a fused autograd function over row chunks, like the smoothed NLL: the
student's logits are never copied to float32 whole, and a chunk at a time holds the teacher's
log-probabilities.
"""

from __future__ import annotations

import torch

from nmt.objective.criterion import Criterion
from nmt.objective.kernel import _row_chunks
from nmt.objective.loss import split_target


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision and float32 logits (a view of float32 ones), float64 kept."""
    return x if x.dtype == torch.float64 else x.float()


class DistillKL(torch.autograd.Function):
    """Per row (N,): KL(softmax(teacher / T) || softmax(student / T)), 0 on pad rows; the
    gradient reaches the student's logits only: (softmax(student / T) - softmax(teacher / T))
    / T per unit of the row's incoming gradient. Computed in float32 (float64 for float64
    logits) a chunk of rows at a time."""

    @staticmethod
    def forward(ctx, student, teacher, mask, temperature: float):
        n, vocab = student.shape
        kl = torch.empty(n, dtype=_wide(student[:0]).dtype, device=student.device)
        lse_s = torch.empty_like(kl)  # logsumexp(student / T) per row, for backward
        for s, e in _row_chunks(n, vocab):
            zs = _wide(student[s:e]) / temperature  # (rows, V)
            log_t = torch.log_softmax(_wide(teacher[s:e]) / temperature, dim=-1)
            lse_s[s:e] = torch.logsumexp(zs, dim=-1)
            p_t = log_t.exp()
            # sum_k p_t (log p_t - zs + lse_s), with sum_k p_t = 1
            kl[s:e] = (p_t * (log_t - zs)).sum(dim=-1) + lse_s[s:e]
        ctx.save_for_backward(student, teacher, mask, lse_s)
        ctx.temperature = temperature
        return torch.where(mask, kl, torch.zeros((), dtype=kl.dtype, device=kl.device))

    @staticmethod
    def backward(ctx, grad_kl):
        student, teacher, mask, lse_s = ctx.saved_tensors
        t = ctx.temperature
        g = torch.where(mask, grad_kl, 0.0) / t  # (N,)
        grad = torch.empty_like(student)
        for s, e in _row_chunks(*student.shape):
            p_s = (_wide(student[s:e]) / t - lse_s[s:e, None]).exp_()
            p_t = torch.softmax(_wide(teacher[s:e]) / t, dim=-1)
            grad[s:e] = (p_s.sub_(p_t)).mul_(g[s:e, None])
        return grad, None, None, None


class Distillation(Criterion):
    """(1 - alpha) * the run's criterion + alpha * T^2 * the teacher's KL, per token summed.

    base: the student's own criterion (the label-smoothed NLL; its nll_loss and accuracy are
    what is logged as the run's); teacher: a frozen model over the same vocabulary, run under
    no_grad in eval mode in the student's precision on every batch. Logs the base's sums, the
    mixed loss, and ce_loss and kd_loss (T^2 * KL) beside them.
    """

    wants_batch = True

    def __init__(self, base: Criterion, teacher: torch.nn.Module, alpha: float, temperature: float):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if not temperature > 0.0:
            raise ValueError(f"the temperature must be > 0, got {temperature}")
        self.base, self.alpha, self.temperature = base, float(alpha), float(temperature)
        self.teacher = teacher.eval().requires_grad_(False)
        self.pad_id = base.pad_id
        self.logged = (*base.logged, "ce_loss", "kd_loss")

    def train(self, mode: bool = True) -> Distillation:
        """The base follows mode; the teacher stays in eval mode (no dropout) whatever it is."""
        super().train(mode)
        self.teacher.eval()
        return self

    def teacher_logits(self, batch, dtype: torch.dtype) -> torch.Tensor:
        """The teacher's logits (B, T-1, V) for the batch, under the student's autocast."""
        half = dtype in (torch.float16, torch.bfloat16)
        device = batch.src.device.type
        with torch.no_grad(), torch.autocast(device, dtype=dtype if half else None, enabled=half):
            return self.teacher(batch.src, batch.tgt_in)

    def forward(self, logits: torch.Tensor, target_ids: torch.Tensor, batch=None) -> dict:
        if batch is None:
            raise ValueError("distillation needs the batch: forward(..., batch=...)")
        out = dict(self.base(logits, target_ids, batch=batch) if self.base.wants_batch
                   else self.base(logits, target_ids))  # fmt: skip
        if self.alpha == 0.0:  # exactly the base: no teacher pass, nothing mixed in
            ce = out["loss"]
            return {**out, "ce_loss": ce.detach(), "kd_loss": torch.zeros_like(ce).detach()}
        labels = split_target(target_ids)[1].reshape(-1)
        vocab = logits.size(-1)
        teacher = self.teacher_logits(batch, logits.dtype).reshape(-1, vocab)
        mask = labels != self.pad_id
        kl = DistillKL.apply(logits.reshape(-1, vocab), teacher, mask, self.temperature)
        kd = kl.sum() * self.temperature**2
        if getattr(self.base, "reduction", "sum") == "mean":
            kd = kd / mask.sum().clamp(min=1)
        ce = out["loss"]
        out["loss"] = (1.0 - self.alpha) * ce + self.alpha * kd
        return {**out, "ce_loss": ce.detach(), "kd_loss": kd.detach()}

    def at_update(self, update: int) -> None:
        self.base.at_update(update)

    def scalars(self) -> dict[str, float]:
        return self.base.scalars()

    def reduce(self, sums: dict[str, float], tokens: int) -> dict[str, float]:
        return self.base.reduce(sums, tokens)

    def optimum_prob_gaps(self, target_ids: torch.Tensor) -> torch.Tensor | None:
        return self.base.optimum_prob_gaps(target_ids)

    def resume_state(self) -> dict | None:
        return self.base.resume_state()

    def load_resume_state(self, state: dict | None) -> None:
        self.base.load_resume_state(state)
