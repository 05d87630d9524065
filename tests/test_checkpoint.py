"""Atomic checkpoint writes and clear errors for broken files."""

from __future__ import annotations

import pytest
import torch

from nmt.data.tokenizer import Tokenizer
from nmt.errors import NMTError
from nmt.train.checkpoint import load_checkpoint, save_checkpoint

from .conftest import ROOT, cipher_flags, run, write_cipher


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


def _state():
    from nmt.train.checkpoint import Progress, TrainState

    progress = Progress(step=7, epoch=1, batch_pos=3, best_bleu=12.5, best_nll=2.0)
    progress.history.append({"step": 5, "bleu": 12.5})
    progress.last_valid = {"bleu": 12.5, "bleu_signature": "nrefs:1|case:mixed"}
    return TrainState(
        progress=progress,
        model={"w": torch.ones(2)},
        optimizer={"state": {}},
        scheduler={"last_epoch": 7},
        scaler={},
        rng={"torch": torch.zeros(3, dtype=torch.uint8)},
        rng_ranks=None,
        config={"train": {"lr": 1.0}},
        vocab_size=40,
        spm_model=torch.zeros(4, dtype=torch.uint8),
    )


def test_train_state_is_the_one_schema(tmp_path):
    """The file holds exactly these keys (what checkpoints have always held), and reads back."""
    from nmt.train.checkpoint import CheckpointDir, load_train_state

    path = CheckpointDir(tmp_path).save("last", _state())
    raw = load_checkpoint(path)
    assert sorted(raw) == sorted(
        "format_version rng_ranks model optimizer scheduler scaler step epoch batch_pos rng "
        "best_bleu best_nll bad_validations best_valid skipped_total skipped_in_a_row history "
        "valid config vocab_size spm_model elapsed_s".split()
    )  # and "ema" when the run keeps a weight average
    assert raw["valid"] == {"bleu": 12.5}  # strings (signatures) are not kept
    back = load_train_state(path)
    assert (back.progress.step, back.progress.epoch, back.progress.batch_pos) == (7, 1, 3)
    assert back.progress.history == [{"step": 5, "bleu": 12.5}] and back.vocab_size == 40
    assert back.progress.last_valid == {"bleu": 12.5} and back.scheduler == {"last_epoch": 7}


def test_older_checkpoints_without_elapsed_time_or_average_still_resume(tmp_path):
    from nmt.train.checkpoint import load_train_state

    raw = _state().to_dict()
    del raw["elapsed_s"]
    save_checkpoint(raw, tmp_path / "old.pt")
    back = load_train_state(tmp_path / "old.pt")
    assert back.progress.elapsed_s == 0.0 and back.ema is None and back.progress.step == 7


@pytest.mark.parametrize("key", ["optimizer", "batch_pos", "rng", "history", "spm_model"])
def test_a_checkpoint_that_cannot_resume_exactly_is_refused(tmp_path, key):
    from nmt.train.checkpoint import load_train_state

    raw = _state().to_dict()
    del raw[key]
    save_checkpoint(raw, tmp_path / "old.pt")
    with pytest.raises(NMTError) as err:
        load_train_state(tmp_path / "old.pt")
    assert str(err.value) == (
        f"{tmp_path / 'old.pt'} lacks {key} and cannot be resumed exactly; "
        "pass --overwrite to start the run again"
    )


def test_numbered_checkpoints_rotate_and_on_save_runs(tmp_path):
    from nmt.train.checkpoint import CheckpointDir

    saved = []
    folder = CheckpointDir(tmp_path, keep_last=2, on_save=lambda: saved.append(1))
    state = _state()
    for step in (5, 10, 15):
        state.progress.step = step
        folder.save("numbered", state)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == [
        "checkpoint_step10.pt",
        "checkpoint_step15.pt",
    ]
    assert len(saved) == 3 and folder.path("best") == tmp_path / "checkpoint_best.pt"


LEGACY = ROOT / "tests" / "data" / "checkpoint_v1_toy_step5.pt"


def test_a_checkpoint_written_before_the_refactor_still_resumes(tmp_path):
    """tests/data/checkpoint_v1_toy_step5.pt was written by commit 8f3bba6, before the state
    round-trip moved into UpdateStep.load_state_dict (python train.py --config configs/toy.yaml
    on the cipher corpus, --vocab-size 60 --max-steps 5 --valid-every 5 --decode.final_beam 0).
    Today's code resumes it to update 10 and ends where an uninterrupted 10-update run ends."""
    data = write_cipher(tmp_path / "cipher")
    # The legacy run's arithmetic (train.kernels reference) on both sides, so they match.
    flags = [*cipher_flags(data), "--max-steps", "10", "--valid-every", "5",
             "--decode.final_beam", "0", "--train.kernels", "reference"]  # fmt: skip
    straight = run("train.py", *flags, "--run-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-2000:]
    legacy = torch.load(LEGACY, weights_only=True)
    assert legacy["step"] == 5 and "criterion" not in legacy  # the old key set

    # The same pieces and scores (the model files differ only in the training files' paths
    # they record), so the same batches.
    def pieces(tok):
        return [(tok.sp.id_to_piece(i), tok.sp.get_score(i)) for i in range(len(tok))]

    ours = Tokenizer.load(tmp_path / "straight" / "spm.model")
    assert pieces(ours) == pieces(Tokenizer.from_tensor(legacy["spm_model"]))
    (tmp_path / "resumed").mkdir()
    # Its data was at /tmp/legacy/cipher, the same corpus as here: a resume may not change the
    # dataset, so the saved path is pointed here (nothing else in the file changes).
    assert legacy["config"]["data"]["dataset"] == "/tmp/legacy/cipher"
    legacy["config"]["data"]["dataset"] = str(data)
    for kind in ("last", "best"):  # the legacy run's best checkpoint was its last, at update 5
        torch.save(legacy, tmp_path / "resumed" / f"checkpoint_{kind}.pt")
    resumed = run("train.py", *flags, "--run-dir", str(tmp_path / "resumed"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr and "(update 5)" in resumed.stderr
    a, b = (
        load_checkpoint(tmp_path / name / "checkpoint_last.pt") for name in ("straight", "resumed")
    )
    assert a["step"] == b["step"] == 10
    # The legacy file's five updates ran on another CPU, whose float rounding differs in the last
    # bits (up to 1.6e-4 apart after ten updates on a second machine); a resume that lost the
    # model or the optimizer state is off by several learning rates (3e-3 per update).
    tol = 5e-4
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, atol=tol, rtol=0)
    moments = [(s["exp_avg"], t["exp_avg"]) for s, t in
               zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values())]  # fmt: skip
    for x, y in moments:
        torch.testing.assert_close(y, x, atol=tol, rtol=0)
