"""Keep freed host memory for reuse instead of handing it back to the kernel (CPU training).

glibc's malloc serves every block over its mmap threshold (at most 32 MiB) with a fresh
mapping and unmaps it on free. The default recipe's update makes two (N, V) float32 tensors of
about 64 MiB (the logits and their gradient), so each update asks the kernel for some 32,000
new zeroed pages and takes a page fault on each: about 9% of the update on the 2-core CPU this
was measured on (docs/benchmarks.md). With mmap off and the heap never trimmed, a freed block
is reused by a later update's allocation of the same size (the heap settles over the first
updates: while small blocks split it, an update now and then still grows it by a 64 MiB
block; tests/test_hostmem.py counts the faults). The arithmetic is untouched (runs
are bit-identical); the process keeps its peak heap instead of returning it between updates.
Intel's PyTorch CPU tuning guides make the same point with jemalloc or tcmalloc preloaded;
this needs no other library.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Turn glibc's mmap off and never trim the heap; False where that does not apply.

    Process-wide and for the rest of the process: later allocations come from the heap, and
    memory freed there is kept for the next. Not glibc (macOS, Windows, musl's stub): nothing
    changes and False is returned.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt, gnu_version = libc.mallopt, libc.gnu_get_libc_version
    except (OSError, AttributeError):  # not glibc
        return False
    del gnu_version
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
