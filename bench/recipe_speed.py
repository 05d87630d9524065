"""The default recipe's update, eager against faster variants, on the same Multi30k batches.

    python bench/recipe_speed.py [--dataset data/multi30k] [--updates 20] [--warmup 5]
                                 [--variants eager,pad8,compile,threads1] [--profile 3]

Every variant is the trainer's own nmt.train.step.UpdateStep at the default recipe's sizes
(d_model 128, FFN 256, 4+4 layers, vocabulary 4k, max-tokens 4096, dropout 0.2, EMA), built
from one initial model, fed the same real training batches (the first of epoch 1), with its
own copy of the random stream, so every variant draws the same dropout masks where its
arithmetic draws them the same way. The variants take turns update by update (a slow patch
of the machine hits all of them); the first --warmup updates of each are not timed.

  eager     today's default path
  pad8      eager with batch lengths padded to a multiple of 8 (what --compile pads to)
  compile   --compile (torch.compile of the model, inductor), with inductor's fallback_random
            so that its dropout masks are eager's and its losses can be compared
  threads1  eager with one intra-op thread instead of two
  foreach   eager with AdamW's foreach implementation (one kernel per step over all tensors)
  fused     eager with AdamW's fused implementation
  math-attn eager with scaled_dot_product_attention's math path instead of CPU flash
  uniform-dropout  eager with model.dropout_masks uniform (rand < 1 - p masks): another draw
            of the random stream, so its losses differ from eager's by design

For each variant: milliseconds per update (median), non-pad target tokens per second, the
worst relative difference of its per-update loss from eager's, and a profile of --profile
updates (the operators with the most self CPU time). The last line reads

  recipe_speed: speedup=R variant=NAME

the fastest variant whose losses stay within 1e-5 relative of eager's, over eager.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOLERANCE = 1e-5  # relative, per update: "keeps the numbers"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default=str(ROOT / "data" / "multi30k"))
    p.add_argument("--updates", type=int, default=20, help="timed updates per variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed updates first (compiles)")
    p.add_argument("--variants", default="eager,pad8,compile,threads1")
    p.add_argument("--profile", type=int, default=3, help="profiled updates per variant (0: none)")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def recipe_batches(dataset: str, n: int):
    """The default recipe's config and the first n training batches of epoch 1."""
    from nmt.cli import parse_args as train_args
    from nmt.data.batching import make_batches
    from train import load_run_data

    cfg, _ = train_args(["--dataset", dataset, "--device", "cpu"])
    d = cfg.data
    tok, splits = load_run_data(cfg)  # what train.py trains on
    train = splits["train"]
    order = make_batches(*train.lengths(), d.max_tokens, cfg.train.seed, 0)
    return cfg, len(tok), train, order[:n]


class Variant:
    """One way of running the update: its UpdateStep, its random stream, its timings."""

    def __init__(self, name: str, cfg, vocab: int, model: torch.nn.Module, threads: int):
        import dataclasses

        from nmt.data.tokenizer import PAD_ID
        from nmt.objective.loss import build_criterion
        from nmt.train.step import UpdateStep

        train = dataclasses.replace(cfg.train, compile=name == "compile")
        if name == "compile":
            import torch._inductor.config as inductor

            inductor.fallback_random = True  # eager's dropout masks, so losses compare
        criterion = build_criterion(train, vocab, PAD_ID)
        model = copy.deepcopy(model)
        if name == "uniform-dropout":
            from nmt.model.dropout import UniformDropout

            for parent in list(model.modules()):
                for child_name, child in parent.named_children():
                    if isinstance(child, torch.nn.Dropout):
                        setattr(parent, child_name, UniformDropout(child.p))
        self.step = UpdateStep.build(train, model, criterion, torch.device("cpu"))
        if name == "pad8":
            self.step.pad_multiple = 8
        if name in ("foreach", "fused"):
            self._swap_optimizer(train, **{name: True})
        self.name, self.threads = name, 1 if name == "threads1" else threads
        self.rng = torch.get_rng_state()
        self.seconds: list[float] = []
        self.losses: list[float] = []
        self.tokens = 0

    def _swap_optimizer(self, train, **impl) -> None:
        """The same AdamW parameter groups with another implementation (foreach or fused)."""
        from nmt.train.optim import build_scheduler

        groups = [
            {"params": g["params"], "weight_decay": g["weight_decay"]}
            for g in self.step.optimizer.param_groups
        ]
        self.step.optimizer = torch.optim.AdamW(
            groups, lr=train.lr, betas=train.betas, eps=train.adam_eps, **impl
        )
        self.step.scheduler = build_scheduler(self.step.optimizer, train, self.step.horizon)

    def run(self, train_split, batch_idx, timed: bool) -> None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        from nmt.data.batching import collate

        torch.set_num_threads(self.threads)
        torch.set_rng_state(self.rng)
        batch = collate(train_split, batch_idx, self.step.pad_multiple)
        choice = sdpa_kernel([SDPBackend.MATH]) if self.name == "math-attn" else nullcontext()
        start = time.perf_counter()
        with choice:
            stats = self.step.step([batch])
        elapsed = time.perf_counter() - start
        self.rng = torch.get_rng_state()
        if timed:
            self.seconds.append(elapsed)
            self.losses.append(stats.loss / stats.tokens)
            self.tokens += stats.tokens


def profile(variant: Variant, train_split, batches) -> str:
    """The top operators by self CPU time over a few updates, as table lines."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for idx in batches:
            variant.run(train_split, idx, timed=False)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10)
    return "\n".join(f"  {line}" for line in table.splitlines())


def main() -> None:
    args = parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    total = args.warmup + args.updates
    cfg, vocab, train_split, batches = recipe_batches(args.dataset, total + args.profile)
    from nmt.model.transformer import Transformer

    torch.manual_seed(cfg.train.seed)
    model = Transformer(cfg.model, vocab)
    variants = [Variant(name, cfg, vocab, model, args.threads) for name in names]
    for i, idx in enumerate(batches[:total]):
        for v in variants:
            v.run(train_split, idx, timed=i >= args.warmup)
        print(f"update {i + 1}/{total}", file=sys.stderr, flush=True)
    eager = next(v for v in variants if v.name == "eager")
    rows = []
    for v in variants:
        worst = max(abs(a - b) / abs(b) for a, b in zip(v.losses, eager.losses))
        ms = 1000 * statistics.median(v.seconds)
        rows.append((v, ms, v.tokens / sum(v.seconds), worst))
    print(f"\n{len(batches[:total])} updates ({args.warmup} warm-up), default recipe, "
          f"torch {torch.__version__}, CPU fp32")  # fmt: skip
    print(f"{'variant':10s} {'ms/update':>10s} {'tok/s':>8s} {'vs eager':>9s} {'loss diff':>10s}")
    base_ms = next(ms for v, ms, _, _ in rows if v is eager)
    for v, ms, tps, worst in rows:
        print(f"{v.name:10s} {ms:10.1f} {tps:8.0f} {base_ms / ms:8.2f}x {worst:10.2e}")
    if args.profile:
        for v in variants:
            print(f"\nprofile of {v.name} ({args.profile} updates):")
            print(profile(v, train_split, batches[total : total + args.profile]))
    kept = [(base_ms / ms, v.name) for v, ms, _, worst in rows if worst <= TOLERANCE]
    speedup, name = max(kept)
    print(f"recipe_speed: speedup={speedup:.2f} variant={name}")


if __name__ == "__main__":
    main()
