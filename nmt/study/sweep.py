"""Train one run per (eps, seed) with everything else identical, then write the eps report.

    python -m nmt.sweep --smoothing 0 0.1 0.2 [--seeds 1 2 3] [--sweep-dir DIR] [train.py flags]

Each run is a real `train.py` process in DIR/ls<eps>-seed<seed> (DIR/ls<eps>-<type>-seed<seed>
under a --smoothing-type other than the default). The runs share the tokenizer
(it is cached by corpus and settings) and, for a given seed, the initial weights and the batch
order. A run with a results.json is finished and never retrained, so running the same command
again after an interruption continues the sweep, an unfinished run from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
from pathlib import Path

from nmt.cli import parse_args as parse_train_args
from nmt.config import format_eps
from nmt.errors import ArgumentParser, NMTError
from nmt.files import FolderLock, atomic_write, lock_folder
from nmt.objective import smoothing as registry
from nmt.objective.smoothing import Smoothing
from nmt.train.logbook import setup_logging

log = logging.getLogger("nmt.sweep")
TRAIN_PY = Path(__file__).resolve().parents[2] / "train.py"  # nmt/study/sweep.py -> checkout
# The sweep owns these train.py flags: it sets them per run.
OWNED = (
    "--smoothing",
    "--seed",
    "--run-dir",
    "--overwrite",
    "--resume",
    "--train.smoothing",
    "--train.seed",
    "--train.run_dir",
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m nmt.sweep",
        allow_abbrev=False,  # --seed (a train.py flag) must never be taken for --seeds
        description="Train the same model under several label-smoothing values and compare them.",
        epilog="Every other flag (--config, --dataset, --max-steps, --smoothing-type, "
        "--train.lr ...) is passed unchanged to each train.py run.",
    )
    parser.add_argument(
        "--smoothing", type=float, nargs="+", required=True, metavar="EPS", help="eps values"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1], metavar="SEED", help="seeds (default 1)"
    )
    parser.add_argument(
        "--sweep-dir", default="runs/sweep", help="one folder for all runs and the report"
    )
    parser.add_argument(
        "--bootstrap-samples", type=int, default=1000, help="paired bootstrap resamples"
    )
    parser.add_argument("--no-report", action="store_true", help="train only")
    parser.add_argument(
        "--artifacts",
        metavar="DIR",
        help="copy each finished run's small files (results.json, config.yaml, train.log, "
        "test/valid hypotheses of greedy and beam search and the references; no checkpoints "
        "or event files) to DIR/<run>/, "
        "e.g. to commit them; python -m nmt.report DIR/* rebuilds the report from them",
    )
    return parser


# What --artifacts keeps of a finished run: enough for nmt.report, small enough to commit.
ARTIFACTS = (
    "results.json",
    "config.yaml",
    "train.log",
    "test.hyp.txt",
    "test.ref.txt",
    "valid.hyp.txt",
    "valid.ref.txt",
    "analysis.json",  # python -m nmt.analyze's, where it has run
)


def copy_artifacts(run_dir: Path, dest_root: Path) -> Path:
    """Copy a finished run's ARTIFACTS into dest_root/<run name>/ (each written atomically).

    A file already there with the same bytes is left alone; one with other bytes is refused
    (it belongs to another run of that name), so nothing is ever overwritten.
    """
    dest = dest_root / run_dir.name
    sources = [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]
    sources += sorted(run_dir.glob("*.beam*.hyp.txt"))  # the final beam search's output
    for src in sources:
        target = dest / src.name
        if target.exists() and target.read_bytes() != src.read_bytes():
            raise NMTError(
                f"{target} exists and differs from {src}: it is another run's; move it away "
                "or choose another --artifacts folder"
            )
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for src in sources:
            target = dest / src.name
            if not target.exists():
                data = src.read_bytes()
                atomic_write(target, lambda handle, data=data: handle.write(data), mode=0o644)
    except OSError as exc:
        raise NMTError(f"cannot write --artifacts {dest_root}: {exc.strerror}") from None
    return dest


def run_name(eps: float, seed: int, objective: Smoothing | str = registry.DEFAULT) -> str:
    """The run directory's name inside the sweep: ls0.1-seed1 for the default convention,
    ls0.1-<name>-seed1 for another (the registry's run-name suffix: distinct for distinct eps
    and conventions, so the runs of two sweeps can share one --artifacts folder and report)."""
    if isinstance(objective, str):
        objective = Smoothing(objective, eps)
    return f"ls{format_eps(eps)}{objective.run_suffix()}-seed{seed}"


def check_train_args(train_args: list[str], eps_values: list[float], seeds: list[int]) -> Smoothing:
    """Refuse flags the sweep owns and validate the rest for every eps and seed before training.

    Returns the objective the runs share but for eps (--smoothing-type and its parameters, or
    the --config's), which names their run directories.
    """
    for arg in train_args:
        if arg.split("=", 1)[0] in OWNED:
            raise NMTError(f"{arg.split('=', 1)[0]} is set by the sweep per run; remove it")
    names: dict[str, float] = {}
    for eps in dict.fromkeys(eps_values):
        name = run_name(eps, 0)
        if name in names:  # format_eps is exact, so only equal values could meet here
            raise NMTError(f"--smoothing {names[name]!r} and {eps!r} would share one run name")
        names[name] = eps
        for seed in dict.fromkeys(seeds):
            cfg, _ = parse_train_args(
                [*train_args, "--smoothing", format_eps(eps), "--seed", str(seed)]
            )
    return Smoothing.of(cfg.train)  # the same for every run but eps: only eps and seed vary


def _recorded_args(state: Path) -> list[str]:
    """The training flags a sweep folder was started with (its sweep.json)."""
    try:
        before = json.loads(state.read_text(encoding="utf-8"))["train_args"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise NMTError(
            f"{state} is not a sweep record ({type(exc).__name__}); move it away to start this "
            "folder again, or use another --sweep-dir"
        ) from None
    if not isinstance(before, list) or not all(isinstance(a, str) for a in before):
        raise NMTError(f"{state} is not a sweep record; move it away or use another --sweep-dir")
    return before


def claim_sweep_dir(sweep_dir: Path, train_args: list[str]) -> FolderLock:
    """Lock the sweep folder and record the shared training flags (returns the held lock).

    A folder another nmt.sweep is using, or one started with other flags, is refused.
    """
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NMTError(f"cannot create --sweep-dir {sweep_dir}: {exc.strerror}") from None
    lock = lock_folder(sweep_dir, "sweep folder", "nmt.sweep")
    state = sweep_dir / "sweep.json"
    if state.exists():
        before = _recorded_args(state)
        if before != train_args:
            raise NMTError(
                f"{sweep_dir} holds a sweep trained with other flags ({shlex.join(before)!r}); "
                "use another --sweep-dir, or the same flags to continue it"
            )
        return lock
    tmp = state.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"train_args": train_args}, indent=2) + "\n")
    tmp.replace(state)
    return lock


def train_run(run_dir: Path, eps: float, seed: int, train_args: list[str]) -> None:
    """Run train.py for one (eps, seed); an unfinished earlier attempt resumes where it stopped.

    train.py resumes a run directory holding checkpoint_last.pt and the same config by itself.
    """
    argv = [*train_args, "--smoothing", format_eps(eps), "--seed", str(seed)]
    argv += ["--run-dir", str(run_dir)]
    if (run_dir / "checkpoint_last.pt").exists():
        log.info("%s: unfinished earlier attempt, resuming it", run_dir)
    log.info("training %s: python train.py %s", run_dir, shlex.join(argv))
    proc = subprocess.run([sys.executable, str(TRAIN_PY), *argv])
    if proc.returncode != 0:
        raise NMTError(
            f"run {run_dir} failed (exit {proc.returncode}); see {run_dir / 'train.log'}, "
            "then rerun the same sweep command to continue"
        )


def main(argv: list[str] | None = None) -> int:
    """Train the missing runs of the sweep, then write report.md/report.html into it."""
    args, train_args = build_parser().parse_known_args(argv)
    try:
        if not TRAIN_PY.is_file():
            raise NMTError(f"{TRAIN_PY} not found: run the sweep from a checkout of the project")
        if args.bootstrap_samples < 1:
            raise NMTError("--bootstrap-samples must be at least 1")
        objective = check_train_args(train_args, args.smoothing, args.seeds)
        sweep_dir = Path(args.sweep_dir)
        if sweep_dir.exists() and not sweep_dir.is_dir():
            raise NMTError(f"--sweep-dir {sweep_dir} is a file; choose a folder")
        if args.artifacts and Path(args.artifacts).exists() and not Path(args.artifacts).is_dir():
            raise NMTError(f"--artifacts {args.artifacts} is a file; name a folder")
        _held = claim_sweep_dir(sweep_dir, train_args)  # locked until this process exits
        setup_logging(sweep_dir / "sweep.log")
        runs = []
        # Seeds outside, eps inside: an interrupted sweep has whole eps comparisons first.
        for seed in dict.fromkeys(args.seeds):
            for eps in dict.fromkeys(args.smoothing):
                run_dir = sweep_dir / run_name(eps, seed, objective)
                runs.append(run_dir)
                if (run_dir / "results.json").is_file():
                    log.info("%s: finished earlier, not retrained", run_dir)
                else:
                    train_run(run_dir, eps, seed, train_args)
                if args.artifacts:
                    dest = copy_artifacts(run_dir, Path(args.artifacts))
                    log.info("%s: artifacts copied to %s", run_dir.name, dest)
        if not args.no_report:
            from nmt.study.report import write_report

            command = shlex.join(["python", "-m", "nmt.sweep", *(argv or sys.argv[1:])])
            path = write_report(runs, sweep_dir, args.bootstrap_samples, command)
            log.info("report: %s (and report.html beside it)", path)
    except NMTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to continue the sweep", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
