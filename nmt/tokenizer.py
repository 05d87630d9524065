"""Joint SentencePiece tokenizer: train (cached by input hash), load, encode, decode."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

from nmt.errors import NMTError

log = logging.getLogger(__name__)

# The special ids, defined once for the whole project.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class Tokenizer:
    """A SentencePiece model with the project's special ids."""

    def __init__(self, model_proto: bytes):
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        ids = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise NMTError(
                f"SentencePiece model has special ids {ids}, expected pad/unk/bos/eos 0-3"
            )

    def __reduce__(self):  # pickled as its model bytes (for datasets.map worker processes)
        return type(self), (self.proto,)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a .model file."""
        return cls(Path(path).read_bytes())

    def save(self, path: str | Path) -> None:
        """Write the .model file."""
        Path(path).write_bytes(self.proto)

    def to_tensor(self) -> torch.Tensor:
        """The model file as a uint8 tensor: raw bytes do not always survive weights_only loads."""
        return torch.from_numpy(np.frombuffer(self.proto, dtype=np.uint8).copy())

    @classmethod
    def from_tensor(cls, stored: torch.Tensor | bytes) -> Tokenizer:
        """Inverse of to_tensor (raw bytes, as early checkpoints stored them, are accepted)."""
        return cls(stored.numpy().tobytes() if isinstance(stored, torch.Tensor) else stored)

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Subword ids of each text, without BOS/EOS."""
        return self.sp.encode(list(texts), out_type=int)

    def decode(self, ids: Iterable[Sequence[int]]) -> list[str]:
        """Detokenized text of each id sequence; special ids (and anything after EOS) dropped."""
        clean = []
        for seq in ids:
            out = []
            for i in seq:
                if i == EOS_ID:
                    break
                if i not in (PAD_ID, BOS_ID):
                    out.append(int(i))
            clean.append(out)
        return self.sp.decode(clean)


def _cache_root(cache_dir: str | None) -> Path:
    root = cache_dir or os.environ.get("NMT_CACHE") or Path.home() / ".cache" / "nmt"
    return Path(root) / "spm"


def train_or_load(
    texts: Iterable[str],
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    cache_dir: str | None = None,
    max_sentences: int = 500_000,
) -> Tokenizer:
    """Train a joint model on texts, or reuse the cached one trained on the same inputs.

    texts is read twice (hash, then corpus file): a list, or an iterable that restarts.
    """
    digest = hashlib.sha256()
    # SentencePiece holds what it trains on in memory (about 2 kB a sentence for unigram): it
    # reads a random sample of max_sentences lines (0 = all), which bounds memory at any scale.
    digest.update(
        f"{spm.__version__}|{vocab_size}|{model_type}|{character_coverage}|{max_sentences}".encode()
    )
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\n")
    cached = _cache_root(cache_dir) / f"{digest.hexdigest()[:24]}.model"
    if cached.is_file():
        log.info("tokenizer: reusing cached SentencePiece model %s", cached)
        return Tokenizer.load(cached)

    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        corpus = Path(tmp) / "corpus.txt"
        # SentencePiece reads lines, so newlines inside a sentence would split it.
        lines = 0
        with corpus.open("w", encoding="utf-8") as out:
            for text in texts:
                out.write(text.replace("\n", " ") + "\n")
                lines += 1
        prefix = Path(tmp) / "spm"
        log.info(
            "tokenizer: training %s SentencePiece model, vocab %d, on %d lines",
            model_type,
            vocab_size,
            lines,
        )
        try:
            spm.SentencePieceTrainer.train(
                input=str(corpus),
                model_prefix=str(prefix),
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                input_sentence_size=max_sentences,
                shuffle_input_sentence=True,
                num_threads=os.cpu_count() or 1,
                minloglevel=2,
            )
        except RuntimeError as exc:
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            if "Vocabulary size" in message:
                most = re.search(r"<= (\d+)", message)
                limit = f" (at most {most.group(1)})" if most else ""
                raise NMTError(
                    f"--vocab-size {vocab_size} is too large for this training data; "
                    f"pass a smaller --vocab-size{limit}"
                ) from None
            raise NMTError(f"SentencePiece training failed: {message}") from None
        # Rename into place so a half-written model is never picked up from the cache.
        shutil.move(str(prefix) + ".model", cached)
    return Tokenizer.load(cached)
