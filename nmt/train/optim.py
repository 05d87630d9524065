"""AdamW with decay-free norms/biases/embeddings, and the learning-rate schedules.

Every schedule warms up linearly over warmup_steps updates to the peak cfg.lr. Then:
  inverse_sqrt  lr * sqrt(warmup / step)                     (Vaswani et al.; no end needed)
  cosine        lr * (1 + cos(pi * f)) / 2                   f = (step - warmup) / (T - warmup)
  linear        lr * (1 - f)
where T is the run's length in updates (Horizon): --max-steps, or, with --max-minutes, the
trainer's running estimate of how many updates fit the time budget. Both reach 0 at update T.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nmt.config import TrainConfig
from nmt.train.budget import Horizon


def build_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices of linear layers (not biases, norms or embeddings)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_matrix = param.dim() == 2 and "embed" not in name
        (decay if is_matrix else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps, **kwargs)


def inverse_sqrt(step: int, warmup_steps: int) -> float:
    """LR multiplier for update number step (1-based): linear warmup, then 1/sqrt decay."""
    step = max(step, 1)
    if warmup_steps <= 0:
        return step**-0.5
    return min(step / warmup_steps, (warmup_steps / step) ** 0.5)


def decay_to_zero(step: int, warmup_steps: int, total: int, shape: str) -> float:
    """LR multiplier of update step (1-based) for cosine or linear decay ending at total.

    Before the horizon is known (total 0) the peak is held after warmup.
    """
    step = max(step, 1)
    if step <= warmup_steps:
        return step / warmup_steps
    if total <= 0:
        return 1.0
    f = min((step - warmup_steps) / max(total - warmup_steps, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * f)) if shape == "cosine" else 1.0 - f


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, horizon: Horizon | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """cfg.schedule peaking at cfg.lr after cfg.warmup_steps updates.

    horizon: the run's length for cosine/linear (default: cfg.max_steps); the caller may
    change horizon.steps as training goes (a time budget) and the next update follows it.
    """
    horizon = Horizon(cfg.max_steps) if horizon is None else horizon
    shape = cfg.schedule

    # LambdaLR calls the function with the number of scheduler steps taken so far (0-based),
    # which is the update about to happen minus one.
    def factor(done: int) -> float:
        if shape == "inverse_sqrt":
            return inverse_sqrt(done + 1, cfg.warmup_steps)
        return decay_to_zero(done + 1, cfg.warmup_steps, horizon.steps, shape)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
