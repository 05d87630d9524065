"""python -m nmt.sweep and python -m nmt.report end to end on a tiny synthetic corpus."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nmt.study.report_plots import PLOTS

from .conftest import cipher_flags, module, run, write_cipher


def train_flags(dataset) -> list[str]:
    return [
        *cipher_flags(dataset),
        "--max-steps",
        "40",
        "--valid-every",
        "20",
        "--train.lr",
        "1e-2",
    ]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two eps values on the cipher corpus, 40 updates each, report included."""
    base = tmp_path_factory.mktemp("sweep")
    data = write_cipher(base / "cipher")
    sweep_dir = base / "sw"
    args = ["--smoothing", "0", "0.3", "--sweep-dir", str(sweep_dir), "--bootstrap-samples", "200"]
    proc = module("nmt.sweep", *args, *train_flags(data))
    return proc, sweep_dir, args, data


def sacrebleu_cli(hyp, ref) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sacrebleu",
            str(ref),
            "-i",
            str(hyp),
            "-m",
            "bleu",
            "-b",
            "-w",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def table_rows(markdown: str, heading: str) -> dict[str, list[str]]:
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def test_sweep_trains_each_eps_and_writes_the_report(sweep):
    proc, sweep_dir, _, _ = sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("ls0-seed1", "ls0.3-seed1"):
        assert (sweep_dir / name / "results.json").is_file()
    for name in PLOTS:
        assert (sweep_dir / name).stat().st_size > 5000, name
    md = (sweep_dir / "report.md").read_text()
    html = (sweep_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(PLOTS)
    test_rows = table_rows(md, "Test set")
    assert set(test_rows) == {"eps 0 (no smoothing)", "eps 0.3"}
    # The table's BLEU is what the sacrebleu command line prints for the saved files.
    for label, name in (("eps 0 (no smoothing)", "ls0-seed1"), ("eps 0.3", "ls0.3-seed1")):
        run_dir = sweep_dir / name
        cli = sacrebleu_cli(run_dir / "test.hyp.txt", run_dir / "test.ref.txt")
        assert float(test_rows[label]["BLEU"]) == cli
        results = json.loads((run_dir / "results.json").read_text())
        assert f"{results['test']['ece']:.4f}" == test_rows[label]["ECE"]
        assert f"{results['test']['nll_loss']:.3f}" == test_rows[label]["NLL"]
    assert test_rows["eps 0 (no smoothing)"]["optimum gap"] == "∞"
    # K = 60: log((1 - 0.3 + 0.3 / 60) / (0.3 / 60)) = log(141) = 4.95
    assert test_rows["eps 0.3"]["optimum gap"] == "4.95"
    from nmt.study.stats import p_cell

    test = json.loads((sweep_dir / "report.json").read_text())["p_values"]["ls0.3-seed1"]
    assert 1 / 201 <= test["p_value"] <= 1.0
    assert test_rows["eps 0.3"]["p vs eps 0"] == p_cell(test)
    assert set(table_rows(md, "Validation set")) == set(test_rows)
    assert "nrefs:1|case:mixed|eff:no|tok:13a" in md and "case:lc" in md


def test_smoothing_changes_what_the_model_learned(sweep):
    """Same seed, same data order: eps alone moves confidence, entropy and the logit gap."""
    _, sweep_dir, _, _ = sweep
    r0, r3 = (
        json.loads((sweep_dir / n / "results.json").read_text())["test"]
        for n in ("ls0-seed1", "ls0.3-seed1")
    )
    assert r3["entropy"] > r0["entropy"]
    assert r3["confidence"] < r0["confidence"]
    assert r3["logit_gap"] < r0["logit_gap"]


def test_runs_share_tokenizer_and_log_hparams(sweep):
    _, sweep_dir, _, _ = sweep
    spm = [(sweep_dir / n / "spm.model").read_bytes() for n in ("ls0-seed1", "ls0.3-seed1")]
    assert spm[0] == spm[1]
    for name, eps in (("ls0-seed1", 0.0), ("ls0.3-seed1", 0.3)):
        acc = EventAccumulator(str(sweep_dir / name), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        assert "hparam/test_ece" in tags["scalars"] and "hparam/test_bleu" in tags["scalars"]
        assert "valid/ece" in tags["scalars"] and "valid/logit_gap" in tags["scalars"]
        results = json.loads((sweep_dir / name / "results.json").read_text())
        assert results["smoothing"] == eps
        assert acc.Scalars("hparam/test_ece")[0].value == pytest.approx(results["test"]["ece"])


def test_rerun_trains_only_what_is_missing(sweep):
    proc, sweep_dir, args, data = sweep
    assert proc.returncode == 0
    done = sweep_dir / "ls0-seed1" / "results.json"
    stamp = done.stat().st_mtime_ns
    # An interrupted run: killed at update 25, after its checkpoint at update 20.
    partial = sweep_dir / "ls0.1-seed1"
    flags = [*train_flags(data), "--smoothing", "0.1", "--seed", "1", "--run-dir", str(partial)]
    killed = run("train.py", *flags, env={"NMT_TEST_KILL_AT_STEP": "25"})
    assert killed.returncode == -9
    again = module("nmt.sweep", *args[:1], "0", "0.1", *args[3:], *train_flags(data))
    assert again.returncode == 0, again.stderr[-3000:]
    assert done.stat().st_mtime_ns == stamp
    log = (sweep_dir / "sweep.log").read_text()
    assert f"{sweep_dir / 'ls0-seed1'}: finished earlier, not retrained" in log
    assert f"{partial}: unfinished earlier attempt, resuming it" in log
    assert "resumed at update 20" in (partial / "train.log").read_text()
    assert (partial / "results.json").is_file()
    assert set(table_rows((sweep_dir / "report.md").read_text(), "Test set")) == {
        "eps 0 (no smoothing)",
        "eps 0.1",
    }


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seed", "3"], "error: --seed is set by the sweep per run; remove it"),
        (["--train.lr", "5e-3"], "holds a sweep trained with other flags"),
        (["--bogus.key", "1"], "unknown config key 'bogus.key'"),
    ],
)
def test_bad_sweeps_fail_in_one_line_before_training(sweep, extra, message):
    _, sweep_dir, args, data = sweep
    flags = train_flags(data)
    if extra[0] == "--train.lr":
        flags = flags[: flags.index("--train.lr")]
    proc = module("nmt.sweep", *args, *flags, *extra)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_report_refuses_an_unfinished_run(tmp_path):
    (tmp_path / "run").mkdir()
    proc = module("nmt.report", str(tmp_path / "run"), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {tmp_path / 'run'} has no results.json: the run is missing or did not finish; "
        "finish it (or leave it out) and run the report again"
    )


