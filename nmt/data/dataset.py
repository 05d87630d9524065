"""Hugging Face dataset loading, column mapping, length filtering and token-bucketed batches."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmt.config import DataConfig
from nmt.data.columns import batch_pairs, nested_column, split_pairs, usable
from nmt.data.sources import (  # noqa: F401 (re-exported: the data API in one place)
    DEFAULT_HUB_DATASET,
    DEFAULT_LOCAL_DIRS,
    default_dataset,
    load_dataset_dict,
)
from nmt.data.tokenizer import EOS_ID, Tokenizer, frame_source, frame_target
from nmt.errors import NMTError

log = logging.getLogger(__name__)

# Bump when what encode_arrow writes changes: older cached tables are then not reused.
ENCODING_VERSION = 2
# What str.splitlines splits on: a sentence holding one would break the line alignment of
# hypothesis and reference files, so each becomes a space when a pair is read.
_LINE_BREAKS = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """text with every line break in it replaced by a space."""
    return _LINE_BREAKS.sub(" ", text)


@dataclass
class Split:
    """An evaluation split in memory (a batching.Pairs): raw text for BLEU references, and the ids
    (tokenizer.frame_source / frame_target)."""

    name: str
    src_text: list[str]
    tgt_text: list[str]
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    files: list[str] = field(default_factory=list)  # what it was read from

    def __len__(self) -> int:
        return len(self.src_ids)

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Source and target lengths in tokens (special tokens included)."""
        return (
            np.fromiter(map(len, self.src_ids), np.int64, len(self)),
            np.fromiter(map(len, self.tgt_ids), np.int64, len(self)),
        )

    def rows(self, indices) -> tuple[list[list[int]], list[list[int]]]:
        """Source and target ids of the given pairs."""
        return [self.src_ids[i] for i in indices], [self.tgt_ids[i] for i in indices]


class ArrowSplit:
    """The training split (a batching.Pairs) as ids in a memory-mapped Arrow table (the
    datasets cache).

    Only the lengths live in memory (two int64 arrays); a batch reads its own rows.
    """

    def __init__(self, name: str, table, src_lens: np.ndarray, tgt_lens: np.ndarray):
        self.name, self.table = name, table  # datasets.Dataset with src_ids, tgt_ids
        self.src_lens, self.tgt_lens = src_lens, tgt_lens
        self.files: list[str] = []  # what it was read from

    def __len__(self) -> int:
        return len(self.src_lens)

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        return self.src_lens, self.tgt_lens

    def rows(self, indices) -> tuple[list[list[int]], list[list[int]]]:
        batch = self.table[[int(i) for i in indices]]
        return batch["src_ids"], batch["tgt_ids"]


def _split(dd, name: str, cfg: DataConfig, limit: int = 0):
    """One split of the DatasetDict (its first `limit` rows when limit > 0)."""
    if name not in dd:
        raise NMTError(
            f"the dataset has no '{name}' split (it has {', '.join(dd) or 'none'}); "
            f"name the split with --data.{'train' if name == cfg.train_split else 'valid'}"
            f"_split or give files with --train-file/--valid-file"
        )
    ds = dd[name]
    return ds.select(range(min(limit, len(ds)))) if limit else ds


def read_split(dd, name: str, cfg: DataConfig, limit: int = 0) -> tuple[list[str], list[str]]:
    """Raw text pairs of one split, rows with an empty or missing side skipped and counted."""
    ds = _split(dd, name, cfg, limit)
    srcs, tgts = split_pairs(ds, name, cfg.src, cfg.tgt)
    keep = [i for i, (s, t) in enumerate(zip(srcs, tgts)) if usable(s, t)]
    if len(keep) < len(srcs):
        log.warning(
            "%s: skipped %d of %d rows with an empty or missing side",
            name,
            len(srcs) - len(keep),
            len(srcs),
        )
    if not keep:
        raise NMTError(f"split '{name}' has no usable {cfg.src}-{cfg.tgt} pairs")
    return [one_line(srcs[i].strip()) for i in keep], [one_line(tgts[i].strip()) for i in keep]


class TrainingText:
    """The usable source sentences, then the target ones, of a split: streamed, never a list."""

    def __init__(self, ds, nested: bool, src: str, tgt: str):
        self.ds, self.nested, self.src, self.tgt = ds, nested, src, tgt
        self.count = 0  # sentences yielded by the latest pass

    def __iter__(self):
        self.count = 0
        for side in (0, 1):
            for batch in self.ds.iter(batch_size=10_000):
                for pair in zip(*batch_pairs(batch, self.nested, self.src, self.tgt)):
                    if usable(*pair):
                        self.count += 1
                        yield one_line(pair[side].strip())


class _Encoder:
    """datasets.map batch function: text pairs -> ids and lengths (length 0: unusable row)."""

    def __init__(self, tok: Tokenizer, nested: bool, src: str, tgt: str):
        self.tok, self.nested, self.src, self.tgt = tok, nested, src, tgt

    def __call__(self, batch: dict) -> dict:
        srcs, tgts = batch_pairs(batch, self.nested, self.src, self.tgt)
        ok = [usable(s, t) for s, t in zip(srcs, tgts)]
        s_ids = self.tok.encode([one_line(s.strip()) if k else "" for s, k in zip(srcs, ok)])
        t_ids = self.tok.encode([one_line(t.strip()) if k else "" for t, k in zip(tgts, ok)])
        src_ids = [frame_source(ids) if k else [] for ids, k in zip(s_ids, ok)]
        tgt_ids = [frame_target(ids) if k else [] for ids, k in zip(t_ids, ok)]
        return {
            "src_ids": src_ids,
            "tgt_ids": tgt_ids,
            "src_len": [len(x) for x in src_ids],
            "tgt_len": [len(x) for x in tgt_ids],
        }


