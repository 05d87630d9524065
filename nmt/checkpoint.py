"""Atomic checkpoint save and a load that turns broken files into clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nmt.errors import NMTError
from nmt.files import atomic_write

FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write state to path atomically: temp file in the same folder, fsync, rename."""
    payload = {"format_version": FORMAT_VERSION, **state}
    atomic_write(Path(path), lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file or the best checkpoint of a run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint_best.pt"
    if not path.is_file():
        raise NMTError(f"checkpoint {path} does not exist; pass a run directory or a .pt file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a damaged file fails anywhere in torch's unpickler
        raise NMTError(
            f"{path} is not a readable checkpoint (truncated or not a torch file: "
            f"{str(exc).strip().splitlines()[0][:120]})"
        ) from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise NMTError(f"{path} is not a checkpoint written by this project")
    if state["format_version"] != FORMAT_VERSION:
        raise NMTError(
            f"{path} has checkpoint format {state['format_version']}, this version reads "
            f"{FORMAT_VERSION}; use the matching release of the toolkit"
        )
    return state


def load_for_inference(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild (model, tokenizer, config, state) from a checkpoint alone, in eval mode."""
    from nmt.config import Config
    from nmt.model import Transformer
    from nmt.tokenizer import Tokenizer

    state = load_checkpoint(path, map_location=device)
    missing = [k for k in ("model", "config", "spm_model", "vocab_size") if k not in state]
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
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise NMTError(
            f"checkpoint {path}: weights do not match its own architecture "
            f"({str(exc).splitlines()[0]})"
        ) from None
    return model.to(device).eval(), tok, cfg, state
