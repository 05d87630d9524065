"""The fused label-smoothed NLL: one autograd function for every target linear in the
log-probabilities, with one (N, V) tensor each way."""

from __future__ import annotations

import torch

from nmt.objective.smoothing import Rows

# Rows of the (N, V) logits handled at once in float32: 2**24 elements (64 MiB), so under
# bf16/fp16 autocast no full float32 copy of the logits is ever made.
CHUNK_ELEMENTS = 2**24


def _row_chunks(n: int, vocab: int):
    step = max(1, CHUNK_ELEMENTS // vocab)
    return ((s, min(s + step, n)) for s in range(0, n, step))


class SmoothedNLL(torch.autograd.Function):
    """Per-token loss against q = gold * one_hot + scale * prior, and the NLL.

    prior is a number (the same mass on all K entries) or a (K,) float32 tensor; gold and scale
    are numbers (scale 1), or with rows (a convention's per-token coefficients, e.g. graduated
    smoothing) (N,) tensors computed from the model's probability of the gold token, detached
    (or confidence (N,), another model's).
    Each row of q sums to 1. loss = logsumexp(z) - gold * z_y - scale * prior . z, nll =
    logsumexp(z) - z_y, computed in float32 whatever the logits' dtype, over chunks of rows.
    One (N, V) tensor is kept for backward: the logits (softmax recomputed as exp(z - lse)), or
    with keep (float32 logits only) the forward's exp(z - max), softmax being that times
    exp(max - lse): the same size, two passes over it fewer, equal to rounding. Backward
    allocates nothing of that size but the gradient softmax(z) * (g + h) - scale * prior * g -
    one_hot * (gold * g + h), in the logits' dtype; with keep it is written over the kept
    exponentials, so the graph cannot be run backward twice.
    """

    @staticmethod
    def forward(ctx, logits, labels, mask, gold, prior, keep=False, rows: Rows | None = None,
                confidence=None):  # fmt: skip
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
        weight = 1.0  # scale of the prior per row
        if rows is not None:  # p of the gold token: the model's own, or a reference model's
            gold, weight = rows(torch.exp(-nll) if confidence is None else confidence)
        plain = not spread and not isinstance(gold, torch.Tensor) and gold == 1.0
        loss = nll if plain else lse - gold * z_gold
        if spread:
            loss = loss - weight * (z_prior if vector else prior * z_prior)
        zero = torch.zeros((), dtype=lse.dtype, device=lse.device)
        ctx.save_for_backward(kept if keep else logits, labels, mask, scale if keep else lse)
        ctx.gold, ctx.prior, ctx.weight = gold, prior, weight
        ctx.vector, ctx.spread, ctx.keep = vector, spread, keep
        return torch.where(mask, loss, zero), torch.where(mask, nll, zero)

    @staticmethod
    def backward(ctx, grad_loss, grad_nll):
        logits, labels, mask, lse = ctx.saved_tensors  # with keep: exp(z - max), exp(max - lse)
        g = torch.where(mask, grad_loss, 0.0) if grad_loss is not None else torch.zeros_like(lse)
        h = torch.where(mask, grad_nll, 0.0) if grad_nll is not None else torch.zeros_like(lse)
        g_prior = g * ctx.weight  # the prior's share of the gradient per row
        g_gold = ctx.gold * g + h
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
            if ctx.vector:  # minus the outer product g_prior x prior, in one pass
                work.addr_(g_prior[s:e], ctx.prior, alpha=-1.0)
            elif ctx.spread:
                work.sub_((ctx.prior * g_prior[s:e])[:, None])
            work.scatter_add_(-1, labels[s:e, None], -g_gold[s:e, None])
            if not in_place:
                grad[s:e] = work
        return grad, None, None, None, None, None, None, None
