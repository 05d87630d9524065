"""The label-smoothing conventions: one registry, the one module that names them.

A convention turns a strength eps into a training target. Each is one class registered in
CONVENTIONS; it owns its name, the range of eps with the message that refuses the rest, the
coefficients the fused loss kernel needs (kernel()), a dense target for tests (target()), the
optimum logit gap, the report label and the run-name suffix. The loss, the config, the metrics,
the report and the sweep all ask the registry; adding a convention is one class and one
register() call, from any module (a test file included).

A run's objective is a Smoothing spec: the convention, eps and the convention's parameters;
its label (e.g. "eps 0.1 (fairseq)") names the run's row in reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from nmt.errors import NMTError

# The coefficients of a target linear in the log-probabilities: q = gold * one_hot(y) + prior,
# with prior a number (the same for all K entries) or a (K,) tensor; q must sum to 1.
Kernel = tuple[float, "float | torch.Tensor"]


class Convention:
    """One way of spreading eps. Subclasses set name/help and override what differs."""

    name: ClassVar[str]
    help: ClassVar[str]  # one clause for --smoothing-type's help
    upper: ClassVar[float] = 1.0  # eps must be in [0, upper)
    range_text: ClassVar[str] = "must be in [0, 1)"  # what the config says of a bad eps
    symbol: ClassVar[str] = "eps"  # what the strength is called in labels
    optimum_note: ClassVar[str | None] = None  # the optimum gap's formula, for report prose

    def check(self, eps: float) -> float:
        """eps if it is a valid strength for this convention, else one NMTError."""
        if not 0.0 <= eps < self.upper:
            raise NMTError(f"label smoothing must be in [0, 1), got {eps}; e.g. --smoothing 0.1")
        return float(eps)

    def kernel(self, eps: float, vocab: int) -> Kernel | None:
        """(gold weight, prior) of the fused kernel, or None when the loss is not linear in
        the log-probabilities (then per_token() computes it). eps 0 is always plain NLL."""
        return 1.0, 0.0

    def per_token(self, lprobs: torch.Tensor, nll: torch.Tensor, eps: float) -> torch.Tensor:
        """The per-token loss from float32 log-probabilities (N, V) and the NLL (N,), for
        conventions whose kernel() is None."""
        raise NotImplementedError(f"{self.name} is linear: the fused kernel computes it")

    def target(self, eps: float, labels: torch.Tensor, vocab: int) -> torch.Tensor | None:
        """The dense target distribution (N, V) in float64, for tests only (None: the loss is
        not a cross-entropy against a target)."""
        coef = self.kernel(eps, vocab)
        if coef is None:
            return None
        gold, prior = coef
        q = torch.zeros(len(labels), vocab, dtype=torch.float64)
        q += prior if isinstance(prior, float) else prior.double()[None, :]
        q[torch.arange(len(labels)), labels] += gold
        return q

    def optimum_gap(self, eps: float, vocab: int) -> float | None:
        """Gold-minus-other logit gap at the loss's minimum (inf at eps 0; None: no closed
        form, or the other entries' targets are not all equal)."""
        if eps == 0.0:
            return math.inf
        coef = self.kernel(eps, vocab)
        if coef is None or not isinstance(coef[1], float):
            return None
        gold, prior = coef
        return math.log((gold + prior) / prior)

    def label(self, eps: float, params: dict) -> str:
        """The report's name of the objective (eps 0 is named by Smoothing.label)."""
        return f"{self.symbol} {eps:g} ({self.name})"

    def run_suffix(self) -> str:
        """What run names add for this convention: '-<name>' (the default adds nothing)."""
        return f"-{self.name}"


class Uniform(Convention):
    """(1 - eps) * one_hot + eps / K over all K entries: F.cross_entropy(label_smoothing=eps)."""

    name = "uniform"
    help = "uniform (eps/K to every entry, the default)"
    optimum_note = "log((1 - eps + eps/K) / (eps/K)) for uniform smoothing over K entries"

    def kernel(self, eps: float, vocab: int) -> Kernel:
        return 1.0 - eps, eps / vocab

    def label(self, eps: float, params: dict) -> str:
        return f"eps {eps:g}"

    def run_suffix(self) -> str:
        return ""


class Fairseq(Convention):
    """Gold 1 - eps, every other entry eps / (K - 1) (fairseq's label_smoothed_cross_entropy)."""

    name = "fairseq"
    help = "fairseq (eps/(K-1) to non-gold entries)"
    optimum_note = "log((1 - eps) / (eps/(K - 1))) for fairseq's"

    def kernel(self, eps: float, vocab: int) -> Kernel:
        if eps == 0.0:
            return 1.0, 0.0
        return 1.0 - eps - eps / (vocab - 1), eps / (vocab - 1)

    def optimum_gap(self, eps: float, vocab: int) -> float | None:
        if eps == 0.0:
            return math.inf
        return math.log((1.0 - eps) / (eps / (vocab - 1)))


