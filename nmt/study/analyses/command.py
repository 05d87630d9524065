"""python -m nmt.analyze RUN_DIR... --out DIR: what label smoothing does at inference.

For each run folder (with its checkpoint_best.pt), writes RUN_DIR/analysis.json:
- temperature: one temperature fitted on the validation set's teacher-forced NLL; test NLL,
  PPL and ECE before and after; test BLEU at beams 5 and 50 with it;
- beams: test BLEU, length ratio and the share of outputs under half their reference's length
  at each beam size, with length penalty 0 and 1;
- rectified: the same curve with the smoothing rectified before search (Liang et al., 2022);
- generated: calibration of the generated pieces (labelled by alignment to the reference);
- representations: Müller et al.'s projection of the decoder's final hidden states at three
  pieces, and how tight their clusters are.
Then writes DIR/analysis.md with the figures across the runs (what nmt.report adds as its
sections when the run folders hold analysis.json).

A separate command from nmt.report: it needs checkpoints and hours of decoding on a CPU, while
the report is a pure function of the small committed files and regenerates byte for byte.
Parts already in a run's analysis.json are kept (a stopped analysis goes on where it
stopped) unless --redo.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nmt.errors import ArgumentParser, NMTError, run_module
from nmt.study.analyses.beams import BEAMS
from nmt.study.analyses.representations import DEFAULT_PIECES, piece_ids
from nmt.study.analyses.run import PARTS, RunAnalysis, find_checkpoint
from nmt.train.precision import resolve_device

log = logging.getLogger("nmt.analyze")


def _items(text: str, flag: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise NMTError(f"{flag} needs a comma-separated list, got {text!r}")
    return items


def parse_parts(text: str) -> tuple[str, ...]:
    """--only's parts, in PARTS order; one NMTError naming an unknown one."""
    asked = _items(text, "--only")
    unknown = [p for p in asked if p not in PARTS]
    if unknown:
        raise NMTError(f"--only: unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    return tuple(p for p in PARTS if p in asked)


def parse_beams(text: str) -> tuple[int, ...]:
    """--beams' sizes, sorted and distinct; one NMTError for anything but integers >= 1."""
    try:
        beams = sorted({int(x) for x in _items(text, "--beams")})
    except ValueError:
        raise NMTError(f"--beams needs integers >= 1 separated by commas, got {text!r}") from None
    if beams[0] < 1:
        raise NMTError(f"--beams needs integers >= 1, got {beams[0]}")
    return tuple(beams)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m nmt.analyze", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders, each with checkpoint_best.pt")
    p.add_argument("--out", required=True, help="folder for analysis.md and its figures")
    p.add_argument("--only", default=",".join(PARTS), help=f"parts to run ({','.join(PARTS)})")
    p.add_argument("--redo", action="store_true", help="run parts already in analysis.json again")
    p.add_argument("--beams", default=",".join(map(str, BEAMS)), help="beam sizes of the curves")
    p.add_argument(
        "--pieces",
        default=",".join(DEFAULT_PIECES),
        help="three target pieces for the representations (default %(default)s)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens per teacher-forced batch")
    return p  # fmt: skip


def analyze(args, command: str) -> Path:
    """Check every run and flag first, then analyse each run, then write --out."""
    from nmt.study.analyses.document import write_analysis

    parts, beams = parse_parts(args.only), parse_beams(args.beams)
    pieces = _items(args.pieces, "--pieces")
    if args.max_tokens < 1:
        raise NMTError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    folders = [Path(r) for r in args.runs]
    if len({f.resolve() for f in folders}) != len(folders):
        raise NMTError("a run folder is given twice; give each once")
    for folder in folders:
        if not folder.is_dir():
            raise NMTError(f"{folder} is not a run folder")
        find_checkpoint(folder)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NMTError(f"--out {out} is a file; name a folder for analysis.md")
    device = resolve_device(args.device)
    todo = [RunAnalysis(folder, device, args.max_tokens, pieces, beams, args.redo)
            for folder in folders]  # fmt: skip
    if "representations" in parts:
        for run in todo:
            piece_ids(run.tok, pieces)  # every run's vocabulary, before any long work
    while todo:
        todo.pop(0).run(parts)  # each run's splits and passes freed after it
    return write_analysis(folders, out, command)


def main(argv: list[str] | None = None) -> int:
    return run_module("nmt.analyze", build_parser(), lambda a, c: f"wrote {analyze(a, c)}", argv)
