"""SentencePiece: special ids, round trip, cache reuse, actionable vocab-size error."""

from __future__ import annotations

import pytest
import sentencepiece as spm

from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, train_or_load
from nmt.errors import NMTError
from tests.conftest import synthetic_pairs

TEXTS = [r["translation"][lang] for r in synthetic_pairs(400, 0) for lang in ("en", "xx")]


def test_special_ids_and_round_trip(tmp_path):
    tok = train_or_load(TEXTS, 60, cache_dir=str(tmp_path))
    assert (tok.sp.pad_id(), tok.sp.unk_id(), tok.sp.bos_id(), tok.sp.eos_id()) == (0, 1, 2, 3)
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert len(tok) == 60
    ids = tok.encode(["the big dog runs"])[0]
    assert tok.decode([[BOS_ID] + ids + [EOS_ID, PAD_ID, 7]]) == ["the big dog runs"]


def test_second_call_reuses_cache_and_different_inputs_retrain(tmp_path, monkeypatch):
    first = train_or_load(TEXTS, 60, cache_dir=str(tmp_path))
    calls = []
    real_train = spm.SentencePieceTrainer.train
    monkeypatch.setattr(
        spm.SentencePieceTrainer, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k)
    )
    again = train_or_load(TEXTS, 60, cache_dir=str(tmp_path))
    assert calls == [] and again.proto == first.proto
    train_or_load(TEXTS, 61, cache_dir=str(tmp_path))
    train_or_load(TEXTS[:-1], 60, cache_dir=str(tmp_path))
    assert len(calls) == 2
    assert len(list(tmp_path.glob("spm/*.model"))) == 3


def test_save_load(tmp_path):
    tok = train_or_load(TEXTS, 60, cache_dir=str(tmp_path))
    tok.save(tmp_path / "m.model")
    assert Tokenizer.load(tmp_path / "m.model").encode(["a cat"]) == tok.encode(["a cat"])


def test_vocab_too_large_is_actionable(tmp_path):
    with pytest.raises(
        NMTError,
        match=r"--vocab-size 5000 is too large for this training data; "
        r"pass a smaller --vocab-size \(at most \d+\)$",
    ):
        train_or_load(TEXTS, 5000, cache_dir=str(tmp_path))


def test_sentence_sample_size_reaches_sentencepiece_and_the_cache_key(tmp_path, monkeypatch):
    seen = []
    real_train = spm.SentencePieceTrainer.train
    monkeypatch.setattr(
        spm.SentencePieceTrainer,
        "train",
        lambda *a, **k: seen.append(k["input_sentence_size"]) or real_train(*a, **k),
    )
    whole = train_or_load(TEXTS, 60, cache_dir=str(tmp_path))  # 800 lines < 500k: all read
    sampled = train_or_load(iter_twice(TEXTS), 60, cache_dir=str(tmp_path), max_sentences=300)
    assert seen == [500_000, 300] and len(list(tmp_path.glob("spm/*.model"))) == 2
    assert len(sampled) == len(whole) == 60


class iter_twice:  # noqa: N801 - reads like the plain iterable it stands for
    """An iterable that is not a list (like TrainingText): each pass starts again."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


def test_tokenizer_pickles_as_its_model(tmp_path):
    import pickle

    tok = train_or_load(TEXTS, 60, cache_dir=str(tmp_path))
    again = pickle.loads(pickle.dumps(tok))
    assert again.proto == tok.proto and again.encode(["a red cat"]) == tok.encode(["a red cat"])
