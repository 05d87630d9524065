"""An exponential moving average of a model's weights (Marian's --exponential-smoothing).

After update t, ema <- d_t * ema + (1 - d_t) * weights with d_t = min(decay, (1 + t) / (10 + t)),
over every floating-point entry of the state dict (parameters and float buffers alike), kept
in float32 on the model's device. The warm-up of d_t (TensorFlow's ExponentialMovingAverage
with num_updates) keeps the random initial weights from lingering in the average: with a
constant 0.999 they would still weigh 0.999^2000 = 14% after 2,000 updates. Validation, the
best checkpoint and the final scores use the average when it is on.
"""

from __future__ import annotations

import contextlib

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.model, self.decay = model, decay
        self.names = [k for k, v in model.state_dict().items() if v.is_floating_point()]
        self.shadow = {k: v.detach().float().clone() for k, v in self._live().items()}

    def _live(self) -> dict[str, torch.Tensor]:
        state = self.model.state_dict(keep_vars=True)
        return {k: state[k].detach() for k in self.names}

    def decay_at(self, t: int) -> float:
        """The decay used after update t (1-based)."""
        return min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self, t: int) -> None:
        """One step of the average towards the model's weights after update t (1-based)."""
        live = self._live()
        shadow = [self.shadow[k] for k in self.names]
        current = [live[k].float() for k in self.names]
        torch._foreach_lerp_(shadow, current, 1.0 - self.decay_at(t))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights as a model state dict (non-float entries from the model)."""
        out = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        for k in self.names:
            out[k] = self.shadow[k].to(out[k].dtype).clone()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [k for k in self.names if k not in state]
        if missing:
            raise KeyError(f"the saved average lacks {', '.join(missing[:3])}")
        for k in self.names:
            self.shadow[k].copy_(state[k].float())

    @contextlib.contextmanager
    def swapped_in(self):
        """Run the block with the averaged weights in the model, then put the live ones back."""
        live = {k: v.clone() for k, v in self._live().items()}
        with torch.no_grad():
            for k, v in self._live().items():
                v.copy_(self.shadow[k].to(v.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in self._live().items():
                    v.copy_(live[k])
