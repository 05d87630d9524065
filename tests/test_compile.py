"""--compile: lengths padded to multiples of 8, few compiled graphs, the same losses as eager."""

from __future__ import annotations

import numpy as np
import pytest

from nmt.data.batching import collate
from nmt.data.dataset import Split
from nmt.data.tokenizer import PAD_ID

from .conftest import cipher_flags, run, write_cipher
from .test_cli import scalars


def test_collate_rounds_source_and_decoder_lengths_up():
    split = Split("t", [], [], [[5] * 3, [6] * 9], [[2, 7, 3], [2] + [8] * 10 + [3]])
    padded = collate(split, np.array([0, 1]), multiple=8)
    src, tgt = padded.src, padded.tgt
    assert src.shape == (2, 16) and tgt.shape == (2, 17)  # decoder input/labels: 16 wide
    assert (src[1, 9:] == PAD_ID).all() and tgt[1, :12].tolist() == [2] + [8] * 10 + [3]
    plain = collate(split, np.array([0, 1]))
    assert plain.src.shape == (2, 9) and plain.tgt.shape == (2, 12)
    assert (src[:, :9] == plain.src).all() and (tgt[:, :12] == plain.tgt).all()
    assert padded.num_tokens == plain.num_tokens == 2 + 11  # padding adds no label


@pytest.mark.slow
def test_compiled_training_matches_eager_with_few_graphs(tmp_path):
    folder = write_cipher(tmp_path / "cipher", valid=30, test=0)
    args = [
        *cipher_flags(folder), "--max-steps", "20", "--valid-every", "20",
        "--train.log_every", "1", "--model.dropout", "0", "--model.attention_dropout", "0",
        "--model.activation_dropout", "0",
    ]  # fmt: skip
    eager = run("train.py", *args, "--run-dir", str(tmp_path / "eager"))
    compiled = run("train.py", *args, "--compile", "--run-dir", str(tmp_path / "compiled"))
    assert eager.returncode == 0 and compiled.returncode == 0, compiled.stderr[-3000:]
    ref, got = (scalars(tmp_path / d) for d in ("eager", "compiled"))
    # 20 updates of ~20 distinct batch shapes (every length bucket), padded to multiples of
    # 8: a static graph for the first shape, then one with dynamic lengths (forward and
    # backward are one graph each as dynamo counts them).
    graphs = [v for _, v in got["train/compiled_graphs"]]
    assert graphs[-1] <= 4 and graphs == sorted(graphs)
    for (step, a), (_, b) in zip(ref["train/loss"], got["train/loss"]):
        assert abs(a - b) <= 1e-4, f"step {step}: eager {a} vs compiled {b}"
    assert len(got["train/loss"]) == 20
