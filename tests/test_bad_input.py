"""The README's bad-input catalogue: each case is one `error:` line, exit 2, nothing lost."""

from __future__ import annotations

import json

import pytest
import yaml

from .conftest import run, synthetic_pairs, write_jsonl


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", synthetic_pairs(300, 1))
    write_jsonl(data / "validation.jsonl", synthetic_pairs(20, 2))
    return data


def train(folder, tmp_path, *args: str, dataset: str | None = None):
    return run(
        "train.py", "--config", "configs/toy.yaml", "--src", "en", "--tgt", "xx",
        "--vocab-size", "60", "--dataset", dataset or str(folder),
        "--run-dir", str(tmp_path / "run"), *args,
    )  # fmt: skip


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("Generating ")]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return errors[0]


def test_hub_id_that_does_not_exist(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, dataset="no-such-user/no-such-data"))
    assert "could not load Hub dataset 'no-such-user/no-such-data'" in line


def test_missing_validation_split(folder, tmp_path):
    (folder / "validation.jsonl").unlink()
    write_jsonl(folder / "test.jsonl", synthetic_pairs(20, 3))
    line = one_error_line(train(folder, tmp_path))
    assert "the dataset has no 'validation' split (it has train, test)" in line


def test_languages_not_in_the_dataset_are_listed(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--tgt", "fr"))
    assert "has no en->fr pairs: its languages are en, xx" in line


def test_empty_training_split(folder, tmp_path):
    (folder / "train.jsonl").write_text("")
    line = one_error_line(train(folder, tmp_path))
    assert line == (
        f"error: data file {folder / 'train.jsonl'} is empty: that split has no pairs; fill it, "
        "or remove it and name another split"
    )


def test_training_split_of_only_empty_rows(folder, tmp_path):
    write_jsonl(folder / "train.jsonl", [{"translation": {"en": " ", "xx": "a"}}] * 5)
    line = one_error_line(train(folder, tmp_path))
    assert line == "error: split 'train' has no usable en-xx pairs"


def test_vocabulary_too_large_for_the_corpus(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--vocab-size", "5000"))
    assert "--vocab-size 5000 is too large for this training data" in line


def test_max_tokens_smaller_than_a_pair(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--max-tokens", "10"))
    assert line == (
        "error: 'data.max_tokens' must be at least data.max_len (64) so that the longest pair "
        "fits a batch"
    )


def test_yaml_that_does_not_parse(folder, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1, 2\n")
    line = one_error_line(run("train.py", "--config", str(bad), "--run-dir", str(tmp_path / "r")))
    assert line.startswith(f"error: config file {bad} is not valid YAML at line")


def test_smoothing_outside_the_unit_interval(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--smoothing", "1"))
    assert line == "error: 'train.smoothing' must be in [0, 1)"
    assert not (tmp_path / "run").exists()  # refused before anything was written


# ---- the data a run uses is exactly the data the user named ---------------------------------
def test_two_test_files_in_a_folder_are_refused_and_either_can_be_chosen(folder, tmp_path):
    write_jsonl(folder / "test.jsonl", synthetic_pairs(20, 3))
    write_jsonl(folder / "test_2017_mscoco.jsonl", synthetic_pairs(7, 4))
    line = one_error_line(train(folder, tmp_path))
    assert line == (
        f"error: split 'test' matches 2 files in {folder}: test.jsonl, test_2017_mscoco.jsonl; "
        "keep one, or choose with --test-file FILE or --data.test_split NAME "
        "(e.g. test_2017_mscoco)"
    )
    assert not (tmp_path / "run").exists()
    by_name = train(folder, tmp_path, "--data.test_split", "test_2017_mscoco", "--max-steps", "2")
    assert by_name.returncode == 0, by_name.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["data_files"] == {
        "train": [str(folder / "train.jsonl")],
        "valid": [str(folder / "validation.jsonl")],
        "test": [str(folder / "test_2017_mscoco.jsonl")],
    }
    assert len((tmp_path / "run" / "test.ref.txt").read_text().splitlines()) == 7
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data_files"] == results["data_files"]
    assert f"data: test_2017_mscoco <- {folder / 'test_2017_mscoco.jsonl'}" in by_name.stderr
    by_file = train(folder, tmp_path, "--test-file", str(folder / "test.jsonl"), "--max-steps",
                    "2", "--overwrite")  # fmt: skip
    assert by_file.returncode == 0, by_file.stderr[-2000:]
    assert len((tmp_path / "run" / "test.ref.txt").read_text().splitlines()) == 20


def test_a_backup_training_file_in_a_subfolder_is_refused(folder, tmp_path):
    write_jsonl(folder / "old" / "train.jsonl", synthetic_pairs(50, 9))
    line = one_error_line(train(folder, tmp_path))
    assert line.startswith(
        f"error: split 'train' matches 2 files in {folder}: old/train.jsonl, train.jsonl; "
    )


def test_valid_file_alone_replaces_that_split_of_the_dataset(folder, tmp_path):
    from nmt.config import DataConfig
    from nmt.data.dataset import load_dataset_dict, read_split

    other = write_jsonl(tmp_path / "dev.jsonl", synthetic_pairs(9, 8))
    cfg = DataConfig(dataset=str(folder), valid_file=str(other), src="en", tgt="xx")
    dd = load_dataset_dict(cfg)
    src, _ = read_split(dd, "validation", cfg)
    assert src == [r["translation"]["en"] for r in synthetic_pairs(9, 8)]
    assert dd.files == {"train": [str(folder / "train.jsonl")], "validation": [str(other)]}
    test_only = DataConfig(dataset=str(folder), test_file=str(other), src="en", tgt="xx")
    assert load_dataset_dict(test_only).files["test"] == [str(other)]


def test_line_breaks_inside_sentences_keep_hypotheses_and_references_aligned(folder, tmp_path):
    rows = synthetic_pairs(12, 5)
    rows[2]["translation"]["xx"] = "derx\ngodx"
    rows[5]["translation"]["xx"] = "tacx\rsnurx"
    rows[7]["translation"]["xx"] = "eulbx\r\nllabx\u2028x"
    write_jsonl(folder / "test.jsonl", rows)
    proc = train(folder, tmp_path, "--max-steps", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    refs = (tmp_path / "run" / "test.ref.txt").read_bytes().split(b"\n")
    hyps = (tmp_path / "run" / "test.hyp.txt").read_bytes().split(b"\n")
    assert len(refs) == len(hyps) == 13 and refs[-1] == hyps[-1] == b""
    assert refs[2] == b"derx godx" and refs[5] == b"tacx snurx"
    assert refs[7] == b"eulbx llabx x"


def test_tsv_cells_keep_their_quote_characters(tmp_path):
    from nmt.config import DataConfig
    from nmt.data.dataset import load_dataset_dict, read_split

    path = tmp_path / "train.tsv"
    path.write_text('en\tde\n"Stop", he said\t"Halt", sagte er\nHe said "no\tEr sagte "nein\n')
    cfg = DataConfig(train_file=str(path), src="en", tgt="de")
    src, tgt = read_split(load_dataset_dict(cfg), "train", cfg)
    assert src == ['"Stop", he said', 'He said "no']
    assert tgt == ['"Halt", sagte er', 'Er sagte "nein']


def test_malformed_json_line_names_the_file_and_line(folder, tmp_path):
    path = folder / "train.jsonl"
    lines = path.read_text().splitlines()
    lines[41] = lines[41][:-3]  # cut off the closing braces
    path.write_text("\n".join(lines) + "\n")
    line = one_error_line(train(folder, tmp_path))
    assert line.startswith(f"error: data file {path} is not valid JSON Lines at line 42: ")
    solo = one_error_line(train(folder, tmp_path, "--train-file", str(path)))
    assert solo.startswith(f"error: data file {path} is not valid JSON Lines at line 42: ")


def test_a_file_flag_that_does_not_exist_is_named(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--test-file", str(tmp_path / "nope.jsonl")))
    assert line == f"error: data file {tmp_path / 'nope.jsonl'} does not exist; check --test-file"


# ---- every value is checked before any work -------------------------------------------------
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seed", "-1"], "'train.seed' must be in [0, 2^32), got -1"),
        (["--seed", str(2**32)], f"'train.seed' must be in [0, 2^32), got {2**32}"),
        (["--model.heads", "0"], "'model.heads' must be >= 1, got 0"),
        (["--model.d_model", "0"], "'model.d_model' must be >= 1, got 0"),
        (["--model.ffn_dim", "-4"], "'model.ffn_dim' must be >= 1, got -4"),
        (["--model.decoder_layers", "0"], "'model.decoder_layers' must be >= 1, got 0"),
        (["--model.d_model", "130"], "'model.d_model' must be divisible by model.heads (4)"),
        (["--model.dropout", "nan"], "'model.dropout' must be a finite number, got nan"),
        (["--train.betas", "1.0,0.98"], "'train.betas' must both be in [0, 1)"),
        (["--train.betas", "0.9,-0.1"], "'train.betas' must both be in [0, 1)"),
        (["--train.adam_eps", "0"], "'train.adam_eps' must be positive"),
        (["--train.weight_decay", "-1e-4"], "'train.weight_decay' must be >= 0"),
        (["--lr", "inf"], "'train.lr' must be a finite number, got inf"),
        (["--lr", "nan"], "'train.lr' must be a finite number, got nan"),
        (["--train.clip_norm", "nan"], "'train.clip_norm' must be a finite number, got nan"),
        (["--train.clip_norm", "-1"], "'train.clip_norm' must be >= 0 (0 = no clipping)"),
        (["--smoothing", "nan"], "'train.smoothing' must be a finite number, got nan"),
        (["--decode.max_len_a", "nan"], "'decode.max_len_a' must be a finite number, got nan"),
        (["--decode.max_len_a", "-1"], "'decode.max_len_a' must be >= 0"),
        (["--decode.max_len_b", "-1"], "'decode.max_len_b' must be >= 0"),
        (["--decode.length_penalty", "inf"], "'decode.length_penalty' must be a finite number"),
        (["--decode.length_penalty", "-0.5"], "'decode.length_penalty' must be >= 0"),
        (["--data.character_coverage", "0"], "'data.character_coverage' must be in (0, 1]"),
        (["--train.patience", "-1"], "'train.patience' must be >= 0 (0 = off)"),
        (["--data.max_train_pairs", "-5"], "'data.max_train_pairs' pair limits must be >= 0"),
    ],
)
def test_bad_values_are_refused_before_any_work(flags, message):
    from nmt.cli import parse_args
    from nmt.errors import NMTError

    with pytest.raises(NMTError) as err:
        parse_args(["--run-dir", "unused", *flags])
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("flags", [["--lr", "inf"], ["--model.heads", "0"], ["--seed", "-3"]])
def test_bad_values_on_the_command_line_write_nothing(folder, tmp_path, flags):
    one_error_line(train(folder, tmp_path, *flags))
    assert not (tmp_path / "run").exists()


def test_vocabulary_too_small_says_so(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--vocab-size", "10"))
    assert line.startswith("error: --vocab-size 10 is too small for this training data")
    assert "pass a larger --vocab-size" in line


def test_diverged_losses_give_infinite_perplexity_not_a_crash():
    import math

    import torch

    from nmt.data.dataset import Split
    from nmt.objective.loss import TranslationLoss
    from nmt.train.evaluate import evaluate_loss, perplexity

    assert perplexity(1.0) == pytest.approx(math.e) and perplexity(800.0) == math.inf

    class Wild(torch.nn.Module):  # finite logits whose NLL is about 1e4 nats a token
        def forward(self, src, tgt_in):
            logits = torch.zeros(*tgt_in.shape, 12)
            logits[..., 11] = 1e4
            return logits

    split = Split("valid", ["a"], ["b"], [[5, 3]], [[2, 6, 7, 3]])
    out = evaluate_loss(Wild(), split, TranslationLoss(12, 0, 0.1, "sum"), torch.device("cpu"), 64)
    assert math.isfinite(out["nll_loss"]) and out["nll_loss"] > 700 and out["ppl"] == math.inf


@pytest.mark.parametrize(
    "cli, args, message",
    [
        ("train.py", ["--device", "gpu"], "error: argument --device: invalid choice: 'gpu'"),
        ("translate.py", ["--checkpoint", "x", "--beam", "two"], "error: argument --beam: invalid"),
        ("-m nmt.sweep", ["--sweep-dir", "x"], "error: the following arguments are required: "),
        ("-m nmt.report", [], "error: the following arguments are required: runs"),
        ("-m nmt.report", ["a", "--bootstrap-samples", "1.5"], "error: argument --bootstrap"),
        ("-m nmt.average", ["a.pt", "b.pt"], "error: the following arguments are required: --out"),
        ("-m nmt.average", ["--last", "x", "r", "--out", "o"], "error: argument --last: invalid"),
        ("-m nmt.export", ["r", "--format", "onnx", "--out", "o"], "error: argument --format:"),
        ("bench/time_to_bleu.py", ["--minutes", "half"], "error: argument --minutes: invalid"),
    ],
)
def test_flag_parse_errors_are_one_line_too(tmp_path, cli, args, message):
    from .conftest import module

    proc = module(cli[3:], *args) if cli.startswith("-m ") else run(cli, *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(message), proc.stderr
    assert proc.stderr.rstrip().endswith("--help")


def test_a_folder_whose_files_name_no_split_says_so(tmp_path):
    write_jsonl(tmp_path / "d" / "data.jsonl", synthetic_pairs(10, 1))
    line = one_error_line(train(tmp_path / "d", tmp_path))
    assert line.startswith("error: the dataset has no 'train' split (it has none); ")


def test_a_file_flag_naming_a_folder_says_so(folder, tmp_path):
    line = one_error_line(train(folder, tmp_path, "--test-file", str(tmp_path)))
    assert line == f"error: data file {tmp_path} is a folder, not a file; check --test-file"