def test_report_cli_on_existing_runs_matches_the_sweep_report(sweep, tmp_path):
    _, sweep_dir, _, _ = sweep
    runs = [str(sweep_dir / n) for n in ("ls0-seed1", "ls0.3-seed1")]
    proc = module("nmt.report", *runs, "--out", str(tmp_path), "--bootstrap-samples", "200")
    assert proc.returncode == 0, proc.stderr
    mine = json.loads((tmp_path / "report.json").read_text())
    assert re.search(r"\| eps 0\.3 \| 1 \|", (tmp_path / "report.md").read_text())
    for row in mine["rows"]:
        assert row["test"]["bleu"]["n"] == 1


def test_close_eps_values_get_their_own_runs_and_exact_flags():
    from nmt.config import format_eps
    from nmt.study.sweep import check_train_args, run_name

    assert (
        run_name(0.1, 1) == "ls0.1-seed1" and run_name(0.0, 2) == run_name(-0.0, 2) == "ls0-seed2"
    )
    assert run_name(0.1000001, 1) == "ls0.1000001-seed1"
    assert run_name(0.1 + 1e-12, 1) == f"ls{0.1 + 1e-12!r}-seed1" != run_name(0.1, 1)
    for eps in (0.1, 0.1000001, 0.1 + 1e-12, 1 / 3, 0.0, 0.05):
        assert float(format_eps(eps)) == eps
    check_train_args([], [0.1, 0.1 + 1e-12], [1])  # distinct values, distinct runs: accepted


