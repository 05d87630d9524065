"""The checkpoint: one schema (TrainState), atomic files (CheckpointDir), clear load errors."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from nmt.errors import NMTError
from nmt.files import atomic_write

FORMAT_VERSION = 1
# What translating needs; a checkpoint to resume from holds every field of TrainState.
INFERENCE_KEYS = ("model", "config", "spm_model", "vocab_size")
# The metadata of a field added after format 1 was first written: a checkpoint that lacks it
# resumes with the field's default. Every new field of Progress or TrainState carries it.
ADDED = {"added": True}


@dataclass
class Progress:
    """Where the loop is and what it has seen: the counters fit() keeps and a resume restores."""

    step: int = 0  # updates done
    epoch: int = 0  # epochs done
    batch_pos: int = 0  # index in the epoch's batch order where the next update starts
    best_bleu: float = -1.0
    best_nll: float = math.inf
    bad_validations: int = 0  # validations since the best one (early stopping)
    best_valid: dict = field(default_factory=dict)  # validation metrics of the best checkpoint
    skipped_total: int = 0
    skipped_in_a_row: int = 0
    history: list[dict] = field(default_factory=list)  # validation scalars, every validation
    last_valid: dict = field(default_factory=dict)  # the latest validation's metrics
    # wall-clock seconds of training so far, earlier processes included
    elapsed_s: float = field(default=0.0, metadata=ADDED)
    # what each --resume changed: [{"key", "from", "to", "step"}] (budget and bookkeeping only)
    resume_changes: list[dict] = field(default_factory=list, metadata=ADDED)


@dataclass
class TrainState:
    """Everything a checkpoint holds: all the next update depends on, config and tokenizer.

    The file is the flat dict to_dict() writes (Progress's fields at the top level, the latest
    validation under "valid"), so translate.py and other tools read the keys they need.
    """

    progress: Progress
    model: dict
    optimizer: dict
    scheduler: dict
    scaler: dict
    rng: dict  # rank 0's generator states: where a resume with another rank count starts
    config: dict
    vocab_size: int
    spm_model: torch.Tensor
    # every rank's generator states (dropout differs per rank)
    rng_ranks: list | None = field(default=None, metadata=ADDED)
    # the averaged weights (--train.ema_decay), what validation used
    ema: dict | None = field(default=None, metadata=ADDED)
    criterion: dict | None = field(default=None, metadata=ADDED)  # a criterion's own state

    # UpdateStep.state_dict()'s keys: what TrainState captures from and restores to the step.
    UPDATE_KEYS: ClassVar[tuple[str, ...]] = (
        "optimizer",
        "scheduler",
        "scaler",
        "ema",
        "criterion",
    )

    def update_state(self) -> dict[str, Any]:
        """What UpdateStep.load_state_dict() restores (the mirror of its state_dict())."""
        return {key: getattr(self, key) for key in self.UPDATE_KEYS}

    def to_dict(self) -> dict[str, Any]:
        p = dataclasses.asdict(self.progress)
        valid = {k: v for k, v in p.pop("last_valid").items() if not isinstance(v, str)}
        if not p["resume_changes"]:  # written once a resume changed something
            del p["resume_changes"]
        out = {
            "rng_ranks": self.rng_ranks,
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "step": p.pop("step"),
            "epoch": p.pop("epoch"),
            "batch_pos": p.pop("batch_pos"),
            "rng": self.rng,
            **p,
            "valid": valid,  # the validation this checkpoint was saved after
            "config": self.config,
            "vocab_size": self.vocab_size,
            "spm_model": self.spm_model,
        }
        for key in ("ema", "criterion"):  # written when the run has them
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, state: dict[str, Any], path: str | Path = "the checkpoint") -> TrainState:
        """The TrainState of a checkpoint dict; one that cannot be resumed exactly is refused.

        A field added since format 1 (metadata ADDED) that the file lacks takes its default.
        """
        own = [f for f in dataclasses.fields(cls) if f.name != "progress"]
        counters = [f for f in dataclasses.fields(Progress) if f.name != "last_valid"]
        missing = [f.name for f in (*counters, *own) if f.name not in state and not f.metadata]
        missing += [] if "valid" in state else ["valid"]
        if missing:
            raise NMTError(
                f"{path} lacks {', '.join(missing)} and cannot be resumed exactly; "
                "pass --overwrite to start the run again"
            )
        saved = {f.name: state[f.name] for f in counters if f.name in state}
        progress = Progress(**saved, last_valid=dict(state["valid"]))
        progress.history = list(progress.history)
        return cls(progress, **{f.name: state[f.name] for f in own if f.name in state})


def inference_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a checkpoint translates with: the EMA average when the run kept one."""
    return state["ema"] if state.get("ema") is not None else state["model"]


