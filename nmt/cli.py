"""train.py's command line: short flags, --section.key overrides, and parse_args."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from nmt.config import Config, apply_overrides, config_sections, flatten, load_yaml
from nmt.config_checks import choices, validate
from nmt.errors import ArgumentParser, NMTError
from nmt.objective import smoothing as registry
from nmt.objective.priors import file_sha256, read_prior
from nmt.objective.smoothing import Smoothing
from nmt.train.checkpoint import checkpoint_file

# Short spellings of the common flags; every field is also reachable as --section.key.
SHORT_FLAGS: dict[str, tuple[str, str]] = {
    "--smoothing": ("train.smoothing", "label smoothing eps in [0, 1)"),
    "--smoothing-type": ("train.smoothing_type", registry.help_text()),
    "--dataset": (
        "data.dataset",
        "Hugging Face Hub id or local folder (train/validation/test files)",
    ),
    "--dataset-config": ("data.dataset_config", "Hub dataset config, e.g. de-en for wmt14"),
    "--train-file": ("data.train_file", "training file (.jsonl/.json/.parquet/.csv)"),
    "--valid-file": ("data.valid_file", "validation file"),
    "--test-file": ("data.test_file", "test file"),
    "--src": ("data.src", "source language key, e.g. en"),
    "--tgt": ("data.tgt", "target language key, e.g. de"),
    "--vocab-size": ("data.vocab_size", "joint SentencePiece vocabulary size"),
    "--max-tokens": ("data.max_tokens", "tokens per batch, padding included"),
    "--run-dir": ("train.run_dir", "where checkpoints, logs and TensorBoard files go"),
    "--max-steps": ("train.max_steps", "stop after this many updates (0 = no limit)"),
    "--max-epochs": ("train.max_epochs", "stop after this many epochs"),
    "--seed": ("train.seed", "random seed (init, dropout, batch order)"),
    "--lr": ("train.lr", "peak learning rate"),
    "--update-freq": ("train.update_freq", "batches accumulated into one update"),
    "--patience": ("train.patience", "early stopping after N validations without better BLEU"),
    "--valid-every": ("train.valid_every", "validate every N updates"),
    "--save-every": (
        "train.save_every",
        "save checkpoint_last.pt every N updates (0 = at validations)",
    ),
    "--keep-last": ("train.keep_last", "keep the newest K numbered step checkpoints (0 = none)"),
    "--max-skipped": (
        "train.max_skipped",
        "stop after N consecutive updates with a non-finite loss or gradient",
    ),
    "--max-minutes": (
        "train.max_minutes",
        "stop after the update that ends N minutes from the start (resumes count on); then "
        "validate, score test and write results.json as usual",
    ),
    "--device": ("train.device", "auto, cpu or cuda"),
    "--precision": ("train.precision", "auto (bf16 on a capable GPU, else fp32), fp32, bf16, fp16"),
}


def build_parser() -> argparse.ArgumentParser:
    """The train.py argument parser (dotted overrides are parsed separately)."""
    parser = ArgumentParser(
        prog="train.py",
        description="Train a Transformer translation model with label-smoothed cross-entropy.",
        epilog="Any config field can be set as --section.key VALUE, e.g. --train.lr 5e-4 "
        "or --model.dropout=0.1. Precedence: defaults < --config YAML < flags.",
    )
    parser.add_argument("--config", help="YAML file with data/model/train/decode sections")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing run in --run-dir"
    )
    parser.add_argument(
        "--restore-overwritten",
        action="store_true",
        help="put back the run an interrupted --overwrite set aside in RUN_DIR/.overwritten, "
        "then stop",
    )
    parser.add_argument(
        "--compile",
        dest="train.compile",
        action="store_const",
        const="true",
        default=None,
        help="torch.compile the model (batch lengths padded to a multiple of 8 so that few "
        "shapes are compiled)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from checkpoint_last.pt even if it finished or its "
        "config differs (an unfinished run with the same config resumes without it)",
    )
    allowed = choices()
    for flag, (key, help_text) in SHORT_FLAGS.items():
        parser.add_argument(flag, dest=key, default=None, choices=allowed.get(key), help=help_text)
    return parser


def parse_dotted(tokens: list[str]) -> dict[str, str]:
    """Parse ['--train.lr', '5e-4', '--model.dropout=0.1'] into {'train.lr': '5e-4', ...}."""
    overrides: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or "." not in token.split("=", 1)[0]:
            raise NMTError(f"unknown argument '{token}'; see train.py --help")
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise NMTError(f"'{token}' needs a value")
            key, value = token[2:], tokens[i + 1]
            i += 2
        overrides[key] = value
    return overrides


def check_spellings(argv: list[str]) -> None:
    """One key given by two spellings (--smoothing and --train.smoothing) with different values
    is refused: which one wins would depend on rules nobody remembers. The same spelling given
    twice keeps the last value, as argparse does, and a warning says so."""
    seen: dict[str, list[tuple[str, str]]] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if not token.startswith("--") or (name not in SHORT_FLAGS and "." not in name):
            i += 1
            continue
        key = SHORT_FLAGS[name][0] if name in SHORT_FLAGS else name[2:]
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
            i += 1
        seen.setdefault(key, []).append((name, value))
        i += 1
    for key, given in seen.items():
        if len({v for _, v in given}) < 2:
            continue
        if len({n for n, _ in given}) > 1:
            listed = ", ".join(f"{n} {v}" for n, v in given)
            raise NMTError(f"{key} is given twice with different values ({listed}); give it once")
        logging.getLogger("train").warning(
            "%s is given %d times; the last value, %s, is used", given[0][0], len(given),
            given[-1][1],
        )  # fmt: skip


def parse_args(argv: list[str] | None = None) -> tuple[Config, argparse.Namespace]:
    """Resolve defaults < YAML < short flags and dotted overrides into a validated Config."""
    check_spellings(sys.argv[1:] if argv is None else list(argv))
    args, rest = build_parser().parse_known_args(argv)
    cfg = Config()
    if args.config:
        values = flatten(config_sections(load_yaml(args.config)), args.config)
        # A config file older than train.kernels is a run's record: it reproduces that run.
        values.setdefault("train.kernels", "reference")
        cfg = apply_overrides(cfg, values, args.config)
    flags = {key: value for key, value in vars(args).items() if "." in key and value is not None}
    cfg = apply_overrides(cfg, flags, "command line")
    cfg = apply_overrides(cfg, parse_dotted(rest), "command line")
    cfg = validate(cfg)
    if cfg.train.kernels == "auto":  # recorded resolved in the run's config.yaml
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, kernels="fast"))
    return resolve_objective(cfg), args


def resolve_objective(cfg: Config) -> Config:
    """The prior file read and checked (its pieces are checked once the tokenizer exists) and
    its SHA-256 recorded in the config, as is graduated smoothing's reference checkpoint's; a
    warning for an eps schedule longer than the run."""
    t = cfg.train
    if t.smoothing_ramp and t.max_steps and t.smoothing_ramp > t.max_steps:
        logging.getLogger("train").warning(
            "train.smoothing_ramp (%d updates) is longer than the run (--max-steps %d): eps "
            "ends at %.4g, not %g", t.smoothing_ramp, t.max_steps,
            Smoothing.of(t).eps_at(t.max_steps), t.smoothing,
        )  # fmt: skip
    if t.smoothing_prior is not None:
        read_prior(t.smoothing_prior)
        t = dataclasses.replace(t, smoothing_prior_sha256=file_sha256(t.smoothing_prior))
    if t.graduated_reference is not None:
        path = checkpoint_file(t.graduated_reference)
        if not path.is_file():
            raise NMTError(
                f"--train.graduated_reference {t.graduated_reference}: no checkpoint at {path}; "
                "give a checkpoint file or a finished run's directory"
            )
        t = dataclasses.replace(t, graduated_reference_sha256=file_sha256(path))
    if t.teacher is not None:
        t = _resolve_teacher(t, cfg.data.vocab_size)
    return dataclasses.replace(cfg, train=_distilled_data(t, cfg.data))


def _distilled_data(t, data):
    """The teacher of a dataset folder python -m nmt.distill wrote, recorded in the config."""
    from pathlib import Path

    import yaml

    from nmt.decode.distill import MANIFEST

    path = Path(data.dataset or "") / MANIFEST
    if not data.dataset or not path.is_file():
        return dataclasses.replace(t, data_teacher_sha256=None, data_teacher_label=None)
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
        sha, label = manifest["teacher_sha256"], manifest["teacher_label"]
    except (OSError, yaml.YAMLError, TypeError, KeyError) as exc:
        raise NMTError(f"{path} is not a readable distillation record ({exc}); rewrite the "
                       "folder with python -m nmt.distill") from None  # fmt: skip
    return dataclasses.replace(t, data_teacher_sha256=str(sha), data_teacher_label=str(label))


def _resolve_teacher(t, vocab_size: int):
    """--train.teacher's checkpoint found, and its SHA-256 and objective recorded."""
    from nmt.train.checkpoint import load_checkpoint

    path = checkpoint_file(t.teacher)
    if not path.is_file():
        raise NMTError(f"--train.teacher {t.teacher}: no checkpoint at {path}; give a "
                       "checkpoint file or a finished run's directory")  # fmt: skip
    state = load_checkpoint(path)
    if "config" not in state or "spm_model" not in state:
        raise NMTError(f"--train.teacher {path} lacks its config or tokenizer; it cannot teach")
    if state.get("vocab_size") != vocab_size:
        raise NMTError(
            f"--vocab-size {vocab_size} differs from the teacher's {state.get('vocab_size')} "
            "pieces: a student trains with its teacher's tokenizer; pass --vocab-size "
            f"{state.get('vocab_size')} (or drop it)"
        )
    teacher = Config.from_dict(state["config"], source=f"config in {path}")
    label = Smoothing.of(teacher.train).short
    return dataclasses.replace(t, teacher_sha256=file_sha256(path), teacher_label=label)
