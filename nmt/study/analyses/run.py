"""One run's analyses: its best checkpoint, its validation and test splits, and each part of
analysis.json (written after every part, so a stopped analysis keeps what it finished)."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from pathlib import Path

import torch

from nmt.data.dataset import encode_split, load_dataset_dict, read_split
from nmt.decode.adjust import ANALYSIS, Rectify, Temperature, rectifier
from nmt.decode.search import decode_corpus
from nmt.errors import NMTError
from nmt.objective.smoothing import Smoothing
from nmt.study.analyses import beams as beam_curves
from nmt.study.analyses.forced import forced_pass, output_weight
from nmt.study.analyses.generated import ALIGNMENT, generated_calibration
from nmt.study.analyses.representations import piece_ids, representation_section
from nmt.study.analyses.tables import read_analysis
from nmt.study.analyses.temperature import temperature_section
from nmt.train.checkpoint import checkpoint_file, load_for_inference

log = logging.getLogger("nmt.analyze")

PARTS = ("temperature", "beams", "rectified", "generated", "representations")
TEMPERATURE_BEAMS = (5, 50)  # test BLEU with the fitted temperature


def _capability(device: torch.device) -> str:
    """The vector instructions ATen's CPU kernels use (set by ATEN_CPU_CAPABILITY; the
    arithmetic, so the last digits, depend on it), or the GPU's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return torch.backends.cpu.get_cpu_capability()


def find_checkpoint(run_dir: Path) -> Path:
    """The run's best checkpoint, or one NMTError saying how to get one."""
    path = run_dir / "checkpoint_best.pt"
    if not path.is_file():
        raise NMTError(
            f"{run_dir} has no checkpoint_best.pt: the analyses need the trained weights; "
            "retrain the run with the command in its results.json (or give a run folder "
            "that has its checkpoint)"
        )
    return checkpoint_file(path)


class RunAnalysis:
    """The analyses of one run folder; parts() runs those asked and not yet in analysis.json."""

    def __init__(self, run_dir: Path, device: torch.device, max_tokens: int, pieces, beams,
                 redo: bool = False):  # fmt: skip
        self.run_dir, self.device, self.max_tokens = run_dir, device, max_tokens
        self.pieces, self.beams, self.redo = pieces, beams, redo
        self.model, self.tok, self.cfg, state = load_for_inference(find_checkpoint(run_dir), device)
        self.state = {k: state[k] for k in ("step", "vocab_size", "criterion") if k in state}
        self.spec = Smoothing.of(self.cfg.train)
        self.path = run_dir / ANALYSIS
        self.out = read_analysis(run_dir) or {}
        if self.out.get("step") not in (None, self.state["step"]) and redo:
            self.out = {}  # another checkpoint's parts: --redo starts afresh, none of them kept
        if self.out.get("step") not in (None, self.state["step"]):
            raise NMTError(
                f"{self.path} analyses the checkpoint of update {self.out['step']}, but the "
                f"run's best is now update {self.state['step']}; move it away or give --redo"
            )
        self.out.update(run=run_dir.name, step=self.state["step"], label=self.spec.label,
                        smoothing=self.spec.to_dict(), seed=self.cfg.train.seed, split="test",
                        cpu_capability=_capability(device))  # fmt: skip

    def save(self) -> None:
        """analysis.json, replaced whole (never half-written)."""
        tmp = self.path.with_name(f".{ANALYSIS}.tmp")
        try:
            tmp.write_text(json.dumps(self.out, indent=1) + "\n", encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:
            raise NMTError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)

    @functools.cached_property
    def splits(self) -> dict:
        """The validation and test splits the run was trained with, encoded by its tokenizer."""
        data = self.cfg.data
        dd = load_dataset_dict(data)
        if data.test_split not in dd:
            raise NMTError(f"{self.run_dir}: its data has no '{data.test_split}' split to analyse")
        out = {}
        for key, name in (("valid", data.valid_split), ("test", data.test_split)):
            src, tgt = read_split(dd, name, data, data.max_valid_pairs)
            out[key] = encode_split(key, src, tgt, self.tok, data.max_len)
        return out

    @functools.cached_property
    def test_forced(self):
        return forced_pass(self.model, self.splits["test"], self.device, self.max_tokens,
                           hidden=True)  # fmt: skip

    def run(self, parts: tuple[str, ...]) -> dict:
        """Each part asked (and, without redo, not yet done), saved as it finishes."""
        for part in parts:
            if part in self.out and not self.redo:
                log.info("%s: %s already in %s, kept", self.run_dir.name, part, ANALYSIS)
                continue
            log.info("%s: %s", self.run_dir.name, part)
            self.out[part] = getattr(self, f"part_{part}")()
            self.save()
        return self.out

    def curve(self, scorer=None, beams=None) -> list[dict]:
        test = self.splits["test"]
        return beam_curves.beam_curve(self.model, test.src_ids, test.tgt_text, self.tok,
                                      self.cfg.decode, self.device, scorer,
                                      beams or self.beams)  # fmt: skip

    def part_temperature(self) -> dict:
        valid = forced_pass(self.model, self.splits["valid"], self.device, self.max_tokens)
        out = temperature_section(valid, self.test_forced, self.state["step"])
        out["bleu"] = self.curve(Temperature(out["fitted"]), TEMPERATURE_BEAMS)
        return out

    def part_beams(self) -> dict:
        return {"rows": self.curve()}

    def part_rectified(self) -> dict:
        try:
            scorer: Rectify = rectifier(self.state, self.cfg)
        except NMTError as exc:  # eps 0, or a target that depends on the model
            return {"skipped": str(exc).removeprefix("--rectify-smoothing: ")}
        return {"gold": scorer.gold, "rows": self.curve(scorer)}

    def part_generated(self) -> dict:
        test, decode = self.splits["test"], self.cfg.decode
        search = dataclasses.replace(decode, beam=decode.final_beam)
        found = decode_corpus(self.model, test.src_ids, search, device=self.device, progress=True)
        hyps = [h[0].tokens for h in found]
        refs = [ids[1:-1] for ids in test.tgt_ids]  # without BOS/EOS
        args = (self.model, test.src_ids, hyps, refs, self.device, self.max_tokens)
        out = {"alignment": ALIGNMENT, "beam": search.beam, "alpha": search.length_penalty,
               "generated": generated_calibration(*args)}  # fmt: skip
        fitted = (self.out.get("temperature") or {}).get("fitted")
        if fitted is not None:
            out["fitted_temperature"] = fitted
            out["generated_fitted"] = generated_calibration(*args, temperature=fitted)
        return out

    def part_representations(self) -> dict:
        ids = piece_ids(self.tok, self.pieces)
        forced = self.test_forced
        return representation_section(forced.hidden, forced.labels, output_weight(self.model),
                                      ids, self.pieces)  # fmt: skip
