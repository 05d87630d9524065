"""The recipe's parts: decaying schedules, the weight average (EMA and checkpoint averaging),
the wall-clock budget, and a search that never outputs PAD, BOS or UNK."""

from __future__ import annotations

import json
import math
import re
import signal

import pytest
import torch

from nmt.config import ModelConfig, TrainConfig
from nmt.data.tokenizer import BOS_ID, PAD_ID, UNK_ID
from nmt.decode.search import beam_search, greedy_search
from nmt.model.transformer import Transformer
from nmt.train.budget import Horizon, budget_steps
from nmt.train.checkpoint import load_checkpoint, load_for_inference
from nmt.train.ema import EMA
from nmt.train.optim import build_optimizer, build_scheduler, decay_to_zero

from .conftest import cipher_flags, run, write_cipher
from .test_cli import scalars


# ---- schedules ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, mid", [("cosine", 0.5), ("linear", 0.5)])
def test_decay_to_zero_at_warmup_end_midpoint_and_end(shape, mid):
    # warmup 10, end 110: the decay runs over updates 10..110, its midpoint is update 60.
    assert decay_to_zero(5, 10, 110, shape) == 0.5
    assert decay_to_zero(10, 10, 110, shape) == 1.0
    assert decay_to_zero(60, 10, 110, shape) == pytest.approx(mid, abs=1e-12)
    assert decay_to_zero(110, 10, 110, shape) == pytest.approx(0.0, abs=1e-12)
    assert decay_to_zero(500, 10, 110, shape) == pytest.approx(0.0, abs=1e-12)  # never below 0
    quarter = decay_to_zero(35, 10, 110, shape)
    assert quarter == pytest.approx((1 + math.cos(math.pi / 4)) / 2 if shape == "cosine" else 0.75)
    assert decay_to_zero(50, 10, 0, shape) == 1.0  # the end not known yet: the peak is held


def test_the_schedule_follows_a_changing_horizon():
    cfg = TrainConfig(lr=1.0, warmup_steps=2, schedule="linear", max_minutes=5)
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    horizon = Horizon()
    sched = build_scheduler(opt, cfg, horizon)
    seen = []
    for update in range(1, 7):
        seen.append(opt.param_groups[0]["lr"])
        horizon.steps = 12 if update >= 3 else 0  # an estimate arrives with update 3
        opt.step()
        sched.step()  # sets the LR of the next update, from the horizon as it is now
    # Updates 1-2 warm up; 3 holds the peak (no end known); 4.. decay towards update 12.
    assert seen == pytest.approx([0.5, 1.0, 1.0, 1 - 2 / 10, 1 - 3 / 10, 1 - 4 / 10])


# ---- exponential moving average ------------------------------------------------------------
@pytest.mark.parametrize("first", [1, 1000])
def test_ema_after_k_updates_is_the_closed_form(first):
    """ema_k = prod_t d_t * w_0 + sum_i (1 - d_i) prod_{t > i} d_t * w_i, d_t = min(0.9,
    (1 + t) / (10 + t)): warming up from update 1 (d = 2/11, 3/12, ...), constant from 1000."""
    model = torch.nn.Linear(3, 2)
    d, k = 0.9, 5
    steps = range(first, first + k)
    decays = [min(d, (1 + t) / (10 + t)) for t in steps]
    assert decays[0] == (2 / 11 if first == 1 else 0.9)
    start = {n: p.detach().clone() for n, p in model.state_dict().items()}
    ema = EMA(model, d)
    seen = []
    for i, t in enumerate(steps):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(i + 1))  # the weights after each update
        seen.append({n: p.detach().clone() for n, p in model.state_dict().items()})
        ema.update(t)
    for name in start:
        expected = math.prod(decays) * start[name]
        for i in range(k):
            expected = expected + (1 - decays[i]) * math.prod(decays[i + 1 :]) * seen[i][name]
        torch.testing.assert_close(ema.state_dict()[name], expected, atol=1e-6, rtol=0)
    live = {n: p.clone() for n, p in model.state_dict().items()}
    with ema.swapped_in():
        assert all(torch.equal(model.state_dict()[n], ema.state_dict()[n]) for n in live)
    assert all(torch.equal(model.state_dict()[n], live[n]) for n in live)  # put back


# ---- whole runs -----------------------------------------------------------------------------
STEPS = 20


@pytest.fixture(scope="module")
def cipher(tmp_path_factory):
    return write_cipher(tmp_path_factory.mktemp("recipe") / "cipher", valid=30, test=20)


def ema_flags(cipher, run_dir) -> list[str]:
    return [
        *cipher_flags(cipher), "--max-steps", str(STEPS), "--valid-every", "10",
        "--save-every", "5", "--train.log_every", "1", "--train.lr", "1e-2",
        "--train.schedule", "cosine", "--train.warmup_steps", "4",
        "--train.ema_decay", "0.9", "--run-dir", str(run_dir),
    ]  # fmt: skip


