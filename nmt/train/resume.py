"""What a --resume may change: the budget and bookkeeping, never what the run is."""

from __future__ import annotations

import logging

from nmt.config import Config, flatten
from nmt.config_checks import bookkeeping_changes, run_identity_changes
from nmt.errors import NMTError
from nmt.train.checkpoint import TrainState
from nmt.train.distributed import World

log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried


def resume_changes(state: TrainState, cfg: Config, world: World) -> list[dict]:
    """A resume may change the budget and bookkeeping only: each change is logged and
    returned for results.json's resume_changes; any other change is refused before
    anything is loaded or written. update_freq may change with the number of ranks when
    their product, the batches of one update, stays the same."""
    saved, step = state.config, state.progress.step
    refused = run_identity_changes(saved, cfg.to_dict())
    ranks_before = len(state.rng_ranks or [None])
    old_freq = saved.get("train", {}).get("update_freq")
    if old_freq and old_freq * ranks_before == cfg.train.update_freq * world.size:
        refused = [k for k in refused if k != "train.update_freq"]
    if refused:
        old, new = flatten(saved, "checkpoint"), flatten(cfg.to_dict(), "config")
        shown = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in refused[:4])
        raise NMTError(
            f"--resume cannot change {shown}{', ...' if len(refused) > 4 else ''}: a resume "
            "may change only the budget and bookkeeping (steps, epochs, minutes, patience, "
            "validation, saving, device, precision, compile); start a new run with another "
            "--run-dir, or --overwrite"
        )
    changes = bookkeeping_changes(saved, cfg.to_dict())
    if old_freq != cfg.train.update_freq:  # allowed above: the same updates
        changes.append({"key": "train.update_freq", "from": old_freq,
                        "to": cfg.train.update_freq})  # fmt: skip
    for change in changes:
        change["step"] = step
        log.info("resume changes %s from %r to %r at update %d", change["key"],
                 change["from"], change["to"], step)  # fmt: skip
    return changes
