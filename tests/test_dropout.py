"""model.dropout_masks uniform (nmt/model/dropout.py): nn.Dropout's distribution, cheaper."""

from __future__ import annotations

import pytest
import torch

from nmt.config import ModelConfig
from nmt.model.dropout import UniformDropout
from nmt.model.transformer import Transformer


def test_the_mask_rate_and_scale_are_dropouts():
    torch.manual_seed(0)
    x = torch.rand(400, 1000) + 0.5  # no zeros of its own
    y = UniformDropout(0.2).train()(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.8, abs=3e-3)  # 400k draws: sd 6e-4
    torch.testing.assert_close(y[kept], x[kept] / 0.8)


def test_the_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(50, 60, requires_grad=True)
    y = UniformDropout(0.3).train()(x)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.7)


def test_masks_are_independent_across_calls_and_a_saved_state_replays_them():
    drop = UniformDropout(0.5).train()
    x = torch.ones(200, 500)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    a, b = drop(x) != 0, drop(x) != 0
    agree = (a == b).float().mean().item()  # independent halves agree half the time
    assert agree == pytest.approx(0.5, abs=5e-3)
    torch.set_rng_state(state)  # what a resume restores
    assert torch.equal(drop(x) != 0, a) and torch.equal(drop(x) != 0, b)


def test_eval_and_p_zero_are_the_identity():
    x = torch.randn(3, 4)
    assert UniformDropout(0.5).eval()(x) is x and UniformDropout(0.0).train()(x) is x
    with pytest.raises(ValueError):
        UniformDropout(1.0)


def test_the_config_key_picks_the_masks():
    plain = Transformer(ModelConfig(d_model=16, heads=2, ffn_dim=32), 20)
    uniform = Transformer(ModelConfig(d_model=16, heads=2, ffn_dim=32, dropout_masks="uniform"), 20)
    kinds = lambda m: {type(x).__name__ for x in m.modules() if "Dropout" in type(x).__name__}  # noqa: E731
    assert kinds(plain) == {"Dropout"} and kinds(uniform) == {"UniformDropout"}
    assert plain.state_dict().keys() == uniform.state_dict().keys()  # checkpoints load either way
