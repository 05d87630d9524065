"""The tokenizer cache loses nothing and is never trusted blindly: a tokenizer another process
is training is waited for and reused, a broken entry is rebuilt, a killed training leaves
nothing for long, an unwritable cache is one line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nmt.data.tokenizer import train_or_load
from nmt.errors import NMTError

from .conftest import ROOT, cipher_flags, run, synthetic_pairs, write_cipher
from .test_safety import one_error_line


def test_a_tokenizer_being_trained_elsewhere_is_waited_for_and_reused(tmp_path, caplog):
    texts = [r["translation"]["en"] for r in synthetic_pairs(200, 5)]
    first = train_or_load(texts, 40, cache_dir=str(tmp_path / "a"))
    entry = next((tmp_path / "a" / "spm").glob("*.model"))
    cache = tmp_path / "b" / "spm"
    cache.mkdir(parents=True)
    key = entry.stem
    # Another process holds the entry's lock for a while, then writes the entry and exits.
    script = (
        "import shutil, sys, time\n"
        "from nmt.files import FolderLock\n"
        f"lock = FolderLock({str(cache / (key + '.lock'))!r}); assert lock.acquire()\n"
        "print('locked', flush=True); time.sleep(2)\n"
        f"shutil.copy({str(entry)!r}, {str(cache / entry.name)!r})\n"
    )
    other = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE)
    assert other.stdout.readline().strip() == b"locked"
    with caplog.at_level("INFO", logger="nmt.data.tokenizer"):
        again = train_or_load(texts, 40, cache_dir=str(tmp_path / "b"))
    other.wait()
    assert f"PID {other.pid} is training the same tokenizer; waiting" in caplog.text
    assert "training unigram" not in caplog.text and "reusing cached" in caplog.text
    assert again.proto == first.proto == entry.read_bytes()


# ---- tokenizer cache ------------------------------------------------------------------------
TEXTS = [r["translation"][side] for r in synthetic_pairs(300, 6) for side in ("en", "xx")]


def cache_entry(tmp_path) -> tuple[Path, bytes]:
    tok = train_or_load(TEXTS, 50, cache_dir=str(tmp_path))
    (entry,) = (tmp_path / "spm").glob("*.model")
    assert entry.read_bytes() == tok.proto
    record = json.loads(entry.with_suffix(".json").read_text())
    assert record == {"sha256": hashlib.sha256(tok.proto).hexdigest()}
    return entry, tok.proto


@pytest.mark.parametrize(
    "damage",
    ["fewer-pieces", "fewer-pieces-no-record", "half", "half-no-record", "empty-no-record"],
)
def test_a_broken_cache_entry_is_rebuilt_with_one_warning(tmp_path, caplog, damage):
    entry, good = cache_entry(tmp_path)
    if damage.startswith("fewer-pieces"):  # a whole model, but of 40 pieces where 50 were asked
        smaller = train_or_load(TEXTS, 40, cache_dir=str(tmp_path / "other"))
        entry.write_bytes(smaller.proto)
    elif damage.startswith("half"):
        entry.write_bytes(good[: len(good) // 2])
    else:
        entry.write_bytes(b"")
    if damage.endswith("no-record"):  # as an older version left it: no hash to compare
        entry.with_suffix(".json").unlink(missing_ok=True)
    with caplog.at_level("WARNING", logger="nmt.data.tokenizer"):
        tok = train_or_load(TEXTS, 50, cache_dir=str(tmp_path))
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "is broken" in warnings[0].message
    if damage == "fewer-pieces-no-record":
        assert "it has 40 pieces where 50 were asked for" in warnings[0].message
    assert len(tok) == 50 and entry.read_bytes() == tok.proto  # a whole entry again...
    record = json.loads(entry.with_suffix(".json").read_text())
    assert record == {"sha256": hashlib.sha256(tok.proto).hexdigest()}
    caplog.clear()
    with caplog.at_level("INFO", logger="nmt.data.tokenizer"):  # ...that the next run reuses
        assert train_or_load(TEXTS, 50, cache_dir=str(tmp_path)).proto == tok.proto
    assert "reusing cached" in caplog.text and "WARNING" not in caplog.text


def test_a_killed_tokenizer_training_leaves_nothing_for_long(tmp_path):
    entry, _ = cache_entry(tmp_path)
    stale = entry.parent / f".train-{'0' * 24}-abc123"
    stale.mkdir()
    (stale / "corpus.txt").write_text("half written\n")
    legacy = entry.parent / "tmpk2j4_x"  # what an older version's killed training left
    legacy.mkdir()
    (legacy / "corpus.txt").write_text("half written\n")
    os.utime(legacy, (time.time() - 2 * 86400,) * 2)
    train_or_load(TEXTS, 50, cache_dir=str(tmp_path))  # the next start, even one that reuses
    assert not stale.exists() and not legacy.exists()
    assert not list(entry.parent.glob(".train-*"))


def test_unwritable_tokenizer_cache_is_one_line(tmp_path):
    data = write_cipher(tmp_path / "cipher")
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("")
    flags = [*cipher_flags(data), "--run-dir", str(tmp_path / "run"), "--vocab-size", "61"]
    proc = run("train.py", *flags, env={"NMT_CACHE": str(not_a_folder)})
    assert one_error_line(proc).startswith(
        f"error: cannot write the tokenizer cache {not_a_folder / 'spm'}: "
    )
    assert "set NMT_CACHE (or --data.cache_dir) to a writable folder" in proc.stderr
    assert not (tmp_path / "run").exists()  # the refused run left no directory behind
    with pytest.raises(NMTError, match="cannot write the tokenizer cache"):
        train_or_load(TEXTS, 50, cache_dir=str(not_a_folder))