@pytest.mark.slow
def test_ema_and_cosine_resume_equals_the_uninterrupted_run(cipher, tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = run("train.py", *ema_flags(cipher, ref_dir))
    assert ref.returncode == 0, ref.stderr[-3000:]
    killed = run("train.py", *ema_flags(cipher, run_dir), env={"NMT_TEST_KILL_AT_STEP": "13"})
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(run_dir / "checkpoint_last.pt")["step"] == 10
    resumed = run("train.py", *ema_flags(cipher, run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = scalars(ref_dir), scalars(run_dir)
    for tag in ("train/loss", "train/lr", "valid/nll_loss"):
        assert [s for s, _ in a[tag]] == [s for s, _ in b[tag]], tag
        for (step, x), (_, y) in zip(a[tag], b[tag]):
            assert abs(x - y) <= 1e-6, f"{tag} at {step}: {x} vs {y}"
    assert a["train/lr"][-1][1] == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0
    ref_ckpt = load_checkpoint(ref_dir / "checkpoint_last.pt")
    got_ckpt = load_checkpoint(run_dir / "checkpoint_last.pt")
    for name, value in ref_ckpt["ema"].items():
        torch.testing.assert_close(got_ckpt["ema"][name], value, atol=1e-6, rtol=0)
        assert not torch.equal(value, ref_ckpt["model"][name]) or name.endswith("pe")
    # Validation scored the average: its NLL is not the live weights' NLL.
    results = json.loads((ref_dir / "results.json").read_text())
    model, _, _, _ = load_for_inference(ref_dir / "checkpoint_best.pt")
    best = load_checkpoint(ref_dir / "checkpoint_best.pt")
    assert all(torch.equal(model.state_dict()[k], best["ema"][k]) for k in best["ema"])
    assert results["test"]["bleu"] >= 0 and results["step"] in (10, 20)


def test_max_minutes_stops_scores_test_and_writes_results(cipher, tmp_path):
    run_dir = tmp_path / "timed"
    proc = run(
        "train.py", *cipher_flags(cipher), "--max-steps", "0", "--max-minutes", "0.25",
        "--valid-every", "100000", "--train.schedule", "linear", "--train.warmup_steps", "2",
        "--train.log_every", "1", "--run-dir", str(run_dir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"] is not None and results["valid"]
    log = (run_dir / "train.log").read_text()
    assert f"time budget of 0.25 minutes reached at update {results['last_step']}" in log
    # Stopped soon after the 15 s budget, which counts from the process's start: long enough
    # for updates to happen even beside another test worker (`-n 2`) on a 2-core machine.
    assert 15.0 <= results["train_minutes"] * 60 < 75
    lrs = [v for _, v in scalars(run_dir)["train/lr"]]
    assert len(lrs) == results["last_step"] and lrs[-1] < max(lrs)  # the schedule decayed


def test_the_budget_is_max_steps_or_max_epochs_whichever_ends_first():
    assert budget_steps(0, 300) == 300  # no max_steps: the epochs' updates
    assert budget_steps(100, 300) == 100
    assert budget_steps(500, 300) == 300


def test_without_max_steps_cosine_ends_at_zero_with_the_last_epoch(cipher, tmp_path):
    run_dir = tmp_path / "epochs"
    proc = run(
        "train.py", *cipher_flags(cipher), "--max-steps", "0", "--max-epochs", "2",
        "--train.schedule", "cosine", "--train.warmup_steps", "2", "--train.lr", "1e-2",
        "--train.log_every", "1", "--valid-every", "1000", "--run-dir", str(run_dir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    per_epoch = int(
        re.search(r"epoch 1 done at update (\d+)", (run_dir / "train.log").read_text())[1]
    )
    lrs = dict(scalars(run_dir)["train/lr"])  # logged after update s: the LR of update s + 1
    assert max(lrs) == 2 * per_epoch  # two epochs, the last update is the budget's end
    w, total = 2, 2 * per_epoch

    def lr(update):
        f = min((update - w) / (total - w), 1.0)
        return 1e-2 * (update / w if update <= w else 0.5 * (1 + math.cos(math.pi * f)))

    for step in (1, 2, per_epoch, total - 2, total - 1):
        assert lrs[step] == pytest.approx(lr(step + 1), rel=1e-5, abs=1e-12), step
    assert lrs[total - 1] == pytest.approx(0.0, abs=1e-12)  # the last update's LR is 0
    assert lrs[per_epoch] == pytest.approx(
        1e-2 * 0.5 * (1 + math.cos(math.pi * (per_epoch - 1) / (total - 2)))
    )


# ---- search ---------------------------------------------------------------------------------
def test_search_never_outputs_pad_bos_or_unk():
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1)
    model = Transformer(cfg, 30).eval()
    boost = torch.zeros(30)
    boost[[UNK_ID, PAD_ID, BOS_ID]] = torch.tensor([60.0, 50.0, 40.0])
    step, decode = model.decode_step, model.decode
    model.decode_step = lambda *a, **k: step(*a, **k) + boost
    model.decode = lambda *a, **k: decode(*a, **k) + boost
    src = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    with torch.no_grad():  # guard: unconstrained, UNK is the model's best token everywhere
        memory, mask = model.encode(src)
        logits = model.decode(torch.full((2, 1), BOS_ID), memory, mask)[:, -1]
    assert logits.argmax(-1).tolist() == [UNK_ID, UNK_ID]
    outputs = [h.tokens for h in greedy_search(model, src, 1.0, 5)]
    outputs += [h.tokens for nb in beam_search(model, src, 3, 1.0, 5, nbest=3) for h in nb]
    assert outputs and all(tokens for tokens in outputs)
    banned = {PAD_ID, BOS_ID, UNK_ID}
    assert all(not banned & set(tokens) for tokens in outputs), outputs
