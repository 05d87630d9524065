"""Peak memory and time of TranslationLoss (forward + backward) against two references.

    python bench/loss_memory.py [--tokens 8192] [--vocab 8000 32000] [--rounds 3] [--device cpu]
                                [--dtype fp32|bf16]

Variants, each on the same random logits (tokens, V) and labels, eps = 0.1, summed loss.
--dtype bf16 gives the logits in bf16, as autocast produces them; every variant computes in
float32 (the references by upcasting the whole logits, ours a few rows at a time):
  ours           nmt.objective.loss.TranslationLoss's per-token function (fused forward/backward)
  autograd       the same formula through plain autograd: log_softmax, gather, mean
  textbook       a full (tokens, V) smoothed target tensor and F.kl_div
  cross_entropy  F.cross_entropy(label_smoothing=eps, ignore_index=pad)
and ours under each other convention of the registry that the fused kernel computes
(--conventions, default unigram masked masked-chen prior graduated), bound to a random
distribution over V: ours-<name>, compared with ours (uniform); and token-level distillation
(--distill, on by default) against a random teacher's logits of the same dtype, alpha 0.5, T 2:
  kd             0.5 * ours + 0.5 * T^2 * nmt.objective.distill.DistillKL (fused, row chunks)
  kd-autograd    the same with the KL through plain autograd (F.kl_div on log-softmaxes)
Extra peak memory is what forward + backward adds on top of the inputs: on CUDA from
torch.cuda.max_memory_allocated, on the CPU from the peak RSS of a fresh process per variant.
Time is the best of --rounds. The last lines read
  loss_memory: peak_vs_textbook=R time_vs_cross_entropy=S   (at the largest V)
  loss_memory: conventions peak_vs_uniform=R time_vs_uniform=S   (the largest of each)
  loss_memory: distillation peak_vs_ours=R time_vs_ours=S peak_vs_autograd_kd=R2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EPS, PAD = 0.1, 0
VARIANTS = ("ours", "autograd", "textbook", "cross_entropy")
KD_VARIANTS = ("kd", "kd-autograd")
KD_ALPHA, KD_T = 0.5, 2.0
CONVENTIONS = ("unigram", "masked", "masked-chen", "prior", "graduated")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def bound_convention(name: str, vocab: int):
    """The convention called name (masked-chen: masked in Chen et al.'s form), bound to a
    random distribution over vocab of the kind it is bound to in training."""
    from nmt.objective import smoothing

    kind, _, form = name.partition("-")
    convention = smoothing.get(kind)
    params = {"masked_form": form} if form else {}
    if not convention.needs_base:
        return convention.bind(params)
    u = torch.rand(vocab, generator=torch.Generator().manual_seed(2))
    base = (u > 0.3).float() if kind == "masked" else u / u.sum()
    return convention.bind(params, base)


def loss_fn(name: str, vocab: int):
    from nmt.objective.loss import label_smoothed_nll

    if name.startswith("ours-"):
        convention = bound_convention(name[len("ours-") :], vocab)
        return lambda z, y: label_smoothed_nll(z, y, EPS, PAD, convention)[0].sum()

    def ours(z, y):
        return label_smoothed_nll(z, y, EPS, PAD)[0].sum()

    def autograd(z, y):
        lp = F.log_softmax(z.float(), dim=-1)
        nll = -lp.gather(-1, y[:, None]).squeeze(-1)
        loss = (1 - EPS) * nll - EPS * lp.mean(-1)
        return torch.where(y != PAD, loss, 0.0).sum()

    def textbook(z, y):
        lp = F.log_softmax(z.float(), dim=-1)
        q = torch.full_like(lp, EPS / z.size(-1))
        q.scatter_(-1, y[:, None], 1 - EPS + EPS / z.size(-1))
        q[y == PAD] = 0
        return F.kl_div(lp, q, reduction="sum")

    def cross_entropy(z, y):
        return F.cross_entropy(z.float(), y, ignore_index=PAD, label_smoothing=EPS, reduction="sum")

    return {"ours": ours, "autograd": autograd, "textbook": textbook,
            "cross_entropy": cross_entropy}[name]  # fmt: skip


def kd_fn(name: str, teacher: torch.Tensor):
    """The distillation variants: the smoothed CE mixed with the teacher's KL."""
    from nmt.objective.distill import DistillKL
    from nmt.objective.loss import label_smoothed_nll

    def kd(z, y):
        ce = label_smoothed_nll(z, y, EPS, PAD)[0].sum()
        kl = DistillKL.apply(z, teacher, y != PAD, KD_T).sum()
        return (1 - KD_ALPHA) * ce + KD_ALPHA * KD_T**2 * kl

    def kd_autograd(z, y):
        ce = label_smoothed_nll(z, y, EPS, PAD)[0].sum()
        log_s = F.log_softmax(z.float() / KD_T, dim=-1)
        log_t = F.log_softmax(teacher.float() / KD_T, dim=-1)
        kl = F.kl_div(log_s, log_t, log_target=True, reduction="none").sum(-1)
        return (1 - KD_ALPHA) * ce + KD_ALPHA * KD_T**2 * torch.where(y != PAD, kl, 0.0).sum()

    return kd if name == "kd" else kd_autograd


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(name: str, tokens: int, vocab: int, rounds: int, device: str, dtype: str) -> dict:
    """Run in a fresh process: extra peak MiB of one forward + backward, best seconds."""
    torch.set_num_threads(torch.get_num_threads())
    g = torch.Generator().manual_seed(0)
    # Drawn in the target dtype: a float32 draw cast down would set the peak RSS by itself.
    z = torch.randn(tokens, vocab, generator=g, dtype=DTYPES[dtype]).mul_(3)
    z = z.to(device).requires_grad_()
    y = torch.randint(1, vocab, (tokens,), generator=g).to(device)
    y[::10] = PAD  # a tenth padding
    if name in KD_VARIANTS:  # the teacher's logits are an input too, made before the baseline
        teacher = torch.randn(tokens, vocab, generator=g, dtype=DTYPES[dtype]).mul_(3).to(device)
        fn = kd_fn(name, teacher)
    else:
        fn = loss_fn(name, vocab)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_mib()
    fn(z, y).backward()
    if device == "cuda":
        torch.cuda.synchronize()
        extra = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    best = float("inf")
    for _ in range(rounds):
        z.grad = None
        start = time.perf_counter()
        fn(z, y).backward()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    # A checksum of the whole gradient against fixed random weights (after the peak is taken).
    weights = torch.randn(tokens, vocab, generator=torch.Generator().manual_seed(1))
    check = float((z.grad.cpu().double() * weights).sum())
    return {"extra_mib": extra, "seconds": best, "grad_check": check}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--vocab", type=int, nargs="+", default=[8000, 32000])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help="dtype of the logits")
    p.add_argument("--conventions", nargs="*", default=list(CONVENTIONS), choices=CONVENTIONS)
    p.add_argument("--no-distill", dest="distill", action="store_false", help="skip kd rows")
    p.add_argument("--one", nargs=2, metavar=("VARIANT", "VOCAB"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        out = measure(
            args.one[0], args.tokens, int(args.one[1]), args.rounds, args.device, args.dtype
        )
        print(json.dumps(out))
        return
    size = f"{args.tokens} tokens"
    print(
        f"eps {EPS}, {size}, {args.dtype} logits, device {args.device}, torch {torch.__version__}"
    )
    print(f"{'V':>6s} {'variant':16s} {'extra peak MiB':>15s} {'seconds':>9s}")
    results = {}
    for vocab in args.vocab:
        kd = KD_VARIANTS if args.distill else ()
        for name in (*VARIANTS, *(f"ours-{c}" for c in args.conventions), *kd):
            flags = ["--tokens", str(args.tokens), "--rounds", str(args.rounds)]
            cmd = [sys.executable, __file__, "--one", name, str(vocab), *flags]
            cmd += ["--device", args.device, "--dtype", args.dtype]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = results[(vocab, name)] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{vocab:6d} {name:16s} {r['extra_mib']:15.0f} {r['seconds']:9.3f}", flush=True)
        ref = results[(vocab, "cross_entropy")]["grad_check"]
        tol = 1e-4 if args.dtype == "fp32" else 1e-2  # bf16 gradients round to 8 bits
        same = all(abs(results[(vocab, n)]["grad_check"] - ref) <= tol * abs(ref) for n in VARIANTS)
        print(f"{vocab:6d} gradients agree across variants: {same}")
        if args.distill:
            a, b = (results[(vocab, n)]["grad_check"] for n in KD_VARIANTS)
            print(f"{vocab:6d} distillation gradients agree: {abs(a - b) <= tol * abs(b)}")
    v = max(args.vocab)
    peak = results[(v, "ours")]["extra_mib"] / results[(v, "textbook")]["extra_mib"]
    speed = results[(v, "ours")]["seconds"] / results[(v, "cross_entropy")]["seconds"]
    print(f"loss_memory: peak_vs_textbook={peak:.2f} time_vs_cross_entropy={speed:.2f}")
    if args.conventions:
        ours = results[(v, "ours")]
        mine = [results[(v, f"ours-{c}")] for c in args.conventions]
        peak = max(r["extra_mib"] for r in mine) / ours["extra_mib"]
        speed = max(r["seconds"] for r in mine) / ours["seconds"]
        print(f"loss_memory: conventions peak_vs_uniform={peak:.2f} time_vs_uniform={speed:.2f}")
    if args.distill:
        ours, kd, auto = (results[(v, n)] for n in ("ours", "kd", "kd-autograd"))
        print(f"loss_memory: distillation peak_vs_ours={kd['extra_mib'] / ours['extra_mib']:.2f} "
              f"time_vs_ours={kd['seconds'] / ours['seconds']:.2f} "
              f"peak_vs_autograd_kd={kd['extra_mib'] / auto['extra_mib']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
