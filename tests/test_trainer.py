"""The update step (gradient normalised by the update's tokens across accumulated batches, the
skip policy) and the Trainer's validation, early stopping and checkpoints."""

from __future__ import annotations

import pytest
import torch

from nmt.config import Config, DataConfig, DecodeConfig, ModelConfig, TrainConfig
from nmt.data.batching import Batch, pad
from nmt.data.dataset import Split
from nmt.data.tokenizer import PAD_ID
from nmt.decode.search import decode_corpus
from nmt.errors import NMTError
from nmt.model.transformer import Transformer
from nmt.objective.loss import build_criterion
from nmt.train.distributed import SINGLE
from nmt.train.logbook import Interval
from nmt.train.step import StepStats, UpdateStep
from nmt.train.trainer import Trainer

from .test_cli import scalars

V = 40


class FakeTok:
    def __len__(self):
        return V

    def to_tensor(self):
        return torch.zeros(0, dtype=torch.uint8)

    def decode(self, ids):
        return [" ".join(f"w{i}" for i in row) for row in ids]


def config(update_freq=1, beam=1, **train):
    return Config(
        decode=DecodeConfig(beam=beam, max_len_a=1.0, max_len_b=3),
        data=DataConfig(vocab_size=V),
        model=ModelConfig(
            d_model=16, heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1, dropout=0.0
        ),
        train=TrainConfig(device="cpu", update_freq=update_freq, smoothing=0.1, **train),
    )


def updater(update_freq=1, world=SINGLE, device=None, **train):
    """An UpdateStep built from a model and a criterion alone: no tokenizer, no run directory."""
    cfg = config(update_freq, **train)
    torch.manual_seed(0)
    device = torch.device("cpu") if device is None else device
    criterion = build_criterion(cfg.train, V, PAD_ID)
    return UpdateStep.build(cfg.train, Transformer(cfg.model, V), criterion, device, world)


def trainer(tmp_path, name, beam=1, **train):
    cfg = config(beam=beam, **train)
    torch.manual_seed(0)
    return Trainer(cfg, Transformer(cfg.model, V), FakeTok(), {}, tmp_path / name)


def batch(seqs_src, seqs_tgt):
    return Batch.of(pad(seqs_src), pad(seqs_tgt))


A_SRC, A_TGT = [[5, 6, 7, 3], [8, 9, 3]], [[2, 10, 11, 12, 13, 3], [2, 14, 3]]
B_SRC, B_TGT = [[15, 16, 3]], [[2, 17, 3]]  # far fewer tokens than A


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


def scripted_trainer(tmp_path, scores, patience):
    """A trainer whose validations return the given (bleu, nll) scores in turn."""

    from nmt.data.dataset import Split

    t = trainer(tmp_path, "scripted", patience=patience)
    t.splits = {"valid": Split("valid", ["a"], ["b"], [[5, 3]], [[2, 6, 3]])}
    feed = iter(scores)

    def evaluate(split):
        bleu, nll = next(feed)
        return {
            "loss": nll,
            "nll_loss": nll,
            "ppl": 1.0,
            "accuracy": 0.0,
            "bleu": bleu,
            "chrf": 0.0,
            "bleu_lc": bleu,
            "ece": 0.0,
            "confidence": 0.0,
            "entropy": 0.0,
            "logit_gap": 0.0,
            "prob_gap": 0.0,
            "bleu_signature": "sig",
        }, ["hyp"]

    t.evaluate = evaluate
    return t


def test_best_checkpoint_and_early_stopping(tmp_path):
    from nmt.train.checkpoint import load_checkpoint

    scores = [(0.0, 5.0), (0.0, 4.0), (12.0, 3.0), (11.0, 2.0), (12.0, 1.9), (13.0, 2.5)]
    t = scripted_trainer(tmp_path, scores, patience=2)
    stops, best_steps = [], []
    for step in range(1, 6):
        t.progress.step = step
        stops.append(t.validate())
        best_steps.append(load_checkpoint(t.run_dir / "checkpoint_best.pt")["step"])
    # BLEU ties go to the lower NLL (step 2); 11 < 12 is not better; 12 = 12 with lower NLL is.
    assert best_steps == [1, 2, 3, 3, 5]
    assert stops == [False, False, False, False, False]
    t.progress.step = 6
    assert t.validate() is False  # 13 improves: patience counter resets
    t2 = scripted_trainer(tmp_path, [(5.0, 1.0), (4.0, 1.0), (5.0, 1.0)], patience=2)
    assert [t2.validate(), t2.validate(), t2.validate()] == [False, False, True]
    assert load_checkpoint(t2.run_dir / "checkpoint_last.pt")["bad_validations"] == 2


