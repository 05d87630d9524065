"""Training throughput and model FLOPs utilisation (MFU) at WMT-sized shapes, synthetic ids.

    python bench/mfu.py [--shape base|big] [--vocab 32000] [--tokens 25000] [--steps 10]
                        [--device cuda] [--precision bf16] [--compile]

The trainer's own update (nmt.train.step.UpdateStep.step: autocast, the fused loss, clipping,
AdamW) on batches of random ids: sentences of --length source and target tokens, as many as
fit in --tokens. The FLOPs of one update are counted by torch.utils.flop_counter on the real
forward and backward (matmuls and attention; elementwise work is not counted, as usual for
MFU). The peak is measured, not taken from a data sheet: the best of a few large square
matmuls in the same dtype on the same device. Shapes (Vaswani et al. 2017):
  base  6+6 layers, d_model 512, FFN 2048, 8 heads
  big   6+6 layers, d_model 1024, FFN 4096, 16 heads
The last line reads
  mfu: shape=S tokens_per_s=T mfu=M   (M = achieved FLOP/s over the measured peak)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {
    "base": {"d_model": 512, "ffn_dim": 2048, "heads": 8},
    "big": {"d_model": 1024, "ffn_dim": 4096, "heads": 16},
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """Best FLOP/s of an n x n x n matmul in dtype (the denominator of MFU)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", choices=SHAPES, default="big")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--tokens", type=int, default=25000, help="tokens per batch (each side)")
    p.add_argument("--length", type=int, default=25, help="tokens per sentence (each side)")
    p.add_argument("--steps", type=int, default=10, help="timed updates (after 2 warm-ups)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=DTYPES, default=None, help="default: bf16 on cuda")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()
    precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    device = torch.device(args.device)
    from torch.utils.flop_counter import FlopCounterMode

    from nmt.config import ModelConfig, TrainConfig
    from nmt.data.batching import Batch
    from nmt.data.tokenizer import PAD_ID
    from nmt.model.transformer import Transformer
    from nmt.objective.loss import build_criterion
    from nmt.train.step import UpdateStep

    model_cfg = ModelConfig(encoder_layers=6, decoder_layers=6, **SHAPES[args.shape])
    train_cfg = TrainConfig(device=args.device, precision=precision, compile=args.compile)
    torch.manual_seed(0)
    model = Transformer(model_cfg, args.vocab)
    criterion = build_criterion(train_cfg, args.vocab, PAD_ID)
    update = UpdateStep.build(train_cfg, model, criterion, device)  # no tokenizer, no run dir
    rows = args.tokens // args.length
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, args.vocab, (rows, args.length), generator=g)
    tgt = torch.randint(4, args.vocab, (rows, args.length + 1), generator=g)
    src[:, -1], tgt[:, 0], tgt[:, -1] = 3, 2, 3  # EOS, BOS ... EOS
    batch = [Batch.of(src.to(device), tgt.to(device))]
    for _ in range(2):  # warm-up (and compilation with --compile)
        update.step(batch)
    with FlopCounterMode(display=False) as counter:
        update.step(batch)
    flops = counter.get_total_flops()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        update.step(batch)
    sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    peak = matmul_peak(device, DTYPES[precision], 8192 if device.type == "cuda" else 2048)
    tokens = rows * args.length  # target tokens per update
    params = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"{args.shape}: {params / 1e6:.1f}M parameters, V {args.vocab}, {rows} x {args.length} "
        f"tokens a side, {precision}, compile {args.compile}, {name}, torch {torch.__version__}"
    )
    print(f"update {seconds * 1e3:.1f} ms, {flops / 1e12:.2f} TFLOP counted per update")
    print(f"achieved {flops / seconds / 1e12:.1f} TFLOP/s, measured matmul peak {peak / 1e12:.1f}")
    mfu = flops / seconds / peak
    print(f"mfu: shape={args.shape} tokens_per_s={tokens / seconds:.0f} mfu={mfu:.3f}")


if __name__ == "__main__":
    main()
