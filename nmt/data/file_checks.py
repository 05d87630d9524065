"""What is wrong with a data file, said before datasets or pandas fail deep inside: an empty
file, a TSV row with a stray field, a JSON Lines line that does not parse, a split that exists
only compressed."""

from __future__ import annotations

import json
from pathlib import Path

from nmt.errors import NMTError


def check_tsv(path: Path) -> None:
    """Every row of a TSV file has as many fields as its header: a stray tab would shift the
    columns (a target read as the source) or fail deep inside pandas."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        header = handle.readline().rstrip("\r\n")
        fields = header.count("\t") + 1
        for number, line in enumerate(handle, 2):
            line = line.rstrip("\r\n")
            if line and line.count("\t") + 1 != fields:
                raise NMTError(
                    f"data file {path} line {number} has {line.count(chr(9)) + 1} tab-separated "
                    f"fields but its header has {fields} ({header.replace(chr(9), ', ')}); fix "
                    "or remove that line"
                )


def refuse_empty(path: Path) -> None:
    """datasets fails obscurely on an empty data file: name the file instead."""
    if path.stat().st_size < 64 and not path.read_bytes().strip():
        raise NMTError(
            f"data file {path} is empty: that split has no pairs; fill it, or remove it "
            "and name another split"
        )


def _bad_json_line(path: Path) -> str | None:
    """'line N: reason' of the first line of a JSON Lines file that does not parse."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as exc:
                    return f"line {number}: {exc.msg} (column {exc.colno})"
    return None


def why_unreadable(paths: list[Path], exc: Exception) -> str:
    for path in paths:
        if path.suffix.lower() == ".jsonl":
            bad = _bad_json_line(path)
            if bad:
                return f"data file {path} is not valid JSON Lines at {bad}; fix or remove that line"
    text = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {text[-1][:200]}" if text else type(exc).__name__
    where = ", ".join(map(str, paths))
    return f"data file {where} could not be read ({reason}); check its format"
