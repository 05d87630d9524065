"""Frozen models a criterion reads: graduated smoothing's reference and a distillation
teacher, each a finished run's checkpoint loaded once, in eval mode, with the run's tokenizer."""

from __future__ import annotations

import logging

import torch

from nmt.errors import NMTError
from nmt.train.checkpoint import checkpoint_file, load_for_inference

log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried


def _frozen(path):
    """(model, tokenizer) of a checkpoint, built without drawing from the global RNG (so a run
    with a frozen model draws the same dropout masks as one without)."""
    with torch.random.fork_rng(devices=[]):
        model, tok, _, _ = load_for_inference(path)
    return model, tok


def reference_model(train, tok) -> torch.nn.Module | None:
    """The checkpoint --train.graduated_reference names, in eval mode and frozen, checked to
    share the run's tokenizer (its probabilities must be over the same pieces); None when the
    run names none."""
    if not getattr(train, "graduated_reference", None):
        return None
    path = checkpoint_file(train.graduated_reference)
    model, ref_tok = _frozen(path)
    if ref_tok.proto != tok.proto:
        raise NMTError(
            f"--train.graduated_reference {path} was trained with another tokenizer than this "
            "run's; train the run on the reference's data and vocabulary (or pick a reference "
            "trained on this run's)"
        )
    log.info("graduated smoothing: p of the gold token from the frozen reference %s", path)
    return model.requires_grad_(False)


def teacher_model(train, tok) -> torch.nn.Module | None:
    """The checkpoint --train.teacher names, frozen in eval mode and checked to share the
    run's tokenizer; None when the run has no teacher."""
    if not getattr(train, "teacher", None):
        return None
    path = checkpoint_file(train.teacher)
    model, teacher_tok = _frozen(path)
    if teacher_tok.proto != tok.proto:
        raise NMTError(
            f"--train.teacher {path} was trained with another tokenizer than this run's; a "
            "student trains with its teacher's tokenizer (resume the run with its own teacher)"
        )
    log.info("distillation: teacher %s (%s)", path, train.teacher_label)
    return model.requires_grad_(False)


def teacher_tokenizer(train, vocab_size: int):
    """The tokenizer a student trains with: its teacher's, from the checkpoint (None without a
    teacher); a --vocab-size that differs from the teacher's is one NMTError."""
    if not getattr(train, "teacher", None):
        return None
    from nmt.data.tokenizer import Tokenizer
    from nmt.train.checkpoint import load_checkpoint

    path = checkpoint_file(train.teacher)
    tok = Tokenizer.from_tensor(load_checkpoint(path)["spm_model"])
    if len(tok) != vocab_size:
        raise NMTError(
            f"--vocab-size {vocab_size} differs from the teacher's {len(tok)} pieces: a student "
            f"trains with its teacher's tokenizer; pass --vocab-size {len(tok)} (or drop it)"
        )
    return tok
