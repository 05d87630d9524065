"""Reading finished runs for a report: results.json (nmt.results), hypotheses, references."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nmt import results as results_file
from nmt.errors import NMTError
from nmt.study.analyses.tables import read_analysis


def load_runs(run_dirs: Sequence[str | Path]) -> list[dict]:
    """Every run of a report: distinct names, all scored on the same splits."""
    if not run_dirs:
        raise NMTError("no run directories given")
    runs = [load_run(d) for d in run_dirs]
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise NMTError("two runs share a directory name; give each run its own name")
    with_test = sorted(r["dir"] for r in runs if r["split"] == "test")
    without = sorted(r["dir"] for r in runs if r["split"] != "test")
    if with_test and without:
        raise NMTError(
            f"{', '.join(with_test)} were scored on a test split but {', '.join(without)} were "
            "not; compare runs that used the same splits"
        )
    return runs


def _read_lines(path: Path) -> list[str]:
    """Lines of a hypothesis/reference file (split on newlines only, as train.py writes them)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def load_run(run_dir: str | Path) -> dict:
    """A finished run: its results.json plus its test (or validation) hypotheses/references."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise NMTError(
            f"{run_dir} has no results.json: the run is missing or did not finish; "
            "finish it (or leave it out) and run the report again"
        )
    run = results_file.read(path)
    split = "test" if run.get("test") else "valid"
    hyp, ref = run_dir / f"{split}.hyp.txt", run_dir / f"{split}.ref.txt"
    if not (hyp.is_file() and ref.is_file()):
        raise NMTError(f"{run_dir} lacks {hyp.name} or {ref.name}; the run did not finish")
    hyps, refs = _read_lines(hyp), _read_lines(ref)
    if len(hyps) != len(refs):
        raise NMTError(
            f"{hyp} has {len(hyps)} lines but {ref.name} has {len(refs)}: they are not aligned "
            "line by line, so no significance test can pair them; rewrite them with train.py"
        )
    run.update(name=run_dir.name, dir=str(run_dir), split=split, hyps=hyps, refs=refs)
    run["analysis"] = read_analysis(run_dir)  # python -m nmt.analyze's, or None
    _read_beam(run, run_dir, path)
    return run


def _read_beam(run: dict, run_dir: Path, path: Path) -> None:
    """The final beam search's scores (results.json 'beam', train.py's decode.final_beam) as
    the metric bleu_beam of each split, and its hypotheses as run['beam_hyps']."""
    beam = run.get("beam")
    if beam is None:
        return
    if not (isinstance(beam, dict) and isinstance(beam.get("beam"), int)):
        raise NMTError(f"{path}: 'beam' is not the final beam search's scores; rerun that run")
    for split in ("valid", "test"):
        scores = beam.get(split)
        if run.get(split) and scores is not None:
            if not (isinstance(scores, dict) and isinstance(scores.get("bleu"), (int, float))):
                raise NMTError(f"{path}: 'beam' holds no BLEU for '{split}'; rerun that run")
            run[split]["bleu_beam"] = scores["bleu"]
    hyp = run_dir / f"{run['split']}.beam{beam['beam']}.hyp.txt"
    if not hyp.is_file():
        raise NMTError(f"{run_dir} lacks {hyp.name}, the beam search's output; rerun that run")
    run["beam_hyps"] = _read_lines(hyp)
    if len(run["beam_hyps"]) != len(run["refs"]):
        raise NMTError(
            f"{hyp} has {len(run['beam_hyps'])} lines but the references have "
            f"{len(run['refs'])}; rewrite it with train.py"
        )


def beam_of(runs: list[dict]) -> str:
    """The final beam search the runs share, e.g. 'beam 5 (length penalty 1)'; refused when
    runs used different ones, since their beam columns would not compare."""
    searches = {(r["beam"]["beam"], r["beam"].get("length_penalty")) for r in runs if r.get("beam")}
    if len(searches) > 1:
        listed = ", ".join(f"beam {b} (length penalty {a:g})" for b, a in sorted(searches))
        raise NMTError(
            f"the runs were scored with different final beam searches ({listed}); compare runs "
            "with the same decode.final_beam and decode.length_penalty"
        )
    if not searches:
        return "no beam search"
    beam, alpha = searches.pop()
    return f"beam {beam} (length penalty {alpha:g})"