@pytest.mark.parametrize("beam", [1, 3])
def test_validation_decodes_with_the_configured_search(tmp_path, beam):
    t = trainer(tmp_path, f"beam{beam}", beam=beam)
    src = [[5 + i % 30, 6 + i % 7, 7, 3] for i in range(12)]
    split = Split("valid", ["s"] * 12, ["w5 w6"] * 12, src, [[2, 5, 6, 3]] * 12)
    metrics, hyps = t.evaluate(split)
    from dataclasses import replace

    cpu = torch.device("cpu")
    found = decode_corpus(t.model, src, t.cfg.decode, device=cpu)
    assert t.cfg.decode.beam == beam and (t.cfg.decode.max_len_a, t.cfg.decode.max_len_b) == (1, 3)
    assert hyps == FakeTok().decode([n[0].tokens for n in found])
    other = decode_corpus(t.model, src, replace(t.cfg.decode, beam=4 - beam), device=cpu)
    assert [n[0].tokens for n in found] != [n[0].tokens for n in other]  # the beam matters here
    assert set(metrics) >= {"bleu", "chrf", "nll_loss", "bleu_lc", "ece", "reliability"}


def test_evaluation_reports_calibration_of_the_teacher_forced_predictions(tmp_path):
    from nmt.study.metrics import Calibration

    t = trainer(tmp_path, "calib")
    src = [[5 + i % 30, 6 + i % 7, 7, 3] for i in range(12)]
    tgt = [[2, 5 + i % 9, 6, 3] for i in range(12)]
    split = Split("valid", ["s"] * 12, ["w5 w6"] * 12, src, tgt)
    metrics, _ = t.evaluate(split)
    t.model.eval()
    with torch.no_grad():
        b = batch(src, tgt)
        logits = t.model(b.src, b.tgt_in)
    direct = Calibration()
    direct.add(logits, b.labels, 0)
    expected = direct.summary()
    for key in ("ece", "confidence", "entropy", "logit_gap"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key
    assert metrics["calibration_accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-12)
    assert sum(b["count"] for b in metrics["reliability"]) == metrics["num_tokens"] == 36


def poison(model, calls: set[int]):
    """Make the model's forward return NaN logits on the given (1-based) calls."""
    forward, count = model.forward, [0]

    def patched(*args, **kwargs):
        count[0] += 1
        out = forward(*args, **kwargs)
        return out * float("nan") if count[0] in calls else out

    model.forward = patched


def optimizer_snapshot(u):
    return [
        (p.detach().clone(), {k: v.clone() for k, v in u.optimizer.state.get(p, {}).items()})
        for p in u.model.parameters()
    ]


def same(a, b) -> bool:
    return all(
        torch.equal(pa, pb) and pa_state.keys() == pb_state.keys()
        and all(torch.equal(pa_state[k], pb_state[k]) for k in pa_state)
        for (pa, pa_state), (pb, pb_state) in zip(a, b)
    )  # fmt: skip


def test_nan_batch_skips_the_update_and_is_counted(tmp_path):
    t = trainer(tmp_path, "nan")
    u = t.update
    poison(t.model, {2})
    data = [batch(A_SRC, A_TGT)]
    u.step(data)  # a normal update first, so the optimizer has state
    before = optimizer_snapshot(u)
    stats = u.step(data)
    t.progress.step = 2
    t._check_skips(stats)
    assert stats.skipped and t.progress.skipped_total == 1 and t.progress.skipped_in_a_row == 1
    assert same(before, optimizer_snapshot(u))  # weights and Adam moments untouched
    assert all(p.grad is None for p in t.model.parameters())
    stats = u.step(data)
    t._check_skips(stats)
    assert not stats.skipped and t.progress.skipped_in_a_row == 0
    assert t.progress.skipped_total == 1
    assert not same(before, optimizer_snapshot(u))
    iv = Interval()
    nan = {"loss": float("nan"), "nll_loss": 1.0, "num_correct": 1.0}
    iv.add(StepStats(nan, 7, 1.0, skipped=True))
    assert iv.skipped == 1 and iv.loss == 0.0 and iv.tokens == 0 and iv.updates == 1
    iv.add(stats)
    assert (iv.updates, iv.skipped, iv.tokens, iv.loss) == (2, 1, 7, stats.loss)


def test_too_many_skips_in_a_row_stop_with_the_last_good_state(tmp_path):
    from nmt.train.checkpoint import load_checkpoint

    t = trainer(tmp_path, "nan3", max_skipped=3)
    t.run_dir.mkdir(parents=True, exist_ok=True)
    poison(t.model, {2, 3, 4})
    data = [batch(A_SRC, A_TGT)]
    t.update.step(data)
    t.progress.step = 1
    good = {k: v.clone() for k, v in t.model.state_dict().items()}
    with pytest.raises(NMTError, match="3 updates in a row had a non-finite loss"):
        for _ in range(3):
            t.progress.step += 1
            t._check_skips(t.update.step(data))
    saved = load_checkpoint(t.run_dir / "checkpoint_last.pt")
    assert saved["step"] == 4 and saved["skipped_total"] == 3
    assert all(torch.equal(saved["model"][k], good[k]) for k in good)


def test_loss_scaler_overflow_is_a_skipped_update(tmp_path):
    """The fp16 path's GradScaler, enabled on the CPU: an overflow halves the scale and skips."""
    t = trainer(tmp_path, "scaler")
    u = t.update
    u.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    data = [batch(A_SRC, A_TGT)]
    u.step(data)
    scale = u.scaler.get_scale()
    before = optimizer_snapshot(u)
    poison(t.model, {1})  # counts from now: the next forward
    stats = u.step(data)
    assert stats.skipped
    assert u.scaler.get_scale() == scale / 2
    assert same(before, optimizer_snapshot(u))
    # The scale is logged with the interval (train/loss_scale), here 2**15 after the overflow.
    t.interval = Interval(tokens=7, updates=2, skipped=1)
    t._log_train()
    t.logbook.flush()
    assert scalars(t.run_dir)["train/loss_scale"] == [(0, 2.0**15)]


def test_keep_last_numbered_checkpoints(tmp_path):
    t = trainer(tmp_path, "keep", keep_last=2, save_every=5)
    t.run_dir.mkdir(parents=True, exist_ok=True)
    for step in (5, 10, 15, 20):
        t.progress.step = step
        t.save("numbered")
    names = sorted(p.name for p in t.run_dir.glob("checkpoint_step*.pt"))
    assert names == ["checkpoint_step15.pt", "checkpoint_step20.pt"]


@pytest.mark.parametrize("wrapped", [False, True])
def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, wrapped):
    import errno

    from nmt.train.checkpoint import load_checkpoint

    t = trainer(tmp_path, "full")
    t.run_dir.mkdir(parents=True, exist_ok=True)
    t.progress.step = 7
    t.save("last")

    def no_space(obj, handle):
        handle.write(b"x" * 100)
        full = OSError(errno.ENOSPC, "No space left on device")
        if not wrapped:
            raise full
        # What torch.save raises when the disk fills under its zip writer.
        raise RuntimeError(
            "PytorchStreamWriter failed writing file data/3: file write failed"
        ) from full

    monkeypatch.setattr(torch, "save", no_space)
    t.progress.step = 8
    with pytest.raises(NMTError) as err:
        t.save("last")
    monkeypatch.undo()
    assert str(err.value) == (
        f"cannot write {t.run_dir / 'checkpoint_last.pt'}: No space left on device; the previous "
        "checkpoint is intact; free space or fix permissions, then resume"
    )
    assert load_checkpoint(t.run_dir / "checkpoint_last.pt")["step"] == 7
    assert [p.name for p in t.run_dir.iterdir() if p.suffix == ".tmp"] == []
