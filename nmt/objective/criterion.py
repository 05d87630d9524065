"""What the update step asks of a criterion (fairseq's idea at this project's scale)."""

from __future__ import annotations

import torch
from torch import nn


class Criterion(nn.Module):
    """Turns logits (B, T-1, V) and target ids (B, T) into a dict of tensors.

    forward() returns at least `loss` (what is differentiated, a sum over the batch's target
    tokens) and `num_tokens`; every key named in `logged` is summed over an update, across
    accumulation and ranks, and reduce() turns an interval's sums into the scalars logged to
    train.log and TensorBoard. A criterion may hold modules of its own (a frozen teacher): the
    update step moves it to the device and never optimises its parameters.
    """

    logged: tuple[str, ...] = ("loss",)
    pad_id: int = 0
    wants_batch: bool = False  # forward(logits, target_ids, batch=Batch): it reads the source

    def reduce(self, sums: dict[str, float], tokens: int) -> dict[str, float]:
        """The scalars to log from an interval's sums over `tokens` target tokens."""
        return {key: value / tokens for key, value in sums.items()}

    def at_update(self, update: int) -> None:
        """Called before each update with the number of updates done (a schedule's clock)."""

    def scalars(self) -> dict[str, float]:
        """Values of its own to log beside an interval's means (e.g. a scheduled eps)."""
        return {}

    def optimum_prob_gaps(self, target_ids: torch.Tensor) -> torch.Tensor | None:
        """Per non-pad target token, the prob gap at the loss's minimum where it varies by
        token (evaluation averages it as optimal_prob_gap); None: no such value."""
        return None

    def resume_state(self) -> dict | None:
        """What a resume needs of this criterion beyond its construction (None: nothing)."""
        return None

    def load_resume_state(self, state: dict | None) -> None:
        """Restore resume_state()'s dict; None from a checkpoint written before it existed."""

    def sums(self, out: dict[str, torch.Tensor]) -> list[float]:
        """The logged values of one forward's output, in the order of `logged`."""
        return [out[key].item() for key in self.logged]
