"""Average the weights of several checkpoints into one that translate.py reads.

    python -m nmt.average CKPT [CKPT ...] --out FILE
    python -m nmt.average --last N RUN_DIR --out FILE

The second form takes the newest N numbered checkpoints (checkpoint_step<N>.pt, written with
--save-every and --keep-last) of a run, as fairseq's scripts/average_checkpoints.py does. The
weights averaged are the ones a checkpoint translates with: its EMA weights when the run kept
an average, else its model weights. The checkpoints must agree in architecture and vocabulary.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import torch

from nmt.config_checks import run_identity_changes
from nmt.errors import ArgumentParser, NMTError
from nmt.train.checkpoint import (
    INFERENCE_KEYS,
    checkpoint_file,
    inference_weights,
    load_checkpoint,
    save_checkpoint,
)


def newest_numbered(run_dir: str | Path, n: int) -> list[Path]:
    """The newest n checkpoint_step<N>.pt files of a run directory, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NMTError(f"{run_dir} is not a run directory; --last N takes a run directory")
    found = sorted(
        run_dir.glob("checkpoint_step*.pt"),
        key=lambda p: int(p.stem.removeprefix("checkpoint_step") or -1),
    )
    if len(found) < n:
        raise NMTError(
            f"{run_dir} has {len(found)} numbered checkpoints, {n} asked for; train with "
            "--save-every N --keep-last K to keep them, or average fewer"
        )
    return found[-n:]


def average(paths: list[Path], mixed_runs: bool = False) -> dict:
    """The first checkpoint's inference fields with the mean of everyone's weights.

    One checkpoint given twice (the same file by two spellings, or checkpoint_last.pt and the
    numbered file of the same update) counts once. Checkpoints of different runs (another
    config beyond the budget and bookkeeping, or another folder) are refused unless
    mixed_runs.
    """
    loaded: list[tuple[Path, dict]] = []
    for path in _distinct_files([checkpoint_file(p) for p in paths]):  # a run dir: its best
        state = load_checkpoint(path)
        if loaded:
            _check_same(loaded[0][1], state, loaded[0][0], path)
            if not mixed_runs:
                _check_one_run(loaded[0], (path, state))
        if all(state.get("step") != other.get("step") for _, other in loaded):
            loaded.append((path, state))
    if len(loaded) < 2:
        raise NMTError(
            "give at least two checkpoints to average; fewer than two distinct ones were "
            "given (a file named twice, or checkpoint_last.pt beside the numbered file of its "
            "update, counts once)"
        )
    first = loaded[0][1]
    missing = [k for k in INFERENCE_KEYS if k not in first]
    if missing:
        raise NMTError(f"{loaded[0][0]} lacks {', '.join(missing)}; it cannot be averaged")
    total = {k: v.double() for k, v in inference_weights(first).items()}
    for _, other in loaded[1:]:
        for k, v in inference_weights(other).items():
            total[k] += v.double()
    weights = inference_weights(first)
    mean = {k: (total[k] / len(loaded)).to(weights[k].dtype) for k in total}
    steps = [int(state.get("step", 0)) for _, state in loaded]
    out = {k: first[k] for k in INFERENCE_KEYS if k != "model"}
    out.update(model=mean, step=max(steps), averaged_steps=steps)
    return out


