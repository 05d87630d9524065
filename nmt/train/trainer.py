"""The training loop: batches into updates, the validation schedule, early stopping, stopping on
signals, and the final scoring of the best checkpoint.

The parts it plugs together each live in their own module: the update (step.UpdateStep),
the budget and horizon (budget), validation and early stopping (validation), the final scoring
and results.json (final), scoring a split (evaluate), the checkpoint schema and files
(checkpoint), what is logged and where (logbook).
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import torch
from tqdm import tqdm

from nmt.config import Config
from nmt.data.batching import collate, make_batches
from nmt.data.dataset import Split
from nmt.data.tokenizer import PAD_ID, Tokenizer
from nmt.errors import NMTError, does_not_fit
from nmt.objective.criterion import Criterion
from nmt.objective.distill import Distillation
from nmt.objective.loss import build_criterion, smoothing_base
from nmt.train import distributed
from nmt.train.budget import Budget, budget_steps
from nmt.train.checkpoint import (
    CheckpointDir,
    Progress,
    TrainState,
)
from nmt.train.distributed import SINGLE, World
from nmt.train.final import FinalScoring
from nmt.train.logbook import Interval, Logbook, compiled_graphs
from nmt.train.precision import resolve_device
from nmt.train.reference import reference_model, teacher_model
from nmt.train.resume import resume_changes
from nmt.train.rng import rng_state, seed_everything, set_rng_state
from nmt.train.signals import Interrupted, Preempted, catch_stop_signals, stop_at_once
from nmt.train.step import StepStats, UpdateStep
from nmt.train.validation import Validation

log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried


class Trainer(Budget, Validation, FinalScoring):
    """Runs one training run: fit() trains, validates, saves and returns results.json's dict."""

    def __init__(
        self,
        cfg: Config,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        splits: dict[str, Split],
        run_dir: Path,
        command: str | None = None,
        state: TrainState | None = None,
        world: World = SINGLE,
        device: torch.device | None = None,
        started: float | None = None,
        criterion: Criterion | None = None,
    ):
        """state: a checkpoint to resume from (everything the next update depends on).

        world: this process's rank among torchrun's processes, device its device (from
        distributed.init; default: cfg.train.device resolved). Each rank trains on its share
        of every update's batches through DistributedDataParallel; rank 0 alone validates,
        logs and writes checkpoints. started: time.monotonic() when the process started, from
        which --max-minutes counts (default: now). criterion: what turns logits into the loss
        (default: the label-smoothed NLL cfg.train names).
        """
        self.world = world
        self.started = time.monotonic() if started is None else started
        self.command = command  # the command line that started the run, for the report
        self.cfg, self.tok, self.splits, self.run_dir = cfg, tokenizer, splits, Path(run_dir)
        device = resolve_device(cfg.train.device) if device is None else device
        if criterion is None:
            base = smoothing_base(cfg.train, tokenizer, splits.get("train"), state)
            reference = reference_model(cfg.train, tokenizer)
            criterion = build_criterion(cfg.train, len(tokenizer), PAD_ID, base, reference)
            teacher = teacher_model(cfg.train, tokenizer)
            if teacher is not None:  # token-level distillation around the smoothed CE
                t = cfg.train
                criterion = Distillation(criterion, teacher, t.kd_alpha, t.kd_temperature)
        self.update = UpdateStep.build(cfg.train, model, criterion, device, world)
        self.model, self.device = self.update.model, device
        self.progress = Progress()
        if state is not None:
            self.load_state(state)
        self.elapsed_before = self.progress.elapsed_s  # earlier processes' training time
        # TensorBoard forgets whatever an interrupted process logged after the checkpoint.
        self.logbook = Logbook(self.run_dir, world.main, purge_step=self.progress.step + 1)
        self.checkpoints = CheckpointDir(self.run_dir, cfg.train.keep_last)
        log.info(
            "model: %.2fM parameters, device %s, precision %s",
            sum(p.numel() for p in model.parameters()) / 1e6,
            self.device,
            self.update.precision,
        )

    @property
    def step(self) -> int:
        return self.progress.step

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until max_steps / max_epochs / early stopping, then score the best checkpoint.

        SIGTERM or SIGINT stops after the current update with checkpoint_last.pt saved
        (raises Preempted); the same command then resumes exactly there.
        """
        t, p = self.cfg.train, self.progress
        src_lens, tgt_lens = self.splits["train"].lengths()
        # A run resumed from the checkpoint of its last validation does not validate again.
        last_valid = p.history[-1]["step"] if p.history else -1
        self.interval, stop = Interval(), False
        # Every epoch has the same number of batches (only the order of equal lengths changes).
        per_epoch = -(-len(make_batches(src_lens, tgt_lens, self.cfg.data.max_tokens, t.seed))
                      // (t.update_freq * self.world.size))  # fmt: skip
        self.budget = budget_steps(t.max_steps, t.max_epochs * per_epoch)
        self.update.horizon.steps = self.budget
        self._update_horizon()  # with a time budget: from the pace so far (a resume has one)
        self.bar = tqdm(
            total=self.budget,
            initial=p.step,
            desc="train",
            unit="upd",
            disable=None if self.world.main else True,  # None: off when not a terminal
            dynamic_ncols=True,
        )
        with catch_stop_signals() as signals:
            while not stop and p.epoch < t.max_epochs and not self._done():
                order = make_batches(src_lens, tgt_lens, self.cfg.data.max_tokens, t.seed, p.epoch)
                while p.batch_pos < len(order) and not stop:
                    self._one_update(order)
                    if p.step % t.valid_every == 0:
                        started = time.perf_counter()
                        stop = self.validate()
                        self.interval.start += time.perf_counter() - started  # pure tokens/s
                        last_valid = p.step
                    elif t.save_every and p.step % t.save_every == 0:
                        self.save("last")
                    if t.save_every and p.step % t.save_every == 0 and t.keep_last:
                        self.save("numbered")
                    stop = stop or self._done()
                    if self._any_rank(signals.received):
                        self.bar.close()
                        self.save("last")
                        self.logbook.close()
                        raise Preempted(signals.received or signal.SIGTERM, p.step, self.run_dir)
                if p.batch_pos >= len(order):
                    p.epoch, p.batch_pos = p.epoch + 1, 0
                    log.info("epoch %d done at update %d", p.epoch, p.step)
        self.bar.close()
        if self.interval.updates:
            self._log_train()
        if last_valid != p.step:
            self.validate()
        try:
            with stop_at_once():
                return self.finish()
        except Interrupted as signalled:
            self.logbook.close()
            raise Preempted(signalled.signum, p.step, self.run_dir, scoring=True) from None

    def _one_update(self, order: list) -> None:
        """Train on the next update's batches of the epoch's batch order, and log it."""
        t, p = self.cfg.train, self.progress
        # An update takes update_freq batches per rank; rank r trains on every world.size-th
        # of them, so the update is the same for any rank count.
        chunk = order[p.batch_pos : p.batch_pos + t.update_freq * self.world.size]
        mine = distributed.shard(chunk, self.world)
        fetched = time.perf_counter()
        train, multiple = self.splits["train"], self.update.pad_multiple
        group = [collate(train, b, multiple) for b in mine or chunk[:1]]
        self.interval.data_time += time.perf_counter() - fetched
        stats = self.update.step(group, weight=1.0 if mine else 0.0)
        p.batch_pos += len(chunk)
        p.step += 1
        self._update_horizon()
        self.interval.add(stats)
        self._progress_bar()
        self._check_skips(stats)
        if p.step % t.log_every == 0:
            self._log_train()

    def _any_rank(self, flag: int) -> bool:
        """Whether flag is set on any rank (a signal may reach only some of them)."""
        return distributed.all_sum([float(bool(flag))], self.world, self.device)[0] > 0

    def _check_skips(self, stats: StepStats) -> None:
        """Count skipped updates; too many in a row stop the run with the last good state saved."""
        p = self.progress
        if not stats.skipped:
            p.skipped_in_a_row = 0
            return
        p.skipped_total += 1
        p.skipped_in_a_row += 1
        log.warning(
            "update %d skipped: non-finite loss %.4g or gradient norm %.4g (%d in a row)",
            p.step,
            stats.loss,
            stats.grad_norm,
            p.skipped_in_a_row,
        )
        if p.skipped_in_a_row >= self.cfg.train.max_skipped:
            self.save("last")  # skipped updates never touched the weights: the last good state
            raise NMTError(
                f"{p.skipped_in_a_row} updates in a row had a non-finite loss or gradient "
                f"norm (up to update {p.step}); stopped with the last good state in "
                f"{self.run_dir / 'checkpoint_last.pt'}; lower --lr, check the data, or train "
                "in fp32/bf16 instead of fp16"
            )

    def _progress_bar(self) -> None:
        iv = self.interval
        self.bar.update(1)
        if self.bar.n % 10 == 0:
            rate = iv.tokens / iv.elapsed()
            self.bar.set_postfix(
                loss=f"{iv.loss / max(iv.tokens, 1):.3f}", tok_s=f"{rate:.0f}", refresh=False
            )

    def _log_train(self) -> None:
        extra = {"lr": self.update.lr, "skipped_updates": self.progress.skipped_total}
        if self.update.scaler.is_enabled():  # fp16: the loss scale GradScaler settled on
            extra["loss_scale"] = self.update.scaler.get_scale()
        if self.cfg.train.compile:
            extra["compiled_graphs"] = compiled_graphs()
        extra.update(self.update.criterion.scalars())
        p, reduce = self.progress, self.update.criterion.reduce
        self.logbook.train(p.step, p.epoch + 1, self.interval, reduce, **extra)
        self.interval = Interval()

    # ---- checkpoints ------------------------------------------------------------------------
    def state(self) -> TrainState:
        """This moment as a TrainState. Called on every rank at once: each rank's RNG state
        (dropout) is gathered to rank 0."""
        rng = rng_state()
        self.progress.elapsed_s = self.elapsed()
        return TrainState(
            progress=self.progress,
            model=self.model.state_dict(),
            **self.update.state_dict(),
            rng=rng,
            rng_ranks=distributed.gather(rng, self.world),
            config=self.cfg.to_dict(),
            vocab_size=len(self.tok),
            spm_model=self.tok.to_tensor(),
        )

    def load_state(self, state: TrainState) -> None:
        """Continue from a checkpoint: the next update is the same as without the stop."""
        changes = resume_changes(state, self.cfg, self.world)
        try:
            self.model.load_state_dict(state.model)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise does_not_fit(exc) from None
        self.update.load_state_dict(state.update_state())
        self.progress = p = state.progress
        p.resume_changes.extend(changes)
        ranks = state.rng_ranks or []
        if len(ranks) == self.world.size:
            set_rng_state(ranks[self.world.rank])
        elif self.world.main:
            set_rng_state(state.rng)
        else:  # resumed with more ranks than were saved: a fresh dropout stream per rank
            seed_everything(self.cfg.train.seed + 1000 * self.world.rank + p.step)
        log.info("resumed at update %d (epoch %d, batch %d)", p.step, p.epoch + 1, p.batch_pos)

    def save(self, kind: str, state: TrainState | None = None) -> None:
        """checkpoint_best.pt, checkpoint_last.pt or checkpoint_step<N>.pt (rank 0 writes)."""
        state = self.state() if state is None else state
        if self.world.main:
            self.checkpoints.save(kind, state)
