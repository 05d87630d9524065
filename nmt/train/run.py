"""Run-directory policy: where a run lives, locking, refusing to clobber, --overwrite, resume."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from nmt.config import Config, config_sections, flatten, format_eps
from nmt.config_checks import BOOKKEEPING
from nmt.errors import NMTError
from nmt.files import FolderLock, lock_folder, write_atomic
from nmt.objective.smoothing import Smoothing
from nmt.train.logbook import attach_log_file

log = logging.getLogger(__name__)

# What a finished or running run leaves behind; --overwrite removes exactly these.
RUN_FILES = (
    "checkpoint_*.pt",
    "events.out.tfevents.*",
    "train.log",
    "results.json",
    "*.hyp.txt",
    "*.ref.txt",
    "config.yaml",
    "spm.model",
)
# Where --overwrite keeps the old run until the new one has saved its first checkpoint.
REPLACED = ".overwritten"


def default_run_dir(cfg: Config) -> Path:
    """runs/<dataset>-<src>-<tgt>-ls<eps>[-<convention>], e.g. runs/multi30k-en-de-ls0.1; a
    convention other than the default adds the registry's run-name suffix: one name per
    objective."""
    d = cfg.data
    source = d.train_file or d.dataset or "multi30k"
    name = Path(source).stem if d.train_file else Path(source.rstrip("/")).name
    t = cfg.train
    suffix = Smoothing.of(t).run_suffix()
    return Path("runs") / f"{name}-{d.src}-{d.tgt}-ls{format_eps(t.smoothing)}{suffix}"


def _config_changes(run_dir: Path, cfg: Config) -> list[str] | None:
    """Dotted keys whose value differs from the run's saved config.yaml (None: unreadable)."""
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        saved = Config.from_dict(config_sections(saved))
    except (OSError, yaml.YAMLError, NMTError, AttributeError):
        return None
    old, new = (flatten(c.to_dict(), "config") for c in (saved, cfg))
    # Where the run lives, whether the model is compiled and which kernels (equal to rounding)
    # change no number of the run; a run from before train.kernels resumes under the same command.
    same = ("train.run_dir", "train.compile", "train.kernels", "data.num_proc")
    return [k for k in new if k not in same and old.get(k) != new[k]]


