"""What a run reports: log lines (terminal and train.log), TensorBoard, memory readings."""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nmt.train.step import StepStats

Reduce = Callable[[dict[str, float], int], dict[str, float]]  # Criterion.reduce

log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried
HPARAMS_SUFFIX = ".hparams"  # the events file that holds the final scores


class TqdmHandler(logging.Handler):
    """Writes log lines above an active progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(
    log_file: Path | None = None, level: int = logging.INFO, rank: int = 0, hold: bool = False
) -> None:
    """Log lines to stderr (through tqdm so bars stay intact) and optionally to a file.

    hold: keep the lines in memory until attach_log_file() names the file (a run that cannot
    start writes nothing into its run directory). Ranks other than 0 of a distributed run log
    warnings and errors only, marked with the rank.
    """
    where = f"rank {rank} | " if rank else ""
    level = max(level, logging.WARNING) if rank else level
    fmt = logging.Formatter(
        f"%(asctime)s | {where}%(levelname)s | %(name)s | %(message)s", "%Y-%m-%d %H:%M:%S"
    )
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = TqdmHandler() if sys.stderr.isatty() else logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    root.addHandler(console)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)
    elif hold:
        held = logging.handlers.MemoryHandler(10**9, flushLevel=logging.CRITICAL + 1)
        held.setFormatter(fmt)
        root.addHandler(held)
    for noisy in ("datasets", "fsspec", "filelock", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def attach_log_file(log_file: Path) -> None:
    """From now on log to log_file too, starting with the lines held by setup_logging(hold=True)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.handlers.MemoryHandler):
            file_handler = logging.FileHandler(log_file)
            file_handler.setFormatter(handler.formatter)
            handler.setTarget(file_handler)
            handler.flush()
            root.removeHandler(handler)
            handler.close()
            root.addHandler(file_handler)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def compiled_graphs() -> int:
    """How many graphs torch.compile has built in this process (each new shape may add one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@dataclass
class Interval:
    """Training sums since the last log line: the criterion's logged sums, tokens, updates."""

    sums: dict[str, float] = field(default_factory=dict)
    tokens: int = 0
    updates: int = 0
    grad_norm: float = 0.0
    skipped: int = 0
    data_time: float = 0.0  # seconds spent building batches (the loop waits on it)
    start: float = field(default_factory=time.perf_counter)

    def add(self, stats: StepStats) -> None:
        self.updates += 1
        if stats.skipped:  # its loss is not a number: count it, keep it out of the means
            self.skipped += 1
            return
        for key, value in stats.sums.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.tokens += stats.tokens
        self.grad_norm += stats.grad_norm

    def elapsed(self) -> float:
        return max(time.perf_counter() - self.start, 1e-9)

    @property
    def loss(self) -> float:
        """The training loss summed over the interval's tokens (0 before any update counted)."""
        return self.sums.get("loss", 0.0)


class NullWriter:
    """What ranks other than 0 log to: nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class Logbook:
    """TensorBoard (rank 0 only, opened at first use) and the train/valid log lines.

    purge_step: the writer drops whatever an interrupted process logged from this step on
    (on a fresh start, anything a run killed before its first checkpoint left behind).
    """

    def __init__(self, folder: Path, main: bool = True, purge_step: int = 1):
        self.folder, self.main, self.purge_step = Path(folder), main, purge_step
        self._writer = None  # nothing is written before the run starts

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = (
                SummaryWriter(str(self.folder), purge_step=self.purge_step)
                if self.main
                else NullWriter()
            )
        return self._writer

    def train(
        self, step: int, epoch: int, iv: Interval, reduce: Reduce, **extra: float
    ) -> dict[str, float]:
        """Log the interval's means at update step: reduce (the criterion's) turns its sums
        into scalars, whatever keys it has; extra: lr, skipped_updates, and optional
        loss_scale / compiled_graphs, in the order the line shows them."""
        counted = max(iv.updates - iv.skipped, 1)
        elapsed = iv.elapsed()
        lr, skipped = extra.pop("lr"), extra.pop("skipped_updates")
        scalars = {
            **reduce(iv.sums, max(iv.tokens, 1)),
            "num_tokens": iv.tokens / counted,
            "tokens_per_sec": iv.tokens / elapsed,
            "lr": lr,
            "grad_norm": iv.grad_norm / counted,
            "skipped_updates": skipped,
            "data_time_frac": iv.data_time / elapsed,
            "peak_rss_mb": peak_rss_mb(),
            **extra,
        }
        for name, value in scalars.items():
            self.writer.add_scalar(f"train/{name}", value, step)
        log.info(
            "train | step %d | epoch %d | %s",
            step,
            epoch,
            " | ".join(f"{k} {v:.4g}" for k, v in scalars.items()),
        )
        return scalars

    def valid(self, step: int, metrics: dict, best_bleu: float, samples: list[tuple]) -> None:
        """Log one validation: its scalars, a table of (source, reference, hypothesis)."""
        from nmt.train.evaluate import VALID_SCALARS

        for name in VALID_SCALARS:
            self.writer.add_scalar(f"valid/{name}", metrics[name], step)
        rows = ["| source | reference | hypothesis |", "|---|---|---|"]
        for cells in samples:
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        self.writer.add_text("valid/samples", "\n".join(rows), step)
        log.info(
            "valid | step %d | loss %.4f | nll_loss %.4f | ppl %.2f | accuracy %.4f | "
            "bleu %.2f | chrf %.2f | best %.2f | %s",
            step,
            metrics["loss"],
            metrics["nll_loss"],
            metrics["ppl"],
            metrics["accuracy"],
            metrics["bleu"],
            metrics["chrf"],
            best_bleu,
            metrics["bleu_signature"],
        )

    def final(self, name: str, step: int, m: dict) -> None:
        """The best checkpoint's scores on one split, at the end of the run."""
        log.info(
            "%s (best checkpoint, step %d) | bleu %.2f | chrf %.2f | nll_loss %.4f | ppl %.2f | %s",
            name,
            step,
            m["bleu"],
            m["chrf"],
            m["nll_loss"],
            m["ppl"],
            m["bleu_signature"],
        )

    def hparams(self, config: dict, results: dict) -> None:
        """TensorBoard's HParams tab: every config value against the final scores."""
        hparams = {}
        for section, values in config.items():
            for key, value in values.items():
                if isinstance(value, list):
                    value = ",".join(map(str, value))
                hparams[f"{section}.{key}"] = "none" if value is None else value
        metric_dict = {}
        for split in ("valid", "test"):
            for key in ("bleu", "chrf", "bleu_lc", "nll_loss", "ppl", "accuracy", "ece"):
                if results.get(split):
                    metric_dict[f"hparam/{split}_{key}"] = results[split][key]
        if not self.main:
            return
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        # One file of its own, replaced whenever the run finishes again (a resumed finished
        # run), so TensorBoard never shows two sets of final scores at step 0.
        for old in self.folder.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}"):
            old.unlink()
        with SummaryWriter(str(self.folder), filename_suffix=HPARAMS_SUFFIX) as writer:
            for summary in hparams_summary(hparams, metric_dict):
                writer.file_writer.add_summary(summary)
            for key, value in metric_dict.items():
                writer.add_scalar(key, value)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
