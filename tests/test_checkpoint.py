"""Atomic checkpoint writes and clear errors for broken files."""

from __future__ import annotations

import pytest
import torch

from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.errors import NMTError


def test_round_trip_and_run_dir(tmp_path):
    state = {"model": {"w": torch.arange(6.0)}, "step": 3, "spm_model": b"\x00proto"}
    save_checkpoint(state, tmp_path / "checkpoint_best.pt")
    loaded = load_checkpoint(tmp_path)  # a run directory means its best checkpoint
    assert torch.equal(loaded["model"]["w"], torch.arange(6.0))
    assert loaded["step"] == 3 and loaded["spm_model"] == b"\x00proto"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_best.pt"]  # no temp file left


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint({"step": 1}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(NMTError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    good = tmp_path / "good.pt"
    save_checkpoint({"step": 1, "model": {"w": torch.zeros(1000)}}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(NMTError, match="not a readable checkpoint"):
        load_checkpoint(cut)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(NMTError, match="not a readable checkpoint"):
        load_checkpoint(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(NMTError, match="not a checkpoint written by this project"):
        load_checkpoint(foreign)
