"""Shared fixtures: the Multi30k copy beside the repo, a synthetic corpus, an isolated cache."""

from __future__ import annotations

import ast
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# tests/hooks/sitecustomize.py: NMT_TEST_KILL_AT_STEP fault injection for started processes.
HOOKS = ROOT / "tests" / "hooks"


def hooked_env(env: dict[str, str]) -> dict[str, str]:
    """env with tests/hooks first on PYTHONPATH (inert unless NMT_TEST_KILL_AT_STEP is set)."""
    path = os.pathsep.join(p for p in (str(HOOKS), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path}


def _find_multi30k() -> Path:
    """$NMT_MULTI30K, else data/multi30k/ (where a user links it), else the copy beside the repo."""
    if os.environ.get("NMT_MULTI30K"):
        return Path(os.environ["NMT_MULTI30K"])
    linked = ROOT / "data" / "multi30k"
    return (
        linked
        if (linked / "train.jsonl").is_file()
        else ROOT.parent / "shared" / "data" / "multi30k"
    )


MULTI30K = _find_multi30k()

# At most 2 threads a test. Under pytest-xdist (`-n auto`) each worker, and every process it
# starts, gets its share of the cores: on a 2-core machine two workers of two threads each
# would spin against each other.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, torch.get_num_threads() // _WORKERS))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)
torch.set_num_threads(_THREADS)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tokenizer cache shared by the session's tests but never the user's ~/.cache."""
    monkeypatch.setenv("NMT_CACHE", str(tmp_path_factory.getbasetemp() / "nmt-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def multi30k() -> Path:
    """The real Multi30k folder; tests that need it skip with a reason when it is absent."""
    if not (MULTI30K / "train.jsonl").is_file():
        pytest.skip(f"Multi30k not found at {MULTI30K} (set NMT_MULTI30K to its folder)")
    return MULTI30K


WORDS = [
    "red",
    "blue",
    "green",
    "dog",
    "cat",
    "man",
    "woman",
    "runs",
    "sits",
    "on",
    "the",
    "grass",
    "street",
    "ball",
    "a",
    "big",
    "small",
    "child",
    "plays",
    "with",
]
CIPHER = {w: w[::-1] + "x" for w in WORDS}  # a word-for-word "language"


def synthetic_pairs(n: int, seed: int) -> list[dict]:
    """Sentences of random words and their word-by-word cipher translation."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
        rows.append(
            {"translation": {"en": " ".join(words), "xx": " ".join(CIPHER[w] for w in words)}}
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def write_cipher(folder: Path, valid: int = 60, test: int = 50) -> Path:
    """The cipher corpus in Hub layout (nested 'translation', en -> xx): 1,500 training pairs,
    `valid` validation pairs and `test` test pairs (no test file when 0)."""
    write_jsonl(folder / "train.jsonl", synthetic_pairs(1500, 1))
    write_jsonl(folder / "validation.jsonl", synthetic_pairs(valid, 2))
    if test:
        write_jsonl(folder / "test.jsonl", synthetic_pairs(test, 3))
    return folder


def cipher_flags(dataset: Path) -> list[str]:
    """train.py flags for configs/toy.yaml on a cipher corpus (vocabulary 60)."""
    return ["--config", "configs/toy.yaml", "--dataset", str(dataset), "--src", "en",
            "--tgt", "xx", "--vocab-size", "60"]  # fmt: skip


@pytest.fixture
def synthetic_dataset(tmp_path) -> Path:
    """A local folder in Hub layout with a nested 'translation' column (en -> xx)."""
    return write_cipher(tmp_path / "cipher")


def run(
    script: str,
    *args: str,
    stdin: str | bytes | None = None,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
):
    """Run one of the project's scripts as a user would; text in/out unless stdin is bytes."""
    env = hooked_env({**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=not isinstance(stdin, bytes),
        env=env,
        timeout=600,
    )


def module(name: str, *args: str, env: dict[str, str] | None = None):
    """python -m name args, from the repository root, as a user would run it."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", name, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


@pytest.fixture(scope="session")
def multi30k_run(tmp_path_factory):
    """train.py on a 2k-pair Multi30k slice with configs/toy.yaml, once per test session."""
    if not (MULTI30K / "train.jsonl").is_file():
        pytest.skip(f"Multi30k not found at {MULTI30K} (set NMT_MULTI30K to its folder)")
    run_dir = tmp_path_factory.mktemp("m30k") / "run"
    proc = run(
        "train.py",
        "--config",
        "configs/toy.yaml",
        "--dataset",
        str(MULTI30K),
        "--smoothing",
        "0.1",
        "--run-dir",
        str(run_dir),
        "--seed",
        "3",
        # Session fixtures start before the autouse per-test cache fixture: isolate here too.
        env={"NMT_CACHE": str(tmp_path_factory.getbasetemp() / "nmt-cache"), "HF_HUB_OFFLINE": "1"},
    )
    return proc, run_dir


@pytest.fixture(scope="session")
def finished_multi30k_run(multi30k_run) -> Path:
    """multi30k_run's directory, checked to have finished."""
    proc, path = multi30k_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


def modules_loaded(module_name: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with any of prefixes that importing module_name loads, in a fresh
    interpreter run from the repository root."""
    code = (
        f"import sys, {module_name}; "
        f"print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)  # fmt: skip
    return ast.literal_eval(out.stdout)  # a printed list of strings


@pytest.fixture
def restore_root_logging():
    """train.main sets up the root logger (INFO, its handlers) and translate.main renames the
    WARNING level: leave both as they were found."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    warning = logging.getLevelName(logging.WARNING)
    yield
    logging.addLevelName(logging.WARNING, warning)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