class CheckpointDir:
    """checkpoint_last.pt, checkpoint_best.pt and numbered checkpoint_step<N>.pt of one run.

    Every write is atomic; numbered checkpoints beyond the newest keep_last are deleted;
    on_save() runs after each write (e.g. RunDir.checkpoint_saved).
    """

    def __init__(self, folder: Path, keep_last: int = 0, on_save: Callable[[], None] | None = None):
        self.folder, self.keep_last, self.on_save = Path(folder), keep_last, on_save

    def path(self, kind: str, step: int = 0) -> Path:
        """kind: last, best, or numbered (at update step)."""
        name = f"checkpoint_step{step}.pt" if kind == "numbered" else f"checkpoint_{kind}.pt"
        return self.folder / name

    def save(self, kind: str, state: TrainState) -> Path:
        """Write one checkpoint; a failed write (full or read-only disk) leaves the previous
        file intact and stops with a clear error."""
        path = self.path(kind, state.progress.step)
        try:
            save_checkpoint(state.to_dict(), path)
        except (OSError, RuntimeError) as exc:  # torch wraps a failed write in RuntimeError
            raise NMTError(
                f"cannot write {path}: {_write_failure(exc)}; the previous "
                "checkpoint is intact; free space or fix permissions, then resume"
            ) from None
        if self.on_save is not None:
            self.on_save()
        if kind == "numbered" and self.keep_last:
            numbered = sorted(
                self.folder.glob("checkpoint_step*.pt"),
                key=lambda p: int(p.stem.removeprefix("checkpoint_step")),
            )
            for old in numbered[: -self.keep_last]:
                old.unlink()
        return path


def _write_failure(exc: BaseException) -> str:
    """Why a write failed: the OSError's reason, also when torch wrapped it in a RuntimeError."""
    for err in (exc, exc.__cause__, exc.__context__):
        if isinstance(err, OSError):
            return err.strerror or str(err)
    text = str(exc).strip().splitlines()
    return (text[0][:160] if text else type(exc).__name__) + " (is the disk full?)"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write state to path atomically: temp file in the same folder, fsync, rename."""
    payload = {"format_version": FORMAT_VERSION, **state}
    atomic_write(Path(path), lambda handle: torch.save(payload, handle))


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file as given, or a run directory's checkpoint_best.pt."""
    path = Path(path)
    return path / "checkpoint_best.pt" if path.is_dir() else path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file or the best checkpoint of a run directory."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise NMTError(f"checkpoint {path} does not exist; pass a run directory or a .pt file")
    try:
        with warnings.catch_warnings():  # a foreign pickle warns before it fails
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # a damaged file fails anywhere in torch's unpickler
        raise NMTError(
            f"{path} is not a readable checkpoint (truncated or not a torch file); pass a run "
            "directory or a checkpoint .pt file that train.py wrote"
        ) from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise NMTError(f"{path} is not a checkpoint written by this project")
    if state["format_version"] != FORMAT_VERSION:
        raise NMTError(
            f"{path} has checkpoint format {state['format_version']}, this version reads "
            f"{FORMAT_VERSION}; use the matching release of the toolkit"
        )
    return state


def load_train_state(path: str | Path, map_location: str | torch.device = "cpu") -> TrainState:
    """The TrainState of a checkpoint file, checked for everything a resume needs."""
    return TrainState.from_dict(load_checkpoint(path, map_location), path)


def load_for_inference(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild (model, tokenizer, config, state) from a checkpoint alone, in eval mode."""
    from nmt.config import Config
    from nmt.data.tokenizer import Tokenizer
    from nmt.model.transformer import Transformer

    state = load_checkpoint(path, map_location=device)
    missing = [k for k in INFERENCE_KEYS if k not in state]
    if missing:
        raise NMTError(
            f"checkpoint {path} lacks {', '.join(missing)}; it cannot be used to translate"
        )
    cfg = Config.from_dict(state["config"], source=f"config in {path}")
    tok = Tokenizer.from_tensor(state["spm_model"])
    if len(tok) != state["vocab_size"]:
        raise NMTError(
            f"checkpoint {path}: its tokenizer has {len(tok)} pieces but the model "
            f"was built for {state['vocab_size']}; the checkpoint is inconsistent"
        )
    model = Transformer(cfg.model, state["vocab_size"])
    try:
        model.load_state_dict(inference_weights(state))
    except RuntimeError as exc:
        raise NMTError(
            f"checkpoint {path}: weights do not match its own architecture "
            f"({str(exc).splitlines()[0]})"
        ) from None
    return model.to(device).eval(), tok, cfg, state
