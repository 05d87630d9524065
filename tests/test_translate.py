"""translate.py end to end: beam and greedy output, nbest, sacreBLEU scoring, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import MULTI30K, ROOT, run


@pytest.fixture(scope="module")
def run_dir(multi30k_run):
    proc, path = multi30k_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


def sources(n: int = 60) -> list[str]:
    return [json.loads(line)["en"] for line in (MULTI30K / "test.jsonl").open()][:n]


def sacrebleu_cli(ref, hyp, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp), "-m", "bleu", "chrf"]
    out = subprocess.run(
        [*cmd, "-f", "text", "-w", "2", *extra], capture_output=True, text=True, check=True
    ).stdout
    return [line.strip() for line in out.splitlines()]


def test_greedy_stdin_to_stdout_matches_training_hypotheses(run_dir, tmp_path):
    lines = sources(5)
    src = [lines[0], "", lines[1], lines[2]]
    proc = run("translate.py", "--checkpoint", str(run_dir), "--beam", "1", stdin="\n".join(src))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    out = proc.stdout.split("\n")[:-1]
    hyps = (run_dir / "test.hyp.txt").read_text().splitlines()
    assert out == [hyps[0], "", hyps[1], hyps[2]]  # validation/test decode through the same code


def test_beam_file_to_file_with_reference_equals_sacrebleu(run_dir, tmp_path):
    refs = [json.loads(line)["de"] for line in (MULTI30K / "test.jsonl").open()][:60]
    (tmp_path / "in.en").write_text("\n".join(sources()) + "\n")
    (tmp_path / "ref.de").write_text("\n".join(refs) + "\n")
    common = [
        "--checkpoint",
        str(run_dir / "checkpoint_best.pt"),
        "--input",
        str(tmp_path / "in.en"),
    ]
    for extra, cli_extra in [
        ([], []),
        (["--lowercase", "--tokenize", "intl"], ["-lc", "-tok", "intl"]),
    ]:
        out = tmp_path / "out.de"
        proc = run(
            "translate.py",
            *common,
            "--output",
            str(out),
            "--reference",
            str(tmp_path / "ref.de"),
            *extra,
        )
        assert proc.returncode == 0, proc.stderr
        printed = proc.stdout.splitlines()
        assert printed == sacrebleu_cli(tmp_path / "ref.de", out, *cli_extra)
        assert printed[0].startswith("BLEU|nrefs:1|case:" + ("lc" if extra else "mixed"))
        assert len(out.read_text().splitlines()) == 60
    greedy = run("translate.py", *common, "--beam", "1").stdout.splitlines()
    assert sum(g != b for g, b in zip(greedy, out.read_text().splitlines())) >= 3


def test_nbest_lists_are_ranked_and_start_with_the_best(run_dir):
    src = sources(6)
    best = run("translate.py", "--checkpoint", str(run_dir), "--beam", "4", stdin="\n".join(src))
    proc = run(
        "translate.py",
        "--checkpoint",
        str(run_dir),
        "--beam",
        "4",
        "--nbest",
        "3",
        stdin="\n".join(src),
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [int(r[0]) for r in rows] == [i for i in range(6) for _ in range(3)]
    for i in range(6):
        group = rows[3 * i : 3 * i + 3]
        scores = [float(r[1]) for r in group]
        assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    assert [rows[3 * i][2] for i in range(6)] == best.stdout.splitlines()


@pytest.mark.parametrize("engine", ["native", "ctranslate2"])
def test_empty_long_and_invalid_utf8_lines(run_dir, engine):
    long_line = " ".join(["a man in a red shirt"] * 40)
    data = b"A dog runs.\n\n" + long_line.encode() + b"\nbad \xff\xfe bytes\r\n   \nTwo men."
    args = ["--checkpoint", str(run_dir), "--engine", engine]
    proc = run("translate.py", *args, "--beam", "2", stdin=data)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode().split("\n")
    assert out[-1] == "" and len(out[:-1]) == 6
    assert out[1] == "" and out[4] == ""
    # The 30-step toy model may itself translate to "", so tell decoded lines apart by score.
    nbest = run("translate.py", *args, "--beam", "2", "--nbest", "2", stdin=data)
    rows = [line.split("\t") for line in nbest.stdout.decode().splitlines()]
    assert [int(r[0]) for r in rows] == [0, 0, 1, 2, 2, 3, 3, 4, 5, 5]
    assert [r[1] == "0.0000" for r in rows] == [False, False, True, False, False] * 2
    warnings = proc.stderr.decode().strip().splitlines()
    assert warnings == [
        "warning: 1 input line(s) were not valid UTF-8; the bad bytes were replaced with U+FFFD",
        "warning: 1 input line(s) were longer than the model's maximum of 64 tokens and were "
        "truncated",
    ]


def checkpoint_variants(run_dir, tmp_path):
    good = (run_dir / "checkpoint_best.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    state = torch.load(run_dir / "checkpoint_best.pt", weights_only=True)
    torch.save({**state, "format_version": 99}, tmp_path / "future.pt")
    # A checkpoint whose claims do not match its contents: vocabulary and architecture.
    torch.save({**state, "vocab_size": state["vocab_size"] + 5}, tmp_path / "vocab.pt")
    config = {**state["config"], "model": {**state["config"]["model"], "ffn_dim": 48}}
    torch.save({**state, "config": config}, tmp_path / "arch.pt")
    return [
        (tmp_path / "missing.pt", "does not exist"),
        (tmp_path / "truncated.pt", "is not a readable checkpoint (truncated or not a torch file"),
        (tmp_path / "text.pt", "is not a readable checkpoint"),
        (tmp_path / "foreign.pt", "is not a checkpoint written by this project"),
        (tmp_path / "future.pt", "has checkpoint format 99, this version reads 1"),
        (
            tmp_path / "vocab.pt",
            f"pieces but the model was built for {state['vocab_size'] + 5}; the checkpoint is "
            "inconsistent",
        ),
        (tmp_path / "arch.pt", "weights do not match its own architecture"),
    ]


@pytest.mark.parametrize("engine", ["native", "ctranslate2"])
def test_bad_checkpoints_give_one_line_and_exit_2(run_dir, tmp_path, engine):
    for path, needle in checkpoint_variants(run_dir, tmp_path):
        proc = run("translate.py", "--checkpoint", str(path), "--engine", engine, stdin="hello\n")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and proc.stdout == "", path
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
        assert needle in lines[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--nbest", "3", "--beam", "2"], "--nbest 3 needs --beam of at least 3"),
        (["--beam", "0"], "--beam must be >= 1"),
        (["--length-penalty", "-1"], "--length-penalty must be a finite number >= 0, got -1"),
        (["--length-penalty", "nan"], "--length-penalty must be a finite number >= 0, got nan"),
        (["--length-penalty", "inf"], "--length-penalty must be a finite number >= 0, got inf"),
        (["--max-len-a", "nan"], "--max-len-a must be a finite number >= 0, got nan"),
        (["--max-len-a", "-0.5"], "--max-len-a must be a finite number >= 0"),
        (["--max-len-b", "-1"], "--max-len-b must be >= 0, got -1"),
        (["--max-len-a", "0", "--max-len-b", "0"], "--max-len-a 0 with --max-len-b 0 leaves"),
        (["--min-len", "-2"], "--min-len must be >= 0, got -2"),
        (
            ["--min-len", "6", "--max-len-a", "0", "--max-len-b", "6"],
            "--min-len 6 does not fit the length limit of 1 input line(s) (the tightest allows 6 "
            "steps with EOS, so at most --min-len 5)",
        ),
        (["--max-tokens", "0"], "--max-tokens must be >= 1, got 0"),
        (["--batch-size", "-3"], "--batch-size must be >= 1, got -3"),
        (["--input", "/no/such/file"], "cannot read input /no/such/file"),
        (["--reference", "REF2"], "--reference has 2 lines but the input has 1"),
        (["--quantization", "int8", "--precision", "fp32"], "give --quantization or --precision"),
        (["--quantization", "int4"], "argument --quantization: invalid choice: 'int4'"),
    ],
)
@pytest.mark.parametrize("engine", ["native", "ctranslate2"])
def test_bad_flags_give_one_line_and_exit_2(run_dir, tmp_path, args, needle, engine):
    (tmp_path / "ref2").write_text("a\nb\n")
    args = [str(tmp_path / "ref2") if a == "REF2" else a for a in args]
    if "int8" in args and engine == "native":
        needle = "--quantization needs --engine ctranslate2"
    out = tmp_path / "out.txt"
    proc = run(
        "translate.py", "--checkpoint", str(run_dir), "--output", str(out), "--engine", engine,
        *args, stdin="hi\n",
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {needle}")
    assert not out.exists()  # nothing written on failure


def test_translate_imports_neither_tensorboard_nor_the_trainer():
    """translate.py needs the checkpoint, the model and the search: not the training stack."""
    from .conftest import modules_loaded

    unwanted = (
        "tensorboard",
        "torch.utils.tensorboard",
        "nmt.train.trainer",
        "nmt.train.distributed",
    )
    assert modules_loaded("translate", unwanted) == []


def test_the_final_beam_scores_are_translate_py_beam_5(run_dir):
    """train.py also decodes the best checkpoint with beam decode.final_beam (5): its test
    hypotheses are translate.py --beam 5's lines, and results.json's BLEU is sacreBLEU's."""
    results = json.loads((run_dir / "results.json").read_text())
    beam = results["beam"]
    assert (beam["beam"], beam["length_penalty"]) == (5, 1.0)
    hyps = (run_dir / "test.beam5.hyp.txt").read_text().splitlines()
    src = sources(len(hyps))
    assert len(hyps) == 100  # toy.yaml's max_valid_pairs (test too)
    proc = run("translate.py", "--checkpoint", str(run_dir), "--beam", "5", stdin="\n".join(src))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == hyps
    for split in ("valid", "test"):
        cli = subprocess.run(
            [sys.executable, "-m", "sacrebleu", str(run_dir / f"{split}.ref.txt"), "-i",
             str(run_dir / f"{split}.beam5.hyp.txt"), "-m", "bleu", "-b", "-w", "4"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert float(cli.stdout) == pytest.approx(beam[split]["bleu"], abs=1e-4)
        assert set(beam[split]) >= {"bleu", "chrf", "bleu_lc", "bleu_signature"}


@pytest.mark.parametrize("engine", ["native", "ctranslate2"])
def test_a_closed_stdin_is_one_line(run_dir, engine):
    """translate.py <&- : no standard input at all."""
    import os

    proc = subprocess.run(
        [sys.executable, str(ROOT / "translate.py"), "--checkpoint", str(run_dir), "--engine",
         engine], preexec_fn=lambda: os.close(0), capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        "error: no input: standard input is closed; pipe the text in or pass --input FILE\n"
    )


def test_a_full_standard_output_is_one_line(run_dir):
    """translate.py > /dev/full: the write fails with ENOSPC."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "translate.py"), "--checkpoint", str(run_dir)],
            input="A dog.\n", stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr == (
        "error: cannot write the translations to standard output: No space left on device\n"
    )
