"""Joint SentencePiece tokenizer: train (cached by input hash), load, encode, decode."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

from nmt.errors import NMTError
from nmt.files import FolderLock, cache_root, write_atomic

log = logging.getLogger(__name__)

# The special ids, defined once for the whole project.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def frame_source(ids: list[int]) -> list[int]:
    """The encoder's input: the source pieces and EOS."""
    return ids + [EOS_ID]


def frame_target(ids: list[int]) -> list[int]:
    """The decoder's sequence: BOS, the target pieces, EOS (loss.split_target shifts it)."""
    return [BOS_ID] + ids + [EOS_ID]


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
    return (Path(cache_dir) if cache_dir else cache_root()) / "spm"


def _cache_error(root: Path, exc: OSError) -> NMTError:
    return NMTError(
        f"cannot write the tokenizer cache {root}: {exc.strerror or exc}; set NMT_CACHE (or "
        "--data.cache_dir) to a writable folder"
    )


def load_cached(model: Path, vocab_size: int) -> Tokenizer | None:
    """The cached tokenizer if the entry is whole, else None (a broken entry is warned about).

    Whole: its bytes match the SHA-256 recorded beside it, it parses, it has vocab_size pieces
    and the project's special ids. An entry without a record (written by an older version)
    passes on the last three checks and gets its record.
    """
    if not model.is_file():
        return None
    record = model.with_suffix(".json")
    data = model.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        expected = json.loads(record.read_text())["sha256"] if record.exists() else None
    except (OSError, ValueError, KeyError, TypeError):
        expected = "unreadable"
    problem = None
    if expected is not None and expected != digest:
        problem = f"its bytes do not match their recorded hash ({len(data)} bytes)"
    else:
        try:
            tok = Tokenizer(data)
        except (NMTError, RuntimeError, OSError) as exc:
            problem = f"it does not load ({str(exc).strip().splitlines()[0][:100]})"
        else:
            if len(tok) != vocab_size:
                problem = f"it has {len(tok)} pieces where {vocab_size} were asked for"
    if problem:
        log.warning("tokenizer: cache entry %s is broken (%s); training it again", model, problem)
        return None
    if expected is None:
        _write_record(model, digest)
    log.info("tokenizer: reusing cached SentencePiece model %s", model)
    return tok


def _write_record(model: Path, digest: str) -> None:
    write_atomic(model.with_suffix(".json"), json.dumps({"sha256": digest}).encode())


def remove_stale_training_dirs(root: Path) -> int:
    """Delete the temp folders of tokenizer trainings that were killed (no one holds their lock)."""
    removed = 0
    for tmp in root.glob(".train-*-*"):
        key = tmp.name.split("-")[1]
        lock = FolderLock(root / f"{key}.lock")
        if tmp.is_dir() and lock.acquire():
            shutil.rmtree(tmp, ignore_errors=True)
            lock.release()
            removed += 1
    day_old = time.time() - 86400
    for stale in root.glob(".*.model.*.tmp"):  # an atomic write cut short
        if stale.stat().st_mtime < day_old:
            stale.unlink(missing_ok=True)
    for legacy in root.glob("tmp*"):  # older versions' unlocked temp folders
        if (
            legacy.is_dir()
            and (legacy / "corpus.txt").exists()
            and legacy.stat().st_mtime < day_old
        ):
            shutil.rmtree(legacy, ignore_errors=True)
            removed += 1
    return removed


def train_or_load(
    texts: Iterable[str],
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    cache_dir: str | None = None,
    max_sentences: int = 500_000,
) -> Tokenizer:
    """Train a joint model on texts, or reuse the cached one trained on the same inputs.

    texts is read twice (hash, then corpus file): a list, or an iterable that restarts. One
    process trains a given entry at a time (the others wait for it, then reuse it); the entry
    is written atomically and checked whenever it is read.
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
    key = digest.hexdigest()[:24]
    root = _cache_root(cache_dir)
    cached = root / f"{key}.model"
    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_training_dirs(root)
        tok = load_cached(cached, vocab_size)
        if tok is not None:
            return tok
        lock, waited = FolderLock(root / f"{key}.lock"), False
        if not lock.acquire():
            log.info("tokenizer: PID %s is training the same tokenizer; waiting", lock.holder())
            waited = lock.acquire(wait=True)
    except OSError as exc:
        raise _cache_error(root, exc) from None
    try:
        # The process we waited for has probably written the entry.
        tok = load_cached(cached, vocab_size) if waited else None
        if tok is None:
            tok = _train(
                texts, vocab_size, model_type, character_coverage, max_sentences, root, key
            )
            if len(tok) != vocab_size:
                raise NMTError(
                    f"SentencePiece made {len(tok)} pieces where --vocab-size {vocab_size} was "
                    "asked for"
                )
            write_atomic(cached, tok.proto)
            _write_record(cached, hashlib.sha256(tok.proto).hexdigest())
    except OSError as exc:
        raise _cache_error(root, exc) from None
    finally:
        lock.release()
    return tok


def _train(
    texts: Iterable[str],
    vocab_size: int,
    model_type: str,
    character_coverage: float,
    max_sentences: int,
    root: Path,
    key: str,
) -> Tokenizer:
    """SentencePiece training in a temp folder of the cache (removed however it ends)."""
    with tempfile.TemporaryDirectory(dir=root, prefix=f".train-{key}-") as tmp:
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
            raise _training_error(exc, vocab_size) from None
        return Tokenizer((Path(tmp) / "spm.model").read_bytes())


# SentencePiece's vocabulary complaints: (what it says, where it puts the bound, our words).
_VOCAB_ERRORS = (
    (
        r"smaller than required_chars\. \d+ vs (\d+)",
        "is too small for this training data: it has more distinct characters than that "
        "(this data needs at least {}); pass a larger --vocab-size or lower "
        "--data.character_coverage",
    ),
    (
        r"Vocabulary size too high.*<= (\d+)",
        "is too large for this training data; pass a smaller --vocab-size (at most {})",
    ),
)


def _training_error(exc: RuntimeError, vocab_size: int) -> NMTError:
    """SentencePiece's complaint as one line that says what to change."""
    message = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    for pattern, words in _VOCAB_ERRORS:
        found = re.search(pattern, message)
        if found:
            return NMTError(f"--vocab-size {vocab_size} " + words.format(found.group(1)))
    return NMTError(f"SentencePiece training failed: {message}")
