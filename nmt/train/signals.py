"""Stop signals: SIGTERM/SIGINT end training after the current update, checkpoint saved."""

from __future__ import annotations

import contextlib
import logging
import signal
from pathlib import Path

log = logging.getLogger(__name__)


class Preempted(Exception):
    """Training stopped on a signal after saving checkpoint_last.pt; the same command resumes."""

    def __init__(self, signum: int, step: int, run_dir: Path, scoring: bool = False):
        self.signum, self.step, self.run_dir = signum, step, run_dir
        name, last = signal.Signals(signum).name, run_dir / "checkpoint_last.pt"
        if scoring:
            super().__init__(
                f"stopped by {name} during the final scoring; training is complete (update "
                f"{step}, saved in {last}); run the same command to score it and write "
                "results.json"
            )
            return
        super().__init__(
            f"stopped by {name} after update {step}; saved {last}; run the same command to resume"
        )


class _Signals:
    received = 0


class Interrupted(Exception):
    """A stop signal during work that keeps no state worth finishing (the final scoring)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _handling(handler):
    """SIGTERM and SIGINT go to handler inside the block (main thread only)."""
    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals stay as they are
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def stop_at_once():
    """SIGTERM/SIGINT raise Interrupted where the process is."""

    def handler(signum, frame):
        raise Interrupted(signum)

    with _handling(handler):
        yield


@contextlib.contextmanager
def catch_stop_signals():
    """SIGTERM/SIGINT set a flag instead of killing; a second SIGINT interrupts at once."""
    flags = _Signals()

    def handler(signum, frame):
        if flags.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flags.received = signum
        log.warning("%s received: stopping after this update", signal.Signals(signum).name)

    with _handling(handler):
        yield flags
