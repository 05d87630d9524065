"""TranslationLoss and the pure label-smoothed NLL it is built on."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nmt.errors import NMTError


def split_target(target_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one place the shift happens: [BOS w1 .. wn EOS PAD..] -> (decoder input, labels)."""
    return target_ids[:, :-1], target_ids[:, 1:]


SMOOTHING_TYPES = ("uniform", "fairseq", "confidence-penalty")
# The strengths each convention accepts, 0 <= eps < limit, and how the config says so:
# uniform and fairseq need eps in [0, 1); for confidence-penalty eps is the entropy weight
# beta, any finite value >= 0.
SMOOTHING_LIMITS = {
    "uniform": (1.0, "must be in [0, 1)"),
    "fairseq": (1.0, "must be in [0, 1)"),
    "confidence-penalty": (float("inf"), "must be >= 0 (the confidence penalty's beta)"),
}


def check_smoothing(eps: float, kind: str = "uniform") -> float:
    """Return eps if it is a valid strength for this smoothing type, else raise NMTError."""
    if kind not in SMOOTHING_TYPES:
        raise NMTError(
            f"unknown smoothing type {kind!r}; choose one of {', '.join(SMOOTHING_TYPES)}"
        )
    if not 0.0 <= eps < SMOOTHING_LIMITS[kind][0]:
        if kind == "confidence-penalty":
            raise NMTError(f"the confidence penalty beta (--smoothing) must be >= 0, got {eps}")
        raise NMTError(f"label smoothing must be in [0, 1), got {eps}; e.g. --smoothing 0.1")
    return float(eps)


