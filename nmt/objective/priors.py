"""The distributions over the vocabulary that eps is spread by: the training split's target-side
piece counts (unigram, masked) and a prior the user gives in a file (prior).

A run computes its distribution once, before its first update, and keeps it in its checkpoints
(TranslationLoss.resume_state), so a resume never counts the data again.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from nmt.errors import NMTError

LINE_FORMAT = "one 'piece<TAB>weight' per line"


def target_counts(split, vocab: int) -> torch.Tensor:
    """How often each piece is a label of the split's target side (BOS, which starts every
    target and is never predicted, is not counted): (K,) int64."""
    counts = np.zeros(vocab, dtype=np.int64)
    table = getattr(split, "table", None)
    if table is not None:  # the training split: ids in an Arrow table, read in slices
        arrow = table.with_format("arrow")
        for start in range(0, len(arrow), 50_000):
            column = arrow[start : start + 50_000]["tgt_ids"]
            counts += np.bincount(column.combine_chunks().flatten().to_numpy(), minlength=vocab)
    else:
        for ids in split.tgt_ids:
            counts += np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab)
    counts[BOS_ID] -= len(split)  # one leading BOS per target
    return torch.from_numpy(counts)


def unigram_base(counts: torch.Tensor) -> torch.Tensor:
    """The add-one smoothed frequencies of the counts, PAD and BOS at 0 (float32, sums to 1)."""
    u = counts.double() + 1.0
    u[[PAD_ID, BOS_ID]] = 0.0
    return (u / u.sum()).float()


def masked_base(counts: torch.Tensor) -> torch.Tensor:
    """1 for the pieces the target side uses (and EOS), 0 for the rest (float32)."""
    m = (counts > 0).float()
    m[EOS_ID] = 1.0
    m[[PAD_ID, BOS_ID]] = 0.0
    return m


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_prior(path: str | Path) -> list[tuple[int, str, float]]:
    """(line number, piece, weight) of every non-empty line of a prior file, checked for
    everything but whether the pieces are in the vocabulary (prior_base checks that)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NMTError(f"--train.smoothing_prior {path} does not exist; give a file of "
                       f"{LINE_FORMAT}") from None  # fmt: skip
    except (OSError, UnicodeDecodeError) as exc:
        why = "is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "cannot be read"
        raise NMTError(f"--train.smoothing_prior {path} {why}; give {LINE_FORMAT}") from None
    entries, first = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        piece, tab, weight_text = line.rpartition("\t")
        where = f"--train.smoothing_prior {path} line {number}"
        try:
            weight = float(weight_text)
        except ValueError:
            weight = None
        if not tab or not piece or weight is None:
            raise NMTError(f"{where}: expected 'piece<TAB>weight', got {line[:60]!r}")
        if not math.isfinite(weight) or weight < 0:
            raise NMTError(f"{where}: the weight of {piece!r} must be a finite number >= 0, "
                           f"got {weight_text.strip()}")  # fmt: skip
        if piece in first:
            raise NMTError(f"{where}: {piece!r} is given again (first on line {first[piece]}); "
                           "give each piece once")  # fmt: skip
        first[piece] = number
        entries.append((number, piece, weight))
    if not entries:
        raise NMTError(f"--train.smoothing_prior {path} is empty; give {LINE_FORMAT}")
    if sum(weight for _, _, weight in entries) <= 0:
        raise NMTError(f"the weights in --train.smoothing_prior {path} sum to 0; give some "
                       "piece a positive weight")  # fmt: skip
    return entries


def prior_base(path: str | Path, tok: Tokenizer) -> torch.Tensor:
    """The prior file's weights over the vocabulary, normalised (pieces not listed get 0)."""
    weights = torch.zeros(len(tok), dtype=torch.float64)
    for number, piece, weight in read_prior(path):
        index = tok.sp.piece_to_id(piece)
        if tok.sp.id_to_piece(index) != piece:
            raise NMTError(
                f"--train.smoothing_prior {path} line {number}: {piece!r} is not a piece of the "
                "run's vocabulary; list pieces as the tokenizer's spm.vocab spells them"
            )
        if index in (PAD_ID, BOS_ID) and weight > 0:
            raise NMTError(
                f"--train.smoothing_prior {path} line {number}: {piece!r} is never a target "
                "token; give it weight 0 or leave it out"
            )
        weights[index] = weight
    return (weights / weights.sum()).float()
