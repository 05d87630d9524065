"""python -m nmt.export and translate.py --engine ctranslate2 as a user runs them: the folder
alone translates, the cache, refusals, int8, the install hint, damaged exports."""

from __future__ import annotations

import json
import logging
import shutil
import sys

import pytest
import torch

from nmt.config import DecodeConfig
from nmt.data.tokenizer import EOS_ID
from nmt.decode.ct2 import decode_corpus_ct2, load_translator
from nmt.decode.export import META, export_ctranslate2
from nmt.files import file_sha256
from nmt.train.checkpoint import load_for_inference

from .conftest import module, run
from .test_export import CPU, pairs


@pytest.fixture(scope="module")
def run_dir(finished_multi30k_run):
    return finished_multi30k_run


def test_export_cli_folder_alone_translates_like_the_native_engine(run_dir, tmp_path):
    out = tmp_path / "toy-ct2"
    proc = module("nmt.export", str(run_dir), "--format", "ctranslate2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    assert names >= {"model.bin", "config.json", "sentencepiece.model", META}
    meta = json.loads((out / META).read_text())
    state = torch.load(run_dir / "checkpoint_best.pt", weights_only=True)
    assert meta["checkpoint_sha256"] == file_sha256(run_dir / "checkpoint_best.pt")
    assert meta["step"] == state["step"] and meta["decode"] == state["config"]["decode"]
    src = "\n".join(pairs(100)[0])
    native = run("translate.py", "--checkpoint", str(run_dir), "--beam", "1", stdin=src)
    ct2 = run("translate.py", "--checkpoint", str(out), "--engine", "ctranslate2", "--beam", "1",
              stdin=src)  # fmt: skip
    assert native.returncode == ct2.returncode == 0, ct2.stderr
    assert ct2.stdout == native.stdout and len(ct2.stdout.splitlines()) == 100


def test_a_checkpoint_is_exported_once_into_the_cache(run_dir, tmp_path):
    cache = tmp_path / "cache"
    env = {"NMT_CACHE": str(cache)}
    args = ["--checkpoint", str(run_dir), "--engine", "ctranslate2", "--beam", "2"]
    first = run("translate.py", *args, stdin="A dog runs.\n", env=env)
    assert first.returncode == 0, first.stderr
    folders = list((cache / "ctranslate2").iterdir())
    assert [f.name for f in folders] == [file_sha256(run_dir / "checkpoint_best.pt")[:32]]
    stamp = (folders[0] / "model.bin").stat().st_mtime_ns
    again = run("translate.py", *args, stdin="A dog runs.\n", env=env)
    assert again.stdout == first.stdout
    assert (folders[0] / "model.bin").stat().st_mtime_ns == stamp  # reused, not rewritten


def test_export_refuses_to_replace_what_it_did_not_write(run_dir, tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine\n")
    (tmp_path / "file").write_text("x\n")
    cases = [
        (mine, [], f"--out {mine} already exists; choose another path or pass --overwrite"),
        (mine, ["--overwrite"], f"--out {mine} is not an export of this project"),
        (tmp_path / "file", [], "exists and is not a folder"),
        (tmp_path / "no" / "dir", [], "does not exist"),
    ]
    for out, extra, needle in cases:
        proc = module("nmt.export", str(run_dir), "--format", "ctranslate2", "--out", str(out),
                      *extra)  # fmt: skip
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert (mine / "keep.txt").read_text() == "mine\n" and [p.name for p in mine.iterdir()] == [
        "keep.txt"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "notes"]  # no temp folder left
    out = tmp_path / "x-ct2"
    export_ctranslate2(run_dir, out)
    before = (out / "model.bin").read_bytes()
    export_ctranslate2(run_dir, out, quantization="int8", overwrite=True)  # an export: replaced
    assert json.loads((out / META).read_text())["quantization"] == "int8"
    assert (out / "model.bin").read_bytes() != before


def test_int8_export_is_smaller_and_translates(run_dir, tmp_path):
    export_ctranslate2(run_dir, tmp_path / "fp32")
    export_ctranslate2(run_dir, tmp_path / "int8", quantization="int8")
    _, tok, cfg, _ = load_for_inference(run_dir / "checkpoint_best.pt")
    fp32 = load_translator(tmp_path / "fp32", CPU)
    int8 = load_translator(tmp_path / "int8", CPU)  # "default": the stored int8
    src = [ids + [EOS_ID] for ids in tok.encode(pairs(30)[0])]
    search = DecodeConfig(beam=1, max_len_a=1.0, max_len_b=5)
    a = decode_corpus_ct2(fp32, tok, src, search, max_positions=cfg.model.max_positions)
    b = decode_corpus_ct2(int8, tok, src, search, max_positions=cfg.model.max_positions)
    assert a and b and len(a) == len(b) == 30
    # Weight matrices are stored as int8 (the position table stays float32): a smaller file.
    fp32_size = (tmp_path / "fp32" / "model.bin").stat().st_size
    assert (tmp_path / "int8" / "model.bin").stat().st_size < 0.75 * fp32_size
    assert all(len(h) == 1 and h[0].logprob < 0 for h in a + b)


def test_without_ctranslate2_one_line_says_how_to_install(run_dir, monkeypatch, capsys, tmp_path):
    import translate
    from nmt.decode import export

    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 -> ImportError
    monkeypatch.setattr(sys, "stdin", open(tmp_path / "in.txt", "w+"))
    hint = 'error: CTranslate2 is not installed; install it with pip install -e ".[ct2]"'
    # translate.main names the WARNING level "warning" for its messages: restore it after.
    monkeypatch.setattr(logging, "_levelToName", dict(logging._levelToName))
    monkeypatch.setattr(logging, "_nameToLevel", dict(logging._nameToLevel))
    code = translate.main(["--checkpoint", str(run_dir), "--engine", "ctranslate2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(hint)
    code = export.main([str(run_dir), "--format", "ctranslate2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(hint)
    assert not (tmp_path / "o").exists()


def test_a_damaged_export_is_one_error_line(run_dir, tmp_path):
    out = export_ctranslate2(run_dir, tmp_path / "ct2")
    data = (out / "model.bin").read_bytes()
    (out / "model.bin").write_bytes(data[: len(data) // 3])
    proc = run("translate.py", "--checkpoint", str(out), "--engine", "ctranslate2",
               stdin="A dog.\n")  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == "" and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: CTranslate2 cannot load {out}")
    native = run("translate.py", "--checkpoint", str(out), stdin="A dog.\n")
    assert native.returncode == 2 and native.stderr.strip() == (
        f"error: --checkpoint {out} is a CTranslate2 export; translate with it using "
        "--engine ctranslate2"
    )


def test_output_onto_a_file_of_the_export_is_refused(run_dir, tmp_path):
    out = export_ctranslate2(run_dir, tmp_path / "ct2")
    for name in ("model.bin", META, "sentencepiece.model"):
        before = (out / name).read_bytes()
        proc = run("translate.py", "--checkpoint", str(out), "--engine", "ctranslate2",
                   "--output", str(out / name), stdin="A dog.\n")  # fmt: skip
        assert proc.returncode == 2 and proc.stderr.strip() == (
            f"error: --output {out / name} is the --checkpoint file; choose another output path"
        )
        assert (out / name).read_bytes() == before


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_overwrite_replaces_an_export_never_the_users_files_in_it(run_dir, tmp_path):
    out = export_ctranslate2(run_dir, tmp_path / "ct2")
    assert json.loads((out / META).read_text())["files"] == sorted(
        p.name for p in out.iterdir() if p.name != META
    )
    (out / "notes.md").write_text("my notes\n")
    (out / "eval").mkdir()
    (out / "eval" / "bleu.txt").write_text("39.4\n")
    kept = {p: _sha(p) for p in (out / "notes.md", out / "eval" / "bleu.txt", out / "model.bin")}
    proc = module("nmt.export", str(run_dir), "--format", "ctranslate2", "--out", str(out),
                  "--overwrite")  # fmt: skip
    assert proc.returncode == 2 and proc.stderr == (
        f"error: --out {out} holds files the export did not write (eval, notes.md); move them "
        "out first, or choose another --out: --overwrite replaces an export, never anything "
        "else\n"
    )
    assert {p: _sha(p) for p in kept} == kept
    (out / "notes.md").unlink()
    shutil.rmtree(out / "eval")
    proc = module("nmt.export", str(run_dir), "--format", "ctranslate2", "--out", str(out),
                  "--overwrite", "--quantization", "int8")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / META).read_text())["quantization"] == "int8"


def test_a_swapped_tokenizer_is_refused(run_dir, tmp_path):
    out = export_ctranslate2(run_dir, tmp_path / "ct2")
    meta = json.loads((out / META).read_text())
    assert meta["tokenizer_sha256"] == _sha(out / "sentencepiece.model")
    other = tmp_path / "other-spm"
    other.write_bytes((out / "sentencepiece.model").read_bytes()[:-7] + b"changed")
    shutil.copy(other, out / "sentencepiece.model")
    proc = run("translate.py", "--checkpoint", str(out), "--engine", "ctranslate2",
               stdin="A dog.\n")  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        f"error: {out / 'sentencepiece.model'} is not the tokenizer this model was exported "
        "with (its SHA-256 differs from nmt_export.json's); export the checkpoint again\n"
    )


@pytest.mark.parametrize("engine", ["native", "ctranslate2"])
def test_an_export_without_its_record_is_called_incomplete(run_dir, tmp_path, engine):
    out = export_ctranslate2(run_dir, tmp_path / "ct2")
    (out / META).unlink()
    proc = run("translate.py", "--checkpoint", str(out), "--engine", engine, stdin="A dog.\n")
    assert proc.returncode == 2 and proc.stderr == (
        f"error: {out} holds a CTranslate2 model but no {META}: the export is incomplete (or not "
        "this project's); export the checkpoint again with python -m nmt.export\n"
    )


@pytest.mark.parametrize("content", [b"hello\n", bytes(range(256)) * 8])
def test_a_file_that_is_not_a_checkpoint_is_called_so(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    proc = module("nmt.export", str(path), "--format", "ctranslate2", "--out",
                  str(tmp_path / "ct2"))  # fmt: skip
    assert proc.returncode == 2 and proc.stderr == (
        f"error: {path} is not a readable checkpoint (truncated or not a torch file); pass a run "
        "directory or a checkpoint .pt file that train.py wrote\n"
    )
    assert not (tmp_path / "ct2").exists()
