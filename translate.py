"""Translate with a trained checkpoint: python translate.py --checkpoint RUN_DIR < src > hyp.

Reads one source sentence per line (stdin or --input) and writes one detokenized translation
per line (stdout or --output), in input order. Beam search with a KV cache by default
(--beam 1 is greedy). --reference scores the output with sacreBLEU (BLEU and chrF with their
signatures, the lines `sacrebleu REF -i HYP -m bleu chrf -f text -w 2` prints).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import stat
import sys
from pathlib import Path

from sacrebleu.metrics import BLEU

from nmt.data.dataset import truncate
from nmt.data.tokenizer import EOS_ID
from nmt.decode.ct2 import COMPUTE_TYPES, decode_corpus_ct2, load_translator
from nmt.decode.export import (
    META,
    SPM_FILE,
    cached_export,
    import_ctranslate2,
    is_export,
    read_export,
)
from nmt.decode.search import decode_corpus
from nmt.errors import ArgumentParser, NMTError
from nmt.files import atomic_write
from nmt.study.metrics import score_lines
from nmt.train.checkpoint import checkpoint_file, load_for_inference
from nmt.train.precision import AMP_DTYPES, resolve_device, resolve_precision

log = logging.getLogger("translate")
INT_TYPES = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16")


def build_parser() -> argparse.ArgumentParser:
    """translate.py's flags."""
    p = ArgumentParser(
        prog="translate.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="run directory (uses its best) or .pt file")
    p.add_argument("--input", help="source sentences, one per line (default: stdin)")
    p.add_argument("--output", help="where translations go, one per line (default: stdout)")
    p.add_argument("--beam", type=int, default=5, help="beam size; 1 = greedy (default 5)")
    p.add_argument(
        "--length-penalty",
        type=float,
        default=None,
        metavar="ALPHA",
        help="GNMT length penalty: hypotheses rank by logprob / ((5 + length) / 6) ** ALPHA; "
        "0 = raw logprob (default: the checkpoint's decode.length_penalty, 1.0)",
    )
    p.add_argument(
        "--max-len-a",
        type=float,
        metavar="A",
        help="at most A * source tokens + B output tokens, EOS included "
        "(default: the checkpoint's decode.max_len_a)",
    )
    p.add_argument("--max-len-b", type=int, metavar="B", help="(default: decode.max_len_b)")
    p.add_argument("--min-len", type=int, default=0, help="fewest output tokens before EOS")
    p.add_argument("--max-tokens", type=int, default=8192, help="decoder positions per batch")
    p.add_argument("--batch-size", type=int, help="most sentences per batch (default: no limit)")
    p.add_argument(
        "--nbest",
        type=int,
        help="write the K best hypotheses of each line as 'line<TAB>score<TAB>translation' "
        "(score = logprob / length penalty, natural log)",
    )
    p.add_argument("--reference", help="reference translations: print sacreBLEU BLEU and chrF")
    p.add_argument("--lowercase", action="store_true", help="lowercased BLEU (label it so)")
    p.add_argument(
        "--tokenize", choices=sorted(BLEU.TOKENIZERS), help="sacreBLEU tokenizer (default: 13a)"
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument(
        "--engine",
        default="native",
        choices=("native", "ctranslate2"),
        help="native: this project's PyTorch search; ctranslate2: the same search settings "
        "in CTranslate2 (pip install -e '.[ct2]'), from an export made by python -m nmt.export "
        "or, given a checkpoint, one made and cached on first use (default native)",
    )
    p.add_argument(
        "--quantization",
        choices=INT_TYPES,
        help="with --engine ctranslate2: compute in this integer type (int8 on CPU)",
    )
    return p


def read_lines(path: str | None, what: str) -> list[str]:
    """Lines of a file (or stdin), split on newlines only; bad UTF-8 is replaced and counted."""
    if path is None:
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise NMTError(f"cannot read {what} {path}: {exc.strerror}") from None
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()  # the newline that ends the last line does not start another
    lines, bad = [], 0
    for line in raw:
        line = line[:-1] if line.endswith(b"\r") else line
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("utf-8", errors="replace"))
            bad += 1
    if bad:
        log.warning(
            "%d %s line(s) were not valid UTF-8; the bad bytes were replaced with U+FFFD",
            bad,
            what,
        )
    return lines


def check_args(args: argparse.Namespace) -> None:
    """Flag values that cannot work, as one NMTError, before any work."""
    for name in ("beam", "max_tokens", "batch_size", "nbest"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise NMTError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.nbest is not None and args.nbest > args.beam:
        raise NMTError(f"--nbest {args.nbest} needs --beam of at least {args.nbest}")
    for name in ("min_len", "max_len_b"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise NMTError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    for name in ("length_penalty", "max_len_a"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise NMTError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if args.max_len_a == 0 and args.max_len_b == 0:
        raise NMTError("--max-len-a 0 with --max-len-b 0 leaves no room for any output")
    if args.quantization is not None and args.engine != "ctranslate2":
        raise NMTError("--quantization needs --engine ctranslate2")
    if args.quantization is not None and args.precision != "auto":
        raise NMTError("give --quantization or --precision, not both")
    check_output(args)


def check_output(args: argparse.Namespace) -> None:
    """--output must not be a folder, nor the same file as any input (compared by inode)."""
    if args.output is None:
        return
    out = Path(args.output)
    if out.is_dir():
        raise NMTError(f"--output {out} is a directory; name a file")
    real = Path(os.path.realpath(out))  # a symlink is written through to its target
    if not real.parent.is_dir():
        raise NMTError(f"--output {out}: folder {real.parent} does not exist")
    checkpoint = Path(args.checkpoint)
    if is_export(checkpoint):  # every file of an exported model is an input
        models = list(checkpoint.iterdir())
    else:
        models = [checkpoint_file(checkpoint)]
    inputs = [("--input", args.input), ("--reference", args.reference)]
    inputs += [("--checkpoint", path) for path in models]
    for flag, path in inputs:
        if (
            path is not None
            and out.exists()
            and Path(path).exists()
            and os.path.samefile(out, path)
        ):
            raise NMTError(f"--output {out} is the {flag} file; choose another output path")


def encode_sources(tok, lines: list[str], limit: int) -> list[list[int]]:
    """Source ids with EOS, cut to the model's limit (one warning counts the lines cut)."""
    ids = tok.encode(lines)
    cut = sum(len(x) + 1 > limit for x in ids)
    if cut:
        log.warning(
            "%d input line(s) were longer than the model's maximum of %d tokens and were truncated",
            cut,
            limit,
        )
    return [truncate(x + [EOS_ID], limit) for x in ids]


def write_output(path: str | None, text: str) -> None:
    """Write to stdout, or to the file named (through a symlink, the link kept).

    A regular file is replaced atomically (temp file in the same folder, fsync, rename), keeping
    its permissions; a device or FIFO (/dev/null, a pipe) is written to as it is, never replaced.
    """
    if path is None:
        sys.stdout.write(text)
        return
    real = Path(os.path.realpath(path))
    try:
        if real.exists() and not real.is_file():
            with open(real, "w", encoding="utf-8") as handle:
                handle.write(text)
            return
        if real.exists():
            mode = stat.S_IMODE(real.stat().st_mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        atomic_write(real, lambda handle: handle.write(text.encode("utf-8")), mode)
    except OSError as exc:
        raise NMTError(f"cannot write --output {path}: {exc.strerror}") from None


def load_export(checkpoint: str):
    """(folder, tokenizer, config) of a CTranslate2 export, or of the cached export of a
    checkpoint (made on first use)."""
    from nmt.config import Config
    from nmt.data.tokenizer import Tokenizer

    import_ctranslate2()  # the install hint comes before any export work
    folder = Path(checkpoint) if is_export(checkpoint) else cached_export(checkpoint)
    meta = read_export(folder)
    cfg = Config.from_dict(meta["config"], source=f"{folder}/{META}")
    return folder, Tokenizer.load(folder / SPM_FILE), cfg


def translate(args: argparse.Namespace) -> None:
    """Load, read, decode, write and (optionally) score."""
    check_args(args)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    if args.engine == "ctranslate2":
        folder, tok, cfg = load_export(args.checkpoint)
        compute = args.quantization or COMPUTE_TYPES[args.precision]
        model = load_translator(folder, device, compute)
    else:
        if is_export(args.checkpoint):
            raise NMTError(
                f"--checkpoint {args.checkpoint} is a CTranslate2 export; "
                "translate with it using --engine ctranslate2"
            )
        model, tok, cfg, _ = load_for_inference(args.checkpoint, device)
    lines = read_lines(args.input, "input")
    refs = read_lines(args.reference, "reference") if args.reference else None
    if refs is not None and len(refs) != len(lines):
        raise NMTError(
            f"--reference has {len(refs)} lines but the input has {len(lines)}; "
            "they must be parallel, one line each"
        )
    limit = min(cfg.data.max_len, cfg.model.max_positions)
    src_ids = encode_sources(tok, lines, limit)
    todo = [i for i, line in enumerate(lines) if line.strip()]  # empty in, empty out
    nbest = args.nbest or 1
    search = dataclasses.replace(  # the checkpoint's decode settings, under the flags given
        cfg.decode,
        beam=args.beam,
        max_tokens=args.max_tokens,
        **{
            key: getattr(args, name)
            for key, name in (
                ("length_penalty", "length_penalty"),
                ("max_len_a", "max_len_a"),
                ("max_len_b", "max_len_b"),
            )
            if getattr(args, name) is not None
        },
    )
    if args.engine == "ctranslate2":
        found = decode_corpus_ct2(
            model,
            tok,
            [src_ids[i] for i in todo],
            search,
            max_positions=cfg.model.max_positions,
            nbest=nbest,
            batch_size=args.batch_size,
            min_len=args.min_len,
            progress=True,
        )
    else:
        found = decode_corpus(
            model,
            [src_ids[i] for i in todo],
            search,
            device=device,
            amp_dtype=AMP_DTYPES[precision],
            nbest=nbest,
            batch_size=args.batch_size,
            min_len=args.min_len,
            progress=True,
        )
    results: list[list[tuple[str, float]]] = [[("", 0.0)] for _ in lines]
    for i, hyps in zip(todo, found):
        results[i] = list(zip(tok.decode([h.tokens for h in hyps]), (h.score for h in hyps)))
    if args.nbest is None:
        text = "".join(r[0][0] + "\n" for r in results)
    else:
        text = "".join(f"{i}\t{s:.4f}\t{h}\n" for i, r in enumerate(results) for h, s in r)
    write_output(args.output, text)
    if refs is not None:
        lines_out = score_lines([r[0][0] for r in results], refs, args.lowercase, args.tokenize)
        print(*lines_out, sep="\n", file=sys.stdout if args.output else sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run translate(); user errors become one line and exit 2."""
    args = build_parser().parse_args(argv)
    logging.addLevelName(logging.WARNING, "warning")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        translate(args)
    except NMTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
