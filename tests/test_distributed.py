"""DistributedDataParallel on CPU (gloo): one update and whole torchrun runs equal one process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from nmt.errors import NMTError
from nmt.train.checkpoint import load_checkpoint
from nmt.train.distributed import World, shard, world_from_env

from .conftest import ROOT, cipher_flags, hooked_env, write_cipher
from .test_cli import scalars
from .test_trainer import A_SRC, A_TGT, B_SRC, B_TGT, batch, updater

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_update(rank: int, port: int, out: str, empty_rank1: bool) -> None:
    """Rank r of 2 on its own batch: the synced gradient, then one UpdateStep.step."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from pathlib import Path

    from nmt.train import distributed

    world = world_from_env()
    t = updater(world=world, device=distributed.init(torch.device("cpu"), world))
    mine, weight = [batch(A_SRC, A_TGT)], 1.0
    if rank == 1:  # B, or no batch of its own: then a batch that counts for nothing
        mine, weight = ([batch(A_SRC, A_TGT)], 0.0) if empty_rank1 else ([batch(B_SRC, B_TGT)], 1.0)
    stats = t.accumulate(mine, weight)
    grads = [p.grad.clone() for p in t.model.parameters()]
    t.optimizer.zero_grad(set_to_none=True)
    t.step(mine, weight)
    if rank == 0:
        params = [p.detach() for p in t.model.parameters()]
        torch.save({"stats": vars(stats), "grads": grads, "params": params}, Path(out) / "ddp.pt")
    torch.distributed.barrier()  # leave together: a rank tearing gloo down alone may abort
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("empty_rank1", [False, True])
def test_one_ddp_update_equals_one_process_fed_both_batches(tmp_path, empty_rank1):
    mp.spawn(_one_update, args=(free_port(), str(tmp_path), empty_rank1), nprocs=2)
    ddp = torch.load(tmp_path / "ddp.pt")
    # One process, both ranks' batches accumulated into one update (A: 7 tokens, B: 2).
    both = [batch(A_SRC, A_TGT)] + ([] if empty_rank1 else [batch(B_SRC, B_TGT)])
    single = updater(update_freq=2)
    stats = single.accumulate(both)
    assert ddp["stats"]["tokens"] == stats.tokens == (7 if empty_rank1 else 9)
    assert list(ddp["stats"]["sums"]) == ["loss", "nll_loss", "num_correct"]
    for key in ("loss", "nll_loss", "num_correct"):
        assert ddp["stats"]["sums"][key] == pytest.approx(stats.sums[key], abs=1e-5)
    for g_ddp, p in zip(ddp["grads"], single.model.parameters()):
        torch.testing.assert_close(g_ddp, p.grad, atol=1e-6, rtol=1e-5)
    single.optimizer.zero_grad(set_to_none=True)
    single.step(both)
    start = updater()
    assert any(not torch.equal(a, b) for a, b in zip(ddp["params"], start.model.parameters()))
    for p_ddp, p_one in zip(ddp["params"], single.model.parameters()):
        torch.testing.assert_close(p_ddp, p_one.detach(), atol=1e-5, rtol=0)
    if not empty_rank1:
        # Guard: averaging the ranks' per-token means (A's 7 tokens weighted like B's 2) gives
        # another gradient; the all-reduced token count is what makes the equality hold.
        means = []
        for pair in both:
            t = updater()
            t.accumulate([pair])
            means.append([p.grad for p in t.model.parameters()])
        gap = max((g - (a + b) / 2).abs().max() for g, a, b in zip(ddp["grads"], *means))
        assert gap > 1e-3


def test_shard_and_world_from_env():
    chunk = list(range(5))
    assert shard(chunk, World(0, 2)) == [0, 2, 4] and shard(chunk, World(1, 2)) == [1, 3]
    assert shard([7], World(1, 2)) == []
    assert world_from_env({}) == World() and not world_from_env({}).distributed
    w = world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (w.rank, w.size, w.local_rank, w.main) == (3, 4, 1, False)
    with pytest.raises(NMTError, match="integers"):
        world_from_env({"WORLD_SIZE": "two"})


# ---- whole runs through torchrun ----------------------------------------------------------
STEPS = 12


@pytest.fixture(scope="module")
def cipher(tmp_path_factory):
    return write_cipher(tmp_path_factory.mktemp("ddp") / "cipher", valid=40, test=30)


