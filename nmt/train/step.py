"""One optimizer update: accumulation, token normalisation, clipping and the skip policy.

UpdateStep is built from a model and a criterion (UpdateStep.build adds the optimizer,
schedule, loss scaler and DDP/compile wrapping a TrainConfig asks for); it knows nothing of
tokenizers, data files, run directories or which loss it runs, so a benchmark or a test drives
it with tensors alone.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from nmt.config import TrainConfig
from nmt.data.batching import Batch
from nmt.errors import does_not_fit
from nmt.objective.criterion import Criterion
from nmt.train import distributed
from nmt.train.budget import Horizon
from nmt.train.distributed import SINGLE, World
from nmt.train.ema import EMA
from nmt.train.optim import build_optimizer, build_scheduler
from nmt.train.precision import AMP_DTYPES, autocast, resolve_precision

MATH = [SDPBackend.MATH]
log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried


@dataclass
class StepStats:
    """Sums over one update's target tokens on all ranks (fairseq's sample_size is `tokens`)."""

    sums: dict[str, float]  # the criterion's logged keys (loss first), summed over tokens
    tokens: int  # non-pad target tokens: the update's gradient is the loss sum over this
    grad_norm: float = math.nan  # before clipping
    skipped: bool = False  # non-finite loss or gradient norm: the weights were not updated

    @property
    def loss(self) -> float:
        """The training loss summed over the update's tokens."""
        return self.sums["loss"]


class UpdateStep:
    """Forward/backward over an update's batches, then unscale, clip, step and schedule.

    net is what the forward calls (model itself, or its DDP/compiled wrapper); the optimizer
    and clipping act on model's parameters. precision is fp32, bf16 or fp16 (fp16 needs an
    enabled GradScaler as scaler).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        criterion: Criterion,
        optimizer: torch.optim.Optimizer,
        scheduler,
        scaler: torch.amp.GradScaler,
        *,
        device: torch.device,
        precision: str = "fp32",
        clip_norm: float = 0.0,
        world: World = SINGLE,
        net: torch.nn.Module | None = None,
        pad_multiple: int = 1,
        ema: EMA | None = None,
        horizon: Horizon | None = None,
        math_attention: bool = False,
    ):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.criterion = criterion.to(device)  # its own modules (a teacher) never train
        self.scaler, self.device, self.world = scaler, device, world
        self.precision, self.amp_dtype = precision, AMP_DTYPES[precision]
        self.clip_norm = clip_norm if clip_norm > 0 else math.inf
        self.net = model if net is None else net
        self.pad_multiple = pad_multiple  # collate rounds lengths up to this (compiled shapes)
        self.ema = ema  # updated after every update that was not skipped
        self.horizon = Horizon() if horizon is None else horizon  # the schedule's end
        # scaled_dot_product_attention's math path in the update (train.kernels fast on the
        # CPU: its fused CPU kernel is slower at the recipe's short lengths)
        self.math_attention = math_attention

    @classmethod
    def build(
        cls,
        t: TrainConfig,
        model: torch.nn.Module,
        criterion: Criterion,
        device: torch.device,
        world: World = SINGLE,
    ) -> UpdateStep:
        """Move model to device and wrap it (DDP across ranks, torch.compile) as t asks.

        device is this rank's device (distributed.init's answer under torchrun). The criterion's
        loss is summed over tokens; step() divides by the update's token count once.
        """
        precision = resolve_precision(t.precision, device)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        model = model.to(device)
        net = model
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            net = DistributedDataParallel(model, device_ids=ids)
        # Compiled: lengths padded to a multiple of 8, so few shapes are compiled (logged as
        # train/compiled_graphs); after the second shape dynamo marks lengths dynamic.
        if t.compile:
            net = torch.compile(net)
        optimizer = build_optimizer(model, t, fused=device.type == "cuda")
        horizon = Horizon(t.max_steps)
        return cls(
            model,
            criterion,
            optimizer,
            build_scheduler(optimizer, t, horizon),
            torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
            device=device,
            precision=precision,
            clip_norm=t.clip_norm,
            world=world,
            net=net,
            pad_multiple=8 if t.compile else 1,
            ema=EMA(model, t.ema_decay) if t.ema_decay else None,
            horizon=horizon,
            math_attention=t.kernels != "reference" and device.type == "cpu",
        )

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def accumulate(self, batches: list[Batch], weight: float = 1.0) -> StepStats:
        """Forward/backward over this rank's batches of an update.

        The gradient is the token-loss sum of the whole update (all ranks) divided by its
        non-pad target tokens (all-reduced). weight 0 runs a batch that counts for nothing, for
        a rank whose share of the epoch's last update is empty (DDP needs every rank's backward).
        """
        self.net.train()
        self.criterion.at_update(self.scheduler.last_epoch)  # updates done: a schedule's clock
        mine = weight * sum(b.num_tokens for b in batches)
        num_tokens = int(distributed.all_sum([mine], self.world, self.device)[0])
        # DDP averages gradients over ranks; the factor world.size turns that into their sum.
        scale = weight * self.world.size / max(num_tokens, 1)
        keys = self.criterion.logged
        sums = torch.zeros(len(keys), dtype=torch.float64)
        for i, batch in enumerate(batches):
            batch = batch.to(self.device)
            last = i == len(batches) - 1  # DDP all-reduces the gradient on the last backward
            defer = self.world.distributed and not last
            with (
                self.net.no_sync() if defer else contextlib.nullcontext(),
                sdpa_kernel(MATH) if self.math_attention else contextlib.nullcontext(),
            ):
                with autocast(self.device, self.amp_dtype):
                    logits = self.net(batch.src, batch.tgt_in)  # (B, T-1, V)
                out = (
                    self.criterion(logits, batch.tgt, batch=batch)
                    if self.criterion.wants_batch
                    else self.criterion(logits, batch.tgt)
                )
                self.scaler.scale(out["loss"] * scale).backward()
            sums += weight * torch.tensor(self.criterion.sums(out), dtype=torch.float64)
        totals = distributed.all_sum(sums.tolist(), self.world, self.device)
        return StepStats(dict(zip(keys, totals)), num_tokens)

    def step(self, batches: list[Batch], weight: float = 1.0) -> StepStats:
        """One optimizer update: accumulate, unscale, clip, step, schedule.

        A non-finite loss or gradient norm (an fp16 overflow included) skips the update: the
        weights and the optimizer state are untouched and stats.skipped is True. The loss and
        the gradient are global, so every rank takes the same decision.
        """
        stats = self.accumulate(batches, weight)
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        stats.grad_norm = float(norm)
        stats.skipped = not (math.isfinite(stats.loss) and math.isfinite(stats.grad_norm))
        if not stats.skipped:
            self.scaler.step(self.optimizer)
            if self.ema is not None:  # the scheduler counts updates, skipped ones too
                self.ema.update(self.scheduler.last_epoch + 1)
        self.scaler.update()  # with fp16 an overflow lowers the loss scale; else a no-op
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    def state_dict(self) -> dict:
        """The optimizer, schedule, loss-scaler, EMA and criterion states (the weights are the
        model's); load_state_dict() takes the same dict back."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "criterion": self.criterion.resume_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict() returned. An optimizer state that does not fit the model
        raises NMTError; a missing EMA (a run that kept none) starts from the weights now."""
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise does_not_fit(exc) from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        elif self.ema is not None:
            log.warning("the checkpoint keeps no weight average: it starts from the weights now")
        self.criterion.load_resume_state(state.get("criterion"))
