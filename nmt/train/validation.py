"""Validation during training: score the validation split (with the EMA weights when the
run keeps them), log it, keep the best checkpoint, and decide early stopping."""

from __future__ import annotations

import contextlib
import logging

from nmt.data.dataset import Split
from nmt.train import distributed
from nmt.train.evaluate import VALID_SCALARS, evaluate_split, write_outputs

log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried


class Validation:
    """The Trainer's validation. Expects cfg, progress, world, update, model, tok, splits,
    device, run_dir and logbook, and state() and save()."""

    def averaged(self):
        """The block runs with the EMA weights in the model when the run keeps an average."""
        ema = self.update.ema
        return contextlib.nullcontext() if ema is None else ema.swapped_in()

    def evaluate(self, split: Split) -> tuple[dict, list[str]]:
        """Loss metrics plus BLEU/chrF of decoded output on one split; returns (metrics, hyps)."""
        return evaluate_split(
            self.model,
            split,
            self.update.criterion,
            self.tok,
            self.cfg.decode,
            device=self.device,
            max_tokens=self.cfg.data.max_tokens,
            amp_dtype=self.update.amp_dtype,
        )

    def validate(self) -> bool:
        """Validate, write TensorBoard/checkpoints; True when early stopping says stop.

        Rank 0 validates while the others wait; its verdict reaches every rank.
        """
        p = self.progress
        improved = self._validate_main() if self.world.main else False
        improved, p.bad_validations = distributed.broadcast(
            (improved, p.bad_validations), self.world
        )
        state = self.state()
        if improved:
            self.save("best", state)
        self.save("last", state)
        self.logbook.flush()
        patience = self.cfg.train.patience
        if patience and p.bad_validations >= patience:
            log.info("early stopping: no better validation BLEU in %d validations", patience)
            return True
        return False

    def _validate_main(self) -> bool:
        """Score the validation split, log it, keep the best; True when it improved."""
        p, valid = self.progress, self.splits["valid"]
        with self.averaged():
            metrics, hyps = self.evaluate(valid)
        p.history.append({"step": p.step, **{k: metrics[k] for k in VALID_SCALARS}})
        # Ties in BLEU (0.0 early in training, say) go to the lower validation NLL.
        improved = (metrics["bleu"], -metrics["nll_loss"]) > (p.best_bleu, -p.best_nll)
        if improved:
            p.best_bleu, p.best_nll, p.bad_validations = metrics["bleu"], metrics["nll_loss"], 0
        else:
            p.bad_validations += 1
        shown = range(min(self.cfg.train.num_samples, len(valid)))
        samples = [(valid.src_text[i], valid.tgt_text[i], hyps[i]) for i in shown]
        self.logbook.valid(p.step, metrics, p.best_bleu, samples)
        if improved:
            # The best checkpoint's validation scores and output are final: never decode twice.
            p.best_valid = metrics
            write_outputs(self.run_dir, valid, hyps)
        p.last_valid = metrics
        return improved
