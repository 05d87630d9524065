"""TranslationLoss and the pure label-smoothed NLL it is built on."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nmt.errors import NMTError
from nmt.objective import smoothing as registry
from nmt.objective.criterion import Criterion


def split_target(target_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one place the shift happens: [BOS w1 .. wn EOS PAD..] -> (decoder input, labels)."""
    return target_ids[:, :-1], target_ids[:, 1:]


def check_smoothing(eps: float, kind: str = registry.DEFAULT) -> float:
    """Return eps if it is a valid strength for this convention, else raise NMTError."""
    return registry.get(kind).check(eps)


def label_smoothed_nll(
    logits: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    pad_id: int,
    kind: str = registry.DEFAULT,
    keep_softmax: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token smoothed loss, NLL and pad mask for logits (N, V) and labels (N,).

    kind names a convention of the registry (nmt.objective.smoothing). A convention linear in
    the log-probabilities gives the fused kernel its target q = gold * one_hot + prior, and no
    (N, V) target tensor is built; any other gives its per-token loss from the float32
    log-probabilities under plain autograd. eps 0 is the plain NLL in every convention. Pad
    rows are 0. keep_softmax (train.kernels fast): float32 logits keep the fused kernel's
    exponentials for backward instead of recomputing them (equal to rounding, two passes fewer).
    """
    convention = registry.get(kind)
    mask = labels != pad_id  # (N,)
    safe = labels.masked_fill(~mask, 0)
    coef = convention.kernel(eps, logits.size(-1))
    if coef is not None:
        # Linear in the log-probabilities: one fused function, one (N, V) tensor each way.
        gold, prior = coef
        if isinstance(prior, torch.Tensor):
            prior = prior.to(device=logits.device, dtype=torch.float32)
        keep = keep_softmax and logits.dtype == torch.float32
        loss, nll = _SmoothedNLL.apply(logits, safe, mask, gold, prior, keep)
        return loss, nll, mask
    lprobs = F.log_softmax(logits.float(), dim=-1)  # (N, V), float32 even under autocast
    nll = -lprobs.gather(-1, safe[:, None]).squeeze(-1)  # (N,)
    loss = convention.per_token(lprobs, nll, eps)
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    return torch.where(mask, loss, zero), torch.where(mask, nll, zero), mask


# Rows of the (N, V) logits handled at once in float32: 2**24 elements (64 MiB), so under
# bf16/fp16 autocast no full float32 copy of the logits is ever made.
CHUNK_ELEMENTS = 2**24


def _row_chunks(n: int, vocab: int):
    step = max(1, CHUNK_ELEMENTS // vocab)
    return ((s, min(s + step, n)) for s in range(0, n, step))


class _SmoothedNLL(torch.autograd.Function):
    """Per-token loss against q = gold * one_hot + prior, and the NLL.

    prior is a number (the same mass on all K entries) or a (K,) float32 tensor; q sums to 1.
    loss = logsumexp(z) - gold * z_y - prior . z, nll = logsumexp(z) - z_y, computed in float32
    whatever the logits' dtype, over chunks of rows. One (N, V) tensor is kept for backward: the
    logits (softmax recomputed as exp(z - lse)), or with keep (float32 logits only) the forward's
    exp(z - max), softmax being that times exp(max - lse): the same size, two passes over it
    fewer, equal to rounding. Backward allocates nothing of that size but the gradient
    softmax(z) * (g + h) - q * g - one_hot * h, in the logits' dtype; with keep it is written
    over the kept exponentials, so the graph cannot be run backward twice.
    """

    @staticmethod
    def forward(ctx, logits, labels, mask, gold: float, prior, keep: bool = False):
        n, vocab = logits.shape
        vector = isinstance(prior, torch.Tensor)
        spread = vector or bool(prior)  # any mass off the gold entry
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        z_prior = torch.empty_like(lse) if spread else None  # prior . z per row
        kept = torch.empty_like(logits) if keep else None  # exp(z - max)
        scale = torch.empty_like(lse) if keep else None  # exp(max - lse)
        for s, e in _row_chunks(n, vocab):
            z = logits[s:e].float()  # (rows, V): a view when the logits are float32
            peak = z.amax(dim=-1, keepdim=True)
            shifted = torch.sub(z, peak, out=kept[s:e]) if keep else z - peak
            lse[s:e] = shifted.exp_().sum(dim=-1).log_() + peak.squeeze(-1)
            if keep:
                torch.exp(peak.squeeze(-1) - lse[s:e], out=scale[s:e])
            if spread:
                z_prior[s:e] = z @ prior if vector else z.sum(dim=-1)
        z_gold = logits.gather(-1, labels[:, None]).squeeze(-1).float()
        nll = lse - z_gold
        loss = nll if not spread and gold == 1.0 else lse - gold * z_gold
        if spread:
            loss = loss - (z_prior if vector else prior * z_prior)
        zero = torch.zeros((), dtype=lse.dtype, device=lse.device)
        ctx.save_for_backward(kept if keep else logits, labels, mask, scale if keep else lse)
        ctx.gold, ctx.prior, ctx.vector, ctx.spread = gold, prior, vector, spread
        ctx.keep = keep
        return torch.where(mask, loss, zero), torch.where(mask, nll, zero)

    @staticmethod
    def backward(ctx, grad_loss, grad_nll):
        logits, labels, mask, lse = ctx.saved_tensors  # with keep: exp(z - max), exp(max - lse)
        g = torch.where(mask, grad_loss, 0.0) if grad_loss is not None else torch.zeros_like(lse)
        h = torch.where(mask, grad_nll, 0.0) if grad_nll is not None else torch.zeros_like(lse)
        # (N, V), the one full-size tensor: the kept exponentials themselves with keep
        grad = logits if ctx.keep else torch.empty_like(logits)
        in_place = logits.dtype == torch.float32
        for s, e in _row_chunks(*logits.shape):
            work = grad[s:e] if in_place else torch.empty_like(grad[s:e], dtype=torch.float32)
            if ctx.keep:  # softmax * (g + h) = exp(z - max) * exp(max - lse) * (g + h)
                work.mul_((lse * (g + h))[s:e, None])
            else:
                torch.sub(logits[s:e], lse[s:e, None], out=work)
                work.exp_().mul_((g + h)[s:e, None])
            if ctx.vector:
                work.sub_(g[s:e, None] * ctx.prior[None, :])
            elif ctx.spread:
                work.sub_((ctx.prior * g[s:e])[:, None])
            work.scatter_add_(-1, labels[s:e, None], -(ctx.gold * g + h)[s:e, None])
            if not in_place:
                grad[s:e] = work
        return grad, None, None, None, None, None


class TranslationLoss(Criterion):
    """Label-smoothed cross-entropy over shifted targets, with NLL, accuracy and token count.

    smoothing_type names a convention of the registry (nmt.objective.smoothing); the default
    is F.cross_entropy(label_smoothing=smoothing).

    forward(logits (B, T-1, V), target_ids (B, T)) -> dict with `loss` (smoothed), `nll_loss`,
    `accuracy`, `num_tokens` (non-pad labels) and `num_correct`. With reduction="mean" loss and
    nll_loss are means over non-pad tokens; with "sum" they are sums (the trainer divides by the
    token count of the whole update).

    As a criterion it logs the sums of loss, nll_loss and num_correct over an update, shown as
    loss, nll_loss, ppl and accuracy per target token.
    """

    logged = ("loss", "nll_loss", "num_correct")

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        smoothing: float = 0.1,
        reduction: str = "mean",
        smoothing_type: str = registry.DEFAULT,
        keep_softmax: bool = False,
    ):
        super().__init__()
        self.keep_softmax = keep_softmax  # label_smoothed_nll's: train.kernels fast
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
            flat_logits,
            flat_labels,
            self.smoothing,
            self.pad_id,
            self.smoothing_type,
            self.keep_softmax and torch.is_grad_enabled(),
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

    def reduce(self, sums: dict[str, float], tokens: int) -> dict[str, float]:
        """Per-token means of an interval's sums, perplexity beside the NLL, num_correct shown
        as accuracy; keys a subclass adds are means per token too."""
        out = {}
        for key, value in sums.items():
            name = "accuracy" if key == "num_correct" else key
            out[name] = value / tokens
            if key == "nll_loss":
                out["ppl"] = math.exp(min(value / tokens, 50.0))
        return out


def build_criterion(train, vocab_size: int, pad_id: int) -> TranslationLoss:
    """The default criterion of a TrainConfig: the label-smoothed NLL, summed over tokens."""
    keep = train.kernels != "reference"
    return TranslationLoss(
        vocab_size, pad_id, train.smoothing, "sum", train.smoothing_type, keep_softmax=keep
    )