class ConfidencePenalty(Convention):
    """NLL - beta * H(p) (Pereyra et al., 2017): not linear in the log-probabilities."""

    name = "confidence-penalty"
    help = "confidence-penalty (NLL - eps * entropy)"
    upper = math.inf
    range_text = "must be >= 0 (the confidence penalty's beta)"
    symbol = "beta"
    optimum_note = "none for the confidence penalty"

    def check(self, eps: float) -> float:
        if not 0.0 <= eps < self.upper:
            raise NMTError(f"the confidence penalty beta (--smoothing) must be >= 0, got {eps}")
        return float(eps)

    def kernel(self, eps: float, vocab: int) -> Kernel | None:
        return (1.0, 0.0) if eps == 0.0 else None

    def per_token(self, lprobs: torch.Tensor, nll: torch.Tensor, eps: float) -> torch.Tensor:
        entropy = -(lprobs.exp() * lprobs).sum(dim=-1)  # (N,)
        return nll - eps * entropy

    def optimum_gap(self, eps: float, vocab: int) -> float | None:
        return math.inf if eps == 0.0 else None

    def label(self, eps: float, params: dict) -> str:
        return f"beta {eps:g} (confidence penalty)"


CONVENTIONS: dict[str, Convention] = {}
DEFAULT = "uniform"


def register(convention: Convention) -> Convention:
    """Add a convention under its name (a name already taken is refused)."""
    if convention.name in CONVENTIONS:
        raise ValueError(f"smoothing convention {convention.name!r} is already registered")
    CONVENTIONS[convention.name] = convention
    return convention


for _convention in (Uniform(), Fairseq(), ConfidencePenalty()):
    register(_convention)


def names() -> tuple[str, ...]:
    """The registered conventions' names, the default first."""
    return tuple(CONVENTIONS)


def get(name: str) -> Convention:
    """The convention called name; an unknown name is one NMTError listing the known ones."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise NMTError(
            f"unknown smoothing type {name!r}; choose one of {', '.join(CONVENTIONS)}"
        ) from None


def help_text() -> str:
    """--smoothing-type's help: every convention's clause."""
    clauses = [c.help for c in CONVENTIONS.values()]
    return ", ".join(clauses[:-1]) + " or " + clauses[-1] if len(clauses) > 1 else clauses[0]


def optimum_notes() -> str:
    """The optimum gap's formulas for the report: the default convention's, then the others'
    in parentheses ('...; ...'); conventions without a note are left out."""
    first, *rest = [c.optimum_note for c in CONVENTIONS.values() if c.optimum_note]
    return f"{first} ({'; '.join(rest)})" if rest else first


@dataclass(frozen=True)
class Smoothing:
    """A run's training objective: convention, strength and the convention's parameters."""

    convention: str = DEFAULT
    eps: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, train) -> Smoothing:
        """The objective a TrainConfig (or anything with smoothing/smoothing_type) trains."""
        return cls(train.smoothing_type, float(train.smoothing))

    @classmethod
    def from_dict(cls, spec: dict) -> Smoothing:
        rest = {k: v for k, v in spec.items() if k not in ("convention", "eps")}
        return cls(spec.get("convention", DEFAULT), float(spec["eps"]), rest)

    def to_dict(self) -> dict[str, Any]:
        return {"convention": self.convention, "eps": self.eps, **self.params}

    @property
    def plain(self) -> bool:
        """Whether this is the unsmoothed NLL (eps 0 with no parameters, any convention)."""
        return self.eps == 0 and not self.params

    @property
    def label(self) -> str:
        """The stable name of the objective: 'eps 0 (no smoothing)', 'eps 0.1', 'eps 0.1
        (fairseq)'; parameters are listed after it, so a spec with parameters never shares
        its label (its report row) with the constant eps of the same convention."""
        if self.plain:
            return "eps 0 (no smoothing)"
        text = get(self.convention).label(self.eps, self.params)
        if not self.params:
            return text
        return f"{text} [{', '.join(f'{k}={v}' for k, v in sorted(self.params.items()))}]"

    @property
    def short(self) -> str:
        """The label without the note that eps 0 is no smoothing: 'eps 0', 'eps 0.1', ..."""
        return "eps 0" if self.plain else self.label

    def run_suffix(self) -> str:
        return get(self.convention).run_suffix()

    def optimum_gap(self, vocab: int) -> float | None:
        return get(self.convention).optimum_gap(self.eps, vocab)
