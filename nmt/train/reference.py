"""Frozen models a criterion reads: graduated smoothing's reference and a distillation
teacher, each a finished run's checkpoint loaded once, in eval mode, with the run's tokenizer."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from nmt.errors import NMTError
from nmt.train.checkpoint import checkpoint_file, load_for_inference

log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried


def _frozen(key: str, given: str, tok, remedy: str) -> tuple[torch.nn.Module, Path]:
    """The frozen model of the checkpoint --train.<key> names (given), built without drawing
    from the global RNG (a run with a frozen model draws the same dropout masks as one
    without), in eval mode, checked to share the run's tokenizer (remedy: what to do if not);
    with its checkpoint's path."""
    path = checkpoint_file(given)
    with torch.random.fork_rng(devices=[]):
        model, other, _, _ = load_for_inference(path)
    if other.proto != tok.proto:
        raise NMTError(
            f"--train.{key} {path} was trained with another tokenizer than this run's; {remedy}"
        )
    return model.requires_grad_(False), path


def reference_model(train, tok) -> torch.nn.Module | None:
    """Graduated smoothing's reference (--train.graduated_reference), frozen; its probabilities
    must be over the run's pieces. None when the run names none."""
    if not getattr(train, "graduated_reference", None):
        return None
    model, path = _frozen("graduated_reference", train.graduated_reference, tok,
                    "train the run on the reference's data and vocabulary (or pick a reference "
                    "trained on this run's)")  # fmt: skip
    log.info("graduated smoothing: p of the gold token from the frozen reference %s", path)
    return model


def teacher_model(train, tok) -> torch.nn.Module | None:
    """The distillation teacher (--train.teacher), frozen; None when the run has none."""
    if not getattr(train, "teacher", None):
        return None
    model, path = _frozen("teacher", train.teacher, tok, "a student trains with its teacher's "
                    "tokenizer (resume the run with its own teacher)")  # fmt: skip
    log.info("distillation: teacher %s (%s)", path, train.teacher_label)
    return model


def teacher_tokenizer(train):
    """The tokenizer a student trains with: its teacher's, from the checkpoint (None without a
    teacher; the command line has checked that --vocab-size is the teacher's)."""
    if not getattr(train, "teacher", None):
        return None
    from nmt.data.tokenizer import Tokenizer
    from nmt.train.checkpoint import load_checkpoint

    return Tokenizer.from_tensor(load_checkpoint(checkpoint_file(train.teacher))["spm_model"])
