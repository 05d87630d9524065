"""nmt.train.hostmem: freed host memory kept for the next update (page faults counted, not
timed), in a child process so this one's allocator is untouched."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from .conftest import ROOT

CHILD = textwrap.dedent(
    """
    import resource, sys, torch
    from nmt.train.hostmem import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    h = torch.randn(2048, 64, requires_grad=True)
    w = torch.randn(8192, 64, requires_grad=True)  # logits (2048, 8192): 64 MiB
    faults = []
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        (h @ w.t()).exp().sum().backward()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(applied, min(faults[2:]))
    """
)


def run_child(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_takes_no_page_faults_after_the_first_updates():
    # Without it each 64 MiB tensor (over glibc's 32 MiB mmap ceiling) is a fresh mapping:
    # 16,384 zeroed pages faulted in, and the step makes several. With it the heap's freed
    # blocks are reused: next to no faults.
    applied, kept = run_child("keep")
    default_applied, default = run_child("default")
    assert applied == "True" and default_applied == "None"
    assert default >= 16384 and kept < 200, (default, kept)
