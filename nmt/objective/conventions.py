"""The smoothing conventions the toolkit ships, each one class registered in the registry
(nmt.objective.smoothing): the uniform default and fairseq's form, the confidence penalty, and
the variants the label-smoothing literature compares with them:

- unigram: eps spread by the target side's piece frequencies (Pereyra et al., 2017);
- masked: eps only on pieces the target side uses (Chen et al., ACL 2022);
- prior: eps spread by a distribution the user gives in a file (class-weighted smoothing);
- graduated: eps per token by the model's own probability of it (Wang et al., ACL 2020).
"""

from __future__ import annotations

import math

import torch

from nmt.errors import NMTError
from nmt.objective import priors
from nmt.objective.smoothing import Convention, Kernel, Rows, register


class Uniform(Convention):
    """(1 - eps) * one_hot + eps / K over all K entries: F.cross_entropy(label_smoothing=eps)."""

    name = "uniform"
    help = "uniform (eps/K to every entry, the default)"
    optimum_note = "log((1 - eps + eps/K) / (eps/K)) for uniform smoothing over K entries"

    def kernel(self, eps: float, vocab: int) -> Kernel:
        return 1.0 - eps, eps / vocab

    def label(self, amount: str, params: dict) -> str:
        return f"eps {amount}"

    def run_suffix(self, params: dict | None = None) -> str:
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

    def rows(self, eps: float, vocab: int) -> Rows | None:
        """Per-token (gold, scale) of the target from the gold token's probability, for a
        convention whose eps depends on the token (None: the kernel's constants hold)."""
        return None

    def per_token(self, lprobs: torch.Tensor, nll: torch.Tensor, eps: float) -> torch.Tensor:
        entropy = -(lprobs.exp() * lprobs).sum(dim=-1)  # (N,)
        return nll - eps * entropy

    def optimum_gap(self, eps: float, vocab: int) -> float | None:
        return math.inf if eps == 0.0 else None

    def label(self, amount: str, params: dict) -> str:
        return f"beta {amount} (confidence penalty)"


class _Distributed(Convention):
    """(1 - eps) * one_hot + eps * u, u a (K,) distribution bound from the data or a file."""

    needs_base = True
    gap_note = (
        "unigram, masked and prior smoothing have no single optimum gap: at the minimum "
        "p = q, and the gap log(q_gold / mean of the other q) depends on the gold piece; their "
        "optimum gap is its mean over the split's target tokens, to compare with the prob gap"
    )

    def spread(self, vocab: int) -> torch.Tensor:
        """The bound (K,) distribution u, checked against the vocabulary."""
        if self.base is None or self.base.numel() != vocab:
            size = "none" if self.base is None else self.base.numel()
            raise ValueError(f"{self.name}: bound to a distribution of {size}, not {vocab}")
        return self.base

    def kernel(self, eps: float, vocab: int) -> Kernel:
        if eps == 0.0:
            return 1.0, 0.0
        return 1.0 - eps, eps * self.spread(vocab)

    def optimum_gap(self, eps: float, vocab: int) -> float | None:
        return math.inf if eps == 0.0 else None  # per gold piece: no single value


class Unigram(_Distributed):
    """u: the target side's piece frequencies in the training split, add-one smoothed, with
    PAD and BOS at 0 (Pereyra et al., 2017, smooth toward the unigram distribution)."""

    name = "unigram"
    help = "unigram (eps by the target side's piece frequencies)"

    def distribution(self, train, tok, train_split) -> torch.Tensor:
        return priors.unigram_base(priors.target_counts(train_split, len(tok)))


class Prior(_Distributed):
    """u: the weights of --train.smoothing_prior FILE ('piece<TAB>weight' lines), normalised;
    pieces not listed get 0 (the project seeds' class-weighted smoothing)."""

    name = "prior"
    help = "prior (eps by the weights of --train.smoothing_prior FILE)"
    config_keys = ("smoothing_prior", "smoothing_prior_sha256")

    def distribution(self, train, tok, train_split) -> torch.Tensor:
        return priors.prior_base(train.smoothing_prior, tok)

    def label(self, amount: str, params: dict) -> str:
        return f"eps {amount} (prior {str(params.get('smoothing_prior_sha256'))[:8]})"

    def run_suffix(self, params: dict | None = None) -> str:
        return f"-prior-{str((params or {}).get('smoothing_prior_sha256'))[:8]}"


