"""Train a Transformer translation model: python train.py --smoothing 0.1 [--config FILE] ..."""

from __future__ import annotations

import logging
import shlex
import sys

import yaml

from nmt import distributed
from nmt.checkpoint import load_checkpoint
from nmt.config import parse_args
from nmt.data import load_data
from nmt.errors import NMTError
from nmt.model import Transformer
from nmt.run import Preempted, prepare_run_dir, seed_everything, setup_logging
from nmt.tokenizer import Tokenizer, train_or_load
from nmt.trainer import Trainer, resolve_device

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> int:
    """Parse config -> build parts -> Trainer.fit(); user errors become one line and exit 2.

    Under torchrun each process is one rank: rank 0 prepares the run directory, builds the
    tokenizer and data cache first, and alone writes logs and checkpoints.
    """
    world = distributed.SINGLE
    try:
        cfg, args = parse_args(argv)
        world = distributed.world_from_env()
        distributed.init(resolve_device(cfg.train.device), world)
        run_dir, resuming = distributed.main_first(
            lambda: prepare_run_dir(cfg, args.overwrite, args.resume), world, others=False
        )
        setup_logging(run_dir / "train.log" if world.main else None, rank=world.rank)
        log.info("run directory %s", run_dir)
        state = None
        if resuming:
            state = load_checkpoint(run_dir / "checkpoint_last.pt")
            log.info("resuming from %s (update %d)", run_dir / "checkpoint_last.pt", state["step"])
        seed_everything(cfg.train.seed)
        tok, splits = distributed.main_first(lambda: _data(cfg, state, run_dir, world), world)
        model = Transformer(cfg.model, len(tok))
        if world.rank:  # DDP copies rank 0's weights; dropout differs per rank
            seed_everything(cfg.train.seed + 1000 * world.rank)
        command = shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)])
        trainer = Trainer(cfg, model, tok, splits, run_dir, command, state, world)
        # Only now: a run that cannot start (bad data, a checkpoint that does not fit) keeps
        # the config.yaml of the run that is in the directory.
        if world.main:
            (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        results = trainer.fit()
        distributed.barrier(world)  # every rank leaves together (rank 0 scored test last)
    except NMTError as exc:
        logging.getLogger("train").debug("error", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Preempted as stop:
        print(str(stop), file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
    if not world.main:
        return 0
    best = results["test"] or results["valid"]
    split = "test" if results["test"] else "valid"
    log.info(
        "done: %s BLEU %.2f (best checkpoint, step %d); results in %s",
        split,
        best["bleu"],
        results["step"],
        run_dir / "results.json",
    )
    return 0


def _data(cfg, state: dict | None, run_dir, world):
    """(tokenizer, splits): the checkpoint's tokenizer on resume, else trained or cached."""
    d = cfg.data
    if state is not None:  # the run's own tokenizer, whatever the cache holds now
        saved_tok = Tokenizer.from_tensor(state["spm_model"])
        return load_data(d, lambda texts: saved_tok)
    tok, splits = load_data(
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
    if world.main:
        tok.save(run_dir / "spm.model")
    return tok, splits


if __name__ == "__main__":
    sys.exit(main())
