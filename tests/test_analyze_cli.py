"""python -m nmt.analyze and translate.py's --temperature / --rectify-smoothing end to end, on
the toy Multi30k run: what they write, what they agree with, and what they refuse."""

from __future__ import annotations

import json
import shutil

import pytest

from nmt.study.analyses.command import main as analyze_main
from nmt.study.report import write_report
from tests.conftest import MULTI30K, cipher_flags, module, run, write_cipher


@pytest.fixture(scope="module")
def analysed(multi30k_run, tmp_path_factory):
    """A copy of the toy run (eps 0.1) analysed with beams 1 and 2, and the report of it."""
    proc, source = multi30k_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    base = tmp_path_factory.mktemp("analysed")
    run_dir = shutil.copytree(source, base / "ls0.1-toy")
    out = module("nmt.analyze", str(run_dir), "--out", str(base / "out"), "--beams", "1,2")
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir, base


@pytest.fixture(scope="module")
def unsmoothed(tmp_path_factory):
    """A toy run without label smoothing on the cipher corpus."""
    base = tmp_path_factory.mktemp("eps0")
    data = write_cipher(base / "cipher")
    proc = run("train.py", *cipher_flags(data), "--smoothing", "0", "--run-dir", str(base / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base / "run"


def test_every_part_is_written_and_agrees_with_training(analysed):
    run_dir, base = analysed
    analysis = json.loads((run_dir / "analysis.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    assert {"temperature", "beams", "rectified", "generated", "representations"} <= set(analysis)
    before = analysis["temperature"]["test"]["before"]
    assert before["nll_loss"] == pytest.approx(results["test"]["nll_loss"], abs=1e-5)
    assert before["ece"] == pytest.approx(results["test"]["ece"], abs=1e-5)
    assert analysis["temperature"]["test"]["after"]["nll_loss"] <= before["nll_loss"] + 0.01
    greedy = [r for r in analysis["beams"]["rows"] if r["beam"] == 1]
    assert [r["bleu"] for r in greedy] == [results["test"]["bleu"]] * 2  # greedy: test.hyp.txt
    assert [r["beam"] for r in analysis["rectified"]["rows"]] == [1, 1, 2, 2]
    assert analysis["rectified"]["gold"] == pytest.approx(0.9)
    assert analysis["representations"]["pieces"] == ["▁Mann", "▁Frau", "▁Hund"]
    assert 0.0 <= analysis["generated"]["generated"]["accuracy"] <= 1.0
    assert "### Temperature scaling" in (base / "out" / "analysis.md").read_text()


@pytest.mark.usefixtures("restore_root_logging")
def test_a_second_run_keeps_what_is_done(analysed, caplog):
    run_dir, base = analysed
    before = (run_dir / "analysis.json").read_bytes()
    with caplog.at_level("INFO", logger="nmt.analyze"):
        assert analyze_main([str(run_dir), "--out", str(base / "out2"), "--only", "beams"]) == 0
    assert "beams already in analysis.json, kept" in caplog.text
    assert (run_dir / "analysis.json").read_bytes() == before


@pytest.mark.usefixtures("restore_root_logging")
def test_an_analysis_of_another_checkpoint_is_refused_unless_redone(analysed, tmp_path, capsys):
    run_dir, _ = analysed
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    analysis = json.loads((copy / "analysis.json").read_text())
    step = analysis["step"]
    (copy / "analysis.json").write_text(json.dumps({**analysis, "step": step + 7}))
    out = ["--out", str(tmp_path / "out"), "--only", "beams"]
    assert analyze_main([str(copy), *out]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"analyses the checkpoint of update {step + 7}" in last
    assert analyze_main([str(copy), *out, "--beams", "1", "--redo"]) == 0
    redone = json.loads((copy / "analysis.json").read_text())
    assert redone["step"] == step and "temperature" not in redone
    assert redone["beams"]["rows"] == analysis["beams"]["rows"][:2]  # beam 1, both penalties


def test_the_report_adds_the_sections_and_regenerates_byte_for_byte(analysed, tmp_path):
    run_dir, _ = analysed
    outputs = []
    for _ in range(2):  # the same command twice: the report records its command
        write_report([run_dir], tmp_path / "report", command="python -m nmt.report RUN")
        outputs.append({p.name: p.read_bytes() for p in (tmp_path / "report").iterdir()})
    assert outputs[0] == outputs[1]
    text = outputs[0]["report.md"].decode()
    for heading in ("## At inference", "### Temperature scaling", "### Representations"):
        assert heading in text
    assert "Smoothing against a temperature fitted on validation" in text
    assert "analysis_beams.png" in outputs[0]


def test_translate_with_the_fitted_temperature(analysed, tmp_path):
    run_dir, _ = analysed
    fitted = json.loads((run_dir / "analysis.json").read_text())["temperature"]["fitted"]
    src = [json.loads(line)["en"] for line in open(MULTI30K / "test.jsonl")][:20]
    text = "\n".join(src) + "\n"
    outs = {}
    for name, flags in (("fitted", ["--temperature", "fitted"]),
                        ("number", ["--temperature", repr(fitted)]),
                        ("greedy-hot", ["--beam", "1", "--temperature", "7"])):  # fmt: skip
        proc = run("translate.py", "--checkpoint", str(run_dir), *flags, stdin=text)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[name] = proc.stdout
    assert outs["fitted"] == outs["number"]
    # greedy output never changes with T: it is the run's own greedy test output
    greedy = (run_dir / "test.hyp.txt").read_text().splitlines()[:20]
    assert outs["greedy-hot"].splitlines() == greedy


def test_rectified_translation_is_the_analysis_curve_and_eps_0_is_refused(analysed, unsmoothed):
    run_dir, _ = analysed
    rows = json.loads((run_dir / "analysis.json").read_text())["rectified"]["rows"]
    expected = next(r for r in rows if r["beam"] == 2 and r["alpha"] == 1.0)
    refs = run_dir / "test.ref.txt"
    src = [json.loads(line)["en"] for line in open(MULTI30K / "test.jsonl")]
    proc = run("translate.py", "--checkpoint", str(run_dir), "--rectify-smoothing", "--beam", "2",
               "--reference", str(refs), stdin="\n".join(src[: len(refs.read_text().splitlines())])
               + "\n")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    bleu = next(line for line in proc.stderr.splitlines() if line.startswith("BLEU"))
    assert f"= {expected['bleu']:.2f} " in bleu
    assert f"ratio = {expected['length_ratio']:.3f}" in bleu
    proc = run("translate.py", "--checkpoint", str(unsmoothed), "--rectify-smoothing",
               stdin="a b\n")  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: --rectify-smoothing: this checkpoint was trained without")


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--temperature", "0"], "--temperature must be a finite number > 0, got 0.0"),
        (["--temperature", "-2"], "--temperature must be a finite number > 0, got -2.0"),
        (["--temperature", "nan"], "--temperature must be a finite number > 0, got nan"),
        (["--temperature", "inf"], "--temperature must be a finite number > 0, got inf"),
        (["--temperature", "hot"], "--temperature must be a number > 0 or 'fitted', got 'hot'"),
        (["--temperature", "2", "--rectify-smoothing"], "give --temperature or --rectify-smooth"),
        (
            ["--engine", "ctranslate2", "--temperature", "2"],
            "--temperature works with --engine native only",
        ),
        (["--engine", "ctranslate2", "--rectify-smoothing"], "--rectify-smoothing works with"),
        (["--temperature", "fitted"], "--temperature fitted: "),
    ],
)
@pytest.mark.usefixtures("restore_root_logging")
def test_bad_translate_flags_are_one_line(unsmoothed, tmp_path, capsys, flags, needle):
    import translate

    (tmp_path / "src.txt").write_text("a b\n")
    out = tmp_path / "out.txt"
    code = translate.main(["--checkpoint", str(unsmoothed), "--input", str(tmp_path / "src.txt"),
                           "--output", str(out), *flags])  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {needle}")
    assert not out.exists()


def test_a_temperature_fitted_on_another_checkpoint_is_refused(analysed, tmp_path):
    run_dir, _ = analysed
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    analysis = json.loads((copy / "analysis.json").read_text())
    analysis["temperature"]["step"] += 1
    (copy / "analysis.json").write_text(json.dumps(analysis))
    proc = run("translate.py", "--checkpoint", str(copy), "--temperature", "fitted", stdin="a\n")
    assert proc.returncode == 2 and "was fitted on the checkpoint of update" in proc.stderr


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--only", "beams,colour"], "--only: unknown part 'colour'"),
        (["--beams", "0,5"], "--beams needs integers >= 1, got 0"),
        (["--beams", "five"], "--beams needs integers >= 1 separated by commas"),
        (["--pieces", "▁Mann,▁Frau"], "--pieces needs three different pieces"),
        (["--pieces", "▁Mann,▁Frau,▁Zebrastreifenxyz"], "--pieces: '▁Zebrastreifenxyz' is not a"),
        (["--max-tokens", "0"], "--max-tokens must be >= 1, got 0"),
    ],
)
@pytest.mark.usefixtures("restore_root_logging")
def test_bad_analyze_flags_are_one_line_and_write_nothing(
    analysed, tmp_path, capsys, flags, needle
):
    run_dir, _ = analysed
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    (copy / "analysis.json").unlink()
    code = analyze_main([str(copy), "--out", str(tmp_path / "out"), *flags])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines[-1].startswith(f"error: {needle}"), lines
    assert not (copy / "analysis.json").exists() and not (tmp_path / "out").exists()


@pytest.mark.usefixtures("restore_root_logging")
def test_runs_without_a_checkpoint_are_refused_before_any_work(analysed, tmp_path, capsys):
    run_dir, _ = analysed
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "results.json", bare / "results.json")
    for folders, needle in (([str(run_dir), str(bare)], "has no checkpoint_best.pt"),
                            ([str(tmp_path / "nowhere")], "is not a run folder")):  # fmt: skip
        code = analyze_main([*folders, "--out", str(tmp_path / "out")])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "out").exists()