def _distinct_files(paths: list[Path]) -> list[Path]:
    """paths without a second spelling of a file already listed (compared by inode)."""
    seen, out = set(), []
    for path in paths:
        if path.is_file():
            info = path.stat()
            key = (info.st_dev, info.st_ino)
        else:
            key = str(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def _check_one_run(a: tuple[Path, dict], b: tuple[Path, dict]) -> None:
    """Refuse checkpoints of two runs (the tool's promise is 'checkpoints of one run')."""
    (path_a, state_a), (path_b, state_b) = a, b
    changed = run_identity_changes(state_a.get("config", {}), state_b.get("config", {}))
    if changed:
        shown = ", ".join(changed[:4]) + (", ..." if len(changed) > 4 else "")
        raise NMTError(
            f"{path_b} is from another run than {path_a} (its config differs in {shown}); "
            "average checkpoints of one run, or pass --mixed-runs if you mean it"
        )
    if path_a.resolve().parent != path_b.resolve().parent:
        raise NMTError(
            f"{path_b} and {path_a} are in different run directories; average checkpoints of "
            "one run, or pass --mixed-runs if you mean it"
        )


def _check_same(a: dict, b: dict, path_a: Path, path_b: Path) -> None:
    """Refuse checkpoints whose weights mean different things."""
    if b.get("config", {}).get("model") != a["config"].get("model"):
        diff = sorted(
            k
            for k in set(a["config"]["model"]) | set(b.get("config", {}).get("model", {}))
            if a["config"]["model"].get(k) != b.get("config", {}).get("model", {}).get(k)
        )
        raise NMTError(
            f"{path_b} has another architecture than {path_a} (model.{', model.'.join(diff)}); "
            "average checkpoints of one run"
        )
    same_vocab = b.get("vocab_size") == a["vocab_size"] and torch.equal(
        b.get("spm_model", torch.empty(0)), a["spm_model"]
    )
    if not same_vocab:
        raise NMTError(
            f"{path_b} has another vocabulary than {path_a}; average checkpoints of one run"
        )
    wa, wb = inference_weights(a), inference_weights(b)
    if wa.keys() != wb.keys() or any(wa[k].shape != wb[k].shape for k in wa):
        raise NMTError(
            f"{path_b} holds other weights than {path_a}; average checkpoints of one run"
        )


# The names train.py gives a run's own checkpoints: never an --out, with or without --overwrite.
TRAINING_NAMES = re.compile(r"checkpoint_(last|best|step\d+)\.pt")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m nmt.average",
        description="Average the weights of checkpoints of one run into one checkpoint.",
    )
    parser.add_argument("checkpoints", nargs="*", help="checkpoint files (or, with --last, a run)")
    parser.add_argument("--last", type=int, metavar="N", help="the newest N numbered checkpoints")
    parser.add_argument("--out", required=True, help="the averaged checkpoint to write")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (never a run's own)"
    )
    parser.add_argument(
        "--mixed-runs",
        action="store_true",
        help="average checkpoints of different runs (another config or folder) all the same",
    )
    return parser


def check_out(out: Path, paths: list[Path], overwrite: bool) -> None:
    """--out names a new file (or, with --overwrite, a file that is not a run's checkpoint)."""
    if out.is_dir():
        raise NMTError(f"--out {out} is a folder; name the checkpoint file to write")
    if not out.parent.is_dir():
        raise NMTError(f"--out {out}: folder {out.parent} does not exist")
    for p in paths:
        if out.exists() and p.exists() and os.path.samefile(out, p):
            raise NMTError(f"--out {out} is one of the checkpoints to average; name a new file")
    if TRAINING_NAMES.fullmatch(Path(os.path.realpath(out)).name) or TRAINING_NAMES.fullmatch(
        out.name
    ):
        raise NMTError(
            f"--out {out} is a name train.py gives a run's own checkpoints (resume and "
            "translate read it); name the average otherwise, e.g. averaged.pt"
        )
    if out.exists() and not overwrite:
        raise NMTError(f"--out {out} already exists; name a new file or pass --overwrite")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.last is not None:
            if args.last < 2 or len(args.checkpoints) != 1:
                raise NMTError("--last N takes N >= 2 and exactly one run directory")
            paths = newest_numbered(args.checkpoints[0], args.last)
        else:
            paths = [Path(p) for p in args.checkpoints]
        out = Path(args.out)
        check_out(out, paths, args.overwrite)
        averaged = average(paths, args.mixed_runs)
        save_checkpoint(averaged, out)
    except NMTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    steps = ", ".join(map(str, averaged["averaged_steps"]))
    print(f"averaged {len(averaged['averaged_steps'])} checkpoints (updates {steps}) into {out}",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
