"""Run-directory preparation and logging setup shared by the command-line entry points."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from nmt.config import Config
from nmt.errors import NMTError

# What a finished or running run leaves behind; --overwrite removes exactly these.
RUN_FILES = (
    "checkpoint_*.pt",
    "events.out.tfevents.*",
    "train.log",
    "results.json",
    "*.hyp.txt",
    "*.ref.txt",
    "config.yaml",
    "spm.model",
)


def default_run_dir(cfg: Config) -> Path:
    """runs/<dataset>-<src>-<tgt>-ls<eps>, e.g. runs/multi30k-en-de-ls0.1."""
    d = cfg.data
    source = d.train_file or d.dataset or "multi30k"
    name = Path(source).stem if d.train_file else Path(source.rstrip("/")).name
    return Path("runs") / f"{name}-{d.src}-{d.tgt}-ls{cfg.train.smoothing:g}"


def prepare_run_dir(cfg: Config, overwrite: bool) -> Path:
    """Create the run directory; refuse one that already holds a run unless overwrite is set."""
    run_dir = Path(cfg.train.run_dir) if cfg.train.run_dir else default_run_dir(cfg)
    if run_dir.exists() and not run_dir.is_dir():
        raise NMTError(f"--run-dir {run_dir} is a file; choose a directory")
    held = [p for p in ("checkpoint_last.pt", "results.json") if (run_dir / p).exists()]
    if held and not overwrite:
        raise NMTError(
            f"run directory {run_dir} already holds a run ({', '.join(held)}); "
            "choose another --run-dir or pass --overwrite to replace it"
        )
    if held:
        for pattern in RUN_FILES:
            for path in run_dir.glob(pattern):
                path.unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NMTError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    return run_dir


class TqdmHandler(logging.Handler):
    """Writes log lines above an active progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(log_file: Path | None = None, level: int = logging.INFO) -> None:
    """Log lines to stderr (through tqdm so bars stay intact) and optionally to a file."""
    fmt = logging.Formatter(
        "%(asctime)s | %(levelname)s | %(name)s | %(message)s", "%Y-%m-%d %H:%M:%S"
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
    for noisy in ("datasets", "fsspec", "filelock", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