def label_smoothed_nll(
    logits: torch.Tensor, labels: torch.Tensor, eps: float, pad_id: int, kind: str = "uniform"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token smoothed loss, NLL and pad mask for logits (N, V) and labels (N,).

    kind picks the training loss; none of them builds an (N, K) target tensor:
      uniform             target (1 - eps) * one_hot + eps / K over all K entries:
                          (1 - eps) * nll + eps * mean_k(-log p_k)  (= F.cross_entropy's)
      fairseq             gold gets 1 - eps, every other entry eps / (K - 1):
                          (1 - eps) * nll + eps / (K - 1) * (sum_k(-log p_k) - nll)
      confidence-penalty  nll - eps * H(p), H the entropy of the prediction (Pereyra et al.,
                          2017); eps plays their beta
    Pad rows are 0.
    """
    mask = labels != pad_id  # (N,)
    safe = labels.masked_fill(~mask, 0)
    if kind in ("uniform", "fairseq") or eps == 0.0:
        # Linear in the log-probabilities: one fused function, one (N, V) tensor each way.
        vocab = logits.size(-1)
        if kind == "uniform":
            gold, rest = 1.0 - eps, eps / vocab
        elif kind == "fairseq" and eps:
            gold, rest = 1.0 - eps - eps / (vocab - 1), eps / (vocab - 1)
        else:  # eps == 0: every convention is the plain NLL
            gold, rest = 1.0, 0.0
        loss, nll = _SmoothedNLL.apply(logits, safe, mask, gold, rest)
        return loss, nll, mask
    if kind != "confidence-penalty":
        raise NMTError(f"unknown smoothing type {kind!r}")
    # The confidence penalty is not linear in the log-probabilities: plain autograd.
    lprobs = F.log_softmax(logits.float(), dim=-1)  # (N, V), float32 even under autocast
    nll = -lprobs.gather(-1, safe[:, None]).squeeze(-1)  # (N,)
    entropy = -(lprobs.exp() * lprobs).sum(dim=-1)  # (N,)
    loss = nll - eps * entropy
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    return torch.where(mask, loss, zero), torch.where(mask, nll, zero), mask


# Rows of the (N, V) logits handled at once in float32: 2**24 elements (64 MiB), so under
# bf16/fp16 autocast no full float32 copy of the logits is ever made.
CHUNK_ELEMENTS = 2**24


def _row_chunks(n: int, vocab: int):
    step = max(1, CHUNK_ELEMENTS // vocab)
    return ((s, min(s + step, n)) for s in range(0, n, step))


class _SmoothedNLL(torch.autograd.Function):
    """Per-token loss against q = gold * one_hot + rest (all K entries), and the NLL.

    loss = logsumexp(z) - gold * z_y - rest * sum_k z_k, nll = logsumexp(z) - z_y, computed in
    float32 whatever the logits' dtype, over chunks of rows. Nothing of size (N, V) is kept for
    backward but the logits themselves, and nothing of that size is allocated but the gradient
    softmax(z) * (g + h) - q * g - one_hot * h, in the logits' dtype.
    """

    @staticmethod
    def forward(ctx, logits, labels, mask, gold: float, rest: float):
        n, vocab = logits.shape
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        z_sum = torch.empty_like(lse) if rest else None
        for s, e in _row_chunks(n, vocab):
            z = logits[s:e].float()  # (rows, V): a view when the logits are float32
            peak = z.amax(dim=-1, keepdim=True)
            lse[s:e] = (z - peak).exp_().sum(dim=-1).log_() + peak.squeeze(-1)
            if rest:
                z_sum[s:e] = z.sum(dim=-1)
        z_gold = logits.gather(-1, labels[:, None]).squeeze(-1).float()
        nll = lse - z_gold
        loss = nll if (gold, rest) == (1.0, 0.0) else lse - gold * z_gold
        if rest:
            loss = loss - rest * z_sum
        zero = torch.zeros((), dtype=lse.dtype, device=lse.device)
        ctx.save_for_backward(logits, labels, mask, lse)
        ctx.gold, ctx.rest = gold, rest
        return torch.where(mask, loss, zero), torch.where(mask, nll, zero)

    @staticmethod
    def backward(ctx, grad_loss, grad_nll):
        logits, labels, mask, lse = ctx.saved_tensors
        g = torch.where(mask, grad_loss, 0.0) if grad_loss is not None else torch.zeros_like(lse)
        h = torch.where(mask, grad_nll, 0.0) if grad_nll is not None else torch.zeros_like(lse)
        grad = torch.empty_like(logits)  # (N, V), the one full-size tensor
        in_place = logits.dtype == torch.float32
        for s, e in _row_chunks(*logits.shape):
            work = grad[s:e] if in_place else torch.empty_like(grad[s:e], dtype=torch.float32)
            torch.sub(logits[s:e], lse[s:e, None], out=work)  # then: softmax * (g + h)
            work.exp_().mul_((g + h)[s:e, None])
            if ctx.rest:
                work.sub_((ctx.rest * g[s:e])[:, None])
            work.scatter_add_(-1, labels[s:e, None], -(ctx.gold * g + h)[s:e, None])
            if not in_place:
                grad[s:e] = work
        return grad, None, None, None, None


class TranslationLoss(nn.Module):
    """Label-smoothed cross-entropy over shifted targets, with NLL, accuracy and token count.

    smoothing_type names the convention (see label_smoothed_nll); the default "uniform" is
    F.cross_entropy(label_smoothing=smoothing).

    forward(logits (B, T-1, V), target_ids (B, T)) -> dict with `loss` (smoothed), `nll_loss`,
    `accuracy`, `num_tokens` (non-pad labels) and `num_correct`. With reduction="mean" loss and
    nll_loss are means over non-pad tokens; with "sum" they are sums (the trainer divides by the
    token count of the whole update).
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        smoothing: float = 0.1,
        reduction: str = "mean",
        smoothing_type: str = "uniform",
    ):
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise NMTError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.smoothing = check_smoothing(smoothing, smoothing_type)
        self.smoothing_type, self.reduction = smoothing_type, reduction

    def forward(self, logits: torch.Tensor, target_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        _, labels = split_target(target_ids)  # (B, T-1)
        if logits.shape[:2] != labels.shape or logits.size(-1) != self.vocab_size:
            raise ValueError(
                f"logits {tuple(logits.shape)} do not match target_ids "
                f"{tuple(target_ids.shape)} and vocab {self.vocab_size}"
            )
        flat_logits = logits.reshape(-1, self.vocab_size)  # (N, V)
        flat_labels = labels.reshape(-1)  # (N,)
        loss, nll, mask = label_smoothed_nll(
            flat_logits, flat_labels, self.smoothing, self.pad_id, self.smoothing_type
        )
        num_tokens = mask.sum()
        with torch.no_grad():
            num_correct = ((flat_logits.argmax(-1) == flat_labels) & mask).sum()
        loss, nll = loss.sum(), nll.sum()
        denom = num_tokens.clamp(min=1).to(loss.dtype)
        if self.reduction == "mean":
            loss, nll = loss / denom, nll / denom
        return {
            "loss": loss,
            "nll_loss": nll,
            "accuracy": num_correct.to(loss.dtype) / denom,
            "num_tokens": num_tokens,
            "num_correct": num_correct,
        }
