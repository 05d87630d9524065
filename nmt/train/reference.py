"""Graduated smoothing's frozen reference model: a finished run's checkpoint, loaded once."""

from __future__ import annotations

import logging

import torch

from nmt.errors import NMTError
from nmt.train.checkpoint import checkpoint_file, load_for_inference

log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried


def reference_model(train, tok) -> torch.nn.Module | None:
    """The checkpoint --train.graduated_reference names, in eval mode and frozen, checked to
    share the run's tokenizer (its probabilities must be over the same pieces); None when the
    run names none."""
    if not getattr(train, "graduated_reference", None):
        return None
    path = checkpoint_file(train.graduated_reference)
    model, ref_tok, _, _ = load_for_inference(path)
    if ref_tok.proto != tok.proto:
        raise NMTError(
            f"--train.graduated_reference {path} was trained with another tokenizer than this "
            "run's; train the run on the reference's data and vocabulary (or pick a reference "
            "trained on this run's)"
        )
    log.info("graduated smoothing: p of the gold token from the frozen reference %s", path)
    return model.requires_grad_(False)
