"""Translate with a trained checkpoint: python translate.py --checkpoint RUN_DIR < src > hyp."""

from __future__ import annotations

import argparse
import logging
import sys

from nmt.checkpoint import load_for_inference
from nmt.errors import NMTError
from nmt.run import setup_logging
from nmt.search import decode_corpus
from nmt.tokenizer import EOS_ID
from nmt.trainer import AMP_DTYPES, resolve_device, resolve_precision

log = logging.getLogger("translate")


def build_parser() -> argparse.ArgumentParser:
    """translate.py's flags."""
    p = argparse.ArgumentParser(prog="translate.py", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="run directory (uses its best) or .pt file")
    p.add_argument("--input", help="source sentences, one per line (default: stdin)")
    p.add_argument("--output", help="where translations go, one per line (default: stdout)")
    p.add_argument("--max-tokens", type=int, default=8192, help="tokens per decoding batch")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    return p


def main(argv: list[str] | None = None) -> int:
    """Greedy-translate lines in order; user errors become one line and exit 2."""
    args = build_parser().parse_args(argv)
    setup_logging(level=logging.WARNING)
    try:
        device = resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
        model, tok, cfg, _ = load_for_inference(args.checkpoint, device)
        if args.input:
            with open(args.input, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        else:
            lines = sys.stdin.buffer.read().decode("utf-8", errors="replace").splitlines()
        limit = cfg.data.max_len
        src_ids = [ids[: limit - 1] + [EOS_ID] for ids in tok.encode(lines)]
        out_ids = decode_corpus(
            model,
            src_ids,
            device,
            args.max_tokens,
            cfg.decode.max_len_a,
            cfg.decode.max_len_b,
            AMP_DTYPES[precision],
        )
        hyps = [h if line.strip() else "" for h, line in zip(tok.decode(out_ids), lines)]
        text = "".join(h + "\n" for h in hyps)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            sys.stdout.write(text)
    except NMTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
