"""Dropout whose masks come from the uniform float32 stream (model.dropout_masks: uniform).

nn.Dropout draws its keep mask with bernoulli_, about 15% of the default recipe's update on
this CPU. A mask `rand < 1 - p` is the same distribution (each element kept independently
with probability 1 - p, kept values scaled by 1 / (1 - p)) at about a third of the cost; it is
another draw of the random stream, so runs with it are not bit-equal to nn.Dropout's, and a
resume restores it exactly (the same torch generator state).
"""

from __future__ import annotations

import torch
from torch import nn


class _Scale(torch.autograd.Function):
    """x times a mask of 0 and 1 / (1 - p); the mask is what backward keeps."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class UniformDropout(nn.Module):
    """nn.Dropout(p) with the keep mask drawn as rand(float32) < 1 - p."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        # float32 uniforms even under autocast (a bf16 uniform would quantise the rate)
        mask = torch.rand(x.shape, device=x.device).lt_(1.0 - self.p).mul_(1.0 / (1.0 - self.p))
        return _Scale.apply(x, mask.to(x.dtype))

    def extra_repr(self) -> str:
        return f"p={self.p}, masks=uniform"


def make_dropout(p: float, masks: str = "bernoulli") -> nn.Module:
    """nn.Dropout(p), or UniformDropout(p) for masks='uniform'."""
    return UniformDropout(p) if masks == "uniform" else nn.Dropout(p)