def remove_stale_temp_files(run_dir: Path) -> int:
    """Delete what an interrupted atomic write left behind (.checkpoint_*.tmp, *.json.tmp)."""
    stale = [*run_dir.glob(".checkpoint_*.tmp"), *run_dir.glob("*.json.tmp")]
    stale += [*run_dir.glob(".config.yaml.*.tmp"), *run_dir.glob(".spm.model.*.tmp")]
    stale += [*run_dir.glob(".results.json.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


@dataclass
class RunDir:
    """A locked run directory, from the checks before training to the first checkpoint.

    Nothing in it is written until start(): a run that cannot start (bad data, a checkpoint
    that does not fit) leaves the directory as it was. With --overwrite, start() moves the old
    run into REPLACED, deleted once the new run has saved its first checkpoint.
    """

    path: Path
    resuming: bool
    overwrite: bool = False
    created: bool = False
    lock: FolderLock | None = None
    started: bool = False

    @property
    def replaced(self) -> Path:
        return self.path / REPLACED

    def _run_files(self) -> list[Path]:
        return [p for pattern in RUN_FILES for p in sorted(self.path.glob(pattern))]

    def start(self, cfg: Config, spm_model: bytes, data_files: dict[str, list[str]]) -> None:
        """The run can start: set an overwritten run aside, write config.yaml and spm.model,
        and send the log lines held so far to train.log."""
        if self.overwrite and self._run_files():
            if self.replaced.exists() and not (self.path / "checkpoint_last.pt").exists():
                # An earlier --overwrite stopped before its first checkpoint: what is here is
                # that attempt's, the run it replaced is already set aside.
                for path in self._run_files():
                    path.unlink()
            else:
                shutil.rmtree(self.replaced, ignore_errors=True)
                self.replaced.mkdir()
                for path in self._run_files():
                    path.rename(self.replaced / path.name)
            log.info("--overwrite: the old run is in %s until the first checkpoint", self.replaced)
        saved = {**cfg.to_dict(), "data_files": data_files}
        write_atomic(self.path / "config.yaml", yaml.safe_dump(saved, sort_keys=False).encode())
        write_atomic(self.path / "spm.model", spm_model)
        attach_log_file(self.path / "train.log")
        self.started = True

    def checkpoint_saved(self) -> None:
        """The new run has a checkpoint: the old run this --overwrite set aside can go (no
        other command ever deletes it)."""
        if self.overwrite and self.replaced.exists():
            shutil.rmtree(self.replaced, ignore_errors=True)

    def abandon(self) -> None:
        """The run stopped before start(): remove the directory if this process made it."""
        if self.created and not self.started:
            if {p.name for p in self.path.iterdir()} <= {".lock"}:
                shutil.rmtree(self.path, ignore_errors=True)
        if self.lock is not None:
            self.lock.release()


def prepare_run_dir(cfg: Config, overwrite: bool, resume: bool = False) -> RunDir:
    """Create or reopen and lock the run directory; decide whether to resume from it.

    An unfinished run with the same config resumes by itself; a finished run, or one with a
    different config, is refused unless resume (continue it anyway) or overwrite (replace it,
    at RunDir.start()). Nothing in the directory is deleted or written here.
    """
    run_dir = run_dir_of(cfg)
    if run_dir.exists() and not run_dir.is_dir():
        raise NMTError(f"--run-dir {run_dir} is a file; choose a directory")
    if overwrite and resume:
        raise NMTError("--resume and --overwrite contradict each other; pass one of them")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NMTError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    lock = lock_folder(run_dir, "run directory", "train.py")
    rd = RunDir(run_dir, False, overwrite, created, lock)
    try:
        if rd.replaced.exists() and not overwrite:
            raise NMTError(
                f"run directory {run_dir} holds a run that an interrupted --overwrite set aside "
                f"in {rd.replaced}; pass --restore-overwritten to put it back, or --overwrite "
                "to confirm replacing it"
            )
        rd.resuming = _check_existing(run_dir, cfg, overwrite, resume)
    except NMTError:
        rd.abandon()
        raise
    remove_stale_temp_files(run_dir)
    return rd


def run_dir_of(cfg: Config) -> Path:
    """--run-dir, or the default name for the config."""
    return Path(cfg.train.run_dir) if cfg.train.run_dir else default_run_dir(cfg)


def restore_overwritten(cfg: Config) -> Path:
    """Put back the run an interrupted --overwrite set aside: the interrupted attempt (which
    never saved a checkpoint) leaves, the old run returns, byte for byte."""
    run_dir = run_dir_of(cfg)
    replaced = run_dir / REPLACED
    if not replaced.is_dir():
        raise NMTError(f"--restore-overwritten: {run_dir} holds no run set aside ({REPLACED})")
    lock = lock_folder(run_dir, "run directory", "train.py")
    try:
        if (run_dir / "checkpoint_last.pt").exists():
            raise NMTError(
                f"--restore-overwritten: the run that replaced the one in {replaced} has saved "
                f"a checkpoint since; move its files out of {run_dir} first to restore the old "
                "one, or keep it with --overwrite"
            )
        rd = RunDir(run_dir, False)
        for path in rd._run_files():  # the attempt's: config, log, events, no checkpoint
            path.unlink()
        clash = [p.name for p in replaced.iterdir() if (run_dir / p.name).exists()]
        if clash:
            raise NMTError(
                f"--restore-overwritten: {', '.join(sorted(clash))} exist in both {run_dir} "
                f"and {replaced}; move one of them away first"
            )
        for path in replaced.iterdir():
            path.rename(run_dir / path.name)
        replaced.rmdir()
    finally:
        lock.release()
    return run_dir


def _check_existing(run_dir: Path, cfg: Config, overwrite: bool, resume: bool) -> bool:
    """Whether to resume; raises NMTError for a run that must not be continued or replaced."""
    has_last = (run_dir / "checkpoint_last.pt").is_file()
    finished = (run_dir / "results.json").is_file()
    if resume and not has_last:
        raise NMTError(f"--resume: {run_dir} has no checkpoint_last.pt to continue from")
    if overwrite:
        return False
    if has_last and not resume:
        changes = _config_changes(run_dir, cfg)
        if finished:
            raise NMTError(
                f"run directory {run_dir} already holds a finished run (results.json); pass "
                "--resume to continue it (e.g. with a larger --max-steps), --overwrite to "
                "replace it, or another --run-dir"
            )
        if changes != []:
            what = ", ".join(changes[:5]) if changes else "config.yaml is missing or unreadable"
            if changes and all(k in BOOKKEEPING for k in changes):
                raise NMTError(
                    f"run directory {run_dir} holds an unfinished run with a different config "
                    f"({what}); pass --resume to continue it with these settings, --overwrite "
                    "to replace it, or another --run-dir"
                )
            raise NMTError(
                f"run directory {run_dir} holds an unfinished run with a different config "
                f"({what}); a resume may change only its budget and bookkeeping: use another "
                "--run-dir, or --overwrite to replace it"
            )
    elif finished and not resume:
        raise NMTError(
            f"run directory {run_dir} already holds a run (results.json); "
            "choose another --run-dir or pass --overwrite to replace it"
        )
    return has_last
