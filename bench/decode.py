"""Decoding speed on the Multi30k test set, side by side in one run (a benchmark, not a test).

    python bench/decode.py --checkpoint runs/multi30k_tiny-ls0.1 [--rounds 3] [--limit N]

Variants, on identical length-sorted batches of the test sources, greedy and beam 5:
  ours      nmt.decode.search with the KV cache (what translate.py runs)
  no-cache  the same search re-running the decoder over the whole prefix at every step
  generate  Hugging Face transformers MarianMTModel.generate() on a model of the same sizes
            (random weights, built from a MarianConfig; needs `pip install -e ".[bench]"`)
  ct2-fp32, ct2-int8  (--ct2) the checkpoint exported to CTranslate2 (nmt.export), decoded as
            translate.py --engine ctranslate2 does (natural) or for exactly --fixed-len steps,
            with the same number of threads; int8 is CTranslate2's int8 compute type
  --shape base: every variant on a random-weight Transformer-base (6+6 layers, d_model 512,
            FFN 2048, 8 heads, vocabulary --vocab) at fixed lengths only
Part 1 decodes at the checkpoint's natural output lengths (ours vs no-cache, which must give
identical translations; the BLEU of each natural row is printed). Part 2 fixes every output
at --fixed-len decoder steps for all (min_new_tokens = max_new_tokens for generate,
min_len/max_len for ours and CTranslate2), so a random-weight model does the same work.
Throughput is target tokens (EOS included) and sentences per second, best of --rounds (the
slow no-cache variants: --nocache-rounds); the rounds interleave the variants.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from decode_peers import PieceList, base_model, ct2_translators, marian_like

from nmt.data.batching import make_batches, pad
from nmt.data.dataset import encode_split, load_dataset_dict, read_split
from nmt.data.tokenizer import EOS_ID, PAD_ID
from nmt.decode.search import beam_search, greedy_search
from nmt.train.checkpoint import load_for_inference

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run directory or .pt file")
    p.add_argument(
        "--dataset", default=str(ROOT / "data" / "multi30k"), help="folder with test.jsonl"
    )
    p.add_argument("--batch-size", type=int, default=64, help="sentences per batch")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--fixed-len", type=int, default=24, help="decoder steps per sentence, part 2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--nocache-rounds", type=int, default=1, help="rounds of the (slow) no-cache variants"
    )
    p.add_argument("--limit", type=int, help="use only the first N test sentences")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--skip-generate", action="store_true", help="no transformers comparison")
    p.add_argument("--only", help="run only the variants whose name contains this (e.g. beam5)")
    p.add_argument("--ct2", action="store_true", help="add CTranslate2 fp32 and int8 rows")
    p.add_argument("--shape", choices=("checkpoint", "base"), default="checkpoint")
    p.add_argument("--vocab", type=int, default=32000, help="vocabulary of --shape base")
    return p.parse_args()


def timed(fn: Callable[[], int], sentences: int) -> dict[str, float]:
    """Run fn (returns target tokens produced); seconds, tokens/s and sentences/s."""
    start = time.perf_counter()
    tokens = fn()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tok_s": tokens / seconds, "sent_s": sentences / seconds}


class Bench:
    """One benchmark: the model, the length-sorted test batches, the peers, and the outputs
    each variant produced (results), keyed by (beam, cache, fixed) or (beam, engine)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        model, tok, cfg, _ = load_for_inference(args.checkpoint, "cpu")
        vocab = len(tok)
        if args.shape == "base":
            vocab = args.vocab
            cfg, model = base_model(cfg, vocab)
        self.model, self.tok, self.cfg = model, tok, cfg
        data_cfg = dataclasses.replace(cfg.data, dataset=args.dataset)
        sources, targets = read_split(load_dataset_dict(data_cfg), data_cfg.test_split, data_cfg)
        sources, self.targets = sources[: args.limit], targets[: args.limit]
        self.src_ids = encode_split("test", sources, self.targets, tok, data_cfg.max_len).src_ids
        lens = np.array([len(s) for s in self.src_ids])
        batch_idx = make_batches(lens, lens, 10**9, shuffle=False, max_sentences=args.batch_size)
        self.batches = [pad([self.src_ids[i] for i in b]) for b in batch_idx]
        self.order = [i for b in batch_idx for i in b]  # sentence of each output, batch by batch
        self.n = len(self.src_ids)
        self.a, self.b, self.L = cfg.decode.max_len_a, cfg.decode.max_len_b, args.fixed_len
        # transformers' default attention (sdpa) and its eager one: the faster is the reference.
        attns = () if args.skip_generate else ("sdpa", "eager")
        self.hf = {attn: marian_like(cfg, vocab, attn) for attn in attns}
        self.ct2 = {}
        if args.ct2:
            pieces = tok if args.shape == "checkpoint" else PieceList(tok, vocab)
            folder = Path("/tmp") / f"bench-decode-ct2-{args.shape}-{vocab}-{os.getpid()}"
            self.ct2 = ct2_translators(model, pieces, folder, args.threads)
        self.results: dict = {}

    def ours(self, beam: int, cache: bool, fixed: bool) -> Callable[[], int]:
        """Our search (with or without the KV cache) over every batch; returns tokens made."""
        cfg, L = self.cfg, self.L

        def run() -> int:
            total, outputs = 0, []
            for src in self.batches:
                la, lb, mn = (0.0, L, L - 1) if fixed else (self.a, self.b, 0)
                if beam == 1:
                    hyps = greedy_search(
                        self.model, src, la, lb, cfg.model.max_positions, 1.0, cache, mn
                    )
                else:
                    found = beam_search(self.model, src, beam, la, lb, cfg.model.max_positions,
                                        1.0, 1, cache, mn)  # fmt: skip
                    hyps = [h[0] for h in found]
                outputs += [h.tokens for h in hyps]
                total += sum(len(h.tokens) + 1 for h in hyps)
            in_order = [None] * len(outputs)
            for i, tokens in zip(self.order, outputs):
                in_order[i] = tokens
            self.results[(beam, cache, fixed)] = in_order
            return total

        return run

    def generate(self, beam: int, attn: str) -> Callable[[], int]:
        """transformers' generate() at exactly L new tokens per sentence."""

        def run() -> int:
            total = 0
            with torch.no_grad():
                for src in self.batches:
                    out = self.hf[attn].generate(
                        input_ids=src, attention_mask=src != PAD_ID, num_beams=beam,
                        do_sample=False, min_new_tokens=self.L, max_new_tokens=self.L,
                        use_cache=True,
                    )  # fmt: skip
                    total += (out.size(1) - 1) * out.size(0)  # new tokens after the start token
            return total

        return run

    def engine(self, beam: int, name: str, fixed: bool) -> Callable[[], int]:
        """A CTranslate2 translator: translate.py's own path, or L steps per sentence."""
        from nmt.decode.ct2 import decode_corpus_ct2

        search, tok, L = dataclasses.replace(self.cfg.decode, beam=beam), self.tok, self.L

        def run() -> int:
            if not fixed:  # exactly what translate.py --engine ctranslate2 runs
                found = decode_corpus_ct2(
                    self.ct2[name], tok, self.src_ids, search,
                    max_positions=self.cfg.model.max_positions, batch_size=self.args.batch_size,
                )  # fmt: skip
                self.results[(beam, name)] = [h[0].tokens for h in found]
                return sum(len(h[0].tokens) + 1 for h in found)
            total = 0
            for src in self.batches:  # L decoder steps each, as ours: L - 1 tokens + EOS
                pieces = [[tok.sp.id_to_piece(t) for t in row if t not in (PAD_ID, EOS_ID)]
                          for row in src.tolist()]  # fmt: skip
                out = self.ct2[name].translate_batch(
                    pieces, beam_size=beam, max_decoding_length=L, min_decoding_length=L,
                    max_input_length=0,
                )  # fmt: skip
                total += sum(len(r.hypotheses[0]) for r in out)
            return total

        return run

    def variants(self) -> dict[str, Callable[[], int]]:
        """Every variant to time, by name (--only keeps those containing its text)."""
        natural = self.args.shape == "checkpoint"
        out: dict[str, Callable[[], int]] = {}
        for beam in (1, self.args.beam):
            name = "greedy" if beam == 1 else f"beam{beam}"
            if natural:
                out[f"{name} natural ours"] = self.ours(beam, True, False)
                out[f"{name} natural no-cache"] = self.ours(beam, False, False)
                for engine_name in self.ct2:
                    out[f"{name} natural {engine_name}"] = self.engine(beam, engine_name, False)
            out[f"{name} fixed ours"] = self.ours(beam, True, True)
            if natural:
                out[f"{name} fixed no-cache"] = self.ours(beam, False, True)
            for attn in self.hf:
                out[f"{name} fixed generate-{attn}"] = self.generate(beam, attn)
            for engine_name in self.ct2:
                out[f"{name} fixed {engine_name}"] = self.engine(beam, engine_name, True)
        if self.args.only:
            out = {k: v for k, v in out.items() if self.args.only in k}
        return out

    def time_all(self) -> dict[str, dict[str, float]]:
        """Each variant's best of --rounds (no-cache ones for --nocache-rounds only)."""
        best: dict[str, dict[str, float]] = {}
        variants = self.variants()
        for r in range(self.args.rounds):
            for name, fn in variants.items():
                if "no-cache" in name and r >= self.args.nocache_rounds:
                    continue
                t = timed(fn, self.n)
                if name not in best or t["seconds"] < best[name]["seconds"]:
                    best[name] = t
                print(f"round {r + 1}: {name:28s} {t['seconds']:7.2f} s", flush=True)
        return best

    def check_outputs(self) -> None:
        """Cached = no-cache translations, CTranslate2's lines against ours, and BLEU."""
        results, n = self.results, self.n
        for beam in (1, self.args.beam):
            if (beam, True, False) in results and (beam, False, False) in results:
                same = results[(beam, True, False)] == results[(beam, False, False)]
                print(f"beam {beam}: cached and no-cache translations identical: {same}")
            for engine_name in self.ct2:
                if (beam, True, False) in results and (beam, engine_name) in results:
                    pairs = zip(results[(beam, True, False)], results[(beam, engine_name)])
                    same = sum(x == y for x, y in pairs)
                    print(f"beam {beam}: {engine_name} lines identical to ours: {same} of {n}")
        if self.args.shape != "checkpoint":
            return
        from nmt.study.metrics import corpus_scores

        for key, outputs in sorted(results.items(), key=str):
            beam, label = key[0], key[1] if isinstance(key[1], str) else None
            if label is None and key[1:] == (True, False):
                label = "ours"
            if label is not None:
                bleu = corpus_scores(self.tok.decode(outputs), self.targets)["bleu"]
                print(f"bleu: beam={beam} variant={label} test_bleu={bleu:.2f}")

    def report(self, best: dict[str, dict[str, float]]) -> None:
        """The table of every variant, then the ratios against the peers."""
        args = self.args
        print(
            f"\n{self.n} sentences, batches of {args.batch_size}, {args.threads} threads, fp32, "
            f"torch {torch.__version__}; natural lengths use a={self.a}, b={self.b}; "
            f"fixed = {self.L} steps"
        )
        print(f"{'variant':30s} {'seconds':>8s} {'tok/s':>9s} {'sent/s':>8s}")
        for name, t in best.items():
            print(f"{name:30s} {t['seconds']:8.2f} {t['tok_s']:9.0f} {t['sent_s']:8.1f}")
        summary = []
        for label, ours_name, peers in self.ratio_pairs():
            peers = [p for p in peers if p in best]
            if ours_name in best and peers:
                ratio = best[ours_name]["tok_s"] / max(best[p]["tok_s"] for p in peers)
                print(f"{label} = {ratio:.2f}x  ({ours_name} / {' or '.join(peers)}, faster)")
                summary.append(f"{label}={ratio:.2f}")
        print("decode: " + " ".join(summary))

    def ratio_pairs(self) -> list[tuple[str, str, list[str]]]:
        """(label, variant, its peers) of every ratio the summary line reports."""
        out = []
        for beam in (1, self.args.beam):
            name = "greedy" if beam == 1 else f"beam{beam}"
            out += [
                (f"{name}_{m}_vs_nocache", f"{name} {m} ours", [f"{name} {m} no-cache"])
                for m in ("natural", "fixed")
            ]
            peers = [f"{name} fixed generate-{a}" for a in self.hf]
            out.append((f"{name}_vs_generate", f"{name} fixed ours", peers))
            for engine_name in self.ct2:  # >1: CTranslate2 faster than ours
                for m in ("natural", "fixed"):
                    out.append((f"{name}_{m}_{engine_name}_vs_ours",
                                f"{name} {m} {engine_name}", [f"{name} {m} ours"]))  # fmt: skip
        return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    bench = Bench(args)
    best = bench.time_all()
    bench.check_outputs()
    bench.report(best)


if __name__ == "__main__":
    main()
