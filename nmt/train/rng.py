"""Seeding and the generator states a checkpoint carries (exact resume, dropout included)."""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    """Python, NumPy and torch (and CUDA) generator states, in types torch.load accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": list(random.getstate()),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices); seed + rank offsets wrap into NumPy's range."""
    seed %= 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
