"""The update step (autocast, GradScaler, clipping, accumulation), validation, logging."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from nmt import distributed
from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.config import Config
from nmt.data import Split, collate, make_batches, one_line
from nmt.distributed import SINGLE, World
from nmt.errors import NMTError
from nmt.loss import TranslationLoss, split_target
from nmt.metrics import Calibration, corpus_scores, optimal_logit_gap
from nmt.optim import build_optimizer, build_scheduler
from nmt.precision import (
    AMP_DTYPES,
    autocast,
    resolve_device,
    resolve_precision,
)
from nmt.run import (
    Preempted,
    catch_stop_signals,
    peak_rss_mb,
    rng_state,
    seed_everything,
    set_rng_state,
)
from nmt.search import decode_corpus
from nmt.tokenizer import PAD_ID, Tokenizer

log = logging.getLogger(__name__)
# Logged to TensorBoard at each validation and kept in results.json's history.
VALID_SCALARS = (
    "loss",
    "nll_loss",
    "ppl",
    "accuracy",
    "bleu",
    "chrf",
    "bleu_lc",
    "ece",
    "confidence",
    "entropy",
    "logit_gap",
)


@torch.no_grad()
def evaluate_loss(
    model,
    split: Split,
    loss_fn: TranslationLoss,
    device: torch.device,
    max_tokens: int,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Teacher-forced smoothed loss, NLL, perplexity, accuracy and calibration per target token.

    Calibration (metrics.Calibration): ECE over 15 confidence bins, mean confidence, entropy,
    the gold-vs-other logit gap, and the reliability bins.
    """
    was_training = model.training
    model.eval()
    src_lens, tgt_lens = split.lengths()
    totals = torch.zeros(4, dtype=torch.float64)  # loss, nll, correct, tokens
    calibration = Calibration()
    for idx in make_batches(src_lens, tgt_lens, max_tokens, shuffle=False):
        src, tgt = (t.to(device) for t in collate(split, idx))
        with autocast(device, amp_dtype):
            logits = model(src, split_target(tgt)[0])
        out = loss_fn(logits, tgt)
        calibration.add(logits, split_target(tgt)[1], loss_fn.pad_id)
        totals += torch.tensor(
            [
                float(out["loss"]),
                float(out["nll_loss"]),
                float(out["num_correct"]),
                float(out["num_tokens"]),
            ],
            dtype=torch.float64,
        )
    model.train(was_training)
    loss, nll, correct, tokens = totals.tolist()
    tokens = max(tokens, 1.0)
    return {
        "loss": loss / tokens,
        "nll_loss": nll / tokens,
        "ppl": perplexity(nll / tokens),
        "accuracy": correct / tokens,
        "num_tokens": int(tokens),
        **calibration.summary(),
    }


def perplexity(nll: float) -> float:
    """exp(nll), inf where that overflows (a diverged run must still validate and report)."""
    return math.exp(nll) if nll < 709.0 else math.inf


@dataclass
class Interval:
    """Training sums since the last log line."""

    loss: float = 0.0
    nll: float = 0.0
    correct: float = 0.0
    tokens: int = 0
    updates: int = 0
    grad_norm: float = 0.0
    skipped: int = 0
    data_time: float = 0.0  # seconds spent building batches (the loop waits on it)
    start: float = field(default_factory=time.perf_counter)


