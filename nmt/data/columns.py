"""Where a split keeps its pairs: flat {src, tgt} columns or a nested translation column,
checked row by row where the column has no one schema."""

from __future__ import annotations

from nmt.errors import NMTError


def nested_column(ds, split: str, src: str, tgt: str) -> bool:
    """Whether the pairs sit in a nested 'translation' column (else flat {src, tgt} columns)."""
    columns = ds.column_names
    if src in columns and tgt in columns:
        return False
    if "translation" in columns:
        feature = ds.features["translation"]  # a dict of strings, or a Translation feature
        langs = getattr(feature, "languages", None) or getattr(feature, "keys", lambda: None)()
        if langs is None:  # rows with different languages: no one schema for the column
            _first_bad_row(ds, split, src, tgt)
            return True
        langs = list(langs)
        if src in langs and tgt in langs:
            return True
    else:
        langs = columns
    raise NMTError(
        f"split '{split}' has no {src}->{tgt} pairs: its languages are "
        f"{', '.join(langs)}; pick --src and --tgt among them"
    )


def _first_bad_row(ds, split: str, src: str, tgt: str) -> None:
    """Refuse a 'translation' column whose rows do not all hold both languages, naming the
    first such row."""
    for number, row in enumerate(ds["translation"], 1):
        have = sorted(row) if isinstance(row, dict) else []
        if src not in have or tgt not in have:
            missing = [lang for lang in (src, tgt) if lang not in have]
            raise NMTError(
                f"split '{split}' row {number}: its translation has no {' or '.join(missing)} "
                f"(it has {', '.join(have) or 'nothing'}); every row needs both {src} and "
                f"{tgt}: fix or remove that row"
            )


def batch_pairs(batch: dict, nested: bool, src: str, tgt: str) -> tuple[list, list]:
    """Source and target texts of a column batch; a missing side is None."""
    if nested:
        pairs = batch["translation"]
        return [p.get(src) for p in pairs], [p.get(tgt) for p in pairs]
    return batch[src], batch[tgt]


def usable(s, t) -> bool:
    return isinstance(s, str) and isinstance(t, str) and bool(s.strip()) and bool(t.strip())


def split_pairs(ds, split: str, src: str, tgt: str) -> tuple[list, list]:
    """Source and target columns of one split: flat {src, tgt} or nested 'translation'."""
    nested = nested_column(ds, split, src, tgt)
    return batch_pairs(ds[:], nested, src, tgt)
