"""Dataset loading (flat, nested, files, folders), filtering and token-bucketed batches."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from nmt.config import DataConfig
from nmt.data.batching import collate, make_batches
from nmt.data.dataset import (
    DEFAULT_HUB_DATASET,
    default_dataset,
    encode_split,
    load_data,
    load_dataset_dict,
    read_split,
)
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, train_or_load
from nmt.errors import NMTError
from tests.conftest import synthetic_pairs, write_jsonl


def lengths(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(2, 60, n), rng.integers(2, 60, n)


def test_batches_respect_max_tokens_and_cover_every_index_once():
    src, tgt = lengths()
    batches = make_batches(src, tgt, 600, seed=1, epoch=0)
    for b in batches:
        assert len(b) * max(src[b].max(), tgt[b].max()) <= 600
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(src)))


def test_batches_are_reproducible_per_seed_and_epoch():
    src, tgt = lengths()
    same = [b.tolist() for b in make_batches(src, tgt, 600, seed=1, epoch=3)]
    assert same == [b.tolist() for b in make_batches(src, tgt, 600, seed=1, epoch=3)]
    assert same != [b.tolist() for b in make_batches(src, tgt, 600, seed=1, epoch=4)]
    assert same != [b.tolist() for b in make_batches(src, tgt, 600, seed=2, epoch=3)]


def test_batches_are_length_bucketed():
    src, tgt = lengths(2000)
    batches = make_batches(src, tgt, 2000, seed=0, epoch=0)
    spread = np.mean([tgt[b].max() - tgt[b].min() for b in batches])
    assert spread <= 1.0  # sorted by target length: each batch spans at most ~1 length


def test_max_tokens_smaller_than_a_pair_is_an_error():
    with pytest.raises(NMTError, match="--max-tokens 10 is smaller than one 12-token pair"):
        make_batches(np.array([3, 12]), np.array([4, 5]), 10)


def test_collate_pads_right():
    split = encode_split("s", ["a"], ["b"], _FakeTok(), 10)
    split.src_ids, split.tgt_ids = [[5, 3], [6, 7, 8, 3]], [[2, 9, 3], [2, 3]]
    b = collate(split, np.array([0, 1]))
    assert b.src.tolist() == [[5, 3, PAD_ID, PAD_ID], [6, 7, 8, 3]]
    assert b.tgt.tolist() == [[2, 9, 3], [2, 3, PAD_ID]]
    # The shift: the decoder reads BOS onwards, is scored on everything after BOS.
    assert b.tgt_in.tolist() == [[2, 9], [2, 3]] and b.labels.tolist() == [[9, 3], [3, PAD_ID]]
    assert b.num_tokens == 3


class _FakeTok:
    def encode(self, texts):
        return [[10 + len(w) for w in t.split()] for t in texts]


def test_encode_adds_specials_and_truncates_evaluation_pairs():
    src = ["a bb", "a " * 20]
    tgt = ["ccc", "d"]
    valid = encode_split("valid", src, tgt, _FakeTok(), max_len=6)
    assert valid.src_ids[0] == [11, 12, EOS_ID] and valid.tgt_ids[0] == [BOS_ID, 13, EOS_ID]
    assert len(valid) == 2 and valid.src_ids[1] == [11] * 5 + [EOS_ID]
    assert valid.src_text[1] == src[1]  # raw text kept whole for BLEU references


def flat_folder(tmp_path, fmt="jsonl"):
    rows = [{"en": f"hello {i}", "fr": f"bonjour {i}"} for i in range(20)]
    folder = tmp_path / "flat"
    folder.mkdir()
    for split in ("train", "validation"):
        if fmt == "jsonl":
            write_jsonl(folder / f"{split}.jsonl", rows)
        else:
            import pandas as pd

            frame = pd.DataFrame(rows)
            getattr(frame, f"to_{fmt}")(folder / f"{split}.{fmt}", index=False)
    return folder


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv"])
def test_local_folder_flat_columns(tmp_path, fmt):
    cfg = DataConfig(dataset=str(flat_folder(tmp_path, fmt)), src="en", tgt="fr")
    dd = load_dataset_dict(cfg)
    src, tgt = read_split(dd, "train", cfg)
    assert src[3] == "hello 3" and tgt[3] == "bonjour 3" and len(src) == 20


def test_nested_translation_column_and_files(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", synthetic_pairs(10, 0))
    valid = write_jsonl(tmp_path / "v.jsonl", synthetic_pairs(5, 1))
    cfg = DataConfig(train_file=str(train), valid_file=str(valid), src="xx", tgt="en")
    dd = load_dataset_dict(cfg)
    src, tgt = read_split(dd, "validation", cfg)
    expected = synthetic_pairs(5, 1)
    assert src == [r["translation"]["xx"] for r in expected]
    assert tgt == [r["translation"]["en"] for r in expected]


def test_unknown_language_lists_the_ones_present(tmp_path):
    cfg = DataConfig(dataset=str(flat_folder(tmp_path)), src="en", tgt="de")
    with pytest.raises(NMTError, match="its languages are en, fr; pick --src and --tgt"):
        read_split(load_dataset_dict(cfg), "train", cfg)


def test_missing_split_is_named(tmp_path):
    cfg = DataConfig(dataset=str(flat_folder(tmp_path)), src="en", tgt="fr")
    with pytest.raises(NMTError, match="no 'test2016' split \\(it has train, validation\\)"):
        read_split(load_dataset_dict(cfg), "test2016", cfg)


def test_empty_and_null_rows_are_skipped_and_counted(tmp_path, caplog):
    rows = [
        {"en": "a b", "fr": "c d"},
        {"en": "", "fr": "x"},
        {"en": "y", "fr": None},
        {"en": "  ", "fr": "z"},
        {"en": "e", "fr": "f"},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(train_file=str(path), src="en", tgt="fr")
    with caplog.at_level("WARNING"):
        src, tgt = read_split(load_dataset_dict(cfg), "train", cfg)
    assert (src, tgt) == (["a b", "e"], ["c d", "f"])
    assert "skipped 3 of 5 rows" in caplog.text


def test_missing_folder_and_file_errors(tmp_path):
    with pytest.raises(NMTError, match="dataset folder ./nowhere does not exist"):
        load_dataset_dict(DataConfig(dataset="./nowhere"))
    with pytest.raises(NMTError, match="data file .* does not exist"):
        load_dataset_dict(DataConfig(train_file=str(tmp_path / "x.jsonl")))


def test_default_prefers_local_copy_then_hub(tmp_path):
    local = tmp_path / "data" / "multi30k"
    assert default_dataset((local,)) == DEFAULT_HUB_DATASET
    local.mkdir(parents=True)
    assert default_dataset((tmp_path / "absent", local)) == str(local)


def test_default_without_local_copy_or_hub_says_how_to_point_dataset(monkeypatch, tmp_path):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'bentrevett/multi30k' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(NMTError) as err:
        load_dataset_dict(DataConfig(), candidates=(tmp_path / "absent",))
    message = str(err.value)
    assert "no local copy of the default data at data/multi30k" in message
    assert "link a local copy to data/multi30k/ (see data/README.md)" in message
    assert "shared" not in message and "\n" not in message  # no developer-only path


def test_load_data_on_multi30k_slice(multi30k):
    cfg = DataConfig(
        dataset=str(multi30k), vocab_size=400, max_train_pairs=1000, max_valid_pairs=50, max_len=40
    )
    tok, splits = load_data(cfg, lambda texts: train_or_load(texts, cfg.vocab_size))
    assert set(splits) == {"train", "valid", "test"}
    assert len(splits["valid"]) == 50 and len(splits["test"]) == 50
    train = splits["train"]
    raw = [json.loads(line) for line in (multi30k / "train.jsonl").open()][:1000]
    fits = [
        max(len(tok.encode([r["en"]])[0]) + 1, len(tok.encode([r["de"]])[0]) + 2) <= 40 for r in raw
    ]
    assert len(train) == sum(fits) < 1000  # exactly the over-long pairs dropped
    kept = [r for r, ok in zip(raw, fits) if ok]
    src_ids, tgt_ids = train.rows(range(len(train)))
    assert src_ids == [ids + [EOS_ID] for ids in tok.encode([r["en"] for r in kept])]
    assert tgt_ids == [[BOS_ID] + ids + [EOS_ID] for ids in tok.encode([r["de"] for r in kept])]
    src_lens, tgt_lens = train.lengths()
    assert src_lens.dtype == np.int64 and src_lens.tolist() == [len(s) for s in src_ids]
    assert tgt_lens.tolist() == [len(t) for t in tgt_ids] and tgt_lens.max() <= 40
    assert tok.decode([tgt_ids[0]])[0] == kept[0]["de"]
    # The tokenizer read the same text as from a list (same cache key, same model), and a
    # second load reads the tokenized table from the datasets cache instead of rebuilding it.
    texts = [r["en"] for r in raw] + [r["de"] for r in raw]
    assert train_or_load(texts, cfg.vocab_size).proto == tok.proto
    files = [f["filename"] for f in train.table.cache_files]
    stamps = [os.stat(f).st_mtime_ns for f in files]
    _, again = load_data(cfg, lambda texts: train_or_load(texts, cfg.vocab_size))
    assert [f["filename"] for f in again["train"].table.cache_files] == files
    assert [os.stat(f).st_mtime_ns for f in files] == stamps
    assert again["train"].rows([0, 5]) == train.rows([0, 5])


def test_training_split_skips_empty_rows_and_reads_nested_pairs(tmp_path, caplog):
    rows = [
        {"translation": {"en": "a b", "xx": "c"}},
        {"translation": {"en": " ", "xx": "d"}},
        {"translation": {"en": "e", "xx": None}},
        {"translation": {"en": "f g h", "xx": "i j"}},
    ]
    folder = tmp_path / "nested"
    write_jsonl(folder / "train.jsonl", rows)
    write_jsonl(folder / "validation.jsonl", rows[:1])
    cfg = DataConfig(dataset=str(folder), src="en", tgt="xx")
    with caplog.at_level("WARNING"):
        tok, splits = load_data(cfg, lambda texts: _ListTok(list(texts)))
    assert tok.seen == ["a b", "f g h", "c", "i j"]  # usable source lines, then target lines
    assert "train: skipped 2 of 4 rows with an empty or missing side" in caplog.text
    src_ids, tgt_ids = splits["train"].rows([0, 1])
    assert src_ids == [[1, 1, EOS_ID], [1, 1, 1, EOS_ID]]  # one id per character
    assert tgt_ids == [[BOS_ID, 1, EOS_ID], [BOS_ID, 1, 1, EOS_ID]]


class _ListTok(Tokenizer):
    """A real SentencePiece-free stand-in: records its training text, encodes chars as 1."""

    def __init__(self, seen):
        self.seen, self.proto = seen, b"fake"

    def __len__(self):
        return 10

    def encode(self, texts):
        return [[1] * len(t.replace(" ", "")) for t in texts]


def test_hub_id_and_config_reach_load_dataset(monkeypatch):
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or {})
    load_dataset_dict(DataConfig(dataset="wmt14", dataset_config="de-en"))
    assert calls == [(("wmt14", "de-en"), {})]


def test_tokenizing_in_two_processes_gives_the_same_table(tmp_path):
    rows = synthetic_pairs(300, 4)
    splits = {}
    for procs in (1, 2):  # two folders: two datasets fingerprints, so neither reads the other
        folder = tmp_path / f"p{procs}"
        write_jsonl(folder / "train.jsonl", rows)
        write_jsonl(folder / "validation.jsonl", rows[:5])
        cfg = DataConfig(dataset=str(folder), src="en", tgt="xx", vocab_size=60, num_proc=procs)
        _, splits[procs] = load_data(cfg, lambda texts: train_or_load(texts, 60))
    one, two = splits[1]["train"], splits[2]["train"]
    assert len(two.table.cache_files) == 2  # one Arrow shard per process
    assert one.rows(range(300)) == two.rows(range(300))
    assert (one.lengths()[1] == two.lengths()[1]).all()
