"""A few thousand CPU updates: memory stays flat and every batch of every epoch is consumed."""

from __future__ import annotations

import pytest

from .conftest import MULTI30K, run
from .test_cli import scalars

STEPS = 2000


@pytest.mark.slow
def test_long_run_memory_is_flat(multi30k, tmp_path):
    run_dir = tmp_path / "run"
    proc = run(
        "train.py", "--config", "configs/toy.yaml", "--dataset", str(MULTI30K),
        "--max-steps", str(STEPS), "--valid-every", "500", "--train.log_every", "100",
        "--max-tokens", "256", "--data.max_valid_pairs", "100", "--run-dir", str(run_dir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    tags = scalars(run_dir)
    peak = dict(tags["train/peak_rss_mb"])
    # Warm-up: the first validation (update 500) has run, with its decoding buffers.
    after_warmup, at_end = peak[600], peak[STEPS]
    assert at_end <= 1.10 * after_warmup, f"peak RSS grew from {after_warmup} to {at_end} MiB"
    assert [s for s, _ in tags["train/loss"]] == list(range(100, STEPS + 1, 100))
    log = (run_dir / "train.log").read_text()
    epochs = [int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if "done at update" in line]
    assert len(epochs) >= 3 and epochs == sorted(set(epochs))  # whole epochs, one after another
    assert all(v == 0 for _, v in tags["train/skipped_updates"])
