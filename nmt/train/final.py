"""The end of a run: the best checkpoint scored on test, decoded with the final beam search,
and results.json written through the one schema (nmt.results)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from nmt import results as results_file
from nmt.files import file_sha256
from nmt.objective.smoothing import Smoothing
from nmt.train.checkpoint import inference_weights, load_checkpoint
from nmt.train.evaluate import decode_and_score, write_outputs

log = logging.getLogger("nmt.trainer")  # the name train.log's lines have always carried


def file_hashes(files: list[str]) -> list[str | None]:
    """SHA-256 of each local data file (None for what is not a local file, a Hub split): two
    runs are on the same data only if these agree (nmt.report checks it)."""
    out = []
    for name in files:
        path = Path(name)
        out.append(file_sha256(path) if path.is_file() else None)
    return out


class FinalScoring:
    """The Trainer's final scoring. Expects cfg, progress, world, model, tok, splits, device,
    run_dir, command, checkpoints, logbook and update, and elapsed() and evaluate()."""

    def final_search(self, step: int) -> dict:
        """The best checkpoint decoded with beam decode.final_beam on validation and test
        (smoothing interacts with beam search), written to <split>.beam<N>.hyp.txt."""
        search = dataclasses.replace(self.cfg.decode, beam=self.cfg.decode.final_beam)
        out: dict = {"beam": search.beam, "length_penalty": search.length_penalty}
        for name, split in (("valid", self.splits["valid"]), ("test", self.splits.get("test"))):
            if split is None:
                out[name] = None
                continue
            out[name], hyps = decode_and_score(
                self.model, split, self.tok, search, self.device, self.update.amp_dtype
            )
            write_outputs(self.run_dir, split, hyps, f"beam{search.beam}")
            log.info(
                "%s (best checkpoint, step %d, beam %d) | bleu %.2f | chrf %.2f | bleu_lc %.2f",
                name, step, search.beam, out[name]["bleu"], out[name]["chrf"],
                out[name]["bleu_lc"],
            )  # fmt: skip
        return out

    def finish(self) -> dict:
        """Score the best checkpoint on test; write results (validation scores are kept).

        Rank 0's work: the other ranks return an empty dict.
        """
        if not self.world.main:
            return {}
        t, p = self.cfg.train, self.progress
        best = load_checkpoint(self.checkpoints.path("best"), self.device)
        self.model.load_state_dict(inference_weights(best))  # the EMA average when kept
        results = results_file.make(
            Smoothing.of(t),
            len(self.tok),
            seed=t.seed,
            step=best["step"],
            last_step=p.step,
            train_minutes=self.elapsed() / 60,
            command=self.command,
            # the rerun from its own record (config.yaml names train.kernels, the arithmetic path)
            reproduce=f"python train.py --config {self.run_dir / 'config.yaml'} --run-dir NEW_RUN",
            valid=p.best_valid,
            test=None,
            history=p.history,
            resume_changes=p.resume_changes,
            data_files={name: split.files for name, split in self.splits.items()},
            data_sha256={name: file_hashes(split.files) for name, split in self.splits.items()},
        )
        if "test" in self.splits:
            results["test"], hyps = self.evaluate(self.splits["test"])
            write_outputs(self.run_dir, self.splits["test"], hyps)
        for name in ("valid", "test"):
            if results[name]:
                self.logbook.final(name, best["step"], results[name])
        if self.cfg.decode.final_beam:
            results["beam"] = self.final_search(best["step"])
        results_file.write(self.run_dir, results)
        self.logbook.hparams(self.cfg.to_dict(), results)
        self.logbook.close()
        return results