def encode_arrow(ds, name: str, cfg: DataConfig, tok: Tokenizer, nested: bool) -> ArrowSplit:
    """Tokenize a training split with datasets.map into the datasets cache (Arrow, mmapped).

    Keyed by the data's fingerprint, the tokenizer and the language pair: a second run with
    the same data and tokenizer reads the cache. Rows with an empty side, or longer than
    max_len tokens, are left out by an index mapping (nothing is copied).
    """
    key = hashlib.sha256(tok.proto).hexdigest()
    fingerprint = hashlib.sha256(
        f"{ds._fingerprint}|{key}|{cfg.src}|{cfg.tgt}|ids-v{ENCODING_VERSION}".encode()
    ).hexdigest()[:32]
    procs = cfg.num_proc or (min(os.cpu_count() or 1, 8) if len(ds) >= 100_000 else 1)
    encoded = ds.map(
        _Encoder(tok, nested, cfg.src, cfg.tgt),
        batched=True,
        batch_size=1000,
        num_proc=procs if procs > 1 else None,
        remove_columns=ds.column_names,
        new_fingerprint=fingerprint,
        desc=f"tokenizing {name}",
    )
    src_lens = encoded.data.column("src_len").to_numpy().astype(np.int64)
    tgt_lens = encoded.data.column("tgt_len").to_numpy().astype(np.int64)
    usable = src_lens > 0
    if not usable.any():
        raise NMTError(f"split '{name}' has no usable {cfg.src}-{cfg.tgt} pairs")
    if not usable.all():
        log.warning(
            "%s: skipped %d of %d rows with an empty or missing side",
            name,
            int((~usable).sum()),
            len(usable),
        )
    short = np.maximum(src_lens, tgt_lens) <= cfg.max_len
    if (usable & ~short).any():
        log.info(
            "%s: dropped %d of %d pairs longer than %d tokens",
            name,
            int((usable & ~short).sum()),
            int(usable.sum()),
            cfg.max_len,
        )
    keep = np.flatnonzero(usable & short)
    if len(keep) < len(encoded):
        encoded = encoded.select(keep)
    return ArrowSplit(name, encoded, src_lens[keep], tgt_lens[keep])


def truncate(ids: list[int], max_len: int) -> list[int]:
    """Ids ending in EOS, cut to at most max_len tokens with the EOS kept."""
    return ids if len(ids) <= max_len else ids[: max_len - 1] + [EOS_ID]


def encode_split(
    name: str, src_text: list[str], tgt_text: list[str], tok: Tokenizer, max_len: int
) -> Split:
    """Tokenize an evaluation split; pairs longer than max_len are truncated, never dropped
    (the training split is encoded by encode_arrow, which drops them)."""
    src_ids = [frame_source(ids) for ids in tok.encode(src_text)]
    tgt_ids = [frame_target(ids) for ids in tok.encode(tgt_text)]
    long = sum(max(len(s), len(t)) > max_len for s, t in zip(src_ids, tgt_ids))
    if long:
        log.warning("%s: truncated %d pairs longer than %d tokens", name, long, max_len)
        src_ids = [truncate(s, max_len) for s in src_ids]
        tgt_ids = [truncate(t, max_len) for t in tgt_ids]
    return Split(name, src_text, tgt_text, src_ids, tgt_ids)


def load_data(cfg: DataConfig, tok_builder, candidates: tuple[Path, ...] = DEFAULT_LOCAL_DIRS):
    """Load every split, build the tokenizer from the training text, and encode.

    tok_builder(texts) -> Tokenizer is called with the training text of both languages.
    Returns (tokenizer, {'train': Split, 'valid': Split, 'test': Split or absent}).
    """
    dd = load_dataset_dict(cfg, candidates)
    train_ds = _split(dd, cfg.train_split, cfg, cfg.max_train_pairs)
    nested = nested_column(train_ds, cfg.train_split, cfg.src, cfg.tgt)
    valid_src, valid_tgt = read_split(dd, cfg.valid_split, cfg, cfg.max_valid_pairs)
    text = TrainingText(train_ds, nested, cfg.src, cfg.tgt)
    try:
        tok = tok_builder(text)
    except NMTError:
        if text.count == 0:  # SentencePiece had nothing to read: say why
            raise NMTError(f"split 'train' has no usable {cfg.src}-{cfg.tgt} pairs") from None
        raise
    splits = {
        "train": encode_arrow(train_ds, "train", cfg, tok, nested),
        "valid": encode_split("valid", valid_src, valid_tgt, tok, cfg.max_len),
    }
    if cfg.test_split in dd:
        test_src, test_tgt = read_split(dd, cfg.test_split, cfg, cfg.max_valid_pairs)
        splits["test"] = encode_split("test", test_src, test_tgt, tok, cfg.max_len)
    if not len(splits["train"]):
        raise NMTError(
            f"no training pairs are {cfg.max_len} tokens or shorter; raise --data.max_len"
        )
    for key, name in (
        ("train", cfg.train_split),
        ("valid", cfg.valid_split),
        ("test", cfg.test_split),
    ):
        if key in splits:
            splits[key].files = list(getattr(dd, "files", {}).get(name, []))
    log.info("data: %s", ", ".join(f"{k} {len(v)} pairs" for k, v in splits.items()))
    return tok, splits
