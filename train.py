"""Train a Transformer translation model: python train.py --smoothing 0.1 [--config FILE] ..."""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from collections.abc import Callable

from nmt.cli import parse_args
from nmt.config import Config
from nmt.data.dataset import load_data
from nmt.data.tokenizer import Tokenizer, train_or_load
from nmt.errors import NMTError
from nmt.model.transformer import Transformer
from nmt.objective.criterion import Criterion
from nmt.train import distributed
from nmt.train.checkpoint import TrainState, load_train_state
from nmt.train.hostmem import keep_freed_memory
from nmt.train.logbook import setup_logging
from nmt.train.precision import resolve_device
from nmt.train.reference import teacher_tokenizer
from nmt.train.rng import seed_everything
from nmt.train.run import RunDir, prepare_run_dir, restore_overwritten
from nmt.train.signals import Preempted
from nmt.train.trainer import Trainer

log = logging.getLogger("train")
CriterionFactory = Callable[[Config, int], Criterion]


def main(
    argv: list[str] | None = None,
    build_criterion: CriterionFactory | None = None,
    *,
    own_process: bool = False,
) -> int:
    """Parse config -> build parts -> Trainer.fit(); user errors become one line and exit 2.

    Everything that can fail before training (config, run directory, data, tokenizer, model,
    checkpoint, device) is checked before anything is written to the run directory.
    build_criterion(cfg, vocab_size) replaces the label-smoothed NLL the config names (a new
    objective, or a test's). Under torchrun each process is one rank: rank 0 locks and prepares
    the run directory, builds the tokenizer and data cache first, and alone writes logs and
    checkpoints. own_process (the command line): the process is train.py's alone, so on the CPU
    its allocator keeps freed memory for reuse (nmt.train.hostmem); a caller's is left as it is.
    """
    started = time.monotonic()  # --max-minutes counts from here
    world, held = distributed.SINGLE, []  # held: the RunDir once this rank has prepared it
    try:
        cfg, args = parse_args(argv)
        if args.restore_overwritten:
            return _restore(cfg, args)
        world = distributed.world_from_env()
        device = distributed.init(resolve_device(cfg.train.device), world)
        setup_logging(rank=world.rank, hold=world.main)  # train.log once the run starts
        if own_process and device.type == "cpu" and keep_freed_memory():
            log.debug("host memory: freed blocks kept for reuse (glibc mallopt)")
        command = shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)])
        trainer = _build(cfg, args, command, world, device, started, build_criterion, held)
        results = trainer.fit()
        distributed.barrier(world)  # every rank leaves together (rank 0 scored test last)
    except NMTError as exc:
        _abandon(held)
        logging.getLogger("train").debug("error", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Preempted as stop:
        print(str(stop), file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        _abandon(held)
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
        for rd in held:  # a caller in the same process may train in this directory again
            if rd.lock is not None:
                rd.lock.release()
    if world.main:
        best, split = (results["test"], "test") if results["test"] else (results["valid"], "valid")
        log.info(
            "done: %s BLEU %.2f (best checkpoint, step %d); results in %s",
            split,
            best["bleu"],
            results["step"],
            trainer.run_dir / "results.json",
        )
    return 0


def _build(cfg, args, command, world, device, started, build_criterion, held) -> Trainer:
    """The run directory (locked), the resumed state, data, tokenizer, model and Trainer; on
    rank 0 the run directory is written to only once all of them exist."""

    def prepare() -> tuple:
        held.append(prepare_run_dir(cfg, args.overwrite, args.resume))
        return held[0].path, held[0].resuming

    run_path, resuming = distributed.main_first(prepare, world, others=False)
    log.info("run directory %s", run_path)
    state = _resume_from(run_path) if resuming else None
    seed_everything(cfg.train.seed)
    tok, splits = distributed.main_first(lambda: load_run_data(cfg, state), world)
    model = Transformer(cfg.model, len(tok))
    if world.rank:  # DDP copies rank 0's weights; dropout differs per rank
        seed_everything(cfg.train.seed + 1000 * world.rank)
    criterion = None if build_criterion is None else build_criterion(cfg, len(tok))
    trainer = Trainer(
        cfg, model, tok, splits, run_path, command, state, world, device, started, criterion
    )
    if held:  # rank 0: only now does anything in the run directory change
        held[0].start(cfg, tok.proto, {name: split.files for name, split in splits.items()})
        trainer.checkpoints.on_save = held[0].checkpoint_saved
    return trainer


def _restore(cfg, args) -> int:
    """--restore-overwritten: the old run back in place, and nothing else done."""
    if args.overwrite or args.resume:
        raise NMTError("--restore-overwritten puts an old run back: give it without --overwrite "
                       "or --resume")  # fmt: skip
    run_dir = restore_overwritten(cfg)
    print(f"restored the run in {run_dir} that an interrupted --overwrite had set aside",
          file=sys.stderr)  # fmt: skip
    return 0


def _abandon(held: list[RunDir]) -> None:
    for rd in held:
        rd.abandon()


def _resume_from(run_path) -> TrainState:
    """The run's checkpoint_last.pt, checked for everything an exact resume needs."""
    path = run_path / "checkpoint_last.pt"
    state = load_train_state(path)
    log.info("resuming from %s (update %d)", path, state.progress.step)
    return state


def load_run_data(cfg, state: TrainState | None = None):
    """(tokenizer, splits): the checkpoint's tokenizer on resume, else trained or cached."""
    d = cfg.data
    if state is not None:  # the run's own tokenizer, whatever the cache holds now
        saved_tok = Tokenizer.from_tensor(state.spm_model)
        return load_data(d, lambda texts: saved_tok)
    teacher_tok = teacher_tokenizer(cfg.train)
    if teacher_tok is not None:  # a student trains with its teacher's tokenizer
        return load_data(d, lambda texts: teacher_tok)
    return load_data(
        d,
        lambda texts: train_or_load(
            texts,
            d.vocab_size,
            d.spm_model_type,
            d.character_coverage,
            d.cache_dir,
            d.spm_max_sentences,
        ),
    )


def _leave(code: int) -> None:
    """Exit. A rank of a torchrun job (its files written and closed, its process group
    destroyed) skips the interpreter's finalization: gloo's threads torn down there once
    aborted a finished CPU rank (SIGABRT, "terminate called without an active exception"),
    which made torchrun report a complete run as failed."""
    if os.environ.get("WORLD_SIZE", "1") == "1":
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _leave(main(own_process=True))
