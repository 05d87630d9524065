"""Writing files nothing may be lost from: atomic replacement and folder locks.

Atomic: a temp file in the same folder, fsynced, then renamed over the target, so a crash
leaves the old file or the new one, never half of one. Locks: an advisory `fcntl.flock` on a
lock file, held for as long as the holder runs; the kernel releases it when the process exits,
however it dies, so a SIGKILLed run leaves no stale lock. The lock file holds the holder's PID,
for the message the next process prints.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from nmt.errors import NMTError

try:
    import fcntl
except ImportError:  # not POSIX: no locking (the toolkit targets Linux)
    fcntl = None


class FolderLock:
    """An exclusive lock on one lock file; acquire() returns whether this process got it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self, wait: bool = False) -> bool:
        """Take the lock (blocking when wait); False when another process holds it.

        OSError when the lock file cannot be created (a read-only or missing folder).
        """
        if self.fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def holder(self) -> str:
        """The PID written by the process holding the lock ('unknown' if it has not yet)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            text = ""
        return text if text.isdigit() else "unknown"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def lock_folder(folder: Path, what: str, owner: str) -> FolderLock:
    """Lock folder/.lock for this process, or raise NMTError naming the holder's PID.

    what: the folder's role in the message ('run directory'); owner: who holds such a lock.
    """
    lock = FolderLock(folder / ".lock")
    try:
        got = lock.acquire()
    except OSError as exc:
        raise NMTError(f"cannot write in {what} {folder}: {exc.strerror}") from None
    if not got:
        raise NMTError(
            f"{what} {folder} is in use by another {owner} (PID {lock.holder()}); wait for it "
            f"to finish, stop it, or choose another {what}"
        )
    return lock


def atomic_write(path: Path, write: Callable[[BinaryIO], None], mode: int | None = None) -> None:
    """write(handle) into a temp file beside path, fsync, then rename it over path.

    mode: the permission bits to give the file (mkstemp's are 0600). The temp file is
    removed if anything fails; OSError propagates.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Replace path with data atomically."""
    atomic_write(path, lambda handle: handle.write(data))


def cache_root() -> Path:
    """The project's cache folder: $NMT_CACHE, else ~/.cache/nmt."""
    return Path(os.environ.get("NMT_CACHE") or Path.home() / ".cache" / "nmt")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
