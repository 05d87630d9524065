"""Reading a YAML config file: one NMTError for a missing, unreadable or invalid file, and a key
given twice refused rather than silently kept once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nmt.errors import NMTError


class _DuplicateKey(Exception):
    """A mapping key given twice in a YAML file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping (PyYAML keeps the last
    silently, so a repeated section would lose the first one's values)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(f"'{key}' is given twice (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; a missing or unparsable file raises NMTError."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise NMTError(f"config file {path} {what}; pass --config with a file from configs/")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NMTError(
            f"config file {path} is not a text file (not UTF-8); pass a YAML file such as "
            "configs/multi30k_tiny.yaml"
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except _DuplicateKey as exc:
        raise NMTError(f"config file {path}: {exc}; keep one of them") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise NMTError(
            f"config file {path} is not valid YAML{where}; fix it or start from configs/"
        ) from None
