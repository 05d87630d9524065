"""Inverse-sqrt warmup schedule and AdamW parameter groups."""

from __future__ import annotations

import pytest
import torch

from nmt.config import ModelConfig, TrainConfig
from nmt.model.transformer import Transformer
from nmt.train.optim import build_optimizer, build_scheduler, inverse_sqrt


def test_inverse_sqrt_by_hand():
    assert [inverse_sqrt(s, 4) for s in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 1.0]
    assert inverse_sqrt(16, 4) == 0.5
    assert inverse_sqrt(100, 0) == 0.1


def test_scheduler_sets_lr_of_each_update():
    cfg = TrainConfig(lr=1e-3, warmup_steps=4, schedule="inverse_sqrt")
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    sched = build_scheduler(opt, cfg)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(
        [
            2.5e-4,
            5e-4,
            7.5e-4,
            1e-3,
            1e-3 * (4 / 5) ** 0.5,
            1e-3 * (4 / 6) ** 0.5,
            1e-3 * (4 / 7) ** 0.5,
            1e-3 * 0.5**0.5,
        ]
    )


def test_no_weight_decay_on_biases_norms_embeddings():
    model = Transformer(
        ModelConfig(d_model=16, heads=2, ffn_dim=32, encoder_layers=1, decoder_layers=1), 30
    )
    decay, no_decay = build_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert any(p is model.src_embed.weight for p in no_decay["params"])
    total = len(decay["params"]) + len(no_decay["params"])
    assert total == len(list(model.parameters()))
