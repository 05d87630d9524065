"""The default recipe's update, eager against faster variants, on the same Multi30k batches.

    python bench/recipe_speed.py [--dataset data/multi30k] [--updates 20] [--warmup 5]
                                 [--variants eager,fast] [--profile 3]
                                 [--allocator both|glibc|keep] [--rounds 2]

Every variant is the trainer's own nmt.train.step.UpdateStep at the default recipe's sizes
(d_model 128, FFN 256, 4+4 layers, vocabulary 4k, max-tokens 4096, dropout 0.2, EMA), built
from one initial model, fed the same real training batches (the first of epoch 1), with its
own copy of the random stream (the same masks where drawn the same way), in turns update by
update; the first --warmup updates of each are not timed.

  eager     the path of every run before train.kernels (train.kernels reference)
  fast      train.kernels fast, train.py's default now: math attention on the CPU and the
            loss's kept softmax (equal to rounding)
  pad8      eager with batch lengths padded to a multiple of 8 (what --compile pads to)
  compile   --compile (torch.compile of the model, inductor), with inductor's fallback_random
            so that its dropout masks are eager's and its losses can be compared
  threads1  eager with one intra-op thread instead of two
  foreach, fused  eager with AdamW's foreach or fused implementation
  math-attn eager with scaled_dot_product_attention's math path instead of CPU flash
  uniform-dropout  eager with model.dropout_masks uniform (rand < 1 - p masks): another draw
            of the random stream, so its losses differ from eager's by design
  kept-softmax  eager with the loss's kept softmax alone (the other half of fast)
  compile-loss  the criterion under torch.compile too (compile+compile-loss: model and loss)
  A+B       levers together, e.g. math-attn+fused+uniform-dropout

--allocator keep runs the whole process with nmt.train.hostmem.keep_freed_memory() (what
train.py does on the CPU); glibc leaves malloc as it is. That is process-wide, so the default,
--allocator both, runs the bench as child processes, glibc then keep, --rounds times, and
gives the medians of each (variant, allocator) against eager under glibc (each child's header
prints its allocator and peak resident memory).

Per variant: median ms per update, target tokens/s, the worst relative difference of its
per-update loss from eager's (and how it grew), a profile of --profile updates. Last line:

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
LEVERS = {"eager", "fast", "kept-softmax", "pad8", "compile", "compile-loss", "threads1", "foreach",
          "fused", "math-attn", "uniform-dropout"}  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default=str(ROOT / "data" / "multi30k"))
    p.add_argument("--updates", type=int, default=20, help="timed updates per variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed updates first (compiles)")
    p.add_argument("--variants", default="eager,fast")
    p.add_argument("--profile", type=int, default=3, help="profiled updates per variant (0: none)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--allocator",
        choices=("glibc", "keep", "both"),
        default="both",
        help="keep: freed host memory kept for reuse (train.py's CPU default); both: each in "
        "child processes, --rounds times in turns",
    )
    p.add_argument("--rounds", type=int, default=2, help="--allocator both: rounds of each")
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

        levers = set(name.split("+"))
        unknown = levers - LEVERS
        if unknown:
            sys.exit(f"recipe_speed: unknown variant {sorted(unknown)[0]!r}; levers: "
                     f"{', '.join(sorted(LEVERS))} (join with +)")  # fmt: skip
        kernels = "fast" if "fast" in levers else "reference"
        train = dataclasses.replace(cfg.train, compile="compile" in levers, kernels=kernels)
        if "compile" in levers:
            import torch._inductor.config as inductor

            inductor.fallback_random = True  # eager's dropout masks, so losses compare
        criterion = build_criterion(train, vocab, PAD_ID)
        model = copy.deepcopy(model)
        if "uniform-dropout" in levers:
            from nmt.model.dropout import UniformDropout

            for parent in list(model.modules()):
                for child_name, child in parent.named_children():
                    if isinstance(child, torch.nn.Dropout):
                        setattr(parent, child_name, UniformDropout(child.p))
        self.step = UpdateStep.build(train, model, criterion, torch.device("cpu"))
        if "kept-softmax" in levers:  # the loss half of fast alone
            self.step.criterion.keep_softmax = True
        if "compile-loss" in levers:  # the loss compiled too (with compile: model plus loss)
            self.step.criterion = torch.compile(self.step.criterion)
        if "pad8" in levers:
            self.step.pad_multiple = 8
        for impl in levers & {"foreach", "fused"}:
            self._swap_optimizer(train, **{impl: True})
        self.name, self.levers = name, levers
        self.threads = 1 if "threads1" in levers else threads
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
        math = "math-attn" in self.levers
        choice = sdpa_kernel([SDPBackend.MATH]) if math else nullcontext()
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


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    args = parse_args()
    if args.allocator == "both":
        compare_allocators(args)
    else:
        measure(args)


def measure(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """The variants in turns in this process: table, profiles, and (name, ms, worst) rows."""
    if args.allocator == "keep":
        from nmt.train.hostmem import keep_freed_memory

        if not keep_freed_memory():
            sys.exit("recipe_speed: --allocator keep needs glibc (Linux)")
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
        rows.append((v.name, 1000 * statistics.median(v.seconds), worst))
    print(f"\n{len(batches[:total])} updates ({args.warmup} warm-up), default recipe, "
          f"torch {torch.__version__}, CPU fp32, allocator {args.allocator}, "
          f"peak RSS {peak_rss_mib():.0f} MiB")  # fmt: skip
    print_table(rows, {name: v.tokens / sum(v.seconds) for name, v in zip(names, variants)})
    if args.profile:
        for v in variants:
            print(f"\nprofile of {v.name} ({args.profile} updates):")
            print(profile(v, train_split, batches[total : total + args.profile]))
    print_drift(variants, eager)
    for name, ms, worst in rows:
        print(f"row: allocator={args.allocator} variant={name} ms={ms:.3f} worst={worst:.3e}")
    report_fastest(rows, rows[names.index("eager")][1])
    return rows


def print_drift(variants: list[Variant], eager: Variant) -> None:
    """How the relative loss difference from eager grows over the timed updates."""
    n = len(eager.losses)
    marks = sorted({i for i in (1, 10, 25, 50, 100, 150, 200, n) if i <= n})
    print(
        "relative loss difference from eager after update: " + " ".join(f"{i:>8d}" for i in marks)
    )
    for v in variants:
        diffs = [abs(a - b) / abs(b) for a, b in zip(v.losses, eager.losses)]
        print(f"  {v.name:48s} " + " ".join(f"{diffs[i - 1]:8.1e}" for i in marks))


def print_table(rows, tok_per_s: dict[str, float] | None = None, base_ms: float | None = None):
    """ms per update, tokens/s (when known), speed against base_ms (default: eager's row)."""
    base_ms = next(ms for name, ms, _ in rows if name == "eager") if base_ms is None else base_ms
    w = max(10, *(len(name) for name, _, _ in rows))
    print(f"{'variant':{w}s} {'ms/update':>10s} {'tok/s':>8s} {'vs eager':>9s} {'loss diff':>10s}")
    for name, ms, worst in rows:
        tps = f"{tok_per_s[name]:8.0f}" if tok_per_s else f"{'':8s}"
        print(f"{name:{w}s} {ms:10.1f} {tps} {base_ms / ms:8.2f}x {worst:10.2e}")


def report_fastest(rows, base_ms: float) -> None:
    """The last line: the fastest variant that keeps the numbers, over base_ms."""
    kept = [(base_ms / ms, name) for name, ms, worst in rows if worst <= TOLERANCE]
    speedup, name = max(kept)
    print(f"recipe_speed: speedup={speedup:.2f} variant={name}")


def compare_allocators(args: argparse.Namespace) -> None:
    """--allocator both: the bench as child processes, glibc and keep in turns, --rounds
    times each (the allocator is process-wide); medians per (allocator, variant), every row
    against eager under glibc's allocator (the path of every run before train.kernels)."""
    import re
    import subprocess

    times: dict[str, list[float]] = {}
    worst: dict[str, float] = {}
    for round_ in range(args.rounds):
        for allocator in ("glibc", "keep"):
            cmd = [sys.executable, __file__, "--dataset", args.dataset, "--variants",
                   args.variants, "--updates", str(args.updates), "--warmup", str(args.warmup),
                   "--threads", str(args.threads), "--allocator", allocator,
                   "--profile", str(args.profile if round_ == 0 else 0)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            print(f"\n== round {round_ + 1}, allocator {allocator}\n{out}", flush=True)
            for a, name, ms, w in re.findall(r"^row: allocator=(\S+) variant=(\S+) "
                                             r"ms=(\S+) worst=(\S+)$", out, re.M):  # fmt: skip
                key = name if a == "glibc" else f"{name}@keep"
                times.setdefault(key, []).append(float(ms))
                worst[key] = max(worst.get(key, 0.0), float(w))
    rows = [(key, statistics.median(ms), worst[key]) for key, ms in times.items()]
    print(f"\nmedians over {args.rounds} rounds; @keep: --allocator keep (train.py's CPU "
          "default); every row against eager under glibc's allocator")  # fmt: skip
    print_table(rows)
    report_fastest(rows, dict((k, ms) for k, ms, _ in rows)["eager"])


if __name__ == "__main__":
    main()
