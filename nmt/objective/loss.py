"""TranslationLoss and the pure label-smoothed NLL it is built on."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from nmt.errors import NMTError
from nmt.objective import smoothing as registry
from nmt.objective.criterion import Criterion
from nmt.objective.kernel import SmoothedNLL
from nmt.objective.smoothing import Convention, Smoothing

log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried


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
    kind: str | Convention = registry.DEFAULT,
    keep_softmax: bool = False,
    confidence: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token smoothed loss, NLL and pad mask for logits (N, V) and labels (N,).

    kind names a convention of the registry (nmt.objective.smoothing), or is one bound to its
    parameters and distribution. A convention linear in the log-probabilities gives the fused
    kernel its target q = gold * one_hot + prior (per token, with rows(), where eps follows
    the model's probability of the gold token), and no (N, V) target tensor is built; any
    other gives its per-token loss from the float32 log-probabilities under plain autograd.
    eps 0 is the plain NLL in every convention. Pad rows are 0. keep_softmax (train.kernels
    fast): float32 logits keep the fused kernel's exponentials for backward instead of
    recomputing them (equal to rounding, two passes fewer). confidence (N,): the probability of
    each gold token that rows() reads instead of the model's own (a reference model's).
    """
    convention = registry.get(kind) if isinstance(kind, str) else kind
    mask = labels != pad_id  # (N,)
    safe = labels.masked_fill(~mask, 0)
    coef = convention.kernel(eps, logits.size(-1))
    if coef is not None:
        # Linear in the log-probabilities: one fused function, one (N, V) tensor each way.
        gold, prior = coef
        if isinstance(prior, torch.Tensor):
            prior = prior.to(device=logits.device, dtype=torch.float32)
        keep = keep_softmax and logits.dtype == torch.float32
        rows = convention.rows(eps, logits.size(-1))
        loss, nll = SmoothedNLL.apply(logits, safe, mask, gold, prior, keep, rows, confidence)
        return loss, nll, mask
    lprobs = F.log_softmax(logits.float(), dim=-1)  # (N, V), float32 even under autocast
    nll = -lprobs.gather(-1, safe[:, None]).squeeze(-1)  # (N,)
    loss = convention.per_token(lprobs, nll, eps)
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    return torch.where(mask, loss, zero), torch.where(mask, nll, zero), mask


