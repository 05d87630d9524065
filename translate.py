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
import sys
from pathlib import Path

import torch
from sacrebleu.metrics import BLEU

from nmt.decode.adjust import parse_temperature, scorer_for
from nmt.decode.ct2 import COMPUTE_TYPES, decode_corpus_ct2, load_translator
from nmt.decode.ct2_spec import import_ctranslate2
from nmt.decode.export import (
    META,
    SPM_FILE,
    cached_export,
    incomplete_export,
    is_export,
    read_export,
)
from nmt.decode.search import decode_corpus, length_limits
from nmt.decode.textio import check_output, encode_sources, read_lines, write_output
from nmt.errors import ArgumentParser, NMTError
from nmt.study.metrics import score_lines
from nmt.train.checkpoint import load_for_inference
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
    add_scoring_flags(p)
    p.add_argument(
        "--quantization",
        choices=INT_TYPES,
        help="with --engine ctranslate2: compute in this integer type (int8 on CPU)",
    )
    return p


def add_scoring_flags(p: argparse.ArgumentParser) -> None:
    """--temperature and --rectify-smoothing: what search scores (nmt.decode.adjust)."""
    p.add_argument(
        "--temperature",
        metavar="T",
        help="search softmax(logits / T): a number > 0, or 'fitted' for the temperature "
        "python -m nmt.analyze fitted on validation (its analysis.json in the run folder); "
        "greedy output never changes with T, beam search can (native engine only)",
    )
    p.add_argument(
        "--rectify-smoothing",
        action="store_true",
        help="undo the checkpoint's label smoothing before search (Liang et al., 2022: "
        "p = max(q - prior, 0) / gold, renormalised; native engine only)",
    )


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
    args.temperature = parse_temperature(args.temperature)
    if args.temperature is not None and args.rectify_smoothing:
        raise NMTError("give --temperature or --rectify-smoothing, not both")
    if args.engine == "ctranslate2" and (args.temperature is not None or args.rectify_smoothing):
        flag = "--temperature" if args.temperature is not None else "--rectify-smoothing"
        raise NMTError(f"{flag} works with --engine native only: CTranslate2 cannot change the "
                       "scores its beam search ranks by")  # fmt: skip
    check_output(args)


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


def check_min_len(min_len: int, sources: list[list[int]], search, max_positions: int) -> None:
    """--min-len must leave room for EOS within every sentence's length limit (the engines
    would each break the promise their own way)."""
    if not min_len or not sources:
        return
    lens = torch.tensor([len(s) for s in sources])
    limits = length_limits(lens, search.max_len_a, search.max_len_b, max_positions)
    short = int((limits <= min_len).sum())
    if short:
        tight = int(limits.min())
        raise NMTError(
            f"--min-len {min_len} does not fit the length limit of {short} input line(s) (the "
            f"tightest allows {tight} steps with EOS, so at most --min-len {tight - 1}); lower "
            "--min-len or raise --max-len-a/--max-len-b"
        )


def load_engine(args: argparse.Namespace, device):
    """(model or translator, tokenizer, config, scorer) of --checkpoint for the engine asked;
    scorer (nmt.decode.adjust) is what --temperature or --rectify-smoothing ask for."""
    if args.engine == "ctranslate2":
        folder, tok, cfg = load_export(args.checkpoint)
        compute = args.quantization or COMPUTE_TYPES[args.precision]
        return load_translator(folder, device, compute), tok, cfg, None
    if is_export(args.checkpoint):
        raise NMTError(
            f"--checkpoint {args.checkpoint} is a CTranslate2 export; "
            "translate with it using --engine ctranslate2"
        )
    error = incomplete_export(args.checkpoint)
    if error is not None:
        raise error
    model, tok, cfg, state = load_for_inference(args.checkpoint, device)
    scorer = scorer_for(args.temperature, args.rectify_smoothing, args.checkpoint, state, cfg)
    return model, tok, cfg, scorer


def search_config(args: argparse.Namespace, decode):
    """The checkpoint's decode settings, under the flags given."""
    given = {
        key: getattr(args, key)
        for key in ("length_penalty", "max_len_a", "max_len_b")
        if getattr(args, key) is not None
    }
    return dataclasses.replace(decode, beam=args.beam, max_tokens=args.max_tokens, **given)


def translate(args: argparse.Namespace) -> None:
    """Load, read, decode, write and (optionally) score."""
    check_args(args)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    model, tok, cfg, scorer = load_engine(args, device)
    lines = read_lines(args.input, "input")
    refs = read_lines(args.reference, "reference") if args.reference else None
    if refs is not None and len(refs) != len(lines):
        raise NMTError(
            f"--reference has {len(refs)} lines but the input has {len(lines)}; "
            "they must be parallel, one line each"
        )
    src_ids = encode_sources(tok, lines, min(cfg.data.max_len, cfg.model.max_positions))
    todo = [i for i, line in enumerate(lines) if line.strip()]  # empty in, empty out
    options = dict(nbest=args.nbest or 1, batch_size=args.batch_size, min_len=args.min_len)
    sources, search = [src_ids[i] for i in todo], search_config(args, cfg.decode)
    check_min_len(args.min_len, sources, search, cfg.model.max_positions)
    if args.engine == "ctranslate2":
        found = decode_corpus_ct2(model, tok, sources, search, progress=True,
                                  max_positions=cfg.model.max_positions, **options)  # fmt: skip
    else:
        found = decode_corpus(model, sources, search, device=device, progress=True,
                              amp_dtype=AMP_DTYPES[precision], scorer=scorer,
                              **options)  # fmt: skip
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
