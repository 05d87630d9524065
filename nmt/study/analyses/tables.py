"""The analyses of many runs grouped by objective: reading analysis.json, the rows (mean and
sample standard deviation over seeds) and the four answers the report opens with."""

from __future__ import annotations

import json
from pathlib import Path

from nmt.decode.adjust import ANALYSIS
from nmt.errors import NMTError
from nmt.study.stats import summarise


def read_analysis(run_dir: Path) -> dict | None:
    """A run folder's analysis.json (None when it has none)."""
    path = Path(run_dir) / ANALYSIS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NMTError(
            f"cannot read {path} ({exc}); rewrite it with python -m nmt.analyze"
        ) from None


def groups(analyses: list[dict]) -> list[tuple[str, list[dict]]]:
    """(label, the runs' analyses sorted by seed), eps 0 first, then by convention and eps."""
    by: dict[str, list[dict]] = {}
    for a in analyses:
        by.setdefault(a["label"], []).append(a)

    def order(label: str) -> tuple:
        spec = by[label][0]["smoothing"]
        return (spec["eps"] != 0, spec["convention"] != "uniform", spec["convention"],
                spec["eps"], label)  # fmt: skip

    return [(k, sorted(by[k], key=lambda a: a["seed"])) for k in sorted(by, key=order)]


def stat(members: list[dict], *path) -> dict:
    """summarise() of the value at path (keys, or a callable) in each member that has it."""
    values = []
    for m in members:
        value = m
        for key in path:
            value = key(value) if callable(key) else (value or {}).get(key)
        values.append(value if isinstance(value, (int, float)) else None)
    return summarise(values)


def curve_value(part: str, beam: int, alpha: float, key: str):
    """A getter of one metric of one (beam, alpha) row of a part's curve."""

    def get(analysis: dict):
        section = analysis.get(part) or {}
        rows = section.get("rows") if part != "temperature" else section.get("bleu")
        for row in rows or []:
            if row["beam"] == beam and row["alpha"] == alpha:
                return row[key]
        return None

    return get


def fmt(s: dict, spec: str = "{:.2f}", signed: bool = False) -> str:
    """mean ± sd (sd only with two or more seeds), or – where there is no value."""
    if s["mean"] is None:
        return "–"
    spec = spec.replace("{:", "{:+") if signed else spec
    text = spec.format(s["mean"])
    return text if s["n"] < 2 else f"{text} ± {spec.replace('+', '').format(s['std'])}"
