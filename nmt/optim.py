"""AdamW with decay-free norms/biases/embeddings, and the inverse-sqrt warmup schedule."""

from __future__ import annotations

import torch
from torch import nn

from nmt.config import TrainConfig


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


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Inverse-sqrt schedule peaking at cfg.lr after cfg.warmup_steps updates."""
    # LambdaLR calls the function with the number of scheduler steps taken so far (0-based),
    # which is the update about to happen minus one.
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: inverse_sqrt(done + 1, cfg.warmup_steps)
    )