def compiled_graphs() -> int:
    """How many graphs torch.compile has built in this process (each new shape may add one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class _NullWriter:
    """What ranks other than 0 log to: nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class Trainer:
    """Owns the optimisation loop of one run and everything it writes to the run directory."""

    def __init__(
        self,
        cfg: Config,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        splits: dict[str, Split],
        run_dir: Path,
        command: str | None = None,
        state: dict | None = None,
        world: World = SINGLE,
    ):
        """state: a checkpoint to resume from (everything the next update depends on).

        world: this process's rank among torchrun's processes. Each rank trains on its share
        of every update's batches through DistributedDataParallel; rank 0 alone validates,
        logs and writes checkpoints.
        """
        self.world = world
        self.command = command  # the command line that started the run, for the report
        self.cfg, self.tok, self.splits, self.run_dir = cfg, tokenizer, splits, Path(run_dir)
        self.device = distributed.init(resolve_device(cfg.train.device), world)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.amp_dtype = AMP_DTYPES[self.precision]
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model = model.to(self.device)
        self.net = self.model  # what the update step calls: the DDP wrapper when distributed
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        # Compiled: lengths padded to a multiple of 8, so few shapes are compiled (logged as
        # train/compiled_graphs); after the second shape dynamo marks lengths dynamic.
        self.pad_multiple = 8 if cfg.train.compile else 1
        if cfg.train.compile:
            self.net = torch.compile(self.net)
        self.loss_fn = TranslationLoss(
            len(tokenizer), PAD_ID, cfg.train.smoothing, "sum", cfg.train.smoothing_type
        )
        self.optimizer = build_optimizer(model, cfg.train, fused=self.device.type == "cuda")
        self.scheduler = build_scheduler(self.optimizer, cfg.train)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.step, self.epoch = 0, 0
        self.batch_pos = 0  # index in the epoch's batch order where the next update starts
        self.skipped_total, self.skipped_in_a_row = 0, 0
        self.best_bleu, self.best_nll, self.bad_validations = -1.0, math.inf, 0
        self.best_valid: dict = {}  # validation metrics of the best checkpoint
        self.history: list[dict] = []  # validation scalars at every validation
        self.last_valid: dict = {}  # the latest validation's metrics
        if state is not None:
            self.load_state(state)
        self._writer = None  # opened on first use: nothing is written before the run starts
        self._purge_step = self.step + 1  # TensorBoard forgets what came after the checkpoint
        self.on_save = None  # called after each checkpoint written (e.g. RunDir.checkpoint_saved)
        log.info(
            "model: %.2fM parameters, device %s, precision %s",
            sum(p.numel() for p in model.parameters()) / 1e6,
            self.device,
            self.precision,
        )

    @property
    def writer(self):
        """TensorBoard writer (rank 0), opened at first use.

        It drops whatever an interrupted process logged after this step (on a fresh start:
        anything a run killed before its first checkpoint left behind).
        """
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = (
                SummaryWriter(str(self.run_dir), purge_step=self._purge_step)
                if self.world.main
                else _NullWriter()
            )
        return self._writer

    # ---- one update -------------------------------------------------------------------------
    def accumulate(
        self, batches: list[tuple[torch.Tensor, torch.Tensor]], weight: float = 1.0
    ) -> dict[str, float]:
        """Forward/backward over this rank's batches of an update.

        The gradient is the token-loss sum of the whole update (all ranks) divided by its
        non-pad target tokens (all-reduced). weight 0 runs a batch that counts for nothing, for
        a rank whose share of the epoch's last update is empty (DDP needs every rank's backward).
        """
        self.net.train()
        mine = weight * sum(int((split_target(tgt)[1] != PAD_ID).sum()) for _, tgt in batches)
        num_tokens = int(distributed.all_sum([mine], self.world, self.device)[0])
        # DDP averages gradients over ranks; the factor world.size turns that into their sum.
        scale = weight * self.world.size / max(num_tokens, 1)
        sums = torch.zeros(3, dtype=torch.float64)  # loss, nll, correct
        for i, (src, tgt) in enumerate(batches):
            src, tgt = src.to(self.device), tgt.to(self.device)
            last = i == len(batches) - 1  # DDP all-reduces the gradient on the last backward
            defer = self.world.distributed and not last
            with self.net.no_sync() if defer else contextlib.nullcontext():
                with autocast(self.device, self.amp_dtype):
                    logits = self.net(src, split_target(tgt)[0])  # (B, T-1, V)
                out = self.loss_fn(logits, tgt)
                self.scaler.scale(out["loss"] * scale).backward()
            sums += weight * torch.tensor(
                [out["loss"].item(), out["nll_loss"].item(), out["num_correct"].item()],
                dtype=torch.float64,
            )
        loss, nll, correct = distributed.all_sum(sums.tolist(), self.world, self.device)
        return {"loss": loss, "nll": nll, "correct": correct, "tokens": num_tokens}

    def train_step(
        self, batches: list[tuple[torch.Tensor, torch.Tensor]], weight: float = 1.0
    ) -> dict[str, float]:
        """One optimizer update: accumulate, unscale, clip, step, schedule.

        A non-finite loss or gradient norm (an fp16 overflow included) skips the update: the
        weights and the optimizer state are untouched, stats["skipped"] is 1. The loss and the
        gradient are global, so every rank takes the same decision.
        """
        stats = self.accumulate(batches, weight)
        self.scaler.unscale_(self.optimizer)
        clip = self.cfg.train.clip_norm if self.cfg.train.clip_norm > 0 else math.inf
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        stats["skipped"] = float(
            not (math.isfinite(stats["loss"]) and math.isfinite(stats["grad_norm"]))
        )
        if not stats["skipped"]:
            self.scaler.step(self.optimizer)
        self.scaler.update()  # with fp16 an overflow lowers the loss scale; else a no-op
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until max_steps / max_epochs / early stopping, then score the best checkpoint.

        SIGTERM or SIGINT stops after the current update with checkpoint_last.pt saved
        (raises Preempted); the same command then resumes exactly there.
        """
        t = self.cfg.train
        train = self.splits["train"]
        src_lens, tgt_lens = train.lengths()
        interval, stop, last_valid = Interval(), False, -1
        bar = tqdm(
            total=t.max_steps or None,
            initial=self.step,
            desc="train",
            unit="upd",
            disable=None if self.world.main else True,  # None: off when not a terminal
            dynamic_ncols=True,
        )
        with catch_stop_signals() as signals:
            while not stop and self.epoch < t.max_epochs and not self._done(t):
                batches = make_batches(
                    src_lens, tgt_lens, self.cfg.data.max_tokens, t.seed, self.epoch
                )
                while self.batch_pos < len(batches) and not stop:
                    # An update takes update_freq batches per rank; rank r trains on every
                    # world.size-th of them, so the update is the same for any rank count.
                    chunk = batches[
                        self.batch_pos : self.batch_pos + t.update_freq * self.world.size
                    ]
                    mine = distributed.shard(chunk, self.world)
                    fetched = time.perf_counter()
                    group = [collate(train, b, self.pad_multiple) for b in mine or chunk[:1]]
                    interval.data_time += time.perf_counter() - fetched
                    stats = self.train_step(group, weight=1.0 if mine else 0.0)
                    self.batch_pos += len(chunk)
                    self.step += 1
                    interval = self._accumulate(interval, stats, bar)
                    self._check_skips(stats)
                    if self.step % t.log_every == 0:
                        interval = self._log_train(interval)
                    if self.step % t.valid_every == 0:
                        started = time.perf_counter()
                        stop = self.validate()
                        interval.start += time.perf_counter() - started  # keep tokens/s pure
                        last_valid = self.step
                    elif t.save_every and self.step % t.save_every == 0:
                        self.save("last")
                    if t.save_every and self.step % t.save_every == 0 and t.keep_last:
                        self.save("numbered")
                    stop = stop or self._done(t)
                    if self._any_rank(signals.received):
                        bar.close()
                        self.save("last")
                        self.writer.close()
                        raise Preempted(signals.received or signal.SIGTERM, self.step, self.run_dir)
                if self.batch_pos >= len(batches):
                    self.epoch, self.batch_pos = self.epoch + 1, 0
                    log.info("epoch %d done at update %d", self.epoch, self.step)
        bar.close()
        if interval.updates:
            self._log_train(interval)
        if last_valid != self.step:
            self.validate()
        return self.finish()

    def _any_rank(self, flag: int) -> bool:
        """Whether flag is set on any rank (a signal may reach only some of them)."""
        return distributed.all_sum([float(bool(flag))], self.world, self.device)[0] > 0

    def _done(self, t) -> bool:
        return bool(t.max_steps) and self.step >= t.max_steps

    def _check_skips(self, stats: dict) -> None:
        """Count skipped updates; too many in a row stop the run with the last good state saved."""
        if not stats["skipped"]:
            self.skipped_in_a_row = 0
            return
        self.skipped_total += 1
        self.skipped_in_a_row += 1
        log.warning(
            "update %d skipped: non-finite loss %.4g or gradient norm %.4g (%d in a row)",
            self.step,
            stats["loss"],
            stats["grad_norm"],
            self.skipped_in_a_row,
        )
        if self.skipped_in_a_row >= self.cfg.train.max_skipped:
            self.save("last")  # skipped updates never touched the weights: the last good state
            raise NMTError(
                f"{self.skipped_in_a_row} updates in a row had a non-finite loss or gradient "
                f"norm (up to update {self.step}); stopped with the last good state in "
                f"{self.run_dir / 'checkpoint_last.pt'}; lower --lr, check the data, or train "
                "in fp32/bf16 instead of fp16"
            )

    def _accumulate(self, iv: Interval, stats: dict, bar) -> Interval:
        iv.updates += 1
        if stats["skipped"]:  # its loss is not a number: count it, keep it out of the means
            iv.skipped += 1
        else:
            iv.loss += stats["loss"]
            iv.nll += stats["nll"]
            iv.correct += stats["correct"]
            iv.tokens += stats["tokens"]
            iv.grad_norm += stats["grad_norm"]
        bar.update(1)
        if bar.n % 10 == 0:
            rate = iv.tokens / max(time.perf_counter() - iv.start, 1e-9)
            bar.set_postfix(
                loss=f"{iv.loss / max(iv.tokens, 1):.3f}", tok_s=f"{rate:.0f}", refresh=False
            )
        return iv

    def _log_train(self, iv: Interval) -> Interval:
        tokens = max(iv.tokens, 1)
        elapsed = max(time.perf_counter() - iv.start, 1e-9)
        scalars = {
            "loss": iv.loss / tokens,
            "nll_loss": iv.nll / tokens,
            "ppl": math.exp(min(iv.nll / tokens, 50.0)),
            "accuracy": iv.correct / tokens,
            "num_tokens": iv.tokens / max(iv.updates - iv.skipped, 1),
            "tokens_per_sec": iv.tokens / elapsed,
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": iv.grad_norm / max(iv.updates - iv.skipped, 1),
            "skipped_updates": self.skipped_total,
            "data_time_frac": iv.data_time / elapsed,
            "peak_rss_mb": peak_rss_mb(),
        }
        if self.scaler.is_enabled():  # fp16: the loss scale GradScaler settled on
            scalars["loss_scale"] = self.scaler.get_scale()
        if self.cfg.train.compile:
            scalars["compiled_graphs"] = compiled_graphs()
        for name, value in scalars.items():
            self.writer.add_scalar(f"train/{name}", value, self.step)
        log.info(
            "train | step %d | epoch %d | %s",
            self.step,
            self.epoch + 1,
            " | ".join(f"{k} {v:.4g}" for k, v in scalars.items()),
        )
        return Interval()

    # ---- validation, checkpoints, final scoring ---------------------------------------------
    def evaluate(self, split: Split) -> tuple[dict, list[str]]:
        """Loss metrics plus BLEU/chrF of decoded output on one split; returns (metrics, hyps)."""
        metrics = evaluate_loss(
            self.model, split, self.loss_fn, self.device, self.cfg.data.max_tokens, self.amp_dtype
        )
        nbests = decode_corpus(
            self.model,
            split.src_ids,
            self.cfg.decode,
            device=self.device,
            amp_dtype=self.amp_dtype,
            progress=True,
        )
        ids = [hyps[0].tokens for hyps in nbests]
        hyps = self.tok.decode(ids)
        metrics.update(corpus_scores(hyps, split.tgt_text))
        # Lowercased, 13a-tokenized BLEU: only for comparisons with papers that report it.
        lc = corpus_scores(hyps, split.tgt_text, lowercase=True, tokenize="13a")
        metrics.update(bleu_lc=lc["bleu"], bleu_lc_signature=lc["bleu_signature"])
        return metrics, hyps

    def validate(self) -> bool:
        """Validate, write TensorBoard/checkpoints; True when early stopping says stop.

        Rank 0 validates while the others wait; its verdict reaches every rank.
        """
        improved = self._validate_main() if self.world.main else False
        improved, self.bad_validations = distributed.broadcast(
            (improved, self.bad_validations), self.world
        )
        state = self.state_dict()
        if improved:
            self.save("best", state)
        self.save("last", state)
        self.writer.flush()
        patience = self.cfg.train.patience
        if patience and self.bad_validations >= patience:
            log.info("early stopping: no better validation BLEU in %d validations", patience)
            return True
        return False

    def _validate_main(self) -> bool:
        """Score the validation split, log it, keep the best; True when it improved."""
        valid = self.splits["valid"]
        metrics, hyps = self.evaluate(valid)
        for name in VALID_SCALARS:
            self.writer.add_scalar(f"valid/{name}", metrics[name], self.step)
        self.history.append({"step": self.step, **{k: metrics[k] for k in VALID_SCALARS}})
        rows = ["| source | reference | hypothesis |", "|---|---|---|"]
        for i in range(min(self.cfg.train.num_samples, len(valid))):
            cells = (valid.src_text[i], valid.tgt_text[i], hyps[i])
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        self.writer.add_text("valid/samples", "\n".join(rows), self.step)
        # Ties in BLEU (0.0 early in training, say) go to the lower validation NLL.
        improved = (metrics["bleu"], -metrics["nll_loss"]) > (self.best_bleu, -self.best_nll)
        if improved:
            self.best_bleu, self.best_nll, self.bad_validations = (
                metrics["bleu"],
                metrics["nll_loss"],
                0,
            )
        else:
            self.bad_validations += 1
        log.info(
            "valid | step %d | loss %.4f | nll_loss %.4f | ppl %.2f | accuracy %.4f | "
            "bleu %.2f | chrf %.2f | best %.2f | %s",
            self.step,
            metrics["loss"],
            metrics["nll_loss"],
            metrics["ppl"],
            metrics["accuracy"],
            metrics["bleu"],
            metrics["chrf"],
            self.best_bleu,
            metrics["bleu_signature"],
        )
        if improved:
            # The best checkpoint's validation scores and output are final: never decode twice.
            self.best_valid = metrics
            self._write_outputs(valid, hyps)
        self.last_valid = metrics
        return improved

    def state_dict(self) -> dict:
        """Everything a checkpoint holds: all the next update depends on, config and tokenizer.

        Called on every rank at once: each rank's RNG state (dropout) is gathered to rank 0.
        """
        strip = lambda m: {k: v for k, v in m.items() if not isinstance(v, str)}  # noqa: E731
        rng = rng_state()
        return {
            "rng_ranks": distributed.gather(rng, self.world),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_pos": self.batch_pos,
            "rng": rng,  # rank 0's in the file: where a resume with another rank count starts
            "best_bleu": self.best_bleu,
            "best_nll": self.best_nll,
            "bad_validations": self.bad_validations,
            "best_valid": self.best_valid,
            "skipped_total": self.skipped_total,
            "skipped_in_a_row": self.skipped_in_a_row,
            "history": self.history,
            "valid": strip(self.last_valid),  # the validation this checkpoint was saved after
            "config": self.cfg.to_dict(),
            "vocab_size": len(self.tok),
            "spm_model": self.tok.to_tensor(),
        }

    def load_state(self, state: dict) -> None:
        """Continue from a checkpoint written by state_dict(): the next update is the same."""
        missing = [k for k in ("optimizer", "scheduler", "batch_pos", "rng") if k not in state]
        if missing:
            raise NMTError(
                f"the checkpoint lacks {', '.join(missing)} and cannot be resumed exactly; "
                "pass --overwrite to start the run again"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise NMTError(
                f"the checkpoint does not fit this model ({str(exc).splitlines()[0][:160]}); "
                "resume with the run's own model settings or pass --overwrite"
            ) from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_pos = state["step"], state["epoch"], state["batch_pos"]
        self.best_bleu, self.best_nll = state["best_bleu"], state["best_nll"]
        self.bad_validations, self.best_valid = state["bad_validations"], state["best_valid"]
        self.skipped_total = state["skipped_total"]
        self.skipped_in_a_row = state["skipped_in_a_row"]
        self.history, self.last_valid = list(state["history"]), dict(state["valid"])
        ranks = state.get("rng_ranks") or []
        if len(ranks) == self.world.size:
            set_rng_state(ranks[self.world.rank])
        elif self.world.main:
            set_rng_state(state["rng"])
        else:  # resumed with more ranks than were saved: a fresh dropout stream per rank
            seed_everything(self.cfg.train.seed + 1000 * self.world.rank + self.step)
        log.info(
            "resumed at update %d (epoch %d, batch %d)", self.step, self.epoch + 1, self.batch_pos
        )

    def save(self, kind: str, state: dict | None = None) -> None:
        """Write checkpoint_best.pt, checkpoint_last.pt or checkpoint_step<N>.pt atomically.

        Numbered checkpoints beyond the newest keep_last are deleted. A failed write (full or
        read-only disk) leaves the previous file intact and stops with a clear error.
        """
        state = self.state_dict() if state is None else state
        if not self.world.main:
            return
        name = f"checkpoint_step{self.step}.pt" if kind == "numbered" else f"checkpoint_{kind}.pt"
        try:
            save_checkpoint(state, self.run_dir / name)
        except OSError as exc:
            raise NMTError(
                f"cannot write {self.run_dir / name}: {exc.strerror or exc}; the previous "
                "checkpoint is intact; free space or fix permissions, then resume"
            ) from None
        if self.on_save is not None:
            self.on_save()
        if kind == "numbered":
            numbered = sorted(
                self.run_dir.glob("checkpoint_step*.pt"),
                key=lambda p: int(p.stem.removeprefix("checkpoint_step")),
            )
            for old in numbered[: -self.cfg.train.keep_last]:
                old.unlink()

    def _write_outputs(self, split: Split, hyps: list[str]) -> None:
        """<split>.hyp.txt and <split>.ref.txt, one line per pair, for rescoring with sacrebleu."""
        # one_line: a line break inside a sentence would shift every later line.
        for kind, lines in (("hyp", hyps), ("ref", split.tgt_text)):
            text = "".join(one_line(x) + "\n" for x in lines)
            (self.run_dir / f"{split.name}.{kind}.txt").write_text(text, encoding="utf-8")

    def finish(self) -> dict:
        """Score the best checkpoint on test; write results (validation scores are kept).

        Rank 0's work: the other ranks return an empty dict.
        """
        if not self.world.main:
            return {}
        best = load_checkpoint(self.run_dir / "checkpoint_best.pt", self.device)
        self.model.load_state_dict(best["model"])
        results: dict = {
            "smoothing": self.cfg.train.smoothing,
            "smoothing_type": self.cfg.train.smoothing_type,
            "seed": self.cfg.train.seed,
            "vocab_size": len(self.tok),
            "optimal_logit_gap": optimal_logit_gap(
                self.cfg.train.smoothing, len(self.tok), self.cfg.train.smoothing_type
            ),
            "step": best["step"],
            "last_step": self.step,
            "command": self.command,
            "valid": self.best_valid,
            "test": None,
            "history": self.history,
            "data_files": {name: split.files for name, split in self.splits.items()},
        }
        if "test" in self.splits:
            metrics, hyps = self.evaluate(self.splits["test"])
            results["test"] = metrics
            self._write_outputs(self.splits["test"], hyps)
        for name in ("valid", "test"):
            if results[name]:
                m = results[name]
                log.info(
                    "%s (best checkpoint, step %d) | bleu %.2f | chrf %.2f | nll_loss %.4f | "
                    "ppl %.2f | %s",
                    name,
                    best["step"],
                    m["bleu"],
                    m["chrf"],
                    m["nll_loss"],
                    m["ppl"],
                    m["bleu_signature"],
                )
        tmp = self.run_dir / "results.json.tmp"
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        tmp.replace(self.run_dir / "results.json")
        self._log_hparams(results)
        self.writer.close()
        return results

    def _log_hparams(self, results: dict) -> None:
        hparams = {}
        for section, values in self.cfg.to_dict().items():
            for key, value in values.items():
                if isinstance(value, list):
                    value = ",".join(map(str, value))
                hparams[f"{section}.{key}"] = "none" if value is None else value
        metric_dict = {}
        for split in ("valid", "test"):
            for key in ("bleu", "chrf", "bleu_lc", "nll_loss", "ppl", "accuracy", "ece"):
                if results.get(split):
                    metric_dict[f"hparam/{split}_{key}"] = results[split][key]
        self.writer.add_hparams(hparams, metric_dict, run_name=".")
