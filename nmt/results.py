"""results.json: the one schema train.py writes and nmt.report reads.

A run's results are its objective (the smoothing spec and the label the registry derives from
it), its seed and vocabulary, the best checkpoint's metrics per split, the validation history,
the final beam search's scores and the data files. Version 1 (before the objective was
recorded) carried only `smoothing` and `smoothing_type`; read() gives every version the same
fields, so a reader never branches on the version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nmt.errors import NMTError
from nmt.files import atomic_write
from nmt.objective.smoothing import DEFAULT, Smoothing

FORMAT_VERSION = 2
FILE = "results.json"

# What every results.json holds (version 1 included).
REQUIRED = ("smoothing", "seed", "step", "last_step", "valid")
# What each split's metrics must hold; bleu_beam and prob_gap came later and may be missing.
SPLIT_KEYS = (
    "bleu",
    "chrf",
    "bleu_lc",
    "nll_loss",
    "ppl",
    "accuracy",
    "ece",
    "confidence",
    "entropy",
    "logit_gap",
    "reliability",
    "calibration_accuracy",
    "bleu_signature",
    "chrf_signature",
    "bleu_lc_signature",
)


def make(objective: Smoothing, vocab_size: int, **fields: Any) -> dict[str, Any]:
    """A results dict in the order the file shows it: the objective, then fields as given
    (seed, step, last_step, train_minutes, command, valid, test, history, data_files)."""
    return {
        "format_version": FORMAT_VERSION,
        "smoothing": objective.eps,
        "smoothing_type": objective.convention,
        "objective": objective.to_dict(),
        "label": objective.label,
        "seed": fields.pop("seed"),
        "vocab_size": vocab_size,
        "optimal_logit_gap": objective.optimum_gap(vocab_size),
        **fields,
    }


def write(run_dir: Path, results: dict[str, Any]) -> Path:
    """Write RUN_DIR/results.json atomically (a crash leaves the old file or the new one)."""
    path = Path(run_dir) / FILE
    data = (json.dumps(results, indent=2) + "\n").encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data), mode=0o644)
    return path


def read(path: Path) -> dict[str, Any]:
    """results.json checked for what a report reads, with `objective`, `smoothing_type` and
    `label` filled in for version 1; a bad file is one NMTError."""
    try:
        run = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NMTError(
            f"{path} is not readable JSON ({exc}); rerun train.py for that run"
        ) from None
    if not isinstance(run, dict):
        raise NMTError(f"{path} is not a results.json written by train.py")
    missing = [k for k in REQUIRED if k not in run]
    if missing:
        raise NMTError(f"{path} lacks {', '.join(missing)}: it is incomplete; rerun that run")
    if not isinstance(run["smoothing"], (int, float)) or isinstance(run["smoothing"], bool):
        raise NMTError(f"{path}: 'smoothing' is not a number")
    _check_splits(run, path)
    _fill_objective(run, path)
    return run


def _check_splits(run: dict, path: Path) -> None:
    for split in ("valid", "test"):
        metrics = run.get(split)
        if split == "valid" or metrics:
            if not isinstance(metrics, dict):
                raise NMTError(f"{path}: '{split}' holds no metrics; rerun that run")
            if "calibration_accuracy" not in metrics:
                raise NMTError(
                    f"{path} was written by an older version without calibration metrics"
                )
            lacking = [k for k in SPLIT_KEYS if k not in metrics]
            if lacking:
                raise NMTError(f"{path}: '{split}' lacks {', '.join(lacking)}; rerun that run")


def _fill_objective(run: dict, path: Path) -> None:
    """Version 1 named its objective by smoothing and smoothing_type alone: the same spec."""
    spec = run.get("objective")
    if spec is None:
        spec = {"convention": run.get("smoothing_type", DEFAULT), "eps": run["smoothing"]}
    if not (isinstance(spec, dict) and isinstance(spec.get("eps"), (int, float))):
        raise NMTError(f"{path}: 'objective' is not a smoothing spec; rerun that run")
    objective = Smoothing.from_dict(spec)
    run["objective"] = objective.to_dict()
    run["smoothing_type"] = objective.convention
    if not isinstance(run.get("label"), str):  # a convention this process has not registered
        run["label"] = objective.label  # raises its NMTError only when the label is needed
