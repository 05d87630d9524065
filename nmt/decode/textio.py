"""translate.py's text in and out: input lines read as bytes (CRLF and bad UTF-8 handled),
and --output written without destroying what it should not (atomic replace of a regular file,
written through a symlink, a device or FIFO written to as it is, never one of the inputs)."""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
from pathlib import Path

from nmt.data.dataset import truncate
from nmt.data.tokenizer import EOS_ID
from nmt.decode.export import is_export
from nmt.errors import NMTError
from nmt.files import atomic_write
from nmt.train.checkpoint import checkpoint_file

log = logging.getLogger("translate")  # the name translate.py's warnings have always carried


def read_lines(path: str | None, what: str) -> list[str]:
    """Lines of a file (or stdin), split on newlines only; bad UTF-8 is replaced and counted."""
    if path is None:
        try:
            data = sys.stdin.buffer.read()
        except (AttributeError, OSError, ValueError):  # no stdin at all (<&-), or a closed one
            raise NMTError(
                f"no {what}: standard input is closed; pipe the text in or pass --input FILE"
            ) from None
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


def write_output(path: str | None, text: str) -> None:
    """Write to stdout, or to the file named (through a symlink, the link kept).

    A regular file is replaced atomically (temp file in the same folder, fsync, rename), keeping
    its permissions; a device or FIFO (/dev/null, a pipe) is written to as it is, never replaced.
    """
    if path is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # translate.py | head: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError as exc:
            raise NMTError(
                f"cannot write the translations to standard output: {exc.strerror or exc}"
            ) from None
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
