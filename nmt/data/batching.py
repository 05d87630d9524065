"""Batches: token-bucketed index batches, padding, and the Batch a training step reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from nmt.data.tokenizer import PAD_ID
from nmt.errors import NMTError
from nmt.objective.loss import split_target


class Pairs(Protocol):
    """What batching, training and evaluation read from a split (Split or ArrowSplit)."""

    name: str
    files: list[str]  # what it was read from

    def __len__(self) -> int: ...

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Source and target lengths in tokens (special tokens included)."""
        ...

    def rows(self, indices) -> tuple[list[list[int]], list[list[int]]]:
        """Source and target ids of the given pairs."""
        ...


def make_batches(
    src_lens: np.ndarray,
    tgt_lens: np.ndarray,
    max_tokens: int,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    max_sentences: int | None = None,
) -> list[np.ndarray]:
    """Length-bucketed batches of indices with batch_size * longest side <= max_tokens.

    max_sentences, when given, also caps the number of pairs in a batch.

    Ties in length are broken randomly and the batch order is shuffled, both from (seed, epoch),
    so every epoch's order is reproducible.
    """
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(src_lens)) if shuffle else np.arange(len(src_lens))
    order = perm[np.lexsort((src_lens[perm], tgt_lens[perm]))]  # stable: ties stay permuted
    longest = np.maximum(src_lens, tgt_lens)[order]
    if len(longest) and longest.max() > max_tokens:
        raise NMTError(
            f"--max-tokens {max_tokens} is smaller than one {int(longest.max())}-token "
            "pair; raise --max-tokens or lower --data.max_len"
        )
    batches, start, widest = [], 0, 0
    for i, width in enumerate(longest):
        widest = max(widest, int(width))
        count = i - start + 1
        if count * widest > max_tokens or (max_sentences and count > max_sentences):
            batches.append(order[start:i])
            start, widest = i, int(width)
    if start < len(order):
        batches.append(order[start:])
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def pad(seqs: list[list[int]], width: int = 0) -> torch.Tensor:
    """Right-pad id lists with PAD_ID into a (B, T) LongTensor, T = max(width, longest)."""
    out = torch.full((len(seqs), max(width, *map(len, seqs))), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


@dataclass
class Batch:
    """Padded ids of some pairs: src (B, S) and tgt (B, T) = [BOS w1 .. wn EOS PAD ..].

    The decoder reads tgt_in and is scored against labels, the two views of tgt that
    loss.split_target makes (TranslationLoss takes tgt itself and shifts it the same way).
    num_tokens counts the non-pad labels: what the update's loss sum is divided by.
    """

    src: torch.Tensor
    tgt: torch.Tensor
    num_tokens: int

    @property
    def tgt_in(self) -> torch.Tensor:
        return split_target(self.tgt)[0]  # (B, T-1)

    @property
    def labels(self) -> torch.Tensor:
        return split_target(self.tgt)[1]  # (B, T-1)

    def to(self, device: torch.device) -> Batch:
        return Batch(self.src.to(device), self.tgt.to(device), self.num_tokens)

    @classmethod
    def of(cls, src: torch.Tensor, tgt: torch.Tensor) -> Batch:
        """A Batch of already padded tensors."""
        return cls(src, tgt, int((split_target(tgt)[1] != PAD_ID).sum()))


def collate(split: Pairs, indices: np.ndarray, multiple: int = 1) -> Batch:
    """The Batch of the given example indices.

    multiple > 1 rounds S and T - 1 (the decoder's length) up to a multiple of it, so that a
    compiled model sees few distinct shapes; padding changes no loss, NLL or count.
    """
    src, tgt = split.rows(indices)
    up = lambda n: -(-n // multiple) * multiple  # noqa: E731
    return Batch.of(pad(src, up(max(map(len, src)))), pad(tgt, up(max(map(len, tgt)) - 1) + 1))