def test_fairseq_runs_get_their_own_names_beside_uniform_ones(sweep, tmp_path):
    """A sweep under --smoothing-type fairseq names its runs ls<eps>-fairseq-seed<seed>, so its
    artifacts join the uniform sweep's in one folder and one report shows both conventions."""
    from nmt.study.sweep import copy_artifacts, run_name

    assert run_name(0.1, 1, "fairseq") == "ls0.1-fairseq-seed1" != run_name(0.1, 1)
    assert run_name(0.1, 2, "confidence-penalty") == "ls0.1-confidence-penalty-seed2"
    proc, sweep_dir, _, data = sweep
    assert proc.returncode == 0
    keep = tmp_path / "runs"
    copy_artifacts(sweep_dir / "ls0.3-seed1", keep)  # the uniform sweep's run, kept as before
    fs_dir = tmp_path / "sw-fairseq"
    fs = module(
        "nmt.sweep", "--smoothing", "0.3", "--smoothing-type", "fairseq", "--sweep-dir",
        str(fs_dir), "--artifacts", str(keep), "--no-report", *train_flags(data),
    )  # fmt: skip
    assert fs.returncode == 0, fs.stderr[-3000:]
    assert sorted(p.name for p in fs_dir.iterdir() if p.is_dir()) == ["ls0.3-fairseq-seed1"]
    assert sorted(p.name for p in keep.iterdir()) == ["ls0.3-fairseq-seed1", "ls0.3-seed1"]
    results = json.loads((keep / "ls0.3-fairseq-seed1" / "results.json").read_text())
    assert (results["smoothing"], results["smoothing_type"]) == (0.3, "fairseq")
    # fairseq's optimum puts eps on the K - 1 other entries: log((1 - eps) / (eps / (K - 1)))
    k = results["vocab_size"]
    assert results["optimal_logit_gap"] == pytest.approx(math.log(0.7 * (k - 1) / 0.3))
    out = tmp_path / "report"
    rebuilt = module(
        "nmt.report", str(keep / "ls0.3-seed1"), str(keep / "ls0.3-fairseq-seed1"),
        "--out", str(out), "--bootstrap-samples", "50",
    )  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr
    labels = [r["label"] for r in json.loads((out / "report.json").read_text())["rows"]]
    assert labels == ["eps 0.3", "eps 0.3 (fairseq)"]


def test_malformed_sweep_record_and_bad_seeds_are_one_line(tmp_path):
    sweep_dir = tmp_path / "sw"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text('{"train_args": ')
    proc = module("nmt.sweep", "--smoothing", "0", "--sweep-dir", str(sweep_dir))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: {sweep_dir / 'sweep.json'} is not a sweep record (JSONDecodeError); move it "
        "away to start this folder again, or use another --sweep-dir"
    )
    proc = module("nmt.sweep", "--smoothing", "0", "--seeds", "-1", "--sweep-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: 'train.seed' must be in [0, 2^32), got -1"


def test_artifacts_rebuild_the_same_report_and_never_overwrite(sweep, tmp_path):
    """--artifacts copies each finished run's small files; the report rebuilt from the copies
    alone is the sweep's own report.json, number for number."""
    proc, sweep_dir, args, data = sweep
    assert proc.returncode == 0
    keep = tmp_path / "study" / "runs"
    again = module("nmt.sweep", *args, *train_flags(data), "--artifacts", str(keep))
    assert again.returncode == 0, again.stderr[-3000:]
    names = ("ls0-seed1", "ls0.3-seed1")
    for name in names:
        files = sorted(p.name for p in (keep / name).iterdir())
        assert files == sorted(
            ["config.yaml", "results.json", "train.log", "test.hyp.txt", "test.ref.txt",
             "valid.hyp.txt", "valid.ref.txt", "test.beam5.hyp.txt", "valid.beam5.hyp.txt"]
        )  # fmt: skip
        for f in files:
            assert (keep / name / f).read_bytes() == (sweep_dir / name / f).read_bytes()
    out = tmp_path / "study"
    rebuilt = module(
        "nmt.report", *(str(keep / n) for n in names), "--out", str(out),
        "--bootstrap-samples", "200",
    )  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (out / "report.json").read_text() == (sweep_dir / "report.json").read_text()
    # A different file under a run's name is another run's: refused, left as it was.
    (keep / "ls0.3-seed1" / "train.log").write_text("another run\n")
    refused = module("nmt.sweep", *args, *train_flags(data), "--artifacts", str(keep))
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]  # after the sweep's own log lines
    assert last.startswith(f"error: {keep / 'ls0.3-seed1' / 'train.log'} exists and differs")
    assert (keep / "ls0.3-seed1" / "train.log").read_text() == "another run\n"
    # A file named as the folder: refused before any training.
    (tmp_path / "afile").write_text("x")
    proc = module("nmt.sweep", *args, *train_flags(data), "--artifacts", str(tmp_path / "afile"))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"error: --artifacts {tmp_path / 'afile'} is a file; name a folder"
    )
