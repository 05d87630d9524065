"""The one exception for errors a user can cause; the CLIs print it as one line."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable
from typing import NoReturn


class NMTError(ValueError):
    """A problem with the user's input (flag, config, data, checkpoint) and what to do about it."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the CLIs' error format: one 'error:' line (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def does_not_fit(exc: Exception) -> NMTError:
    """A checkpoint whose weights or optimizer state do not fit the model being resumed."""
    return NMTError(
        f"the checkpoint does not fit this model ({str(exc).splitlines()[0][:160]}); "
        "resume with the run's own model settings or pass --overwrite"
    )


def run_module(name: str, parser: argparse.ArgumentParser, work: Callable, argv=None) -> int:
    """python -m <name>: parse argv, log at INFO, run work(args, command) (the command line as
    the user typed it, for the record) and print what it returns; a user error is one line and
    exit 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(message)s")
    command = shlex.join(["python", "-m", name, *(sys.argv[1:] if argv is None else argv)])
    try:
        message = work(args, command)
    except NMTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(message)
    return 0
