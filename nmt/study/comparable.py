"""Which runs a report may average: the runs of one row must differ in their seed alone.

Two copies of one run, or runs on other data, another vocabulary, another model or another
budget, would otherwise become "seeds" of one setting with a spread that means nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from nmt.config import flatten
from nmt.errors import NMTError

# Config keys that do not change what a run computes (or that the row's label already fixes).
IGNORED = {
    "train.seed",
    "train.smoothing",
    "train.smoothing_type",
    "train.smoothing_ramp",
    "train.smoothing_start",
    "train.smoothing_ramp_shape",
    "train.smoothing_prior",
    "train.smoothing_prior_sha256",
    "train.masked_form",
    "train.graduated_bounds",
    "train.graduated_factors",
    "train.run_dir",
    "train.log_every",
    "train.num_samples",
    "train.save_every",
    "train.keep_last",
    "train.device",
    "train.compile",
    "data.num_proc",
    "data.cache_dir",
}


def setting(run: dict) -> dict:
    """What must be equal for two runs to be seeds of one setting: the config beyond the seed
    (config.yaml beside results.json, where the run kept it), vocabulary, data files and their
    hashes (where recorded) and the scored references."""
    out = {
        "vocab_size": run.get("vocab_size"),
        "data_files": run.get("data_files"),
        "references": hashlib.sha256("\n".join(run["refs"]).encode()).hexdigest()[:16],
    }
    if run.get("data_sha256") is not None:
        out["data_sha256"] = run["data_sha256"]
    path = Path(run["dir"]) / "config.yaml"
    if path.is_file():
        try:
            saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            saved.pop("data_files", None)
            config = flatten(saved, str(path))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, NMTError):
            raise NMTError(f"{path} is not a readable config.yaml; rerun that run") from None
        out.update({k: v for k, v in config.items() if k not in IGNORED})
    return out


def check_rows(runs: list[dict], allow_mixed: bool = False) -> list[str]:
    """Refuse a row whose runs differ in anything but the seed (unless allow_mixed: then the
    differences are returned, one note per row), and always refuse one seed twice in a row."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["label"], []).append(run)
    notes = []
    for label, members in groups.items():
        seeds: dict = {}
        for run in members:
            if run["seed"] in seeds:
                raise NMTError(
                    f"{seeds[run['seed']]['dir']} and {run['dir']} are both seed {run['seed']} "
                    f"of '{label}': one row would count a run twice; leave one of them out"
                )
            seeds[run["seed"]] = run
        first, base = members[0], setting(members[0])
        for run in members[1:]:
            other = setting(run)
            # A key only one of them has (added to the config since) is no difference.
            keys = sorted(k for k in base.keys() & other.keys() if base[k] != other[k])
            if not keys:
                continue
            shown = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")
            if not allow_mixed:
                raise NMTError(
                    f"{first['dir']} and {run['dir']} would be averaged as seeds of '{label}' "
                    f"but differ in {shown}; compare runs that differ only in their seed, or "
                    "pass --allow-mixed to average them anyway"
                )
            notes.append(f"{label}: {run['name']} differs from {first['name']} in {shown}")
    return notes