class TranslationLoss(Criterion):
    """Label-smoothed cross-entropy over shifted targets, with NLL, accuracy and token count.

    smoothing_type names a convention of the registry (nmt.objective.smoothing); the default
    is F.cross_entropy(label_smoothing=smoothing). objective (a Smoothing spec) replaces both
    and adds the convention's parameters and an eps schedule; base is the (K,) distribution a
    convention that needs_base spreads eps by (nmt.objective.priors), kept in the checkpoint.
    at_update(n) sets the eps of the update after n updates; `smoothing` is that eps.
    reference (graduated smoothing): a frozen model whose probability of each gold token,
    rather than the model's own, chooses the token's eps; forward() then needs the batch.

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
        *,
        objective: Smoothing | None = None,
        base: torch.Tensor | None = None,
        reference: torch.nn.Module | None = None,
    ):
        super().__init__()
        # graduated smoothing's frozen reference model: its p of the gold token sets each eps
        self.reference = reference.eval().requires_grad_(False) if reference else None
        self.keep_softmax = keep_softmax  # label_smoothed_nll's: train.kernels fast
        if reduction not in ("mean", "sum"):
            raise NMTError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.objective = objective or Smoothing(smoothing_type, float(smoothing))
        self.smoothing_type, self.reduction = self.objective.convention, reduction
        check_smoothing(self.objective.eps, self.smoothing_type)
        self._bind(base)
        self.smoothing = self.objective.eps_at(0)  # the eps of the coming update

    def _bind(self, base: torch.Tensor | None) -> None:
        convention = registry.get(self.smoothing_type)
        if convention.needs_base or self.objective.params:
            convention = convention.bind(self.objective.params, base)
        self.convention = convention

    def at_update(self, update: int) -> None:
        """The eps of the update after `update` updates (the spec's schedule)."""
        self.smoothing = self.objective.eps_at(update)

    def scalars(self) -> dict[str, float]:
        """train/smoothing under an eps schedule."""
        return {"smoothing": self.smoothing} if self.objective.ramp else {}

    def resume_state(self) -> dict | None:
        """The distribution eps is spread by, so a resume never counts the data again."""
        return None if self.convention.base is None else {"base": self.convention.base.cpu()}

    def load_resume_state(self, state: dict | None) -> None:
        if state and state.get("base") is not None and self.convention.needs_base:
            self._bind(state["base"])

    @property
    def wants_batch(self) -> bool:
        return self.reference is not None

    def _reference_confidence(self, batch, labels: torch.Tensor, dtype) -> torch.Tensor:
        """The reference model's probability of each gold token (N,), float32."""
        half = dtype in (torch.float16, torch.bfloat16)  # the trained model's autocast dtype
        amp = torch.autocast(labels.device.type, dtype=dtype if half else None, enabled=half)
        with torch.no_grad(), amp:
            ref_logits = self.reference(batch.src, batch.tgt_in).float()
        lprobs = torch.log_softmax(ref_logits.reshape(-1, self.vocab_size), dim=-1)
        safe = labels.masked_fill(labels == self.pad_id, 0)
        return lprobs.gather(-1, safe[:, None]).squeeze(-1).exp()

    def forward(
        self, logits: torch.Tensor, target_ids: torch.Tensor, batch=None
    ) -> dict[str, torch.Tensor]:
        _, labels = split_target(target_ids)  # (B, T-1)
        if logits.shape[:2] != labels.shape or logits.size(-1) != self.vocab_size:
            raise ValueError(
                f"logits {tuple(logits.shape)} do not match target_ids "
                f"{tuple(target_ids.shape)} and vocab {self.vocab_size}"
            )
        flat_logits = logits.reshape(-1, self.vocab_size)  # (N, V)
        flat_labels = labels.reshape(-1)  # (N,)
        confidence = None
        if self.reference is not None and self.smoothing > 0:
            if batch is None:
                raise ValueError("the reference model needs the batch: forward(..., batch=...)")
            confidence = self._reference_confidence(batch, flat_labels, logits.dtype)
        loss, nll, mask = label_smoothed_nll(
            flat_logits,
            flat_labels,
            self.smoothing,
            self.pad_id,
            self.convention,
            self.keep_softmax and torch.is_grad_enabled(),
            confidence,
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

    def optimum_prob_gaps(self, target_ids: torch.Tensor) -> torch.Tensor | None:
        """The optimum prob gap of each non-pad target token (metrics: optimal_prob_gap)."""
        labels = split_target(target_ids)[1].reshape(-1)
        labels = labels[labels != self.pad_id].cpu()
        return self.convention.optimum_prob_gaps(self.smoothing, labels, self.vocab_size)

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


def build_criterion(
    train,
    vocab_size: int,
    pad_id: int,
    base: torch.Tensor | None = None,
    reference: torch.nn.Module | None = None,
) -> TranslationLoss:
    """The default criterion of a TrainConfig: the label-smoothed NLL, summed over tokens.
    base: the (K,) distribution of a convention that needs one (nmt.objective.priors);
    reference: graduated smoothing's frozen reference model (nmt.train.reference)."""
    keep = train.kernels != "reference"
    objective = Smoothing.of(train)
    return TranslationLoss(vocab_size, pad_id, reduction="sum", keep_softmax=keep,
                           objective=objective, base=base, reference=reference)  # fmt: skip


def smoothing_base(train, tok, train_split, state=None) -> torch.Tensor | None:
    """The (K,) distribution the run's convention spreads eps by: a resumed run's from its
    checkpoint (never counted again), else the convention's from the data (None: none)."""
    saved = getattr(state, "criterion", None) or {}
    if saved.get("base") is not None:
        log.info("smoothing: the %s distribution from the checkpoint", train.smoothing_type)
        return saved["base"]
    base = registry.get(train.smoothing_type).distribution(train, tok, train_split)
    if base is not None:
        log.info("smoothing: the %s distribution computed (%d of %d entries above 0)",
                 train.smoothing_type, int((base > 0).sum()), base.numel())  # fmt: skip
    return base
