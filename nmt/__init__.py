"""nmt: train Transformer translation models and study label smoothing."""

from nmt.errors import NMTError

__all__ = ["NMTError"]
__version__ = "0.1.0"
