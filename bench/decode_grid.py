"""Choose the beam size and length penalty on the validation set.

    python bench/decode_grid.py CHECKPOINT [--beam 1 5] [--length-penalty 0 0.6 1.0 1.4]
                                [--split valid|test] [--threads N]

Decodes the split named with every (beam, length penalty) pair, with translate.py's search
(decode_corpus, the checkpoint's max_len_a/max_len_b) and the weights translate.py uses (the
EMA when the checkpoint keeps one), and prints one line per pair:

    decode_grid: beam=5 length_penalty=1.0 bleu=X chrf=Y bleu_lc=Z mean_len_ratio=R seconds=S

then the best pair by BLEU (ties to the smaller beam, then the smaller penalty). The recipe's
decode defaults (nmt/config.py DecodeConfig, configs/multi30k_tiny.yaml) are chosen this way
on validation; the test split is for reporting once, never for choosing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--beam", type=int, nargs="+", default=[1, 5])
    p.add_argument("--length-penalty", type=float, nargs="+", default=[0.0, 0.6, 1.0, 1.4])
    p.add_argument("--split", choices=("valid", "test"), default="valid")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all)")
    args = p.parse_args()
    if min(args.beam) < 1 or min(args.length_penalty) < 0:
        p.error("--beam must be >= 1 and --length-penalty >= 0")

    import torch

    from nmt.data.dataset import encode_split, load_dataset_dict, read_split
    from nmt.decode.search import decode_corpus
    from nmt.study.metrics import corpus_scores
    from nmt.train.checkpoint import load_for_inference

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok, cfg, state = load_for_inference(args.checkpoint, "cpu")
    split = cfg.data.valid_split if args.split == "valid" else cfg.data.test_split
    sources, refs = read_split(load_dataset_dict(cfg.data), split, cfg.data)
    src_ids = encode_split(args.split, sources, refs, tok, cfg.data.max_len).src_ids
    ref_words = sum(len(r.split()) for r in refs)
    print(f"checkpoint {args.checkpoint}: update {state.get('step')}, {len(refs)} sentences")
    rows = []
    for beam in sorted(set(args.beam)):
        # A length penalty only reorders finished beam hypotheses: greedy needs one pass.
        alphas = [cfg.decode.length_penalty] if beam == 1 else sorted(set(args.length_penalty))
        for alpha in alphas:
            decode = dataclasses.replace(cfg.decode, beam=beam, length_penalty=alpha)
            start = time.perf_counter()
            nbests = decode_corpus(model, src_ids, decode, device=torch.device("cpu"))
            seconds = time.perf_counter() - start
            hyps = tok.decode([n[0].tokens for n in nbests])
            cased = corpus_scores(hyps, refs)
            lc = corpus_scores(hyps, refs, lowercase=True, tokenize="13a")
            ratio = sum(len(h.split()) for h in hyps) / max(ref_words, 1)
            row = (beam, alpha, cased["bleu"], cased["chrf"], lc["bleu"], ratio, seconds)
            rows.append(row)
            print(
                f"decode_grid: beam={beam} length_penalty={alpha:g} bleu={row[2]:.2f} "
                f"chrf={row[3]:.2f} bleu_lc={row[4]:.2f} mean_len_ratio={ratio:.3f} "
                f"seconds={seconds:.1f}",
                flush=True,
            )
    best = max(rows, key=lambda r: (round(r[2], 2), -r[0], -r[1]))
    print(f"best on {args.split}: beam={best[0]} length_penalty={best[1]:g} bleu={best[2]:.2f}")


if __name__ == "__main__":
    main()
