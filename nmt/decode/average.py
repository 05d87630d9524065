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
import sys
from pathlib import Path

import torch

from nmt.errors import ArgumentParser, NMTError
from nmt.train.checkpoint import INFERENCE_KEYS, inference_weights, load_checkpoint, save_checkpoint


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


def average(paths: list[Path]) -> dict:
    """The first checkpoint's inference fields with the mean of everyone's weights."""
    if len(paths) < 2:
        raise NMTError("give at least two checkpoints to average")
    first = load_checkpoint(paths[0])
    missing = [k for k in INFERENCE_KEYS if k not in first]
    if missing:
        raise NMTError(f"{paths[0]} lacks {', '.join(missing)}; it cannot be averaged")
    total = {k: v.double() for k, v in inference_weights(first).items()}
    steps = [int(first.get("step", 0))]
    for path in paths[1:]:
        other = load_checkpoint(path)
        _check_same(first, other, paths[0], path)
        for k, v in inference_weights(other).items():
            total[k] += v.double()
        steps.append(int(other.get("step", 0)))
    weights = inference_weights(first)
    mean = {k: (total[k] / len(paths)).to(weights[k].dtype) for k in total}
    out = {k: first[k] for k in INFERENCE_KEYS if k != "model"}
    out.update(model=mean, step=max(steps), averaged_steps=steps)
    return out


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


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m nmt.average",
        description="Average the weights of checkpoints of one run into one checkpoint.",
    )
    parser.add_argument("checkpoints", nargs="*", help="checkpoint files (or, with --last, a run)")
    parser.add_argument("--last", type=int, metavar="N", help="the newest N numbered checkpoints")
    parser.add_argument("--out", required=True, help="the averaged checkpoint to write")
    return parser


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
        if out.is_dir():
            raise NMTError(f"--out {out} is a folder; name the checkpoint file to write")
        if not out.parent.is_dir():
            raise NMTError(f"--out {out}: folder {out.parent} does not exist")
        for p in paths:
            if out.exists() and p.exists() and os.path.samefile(out, p):
                raise NMTError(f"--out {out} is one of the checkpoints to average; name a new file")
        averaged = average(paths)
        save_checkpoint(averaged, out)
    except NMTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"averaged {len(paths)} checkpoints into {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