def flags(cipher, run_dir, update_freq: int) -> list[str]:
    # No dropout: the ranks' dropout streams differ from one process's, nothing else does.
    return [
        *cipher_flags(cipher), "--max-steps", str(STEPS), "--valid-every", "6",
        "--save-every", "5", "--train.log_every", "1", "--update-freq", str(update_freq),
        "--model.dropout", "0", "--model.attention_dropout", "0",
        "--model.activation_dropout", "0", "--run-dir", str(run_dir),
    ]  # fmt: skip


def launch(args: list[str], nproc: int, env: dict | None = None, tmp=None):
    """train.py with nproc ranks through torchrun (nproc 1: a plain process)."""
    env = hooked_env({**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})})
    if nproc == 1:
        cmd = [sys.executable, str(ROOT / "train.py"), *args]
    else:
        rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
        cmd = [TORCHRUN, "--nproc-per-node", str(nproc), *rdzv, str(ROOT / "train.py"), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def single(cipher, tmp_path_factory):
    """The one-process reference: update_freq 2 takes the batches two ranks would share."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    proc = launch(flags(cipher, run_dir, 2), 1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def assert_same_losses(ref_dir, run_dir) -> None:
    ref, got = scalars(ref_dir)["train/loss"], scalars(run_dir)["train/loss"]
    assert [s for s, _ in got] == list(range(1, STEPS + 1))
    for (step, a), (_, b) in zip(ref, got):
        assert abs(a - b) <= 1e-5, f"step {step}: {a} vs {b}"
    w_ref = load_checkpoint(ref_dir / "checkpoint_last.pt")["model"]
    w_got = load_checkpoint(run_dir / "checkpoint_last.pt")["model"]
    for name in w_ref:
        torch.testing.assert_close(w_got[name], w_ref[name], atol=1e-5, rtol=0)


def test_torchrun_two_ranks_equal_one_process_and_write_once(cipher, single, tmp_path):
    run_dir = tmp_path / "run"
    proc = launch(flags(cipher, run_dir, 1), 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_losses(single, run_dir)
    # Rank 0 alone writes: the same files as the one-process run, one train.log, and every
    # scalar step once.
    assert sorted(p.name for p in run_dir.iterdir() if "tfevents" not in p.name) == sorted(
        p.name for p in single.iterdir() if "tfevents" not in p.name
    )
    events = [p for p in run_dir.iterdir() if "tfevents" in p.name]
    assert len(events) == len([p for p in single.iterdir() if "tfevents" in p.name])
    assert [s for s, _ in scalars(run_dir)["valid/bleu"]] == [6, 12]
    log = (run_dir / "train.log").read_text()
    assert log.count("train | step 12 |") == 1 and "rank 1" not in log
    assert load_checkpoint(run_dir / "checkpoint_last.pt")["batch_pos"] > 0


def test_resume_with_another_number_of_ranks(cipher, single, tmp_path):
    run_dir = tmp_path / "run"
    # Two ranks, killed at update 8 (both ranks): checkpoint_last.pt holds update 6 (valid).
    killed = launch(flags(cipher, run_dir, 1), 2, env={"NMT_TEST_KILL_AT_STEP": "8"})
    assert killed.returncode != 0
    saved = load_checkpoint(run_dir / "checkpoint_last.pt")
    assert saved["step"] == 6 and len(saved["rng_ranks"]) == 2
    # One process takes over with update_freq 2: the same updates, so the same run.
    resumed = launch([*flags(cipher, run_dir, 2), "--resume"], 1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at update 6" in resumed.stderr
    assert_same_losses(single, run_dir)


def test_sigterm_stops_every_rank_after_a_saved_update(cipher, tmp_path):
    run_dir = tmp_path / "run"
    args = flags(cipher, run_dir, 1)
    args[args.index("--max-steps") + 1] = "100000"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    proc = subprocess.Popen(
        [TORCHRUN, "--nproc-per-node", "2", *rdzv, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "train | step 7 |" in line:
            proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
            break
    out = "".join(lines) + proc.communicate(timeout=300)[0]
    assert proc.returncode != 0
    step = load_checkpoint(run_dir / "checkpoint_last.pt")["step"]
    assert step >= 7 and f"stopped by SIGTERM after update {step}" in out, out[-3000:]
    assert not (run_dir / "results.json").exists()
