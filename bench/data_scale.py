"""Preprocessing at scale: pairs/s, peak RSS, and time to the first update with a warm cache.

    python bench/data_scale.py [--sizes 100000 1000000] [--dir /tmp/nmt-data-scale]

For each size, a synthetic corpus (random sentences over a 5,000-word invented lexicon, flat
en/de JSONL) is written once. Then two fresh processes each load it through
nmt.data.dataset.load_data (datasets JSON -> Arrow, SentencePiece training on the streamed
text, datasets.map tokenization into the datasets cache), form the epoch's batches from the
lengths and run one training update of configs/toy.yaml's model:
  cold  empty datasets and tokenizer caches: preprocessing pairs/s and peak RSS
  warm  the same command again: everything comes from the caches; time to the first update
The last line reads
  data_scale: rss_growth_mib=G warm_first_step_s=T   (G: peak RSS of the largest size minus
                                                     the smallest, T: warm time at the largest)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_corpus(folder: Path, pairs: int, seed: int = 0) -> None:
    """train.jsonl with `pairs` rows and validation.jsonl with 500, written once."""
    if (folder / "done").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    lexicon = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(5000)]
    foreign = {w: w[::-1] + rng.choice(["en", "er", "e", ""]) for w in lexicon}
    for name, n in (("train", pairs), ("validation", 500)):
        with open(folder / f"{name}.jsonl", "w") as out:
            for _ in range(n):
                words = rng.choices(lexicon, k=rng.randint(4, 24))
                row = {"en": " ".join(words), "de": " ".join(foreign[w] for w in words)}
                out.write(json.dumps(row) + "\n")
    (folder / "done").write_text("")


def one_run(folder: str) -> dict:
    """In a fresh process: load_data, batches, one update; seconds and peak RSS."""
    import torch

    from nmt.cli import parse_args
    from nmt.data.batching import collate, make_batches
    from nmt.data.dataset import load_data
    from nmt.data.tokenizer import PAD_ID, train_or_load
    from nmt.model.transformer import Transformer
    from nmt.objective.loss import build_criterion
    from nmt.train.step import UpdateStep

    start = time.perf_counter()
    cfg, _ = parse_args(
        ["--config", str(ROOT / "configs/toy.yaml"), "--dataset", folder, "--vocab-size", "8000",
         "--data.max_train_pairs", "0", "--data.max_len", "128", "--device", "cpu",
         "--run-dir", os.path.join(folder, "run")]
    )  # fmt: skip
    d = cfg.data
    tok, splits = load_data(
        d,
        lambda texts: train_or_load(
            texts, d.vocab_size, d.spm_model_type, max_sentences=d.spm_max_sentences
        ),
    )
    loaded = time.perf_counter()
    train = splits["train"]
    batches = make_batches(*train.lengths(), d.max_tokens, cfg.train.seed, 0)
    torch.manual_seed(0)
    model = Transformer(cfg.model, len(tok))
    criterion = build_criterion(cfg.train, len(tok), PAD_ID)
    update = UpdateStep.build(cfg.train, model, criterion, torch.device("cpu"))
    stats = update.step([collate(train, batches[0])])
    first = time.perf_counter()
    return {
        "pairs": len(train),
        "load_s": loaded - start,
        "first_step_s": first - start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "batches": len(batches),
        "loss": stats.loss / stats.tokens,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dir", default="/tmp/nmt-data-scale")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one)))
        return
    print(f"{'pairs':>9s} {'run':5s} {'load s':>8s} {'pairs/s':>9s} {'1st update s':>13s} "
          f"{'peak RSS MiB':>13s}")  # fmt: skip
    rows = {}
    for size in args.sizes:
        folder = Path(args.dir) / f"corpus-{size}"
        write_corpus(folder, size)
        caches = Path(args.dir) / f"caches-{size}"
        subprocess.run(["rm", "-rf", str(caches), str(folder / "run")], check=True)
        env = {**os.environ, "HF_DATASETS_CACHE": str(caches / "hf"),
               "NMT_CACHE": str(caches / "nmt"), "HF_HUB_OFFLINE": "1"}  # fmt: skip
        for run in ("cold", "warm"):
            cmd = [sys.executable, __file__, "--one", str(folder)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            r = rows[(size, run)] = json.loads(proc.stdout.strip().splitlines()[-1])
            subprocess.run(["rm", "-rf", str(folder / "run")], check=True)
            print(f"{size:9d} {run:5s} {r['load_s']:8.1f} {r['pairs'] / r['load_s']:9.0f} "
                  f"{r['first_step_s']:13.1f} {r['peak_rss_mib']:13.0f}", flush=True)  # fmt: skip
    lo, hi = min(args.sizes), max(args.sizes)
    growth = rows[(hi, "cold")]["peak_rss_mib"] - rows[(lo, "cold")]["peak_rss_mib"]
    warm = rows[(hi, "warm")]["first_step_s"]
    print(f"data_scale: rss_growth_mib={growth:.0f} warm_first_step_s={warm:.1f}")


if __name__ == "__main__":
    main()
