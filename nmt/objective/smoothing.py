"""The label-smoothing conventions: one registry, the one module that names them.

A convention turns a strength eps into a training target. Each is one class registered in
CONVENTIONS; it owns its name, the range of eps with the message that refuses the rest, the
coefficients the fused loss kernel needs (kernel()), a dense target for tests (target()), the
optimum logit gap, the report label and the run-name suffix. The loss, the config, the metrics,
the report and the sweep all ask the registry; adding a convention is one class and one
register() call, from any module (a test file included).

A convention that needs the data (a prior over the vocabulary, e.g. the target side's piece
frequencies) or parameters of its own (TrainConfig keys it names in config_keys) is bound to
them with bind(): the registry's instance is the unbound prototype.

A run's objective is a Smoothing spec: the convention, eps, the convention's parameters and an
optional eps schedule (eps as a pure function of the update number); its label (e.g. "eps 0.1
(fairseq)", "eps 0→0.1 over 1500") names the run's row in reports.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from nmt.errors import NMTError
from nmt.objective.identity import KD_KEYS, exact, kd_label, kd_params, kd_suffix, plain

# The coefficients of a target linear in the log-probabilities: q = gold * one_hot(y) + prior,
# with prior a number (the same for all K entries) or a (K,) tensor; q must sum to 1.
Kernel = tuple[float, "float | torch.Tensor"]
# Per-token coefficients from the model's probability of the gold token p (N,), detached:
# (gold (N,), scale (N,)); row i's target is gold_i * one_hot + scale_i * prior.
Rows = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Convention:
    """One way of spreading eps. Subclasses set name/help and override what differs."""

    name: ClassVar[str]
    help: ClassVar[str]  # one clause for --smoothing-type's help
    upper: ClassVar[float] = 1.0  # eps must be in [0, upper)
    range_text: ClassVar[str] = "must be in [0, 1)"  # what the config says of a bad eps
    symbol: ClassVar[str] = "eps"  # what the strength is called in labels
    optimum_note: ClassVar[str | None] = None  # the optimum gap's formula, for report prose
    gap_note: ClassVar[str | None] = None  # a sentence for reports with its rows (no formula)
    config_keys: ClassVar[tuple[str, ...]] = ()  # TrainConfig keys that are its parameters
    needs_base: ClassVar[bool] = False  # whether bind() needs a (K,) distribution of the data
    base: torch.Tensor | None = None  # a bound convention's (K,) distribution
    params: dict[str, Any] = {}  # a bound convention's parameters

    def bind(self, params: dict[str, Any], base: torch.Tensor | None = None) -> Convention:
        """This convention with its parameters and, where needs_base, the (K,) distribution
        from the data (nmt.objective.priors); the registry's instance is left as it is."""
        if self.needs_base and base is None:
            raise ValueError(f"the {self.name} convention needs a distribution over the vocab")
        bound = copy.copy(self)
        bound.params, bound.base = dict(params), base
        return bound

    def check(self, eps: float) -> float:
        """eps if it is a valid strength for this convention, else one NMTError."""
        if not 0.0 <= eps < self.upper:
            raise NMTError(f"label smoothing must be in [0, 1), got {eps}; e.g. --smoothing 0.1")
        return float(eps)

    def kernel(self, eps: float, vocab: int) -> Kernel | None:
        """(gold weight, prior) of the fused kernel, or None when the loss is not linear in
        the log-probabilities (then per_token() computes it). eps 0 is always plain NLL."""
        return 1.0, 0.0

    def distribution(self, train, tok, train_split) -> torch.Tensor | None:
        """The (K,) distribution bind() needs, from a TrainConfig, the tokenizer and the
        training split (None: the convention needs none)."""
        return None

    def rows(self, eps: float, vocab: int) -> Rows | None:
        """Per-token (gold, scale) of the target from the gold token's probability, for a
        convention whose eps depends on the token (None: the kernel's constants hold)."""
        return None

    def per_token(self, lprobs: torch.Tensor, nll: torch.Tensor, eps: float) -> torch.Tensor:
        """The per-token loss from float32 log-probabilities (N, V) and the NLL (N,), for
        conventions whose kernel() is None."""
        raise NotImplementedError(f"{self.name} is linear: the fused kernel computes it")

    def target(
        self, eps: float, labels: torch.Tensor, vocab: int, p_gold: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """The dense target distribution (N, V) in float64, for tests only (None: the loss is
        not a cross-entropy against a target). p_gold (N,): the model's probability of each
        gold token, for a convention with rows()."""
        coef = self.kernel(eps, vocab)
        if coef is None:
            return None
        gold, prior = coef
        n = len(labels)
        prior = torch.full((vocab,), float(prior)) if not torch.is_tensor(prior) else prior
        gold_rows, scale = torch.full((n,), float(gold)), torch.ones(n)
        rows = self.rows(eps, vocab)
        if rows is not None:
            gold_rows, scale = rows(p_gold.float())
        q = scale.double()[:, None] * prior.double()[None, :]
        q[torch.arange(n), labels] += gold_rows.double()
        return q

    def optimum_prob_gaps(self, eps: float, labels: torch.Tensor, vocab: int):
        """Per token (N,), the prob gap log(q_gold / mean of the other q) at the loss's minimum
        p = q, for a target whose prior varies over the vocabulary, where it depends on the gold
        piece (None: one value for every token, optimum_gap(); no fixed target; or eps 0)."""
        coef = self.kernel(eps, vocab) if eps > 0 else None
        if coef is None or not torch.is_tensor(coef[1]) or self.rows(eps, vocab) is not None:
            return None
        gold, prior = coef
        q_gold = gold + prior.double()[labels]
        return torch.log(q_gold) - torch.log((1.0 - q_gold) / (vocab - 1))

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

    def label(self, amount: str, params: dict) -> str:
        """The report's name of the objective at strength `amount` (e.g. '0.1', '0→0.1 over
        1500'), naming the parameters in config_keys (eps 0 is named by Smoothing.label)."""
        return f"{self.symbol} {amount} ({self.name})"

    def run_suffix(self, params: dict | None = None) -> str:
        """What run names add for this convention and its parameters: '-<name>' (the default
        adds nothing)."""
        return f"-{self.name}"


CONVENTIONS: dict[str, Convention] = {}
DEFAULT = "uniform"


def register(convention: Convention) -> Convention:
    """Add a convention under its name (a name already taken is refused)."""
    if convention.name in CONVENTIONS:
        raise ValueError(f"smoothing convention {convention.name!r} is already registered")
    CONVENTIONS[convention.name] = convention
    return convention


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


def gap_notes(present) -> str:
    """Sentences for the conventions in `present` (names) that have no optimum formula."""
    present = set(present)
    notes = [get(n).gap_note for n in CONVENTIONS if n in present]
    return "".join(f"{n[0].upper()}{n[1:]}. " for n in dict.fromkeys(notes) if n)


# The eps schedule's parameters in a spec (TrainConfig smoothing_ramp, _start, _ramp_shape).
RAMP_KEYS = ("ramp", "ramp_start", "ramp_shape")


def ramp_factor(update: int, length: int, shape: str) -> float:
    """How far along a ramp of `length` updates eps is before update `update` + 1: 0 at the
    start, 1 from update `length` on; linear, or cosine (0.5 * (1 - cos(pi * x)))."""
    x = min(max(update, 0) / length, 1.0)
    return x if shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * x))


