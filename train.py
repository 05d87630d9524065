"""Train a Transformer translation model: python train.py --smoothing 0.1 [--config FILE] ..."""

from __future__ import annotations

import logging
import random
import shlex
import sys

import numpy as np
import torch
import yaml

from nmt.checkpoint import load_checkpoint
from nmt.config import parse_args
from nmt.data import load_data
from nmt.errors import NMTError
from nmt.model import Transformer
from nmt.run import prepare_run_dir, setup_logging
from nmt.tokenizer import Tokenizer, train_or_load
from nmt.trainer import Preempted, Trainer

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> int:
    """Parse config -> build parts -> Trainer.fit(); user errors become one line and exit 2."""
    try:
        cfg, args = parse_args(argv)
        run_dir, resuming = prepare_run_dir(cfg, args.overwrite, args.resume)
        setup_logging(run_dir / "train.log")
        log.info("run directory %s", run_dir)
        state = None
        if resuming:
            state = load_checkpoint(run_dir / "checkpoint_last.pt")
            log.info("resuming from %s (update %d)", run_dir / "checkpoint_last.pt", state["step"])
        random.seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)
        torch.manual_seed(cfg.train.seed)
        d = cfg.data
        if state is not None:  # the run's own tokenizer, whatever the cache holds now
            saved_tok = Tokenizer.from_tensor(state["spm_model"])
            tok, splits = load_data(d, lambda texts: saved_tok)
        else:
            tok, splits = load_data(
                d,
                lambda texts: train_or_load(
                    texts, d.vocab_size, d.spm_model_type, d.character_coverage, d.cache_dir
                ),
            )
            tok.save(run_dir / "spm.model")
        model = Transformer(cfg.model, len(tok))
        command = shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)])
        trainer = Trainer(cfg, model, tok, splits, run_dir, command, state)
        # Only now: a run that cannot start (bad data, a checkpoint that does not fit) keeps
        # the config.yaml of the run that is in the directory.
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        results = trainer.fit()
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


if __name__ == "__main__":
    sys.exit(main())