class Masked(_Distributed):
    """eps only over M, the pieces the training split's target side uses (and EOS); pieces
    seen only in source sentences get 0 (Chen et al., ACL 2022). Form 'uniform': eps/|M| to
    every entry of M, gold included (as the uniform default does over all K); form 'chen': the
    published criterion's gold 1 - eps and eps/(|M| - 1) to every other entry of M (a gold
    piece outside M, possible on validation or test only, then gets 1 - eps - eps/(|M| - 1)
    and every entry of M eps/(|M| - 1)); both sum to 1."""

    name = "masked"
    help = "masked (eps/|M| over the pieces the target side uses)"
    config_keys = ("masked_form",)

    def distribution(self, train, tok, train_split) -> torch.Tensor:
        return priors.masked_base(priors.target_counts(train_split, len(tok)))

    def kernel(self, eps: float, vocab: int) -> Kernel:
        if eps == 0.0:
            return 1.0, 0.0
        mask = self.spread(vocab)
        size = float(mask.sum())
        if self.params.get("masked_form", "uniform") == "chen":
            other = eps / (size - 1.0)
            return 1.0 - eps - other, other * mask
        return 1.0 - eps, (eps / size) * mask

    def label(self, amount: str, params: dict) -> str:
        form = params.get("masked_form", "uniform")
        return f"eps {amount} (masked{', chen' if form == 'chen' else ''})"

    def run_suffix(self, params: dict | None = None) -> str:
        chen = (params or {}).get("masked_form", "uniform") == "chen"
        return "-masked-chen" if chen else "-masked"


# Wang et al. (2020): tokens the model gives p > 0.7 get 3 eps (0.3), p < 0.3 get 0, the rest eps.
GRADUATED_BOUNDS = (0.3, 0.7)
GRADUATED_FACTORS = (0.0, 3.0)


class Graduated(Convention):
    """Uniform smoothing with a per-token eps chosen by the model's own probability p of the
    gold token (detached), or a frozen reference checkpoint's (graduated_reference):
    factor_low * eps below bound_low, factor_high * eps above bound_high, eps between (Wang et
    al., ACL 2020: 0 / 0.1 / 0.3 at p 0.3 / 0.7)."""

    name = "graduated"
    help = "graduated (per-token eps by the model's confidence, Wang et al.)"
    config_keys = (
        "graduated_bounds",
        "graduated_factors",
        "graduated_reference",
        "graduated_reference_sha256",
    )
    gap_note = "graduated smoothing has no closed-form optimum (eps follows the model's own p)"

    def settings(self) -> tuple[float, float, float, float]:
        low, high = self.params.get("graduated_bounds", GRADUATED_BOUNDS)
        f_low, f_high = self.params.get("graduated_factors", GRADUATED_FACTORS)
        return float(low), float(high), float(f_low), float(f_high)

    def kernel(self, eps: float, vocab: int) -> Kernel:
        return (1.0, 0.0) if eps == 0.0 else (1.0 - eps, eps / vocab)

    def rows(self, eps: float, vocab: int) -> Rows | None:
        if eps == 0.0:
            return None
        low, high, f_low, f_high = self.settings()

        def per_token(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            e = torch.full_like(p, eps)
            e = torch.where(p > high, eps * f_high, torch.where(p < low, eps * f_low, e))
            return 1.0 - e, e / eps  # the kernel's prior is eps/K per entry: e/K each

        return per_token

    def optimum_gap(self, eps: float, vocab: int) -> float | None:
        return math.inf if eps == 0.0 else None

    def label(self, amount: str, params: dict) -> str:
        low, high, f_low, f_high = self.bind(params).settings()
        ref = params.get("graduated_reference_sha256")
        by = f", p of reference {ref[:8]}" if ref else ""
        return f"eps {amount} (graduated x{f_low:g}/x1/x{f_high:g} at p {low:g}/{high:g}{by})"

    def run_suffix(self, params: dict | None = None) -> str:
        low, high, f_low, f_high = self.bind(params or {}).settings()
        ref = (params or {}).get("graduated_reference_sha256")
        text = "-graduated"
        if (low, high, f_low, f_high) != (*GRADUATED_BOUNDS, *GRADUATED_FACTORS):
            text += f"-{low:g}-{high:g}-x{f_low:g}-{f_high:g}"
        return text + (f"-ref{ref[:8]}" if ref else "")


for _convention in (
    Uniform(),
    Fairseq(),
    ConfidencePenalty(),
    Unigram(),
    Masked(),
    Prior(),
    Graduated(),
):
    register(_convention)
