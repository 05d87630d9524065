"""The one exception for errors a user can cause; the CLIs print it as one line."""


class NMTError(ValueError):
    """A problem with the user's input (flag, config, data, checkpoint) and what to do about it."""