@dataclass(frozen=True)
class Smoothing:
    """A run's training objective: convention, strength, the convention's parameters and an
    optional eps schedule (params ramp, ramp_start, ramp_shape)."""

    convention: str = DEFAULT
    eps: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, train) -> Smoothing:
        """The objective a TrainConfig (or anything with its smoothing keys) trains."""
        convention = get(train.smoothing_type)
        params = {k: plain(getattr(train, k)) for k in convention.config_keys}
        params = {k: v for k, v in params.items() if v is not None}  # options not taken
        if getattr(train, "smoothing_ramp", 0):
            params.update(
                ramp=train.smoothing_ramp,
                ramp_start=float(train.smoothing_start),
                ramp_shape=train.smoothing_ramp_shape,
            )
        params.update(kd_params(train))  # a distilled run's teacher, alpha and T
        return cls(train.smoothing_type, float(train.smoothing), params)

    @classmethod
    def from_dict(cls, spec: dict) -> Smoothing:
        rest = {k: v for k, v in spec.items() if k not in ("convention", "eps")}
        return cls(spec.get("convention", DEFAULT), float(spec["eps"]), rest)

    def to_dict(self) -> dict[str, Any]:
        return {"convention": self.convention, "eps": self.eps, **self.params}

    @property
    def ramp(self) -> int:
        """Updates over which eps rises from ramp_start to eps (0: eps throughout)."""
        return int(self.params.get("ramp", 0))

    def eps_at(self, update: int) -> float:
        """eps for the update after `update` updates: a pure function of the update number,
        so a resumed run smooths exactly as one that never stopped."""
        if not self.ramp:
            return self.eps
        start = float(self.params.get("ramp_start", 0.0))
        shape = self.params.get("ramp_shape", "linear")
        return start + (self.eps - start) * ramp_factor(update, self.ramp, shape)

    @property
    def plain(self) -> bool:
        """Whether this is the unsmoothed NLL (eps 0 with no parameters, any convention)."""
        return self.eps == 0 and not self.params

    @property
    def label(self) -> str:
        """The stable name of the objective: 'eps 0 (no smoothing)', 'eps 0.1', 'eps 0.1
        (fairseq)', 'eps 0→0.1 over 1500'; parameters the convention does not name itself are
        listed after it, so a spec with parameters never shares its label (its report row)
        with the constant eps of the same convention."""
        if self.plain:
            return "eps 0 (no smoothing)"
        if self.eps == 0 and set(self.params) <= set(KD_KEYS):  # no smoothing, distilled
            return "eps 0" + kd_label(self.params)
        convention = get(self.convention)
        amount = f"{self.eps:g}"
        if self.ramp:
            start = float(self.params.get("ramp_start", 0.0))
            amount = f"{start:g}→{self.eps:g} over {self.ramp}"
            amount += " (cosine)" if self.params.get("ramp_shape") == "cosine" else ""
        text = convention.label(amount, self.params)
        shown = set(convention.config_keys) | set(RAMP_KEYS) | set(KD_KEYS)
        rest = {k: v for k, v in self.params.items() if k not in shown}
        if rest:
            text += f" [{', '.join(f'{k}={v}' for k, v in sorted(rest.items()))}]"
        return text + kd_label(self.params)

    @property
    def short(self) -> str:
        """The label without the note that eps 0 is no smoothing: 'eps 0', 'eps 0.1', ..."""
        return "eps 0" if self.plain else self.label

    def run_suffix(self) -> str:
        """What the run's name adds to ls<eps>: the convention's suffix, then the schedule's
        (-ramp1500, -ramp1500from0.05, -ramp1500cos)."""
        text = get(self.convention).run_suffix(self.params)
        if self.ramp:
            start = float(self.params.get("ramp_start", 0.0))
            text += f"-ramp{self.ramp}" + (f"from{exact(start)}" if start else "")
            text += "cos" if self.params.get("ramp_shape") == "cosine" else ""
        return text + kd_suffix(self.params)

    def optimum_gap(self, vocab: int) -> float | None:
        """The optimum logit gap of the eps the run ends with."""
        return get(self.convention).optimum_gap(self.eps_at(self.ramp), vocab)
