"""Training throughput against peers on identical Multi30k batches, interleaved in one run.

    python bench/train_speed.py [--config configs/multi30k_base.yaml] [--steps 4]
                                [--dataset data/multi30k] [--device cpu|cuda]
                                [--precision fp32|bf16] [--max-tokens N] [--no-memory]

Systems, all with the config's model sizes, shared embeddings and a tied output projection,
AdamW and gradient clipping at 1.0, eps 0.1, the same dropout:
  ours      nmt.train.step.UpdateStep.step (nmt.model.transformer.Transformer + TranslationLoss)
  textbook  torch.nn.Transformer + the full smoothed target tensor and F.kl_div
  marian    transformers MarianMTModel from a MarianConfig of the same sizes (ReLU) +
            F.cross_entropy(label_smoothing=0.1, ignore_index=pad) in a plain loop
Every update uses the same batch for every system (the first batches of epoch 1); the systems
take turns update by update, so a slow patch of the machine hits all of them. The first update
of each system is a warm-up and is not timed. Throughput counts non-pad target tokens.

Peak memory: on CUDA, torch.cuda.max_memory_allocated over each system's updates; on the CPU a
fresh process per system runs 2 updates and reports its peak RSS minus the RSS after the model
was built. The peers need the `bench` extra: pip install -e ".[bench]". The last line reads
  train_speed: ours_vs_best_peer=R    (ours tokens/s over the faster peer's)
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from nmt.data.tokenizer import BOS_ID, PAD_ID  # noqa: E402

EPS = 0.1
SYSTEMS = ("ours", "textbook", "marian")


def batches(args) -> tuple[object, list[tuple[torch.Tensor, torch.Tensor]], int]:
    """(config, the first steps + 1 batches of epoch 1 as (src, tgt), vocabulary size)."""
    from nmt.cli import parse_args
    from nmt.data.batching import collate, make_batches
    from train import load_run_data

    flags = ["--config", args.config, "--dataset", args.dataset, "--device", args.device]
    flags += ["--max-tokens", str(args.max_tokens)] if args.max_tokens else []
    cfg, _ = parse_args(flags)
    d = cfg.data
    tok, splits = load_run_data(cfg)  # what train.py trains on
    train = splits["train"]
    order = make_batches(*train.lengths(), d.max_tokens, cfg.train.seed, 0)
    return cfg, [collate(train, b) for b in order[: args.steps + 1]], len(tok)


class Textbook(nn.Module):
    """torch.nn.Transformer with shared embeddings, sinusoids and a tied output projection."""

    def __init__(self, m, vocab: int):
        super().__init__()
        from nmt.model.transformer import sinusoids

        self.d = m.d_model
        self.embed = nn.Embedding(vocab, m.d_model, padding_idx=PAD_ID)
        self.register_buffer("pos", sinusoids(m.max_positions, m.d_model), persistent=False)
        self.core = nn.Transformer(
            m.d_model, m.heads, m.encoder_layers, m.decoder_layers, m.ffn_dim, m.dropout,
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.drop = nn.Dropout(m.dropout)

    def forward(self, src, tgt_in):
        emb = lambda ids: self.drop(self.embed(ids) * math.sqrt(self.d) + self.pos[: ids.size(1)])  # noqa: E731
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.size(1), src.device)
        h = self.core(
            emb(src), emb(tgt_in), tgt_mask=causal, tgt_is_causal=True,
            src_key_padding_mask=src == PAD_ID, tgt_key_padding_mask=tgt_in == PAD_ID,
            memory_key_padding_mask=src == PAD_ID,
        )  # fmt: skip
        return h @ self.embed.weight.T  # (B, T, V)


def textbook_loss(logits, labels):
    """The full smoothed target (1 - eps) * one_hot + eps / K, then F.kl_div: a summed loss."""
    lp = F.log_softmax(logits.float().flatten(0, 1), dim=-1)
    y = labels.reshape(-1)
    q = torch.full_like(lp, EPS / lp.size(-1))
    q.scatter_(-1, y[:, None], 1 - EPS + EPS / lp.size(-1))
    q[y == PAD_ID] = 0
    return F.kl_div(lp, q, reduction="sum")


def marian(m, vocab: int) -> nn.Module:
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=vocab, d_model=m.d_model, encoder_layers=m.encoder_layers,
        decoder_layers=m.decoder_layers, encoder_attention_heads=m.heads,
        decoder_attention_heads=m.heads, encoder_ffn_dim=m.ffn_dim, decoder_ffn_dim=m.ffn_dim,
        dropout=m.dropout, attention_dropout=m.attention_dropout,
        activation_dropout=m.activation_dropout, activation_function=m.activation,
        max_position_embeddings=m.max_positions, pad_token_id=PAD_ID,
        decoder_start_token_id=BOS_ID, scale_embedding=True, share_encoder_decoder_embeddings=True,
    )  # fmt: skip
    return MarianMTModel(config)


class PlainLoop:
    """A peer's update: forward, summed loss / non-pad tokens, backward, clip, AdamW step."""

    def __init__(self, name: str, model: nn.Module, cfg, amp_dtype):
        self.name, self.model, self.amp_dtype = name, model, amp_dtype
        t = cfg.train
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=t.lr, betas=tuple(t.betas), eps=t.adam_eps,
            weight_decay=t.weight_decay,
        )  # fmt: skip

    def step(self, src, tgt):
        self.model.train()
        tgt_in, labels = tgt[:, :-1], tgt[:, 1:]
        tokens = int((labels != PAD_ID).sum())
        with torch.autocast(src.device.type, self.amp_dtype, enabled=self.amp_dtype is not None):
            if self.name == "marian":
                logits = self.model(
                    input_ids=src, attention_mask=(src != PAD_ID).long(),
                    decoder_input_ids=tgt_in, decoder_attention_mask=(tgt_in != PAD_ID).long(),
                ).logits  # fmt: skip
            else:
                logits = self.model(src, tgt_in)
        if self.name == "marian":
            loss = F.cross_entropy(
                logits.float().flatten(0, 1), labels.reshape(-1), ignore_index=PAD_ID,
                label_smoothing=EPS, reduction="sum",
            )  # fmt: skip
        else:
            loss = textbook_loss(logits, labels)
        (loss / tokens).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def build(name: str, cfg, vocab: int, device: torch.device):
    """A callable update(batch) for one system, its parameters initialised from seed 0."""
    from nmt.data.tokenizer import PAD_ID
    from nmt.model.transformer import Transformer
    from nmt.objective.loss import build_criterion
    from nmt.train.precision import AMP_DTYPES
    from nmt.train.step import UpdateStep

    torch.manual_seed(0)
    amp_dtype = AMP_DTYPES[cfg.train.precision]
    if name == "ours":  # the model and the loss alone: no tokenizer, no run directory
        criterion = build_criterion(cfg.train, vocab, PAD_ID)
        update = UpdateStep.build(cfg.train, Transformer(cfg.model, vocab), criterion, device)
        return lambda batch: update.step([batch]), update.model
    model = Textbook(cfg.model, vocab) if name == "textbook" else marian(cfg.model, vocab)
    model = model.to(device)
    loop = PlainLoop(name, model, cfg, amp_dtype)
    return lambda batch: loop.step(batch.src.to(device), batch.tgt.to(device)), model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def memory_of(name: str, args) -> float:
    """CPU: peak RSS of 2 updates minus the RSS after building, in a fresh process."""
    cmd = [sys.executable, __file__, "--memory-of", name, "--steps", "1"]
    cmd += ["--config", args.config, "--dataset", args.dataset, "--device", args.device]
    cmd += ["--precision", args.precision]
    cmd += ["--max-tokens", str(args.max_tokens)] if args.max_tokens else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])["extra_mib"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs/multi30k_base.yaml"))
    p.add_argument("--dataset", default=str(ROOT.parent / "shared/data/multi30k"))
    p.add_argument("--steps", type=int, default=4, help="timed updates per system")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None)
    p.add_argument("--max-tokens", type=int, default=0, help="0: the config's")
    p.add_argument("--no-memory", action="store_true", help="skip the CPU memory processes")
    p.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    device = torch.device(args.device)
    cfg, data, vocab = batches(args)
    from nmt.config import apply_overrides

    cfg = apply_overrides(cfg, {"train.precision": args.precision}, "bench")
    if args.memory_of:
        step, _ = build(args.memory_of, cfg, vocab, device)
        base = rss_mib()
        for batch in data[:2]:
            step(batch)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"extra_mib": peak - base}))
        return
    steps = {name: build(name, cfg, vocab, device)[0] for name in SYSTEMS}
    seconds = dict.fromkeys(SYSTEMS, 0.0)
    peak = dict.fromkeys(SYSTEMS, 0.0)
    tokens = sum(batch.num_tokens for batch in data[1:])
    for i, batch in enumerate(data):
        for name in SYSTEMS:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync(device)
            start = time.perf_counter()
            steps[name](batch)
            sync(device)
            if i:  # update 0 is the warm-up
                seconds[name] += time.perf_counter() - start
            if device.type == "cuda":
                peak[name] = max(peak[name], torch.cuda.max_memory_allocated() / 2**20)
        print(f"update {i}: " + ", ".join(f"{n} {seconds[n]:.1f}s" for n in SYSTEMS), flush=True)
    if device.type != "cuda" and not args.no_memory:
        peak = {name: memory_of(name, args) for name in SYSTEMS}
    m = cfg.model
    print(
        f"model {m.encoder_layers}+{m.decoder_layers} layers, d_model {m.d_model}, FFN "
        f"{m.ffn_dim}, {m.heads} heads, V {vocab}; {args.steps} timed updates of "
        f"{tokens / args.steps:.0f} target tokens on average; {args.device} {args.precision}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'system':10s} {'tokens/s':>10s} {'vs ours':>8s} {'peak MiB':>9s}")
    rate = {name: tokens / seconds[name] for name in SYSTEMS}
    for name in SYSTEMS:
        print(f"{name:10s} {rate[name]:10.0f} {rate[name] / rate['ours']:8.2f} {peak[name]:9.0f}")
    best_peer = max(rate["textbook"], rate["marian"])
    print(f"train_speed: ours_vs_best_peer={rate['ours'] / best_peer:.2f}")


if __name__ == "__main__":
    main()
