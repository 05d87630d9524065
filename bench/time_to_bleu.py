"""Time to quality: train a recipe under wall-clock budgets and score each on the test set.

    python bench/time_to_bleu.py --minutes 30 60 [--out ~/runs/ttb] [--beam 5]
                                 [--length-penalty A] [TRAIN.PY FLAGS ...]

For each budget M, one train.py process runs with --max-minutes M (so that a schedule that
decays to zero ends at the budget) in OUT/<name>-m<M>, from a cached tokenizer; nothing else
should run on the machine. Its best checkpoint (the EMA weights when the recipe keeps them)
is then scored on the validation and test splits with translate.py's search: beam --beam, the
checkpoint's length penalty unless --length-penalty is given. A budget whose run directory
already holds a results.json and a score is reported again, not retrained, so the command
can be continued across sessions. The benchmark marks each run directory it starts
(time_to_bleu.started); only such a run, unfinished, is started again from scratch (its
timing would be wrong otherwise), and a finished one of its own that lacks a score is scored.
Any other existing folder is refused with its path, never replaced.

The last lines read, one per budget,
  time_to_bleu: minutes=M test_bleu=X valid_bleu=Y test_bleu_lc=Z wall_minutes=W updates=N
(cased sacreBLEU 13a on detokenized output; bleu_lc: lowercased 13a, the convention of the
published Multi30k numbers). The scores are also written to OUT/<name>-m<M>/time_to_bleu.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    from nmt.errors import ArgumentParser  # one 'error:' line for a bad flag

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", required=True, help="budgets")
    p.add_argument("--out", default=str(Path.home() / "runs" / "time_to_bleu"))
    p.add_argument("--name", default="recipe", help="run folders are OUT/NAME-m<M>")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--length-penalty", type=float, default=None, help="default: checkpoint's")
    p.add_argument("--threads", type=int, default=0, help="torch threads for scoring (0: all)")
    return p.parse_known_args()


def score(run_dir: Path, beam: int, alpha: float | None) -> dict:
    """Validation and test BLEU of a run's best checkpoint with translate.py's search."""
    import torch

    from nmt.data.dataset import encode_split, load_dataset_dict, read_split
    from nmt.decode.search import decode_corpus
    from nmt.study.metrics import corpus_scores
    from nmt.train.checkpoint import load_for_inference

    model, tok, cfg, state = load_for_inference(run_dir / "checkpoint_best.pt", "cpu")
    decode = dataclasses.replace(cfg.decode, beam=beam)
    if alpha is not None:
        decode = dataclasses.replace(decode, length_penalty=alpha)
    dd = load_dataset_dict(cfg.data)
    out = {"step": state.get("step"), "beam": beam, "length_penalty": decode.length_penalty}
    for name, split in (("valid", cfg.data.valid_split), ("test", cfg.data.test_split)):
        sources, refs = read_split(dd, split, cfg.data)
        src_ids = encode_split(name, sources, refs, tok, cfg.data.max_len).src_ids
        start = time.perf_counter()
        nbests = decode_corpus(model, src_ids, decode, device=torch.device("cpu"), progress=True)
        hyps = tok.decode([n[0].tokens for n in nbests])
        cased = corpus_scores(hyps, refs)
        lc = corpus_scores(hyps, refs, lowercase=True, tokenize="13a")
        out[name] = {
            "bleu": cased["bleu"],
            "chrf": cased["chrf"],
            "bleu_lc": lc["bleu"],
            "signature": cased["bleu_signature"],
            "decode_seconds": time.perf_counter() - start,
        }
    return out


MARK = "time_to_bleu.started"  # in each run directory this benchmark started


class Refused(Exception):
    """A user error: one 'error:' line, exit 2."""


def plan(run_dir: Path) -> str:
    """What to do with a budget's run directory: 'report' (finished and scored), 'score'
    (finished by this benchmark, not scored), 'train' (new, or this benchmark's unfinished
    run, started again), or Refused for anything this benchmark did not start."""
    finished = (run_dir / "results.json").is_file()
    if finished and (run_dir / "time_to_bleu.json").is_file():
        return "report"
    if not run_dir.exists():
        return "train"
    if not (run_dir / MARK).is_file():
        what = "a finished run" if finished else "files this benchmark did not write"
        raise Refused(
            f"{run_dir} exists and holds {what}; this benchmark restarts only runs it started "
            "itself: move it away, or choose another --out or --name"
        )
    return "score" if finished else "train"


def one_budget(minutes: float, args: argparse.Namespace, train_flags: list[str]) -> dict:
    run_dir = Path(args.out) / f"{args.name}-m{minutes:g}"
    record = run_dir / "time_to_bleu.json"
    todo = plan(run_dir)
    if todo == "report":
        return json.loads(record.read_text())
    command = [sys.executable, str(ROOT / "train.py"), *train_flags]
    command += ["--max-minutes", f"{minutes:g}", "--run-dir", str(run_dir)]
    wall = None  # 'score': trained by an earlier invocation, whose wall clock is not known here
    if todo == "train":
        if (run_dir / MARK).is_file():
            command.append("--overwrite")  # this benchmark's own unfinished run
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / MARK).write_text(" ".join(command) + "\n")
        print("+", " ".join(command), flush=True)
        start = time.monotonic()
        proc = subprocess.run(command, cwd=ROOT)
        wall = (time.monotonic() - start) / 60
        if proc.returncode:
            raise Refused(f"train.py exited {proc.returncode} for the {minutes:g}-minute budget")
    results = json.loads((run_dir / "results.json").read_text())
    scores = score(run_dir, args.beam, args.length_penalty)
    scores.update(
        minutes=minutes,
        wall_minutes=wall,
        train_minutes=results.get("train_minutes"),
        updates=results["last_step"],
        best_step=results["step"],
        command=" ".join(command),
    )
    record.write_text(json.dumps(scores, indent=2) + "\n")
    return scores


def check_flags(args: argparse.Namespace) -> None:
    """Flags that could only fail after a whole training run, refused before it."""
    if args.beam < 1:
        raise Refused(f"--beam must be >= 1, got {args.beam}")
    alpha = args.length_penalty
    if alpha is not None and not (math.isfinite(alpha) and alpha >= 0):
        raise Refused(f"--length-penalty must be a finite number >= 0, got {alpha}")
    if args.threads < 0:
        raise Refused(f"--threads must be >= 0, got {args.threads}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise Refused(f"--out {out} is a file; name a folder for the runs")
    if not args.name or "/" in args.name:
        raise Refused(f"--name {args.name!r} must be a plain name (run folders are OUT/NAME-m<M>)")


def main() -> int:
    args, train_flags = parse_args()
    try:
        bad = [m for m in args.minutes if not (math.isfinite(m) and m > 0)]
        if bad:
            raise Refused(f"--minutes {bad[0]:g}: a budget must be a finite number of minutes > 0")
        check_flags(args)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        rows = [one_budget(m, args, train_flags) for m in args.minutes]
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in rows:
        print(
            f"time_to_bleu: minutes={r['minutes']:g} test_bleu={r['test']['bleu']:.2f} "
            f"valid_bleu={r['valid']['bleu']:.2f} test_bleu_lc={r['test']['bleu_lc']:.2f} "
            f"wall_minutes={r['wall_minutes'] or r['train_minutes']:.1f} updates={r['updates']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
