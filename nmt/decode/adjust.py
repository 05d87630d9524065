"""What search scores: the model's log-probabilities, or an inference-time change of them.

- Temperature (Guo et al., 2017): log_softmax(logits / T). It never changes an argmax, so
  greedy output is the same at every T; beam search ranks sums of log-probabilities, which it
  does change.
- Rectify (Liang, Wang and Cao, 2022, "The implicit length bias of label smoothing on beam
  search decoding"): a model trained with a smoothed target q = gold * one_hot + prior is, at
  the loss's minimum, q = gold * p + prior for the data's distribution p. Rectification
  inverts that before search: p = max(q - prior, 0) / gold, renormalised over the vocabulary.
  Entries the inversion sends to 0 get float32's smallest normal number instead (log about
  -87.3), so every row keeps finite scores and a row forced to end still can.

Each is a callable from float32 logits (N, V) to log-probabilities (N, V) that
search.StepDecoder applies at every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nmt.errors import NMTError
from nmt.objective import smoothing as registry
from nmt.objective.smoothing import Smoothing

TINY = torch.finfo(torch.float32).tiny  # what a rectified probability of 0 becomes


def check_temperature(value: float, flag: str = "--temperature") -> float:
    """value if it is a usable temperature (finite, > 0), else one NMTError."""
    if not (math.isfinite(value) and value > 0):
        raise NMTError(f"{flag} must be a finite number > 0, got {value}; 1 leaves the model as is")
    return float(value)


class Temperature:
    """log_softmax(logits / T)."""

    def __init__(self, temperature: float):
        self.temperature = check_temperature(temperature)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits / self.temperature, dim=-1)

    def __repr__(self) -> str:
        return f"Temperature({self.temperature:g})"


class Rectify:
    """log of max(softmax(logits) - prior, 0) / gold, renormalised (see the module's text).

    gold: the target's weight on the gold entry; prior: the float or (V,) mass every entry
    gets (the smoothing convention's fused-kernel coefficients, nmt.objective.smoothing).
    """

    def __init__(self, gold: float, prior: float | torch.Tensor):
        if not 0.0 < gold <= 1.0:
            raise ValueError(f"the gold weight must be in (0, 1], got {gold}")
        self.gold, self.prior = float(gold), prior

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        # float64: in float32, q - prior leaves rounding noise near 1e-8 where p is 0.
        q = F.softmax(logits.double(), dim=-1)  # (N, V)
        prior = self.prior.to(q) if torch.is_tensor(self.prior) else self.prior
        p = (q - prior).clamp_min(TINY) / self.gold  # (N, V)
        return F.log_softmax(p.log(), dim=-1).to(logits.dtype)  # renormalised

    def __repr__(self) -> str:
        prior = "a (V,) prior" if torch.is_tensor(self.prior) else f"{self.prior:.3g}"
        return f"Rectify(gold {self.gold:.4g}, prior {prior})"


def rectifier(state: dict, cfg) -> Rectify:
    """The Rectify of a checkpoint's training objective (its eps at the checkpoint's update),
    or one NMTError saying why there is nothing to rectify."""
    spec = Smoothing.of(cfg.train)
    eps = spec.eps_at(int(state.get("step", 0)))
    if eps == 0.0:
        raise NMTError(
            "--rectify-smoothing: this checkpoint was trained without label smoothing "
            f"({spec.label}), so there is nothing to rectify; leave the flag out"
        )
    convention = registry.get(spec.convention)
    base = (state.get("criterion") or {}).get("base")
    if convention.needs_base:
        if base is None:
            raise NMTError(
                f"--rectify-smoothing: the checkpoint lacks the {spec.convention} distribution "
                "its smoothing spread eps by; it cannot be rectified"
            )
        convention = convention.bind(spec.params, base.float())
    else:
        convention = convention.bind(spec.params)
    vocab = int(state["vocab_size"])
    coef = convention.kernel(eps, vocab)
    if coef is None or convention.rows(eps, vocab) is not None:
        raise NMTError(
            f"--rectify-smoothing needs a fixed smoothed target, and {spec.label} has none "
            "(its target depends on the model's own output); leave the flag out"
        )
    return Rectify(*coef)


ANALYSIS = "analysis.json"  # python -m nmt.analyze's per-run file, beside the checkpoint


def parse_temperature(text: str | None) -> float | str | None:
    """--temperature's value: a number, 'fitted', or None; one NMTError for anything else."""
    if text is None or text == "fitted":
        return text
    try:
        value = float(text)
    except ValueError:
        raise NMTError(f"--temperature must be a number > 0 or 'fitted', got {text!r}") from None
    return check_temperature(value)


def fitted_temperature(checkpoint: str, state: dict) -> float:
    """The temperature python -m nmt.analyze fitted for this checkpoint (its run folder's
    analysis.json), or one NMTError saying how to get one."""
    import json
    from pathlib import Path

    folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    path = folder / ANALYSIS
    hint = f"run python -m nmt.analyze {folder} --only temperature first, or give a number"
    try:
        fit = json.loads(path.read_text(encoding="utf-8")).get("temperature")
    except FileNotFoundError:
        raise NMTError(f"--temperature fitted: {path} does not exist; {hint}") from None
    except (OSError, ValueError) as exc:
        raise NMTError(f"--temperature fitted: cannot read {path} ({exc}); {hint}") from None
    if not isinstance(fit, dict) or not isinstance(fit.get("fitted"), (int, float)):
        raise NMTError(f"--temperature fitted: {path} holds no fitted temperature; {hint}")
    if fit.get("step") != state.get("step"):
        raise NMTError(
            f"--temperature fitted: {path} was fitted on the checkpoint of update "
            f"{fit.get('step')}, not on this one (update {state.get('step')}); {hint}"
        )
    return check_temperature(float(fit["fitted"]))


def scorer_for(temperature: float | str | None, rectify: bool, checkpoint: str, state, cfg):
    """translate.py's scorer: Temperature, Rectify or None (the model's own log-probs)."""
    if rectify:
        return rectifier(state, cfg)
    if temperature == "fitted":
        return Temperature(fitted_temperature(checkpoint, state))
    return None if temperature is None else Temperature(float(temperature))
