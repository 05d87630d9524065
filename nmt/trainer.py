"""The update step (autocast, GradScaler, clipping, accumulation), validation, logging."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.config import Config
from nmt.data import Split, collate, make_batches
from nmt.errors import NMTError
from nmt.loss import TranslationLoss, split_target
from nmt.metrics import Calibration, corpus_scores, optimal_logit_gap
from nmt.optim import build_optimizer, build_scheduler
from nmt.search import decode_corpus
from nmt.tokenizer import PAD_ID, Tokenizer

log = logging.getLogger(__name__)
AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
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


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; asking for an absent cuda is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise NMTError(
            "--device cuda was asked for but no CUDA device is visible; use --device cpu"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """auto -> bf16 on a CUDA device that supports it, else fp32; fp16 needs CUDA."""
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise NMTError("--precision fp16 needs a CUDA device; use fp32 (or bf16) on the CPU")
    return name


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
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
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
        "ppl": math.exp(nll / tokens),
        "accuracy": correct / tokens,
        "num_tokens": int(tokens),
        **calibration.summary(),
    }


@dataclass
class Interval:
    """Training sums since the last log line."""

    loss: float = 0.0
    nll: float = 0.0
    correct: float = 0.0
    tokens: int = 0
    updates: int = 0
    grad_norm: float = 0.0
    start: float = field(default_factory=time.perf_counter)


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
    ):
        from torch.utils.tensorboard import SummaryWriter

        self.command = command  # the command line that started the run, for the report
        self.cfg, self.tok, self.splits, self.run_dir = cfg, tokenizer, splits, Path(run_dir)
        self.device = resolve_device(cfg.train.device)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.amp_dtype = AMP_DTYPES[self.precision]
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model = model.to(self.device)
        self.loss_fn = TranslationLoss(
            len(tokenizer), PAD_ID, cfg.train.smoothing, "sum", cfg.train.smoothing_type
        )
        self.optimizer = build_optimizer(model, cfg.train, fused=self.device.type == "cuda")
        self.scheduler = build_scheduler(self.optimizer, cfg.train)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.writer = SummaryWriter(str(self.run_dir))
        self.step, self.epoch = 0, 0
        self.best_bleu, self.best_nll, self.bad_validations = -1.0, math.inf, 0
        self.best_valid: dict = {}  # validation metrics of the best checkpoint
        self.history: list[dict] = []  # validation scalars at every validation
        log.info(
            "model: %.2fM parameters, device %s, precision %s",
            sum(p.numel() for p in model.parameters()) / 1e6,
            self.device,
            self.precision,
        )

    # ---- one update -------------------------------------------------------------------------
    def accumulate(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """Forward/backward over an update's batches; gradient = token-loss sum / update tokens."""
        self.model.train()
        num_tokens = sum(int((split_target(tgt)[1] != PAD_ID).sum()) for _, tgt in batches)
        sums = torch.zeros(3, dtype=torch.float64)  # loss, nll, correct
        for src, tgt in batches:
            src, tgt = src.to(self.device), tgt.to(self.device)
            with torch.autocast(
                self.device.type,
                dtype=self.amp_dtype or torch.float32,
                enabled=self.amp_dtype is not None,
            ):
                logits = self.model(src, split_target(tgt)[0])  # (B, T-1, V)
            out = self.loss_fn(logits, tgt)
            self.scaler.scale(out["loss"] / max(num_tokens, 1)).backward()
            sums += torch.tensor(
                [out["loss"].item(), out["nll_loss"].item(), out["num_correct"].item()],
                dtype=torch.float64,
            )
        loss, nll, correct = sums.tolist()
        return {"loss": loss, "nll": nll, "correct": correct, "tokens": num_tokens}

    def train_step(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """One optimizer update: accumulate, unscale, clip, step, schedule."""
        stats = self.accumulate(batches)
        self.scaler.unscale_(self.optimizer)
        clip = self.cfg.train.clip_norm if self.cfg.train.clip_norm > 0 else math.inf
        stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until max_steps / max_epochs / early stopping, then score the best checkpoint."""
        t = self.cfg.train
        train = self.splits["train"]
        src_lens, tgt_lens = train.lengths()
        interval, stop, last_valid = Interval(), False, -1
        bar = tqdm(
            total=t.max_steps or None, desc="train", unit="upd", disable=None, dynamic_ncols=True
        )
        while not stop and self.epoch < t.max_epochs:
            batches = make_batches(src_lens, tgt_lens, self.cfg.data.max_tokens, t.seed, self.epoch)
            for start in range(0, len(batches), t.update_freq):
                group = [collate(train, b) for b in batches[start : start + t.update_freq]]
                stats = self.train_step(group)
                self.step += 1
                interval = self._accumulate(interval, stats, bar)
                if self.step % t.log_every == 0:
                    interval = self._log_train(interval)
                if self.step % t.valid_every == 0:
                    started = time.perf_counter()
                    stop = self.validate()
                    interval.start += time.perf_counter() - started  # keep tokens/s pure
                    last_valid = self.step
                if t.max_steps and self.step >= t.max_steps:
                    stop = True
                if stop:
                    break
            else:
                self.epoch += 1
                log.info("epoch %d done at update %d", self.epoch, self.step)
        bar.close()
        if interval.updates:
            self._log_train(interval)
        if last_valid != self.step:
            self.validate()
        return self.finish()

    def _accumulate(self, iv: Interval, stats: dict, bar) -> Interval:
        iv.loss += stats["loss"]
        iv.nll += stats["nll"]
        iv.correct += stats["correct"]
        iv.tokens += stats["tokens"]
        iv.grad_norm += stats["grad_norm"]
        iv.updates += 1
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
            "num_tokens": iv.tokens / iv.updates,
            "tokens_per_sec": iv.tokens / elapsed,
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": iv.grad_norm / iv.updates,
        }
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
        d = self.cfg.decode
        nbests = decode_corpus(
            self.model,
            split.src_ids,
            self.device,
            d.max_tokens,
            d.max_len_a,
            d.max_len_b,
            self.amp_dtype,
            progress=True,
            beam=d.beam,
            alpha=d.length_penalty,
        )
        ids = [hyps[0].tokens for hyps in nbests]
        hyps = self.tok.decode(ids)
        metrics.update(corpus_scores(hyps, split.tgt_text))
        # Lowercased, 13a-tokenized BLEU: only for comparisons with papers that report it.
        lc = corpus_scores(hyps, split.tgt_text, lowercase=True, tokenize="13a")
        metrics.update(bleu_lc=lc["bleu"], bleu_lc_signature=lc["bleu_signature"])
        return metrics, hyps

    def validate(self) -> bool:
        """Validate, write TensorBoard/checkpoints; True when early stopping says stop."""
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
        state = self.state_dict(metrics)
        if improved:
            save_checkpoint(state, self.run_dir / "checkpoint_best.pt")
        save_checkpoint(state, self.run_dir / "checkpoint_last.pt")
        self.writer.flush()
        patience = self.cfg.train.patience
        if patience and self.bad_validations >= patience:
            log.info("early stopping: no better validation BLEU in %d validations", patience)
            return True
        return False

    def state_dict(self, valid_metrics: dict) -> dict:
        """Everything a checkpoint holds: weights, optimizer state, config and tokenizer."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best_bleu": self.best_bleu,
            "best_nll": self.best_nll,
            "bad_validations": self.bad_validations,
            "history": self.history,
            "valid": {k: v for k, v in valid_metrics.items() if not isinstance(v, str)},
            "config": self.cfg.to_dict(),
            "vocab_size": len(self.tok),
            "spm_model": self.tok.to_tensor(),
        }

    def _write_outputs(self, split: Split, hyps: list[str]) -> None:
        """<split>.hyp.txt and <split>.ref.txt, one line per pair, for rescoring with sacrebleu."""
        (self.run_dir / f"{split.name}.hyp.txt").write_text("".join(h + "\n" for h in hyps))
        (self.run_dir / f"{split.name}.ref.txt").write_text(
            "".join(r + "\n" for r in split.tgt_text)
        )

    def finish(self) -> dict:
        """Score the best checkpoint on test; write results (validation scores are kept)."""
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
