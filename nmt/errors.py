"""The one exception for errors a user can cause; the CLIs print it as one line."""

from __future__ import annotations

import argparse
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
