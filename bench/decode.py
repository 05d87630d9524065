"""Decoding speed on the Multi30k test set, side by side in one run (a benchmark, not a test).

    python bench/decode.py --checkpoint runs/multi30k_tiny-ls0.1 [--rounds 3] [--limit N]

Variants, on identical length-sorted batches of the test sources, greedy and beam 5:
  ours      nmt.search with the KV cache (what translate.py runs)
  no-cache  the same search re-running the decoder over the whole prefix at every step
  generate  Hugging Face transformers MarianMTModel.generate() on a model of the same sizes
            (random weights, built from a MarianConfig; needs `pip install -e ".[bench]"`)
Part 1 decodes at the checkpoint's natural output lengths (ours vs no-cache, which must give
identical translations). Part 2 fixes every output at --fixed-len decoder steps for all three
(min_new_tokens = max_new_tokens for generate, min_len/max_len for ours), so a random-weight
generate() does the same amount of work. Throughput is target tokens (EOS included) and
sentences per second, best of --rounds (the slow no-cache variants: --nocache-rounds); the
rounds interleave the variants.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nmt.batching import make_batches, pad
from nmt.checkpoint import load_for_inference
from nmt.data import encode_split, load_dataset_dict, read_split
from nmt.search import beam_search, greedy_search
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID

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
    return p.parse_args()


def marian_like(cfg, vocab: int, attn: str):
    """A transformers MarianMTModel with our model's sizes and special ids (random weights)."""
    from transformers import MarianConfig, MarianMTModel

    m = cfg.model
    config = MarianConfig(
        vocab_size=vocab,
        d_model=m.d_model,
        encoder_layers=m.encoder_layers,
        decoder_layers=m.decoder_layers,
        encoder_attention_heads=m.heads,
        decoder_attention_heads=m.heads,
        encoder_ffn_dim=m.ffn_dim,
        decoder_ffn_dim=m.ffn_dim,
        activation_function=m.activation,
        max_position_embeddings=m.max_positions,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
        forced_eos_token_id=None,
    )
    config._attn_implementation = attn
    torch.manual_seed(0)
    return MarianMTModel(config).eval()


def timed(fn: Callable[[], int], sentences: int) -> dict[str, float]:
    """Run fn (returns target tokens produced); seconds, tokens/s and sentences/s."""
    start = time.perf_counter()
    tokens = fn()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tok_s": tokens / seconds, "sent_s": sentences / seconds}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    model, tok, cfg, _ = load_for_inference(args.checkpoint, "cpu")
    data_cfg = dataclasses.replace(cfg.data, dataset=args.dataset)
    sources, targets = read_split(load_dataset_dict(data_cfg), data_cfg.test_split, data_cfg)
    sources, targets = sources[: args.limit], targets[: args.limit]
    src_ids = encode_split("test", sources, targets, tok, data_cfg.max_len).src_ids
    lens = np.array([len(s) for s in src_ids])
    batches = [
        pad([src_ids[i] for i in b])
        for b in make_batches(lens, lens, 10**9, shuffle=False, max_sentences=args.batch_size)
    ]
    n = len(src_ids)
    a, b, L = cfg.decode.max_len_a, cfg.decode.max_len_b, args.fixed_len
    # transformers' default attention (sdpa) and its eager one: the faster is the reference.
    attns = () if args.skip_generate else ("sdpa", "eager")
    hf = {attn: marian_like(cfg, len(tok), attn) for attn in attns}

    def ours(beam: int, cache: bool, fixed: bool) -> Callable[[], int]:
        def run() -> int:
            total, outputs = 0, []
            for src in batches:
                la, lb, mn = (0.0, L, L - 1) if fixed else (a, b, 0)
                if beam == 1:
                    hyps = greedy_search(
                        model, src, la, lb, cfg.model.max_positions, 1.0, cache, mn
                    )
                else:
                    hyps = [
                        h[0]
                        for h in beam_search(
                            model, src, beam, la, lb, cfg.model.max_positions, 1.0, 1, cache, mn
                        )
                    ]
                outputs += [h.tokens for h in hyps]
                total += sum(len(h.tokens) + 1 for h in hyps)
            results[(beam, cache, fixed)] = outputs
            return total

        return run

    def generate(beam: int, attn: str) -> Callable[[], int]:
        def run() -> int:
            total = 0
            with torch.no_grad():
                for src in batches:
                    out = hf[attn].generate(
                        input_ids=src,
                        attention_mask=src != PAD_ID,
                        num_beams=beam,
                        do_sample=False,
                        min_new_tokens=L,
                        max_new_tokens=L,
                        use_cache=True,
                    )
                    total += (out.size(1) - 1) * out.size(0)  # new tokens after the start token
            return total

        return run

    results: dict = {}
    variants: dict[str, Callable[[], int]] = {}
    for beam in (1, args.beam):
        name = "greedy" if beam == 1 else f"beam{beam}"
        variants[f"{name} natural ours"] = ours(beam, True, False)
        variants[f"{name} natural no-cache"] = ours(beam, False, False)
        variants[f"{name} fixed ours"] = ours(beam, True, True)
        variants[f"{name} fixed no-cache"] = ours(beam, False, True)
        for attn in hf:
            variants[f"{name} fixed generate-{attn}"] = generate(beam, attn)
    if args.only:
        variants = {k: v for k, v in variants.items() if args.only in k}
    best: dict[str, dict[str, float]] = {}
    for r in range(args.rounds):
        for name, fn in variants.items():
            if "no-cache" in name and r >= args.nocache_rounds:
                continue
            t = timed(fn, n)
            if name not in best or t["seconds"] < best[name]["seconds"]:
                best[name] = t
            print(f"round {r + 1}: {name:28s} {t['seconds']:7.2f} s", flush=True)
    for beam in (1, args.beam):
        if (beam, True, False) in results and (beam, False, False) in results:
            same = results[(beam, True, False)] == results[(beam, False, False)]
            print(f"beam {beam}: cached and no-cache translations identical: {same}")

    print(
        f"\n{n} sentences, batches of {args.batch_size}, {args.threads} threads, fp32, "
        f"torch {torch.__version__}; natural lengths use a={a}, b={b}; fixed = {L} steps"
    )
    print(f"{'variant':30s} {'seconds':>8s} {'tok/s':>9s} {'sent/s':>8s}")
    for name, t in best.items():
        print(f"{name:30s} {t['seconds']:8.2f} {t['tok_s']:9.0f} {t['sent_s']:8.1f}")
    summary = []
    for beam in (1, args.beam):
        name = "greedy" if beam == 1 else f"beam{beam}"
        pairs = [
            (f"{name}_{m}_vs_nocache", f"{name} {m} ours", [f"{name} {m} no-cache"])
            for m in ("natural", "fixed")
        ]
        pairs.append(
            (
                f"{name}_vs_generate",
                f"{name} fixed ours",
                [f"{name} fixed generate-{a}" for a in hf],
            )
        )
        for label, ours_name, peers in pairs:
            peers = [p for p in peers if p in best]
            if ours_name in best and peers:
                ratio = best[ours_name]["tok_s"] / max(best[p]["tok_s"] for p in peers)
                print(f"{label} = {ratio:.2f}x  ({ours_name} / {' or '.join(peers)}, faster)")
                summary.append(f"{label}={ratio:.2f}")
    print("decode: " + " ".join(summary))


if __name__ == "__main__":
    main()
