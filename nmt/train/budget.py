"""How long a run trains: its budget in updates, the schedule's horizon, the time budget.

--max-steps, --max-epochs and --max-minutes end a run at whichever comes first; cosine and
linear schedules decay to 0 at the horizon, which a time budget re-estimates from the pace so
far (every rank the same, so every rank has one learning rate and stops at one update).
"""

from __future__ import annotations

import logging
import time

from nmt.train import distributed

log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried


class Horizon:
    """The run's length in updates (0: not known yet), for the schedules that end at it."""

    def __init__(self, steps: int = 0):
        self.steps = steps


def budget_steps(max_steps: int, epoch_steps: int) -> int:
    """The run's length in updates without a time budget: max_steps (0 = none) or the updates
    of max_epochs epochs, whichever ends first; cosine and linear decay to 0 there."""
    return min(max_steps, epoch_steps) if max_steps else epoch_steps


class Budget:
    """The Trainer's clock and stopping rule. Expects cfg, progress, world, update (its
    horizon), budget, started and elapsed_before, and _any_rank()."""

    def _done(self) -> bool:
        t, step = self.cfg.train, self.progress.step
        if t.max_steps and step >= t.max_steps:
            return True
        # Every rank must stop at the same update: the ranks agree on the clock.
        if t.max_minutes and self._any_rank(self.elapsed() >= t.max_minutes * 60):
            log.info("time budget of %g minutes reached at update %d", t.max_minutes, step)
            return True
        return False

    def elapsed(self) -> float:
        """Seconds of training so far: this process since it started, plus earlier ones."""
        return self.elapsed_before + time.monotonic() - self.started

    def _update_horizon(self) -> None:
        """With a time budget, the schedule's end is re-estimated from the pace so far."""
        t, step = self.cfg.train, self.progress.step
        if not t.max_minutes:
            return
        estimate = int(step * t.max_minutes * 60 / max(self.elapsed(), 1e-9))
        (estimate,) = distributed.broadcast((estimate,), self.world)  # one LR on every rank
        self.update.horizon.steps = min(estimate, self.budget)
