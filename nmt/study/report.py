"""The epsilon comparison report (tables + plots) from finished runs.

    python -m nmt.report RUN_DIR [RUN_DIR ...] [--out DIR] [--bootstrap-samples 1000]
                         [--baseline LABEL]

Reads each run's results.json (written by train.py with the best checkpoint's validation and
test metrics) and its test.hyp.txt / test.ref.txt, and writes report.md, report.html (the same
content with the figures embedded), report.json and the PNG figures into --out. Runs are
grouped by their objective's label (nmt.objective.smoothing); every row is tested against the
baseline row (eps 0 unless --baseline names another label).

The parts: study.runs reads the runs, study.stats aggregates and tests them, study.prose
writes the answers, study.teachers compares distilled students by their teachers' smoothing,
study.document lays out the report, report_render and report_plots draw it.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from nmt.errors import ArgumentParser, NMTError
from nmt.study.analyses.document import analysis_blocks
from nmt.study.analyses.prose import answers
from nmt.study.comparable import check_rows
from nmt.study.document import build_document
from nmt.study.report_plots import plot_all
from nmt.study.report_render import render_html, render_markdown
from nmt.study.runs import beam_of, load_runs
from nmt.study.stats import BASELINE, aggregate, paired_bootstrap
from nmt.study.teachers import compare_teachers, teacher_blocks


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    bootstrap_samples: int = 1000,
    command: str | None = None,
    baseline: str = BASELINE,
    allow_mixed: bool = False,
) -> Path:
    """Load the runs, compute the tables, p-values and figures; return the report.md path.

    baseline: the label of the row every other is tested against (eps 0 by default).
    allow_mixed: average runs of one row that differ in more than their seed (the report says
    how); refused otherwise.
    """
    runs = load_runs(run_dirs)
    mixed = check_rows(runs, allow_mixed)
    teachers = compare_teachers(runs, bootstrap_samples)  # refuses before anything is written
    labels = sorted({r["label"] for r in runs})
    if baseline != BASELINE and baseline not in labels:
        raise NMTError(
            f"--baseline {baseline!r} names no run; the runs' labels are {', '.join(labels)}"
        )
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NMTError(f"--out {out_dir} is a file; name a folder for the report")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NMTError(f"cannot create the report folder {out_dir}: {exc.strerror}") from None
    if not os.access(out_dir, os.W_OK):
        raise NMTError(f"cannot write the report into {out_dir}: it is read-only; choose "
                       "another --out")  # fmt: skip
    pvalues = paired_bootstrap(runs, bootstrap_samples, baseline=baseline)
    beam_pvalues = paired_bootstrap(runs, bootstrap_samples, "beam_hyps", baseline)
    rows = aggregate(runs, pvalues, beam_pvalues)
    meta = {"bootstrap_samples": bootstrap_samples, "command": command, "beam": beam_of(runs)}
    meta["baseline"], meta["mixed"] = baseline, mixed
    numbers = {"rows": rows, "p_values": pvalues, "p_values_beam": beam_pvalues}
    if teachers:  # distilled students: their teachers compared (absent from other reports)
        numbers["teachers"] = teachers
    try:
        _write(out_dir, runs, rows, meta, numbers)
    except OSError as exc:
        raise NMTError(
            f"cannot write the report into {out_dir}: {exc.strerror or exc}; choose another "
            "--out (files already there are replaced whole or not at all)"
        ) from None
    return out_dir / "report.md"


def _write(out_dir: Path, runs: list[dict], rows: list[dict], meta: dict, numbers: dict) -> None:
    """The figures, then report.md, report.html and report.json, each replaced atomically."""
    figures = plot_all(runs, rows, out_dir)
    analyses = [run["analysis"] for run in runs if run.get("analysis")]
    extra = teacher_blocks(numbers.get("teachers"), rows, runs[0]["split"], meta["baseline"])
    if analyses:  # python -m nmt.analyze's sections, and the sentences the answer gains
        extra["answer"].append(("p", " ".join(answers(analyses))))
        extra["sections"] += analysis_blocks(analyses, out_dir)
    doc = build_document(runs, rows, figures, meta, extra)
    for name, text in (
        ("report.md", render_markdown(doc)),
        ("report.html", render_html(doc, out_dir)),
        ("report.json", json.dumps(numbers, indent=2) + "\n"),
    ):
        tmp = out_dir / f".{name}.tmp"
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(out_dir / name)
        finally:
            tmp.unlink(missing_ok=True)


def build_parser() -> ArgumentParser:
    """python -m nmt.report's arguments (tests read a committed report's command with it)."""
    parser = ArgumentParser(
        prog="python -m nmt.report", description="Compare finished runs across label smoothing."
    )
    parser.add_argument("runs", nargs="+", help="run directories (each with results.json)")
    parser.add_argument("--out", default=".", help="folder for report.md/html/json and figures")
    parser.add_argument("--bootstrap-samples", type=int, default=1000)
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        metavar="LABEL",
        help="the row every other is tested against, by its label as the table shows it, "
        f"e.g. 'eps 0.1' (default: {BASELINE!r})",
    )
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="average runs of one row that differ in more than their seed (other data, "
        "vocabulary, model or budget); the report lists the differences",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.bootstrap_samples < 1:
            raise NMTError("--bootstrap-samples must be at least 1")
        command = shlex.join(["python", "-m", "nmt.report", *(argv or sys.argv[1:])])
        path = write_report(
            args.runs, args.out, args.bootstrap_samples, command, args.baseline, args.allow_mixed
        )
    except NMTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0
