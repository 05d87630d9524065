"""Which files make each split, and reading them through `datasets`.

A local folder is resolved to explicit files per split (never `datasets`' name patterns over
the whole folder, which would silently merge `test.jsonl` with `test_2017_mscoco.jsonl` or a
backup `old/train.jsonl`); `--train-file/--valid-file/--test-file` each replace one split; a
Hub id is loaded by `datasets` as it is.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from nmt.config import DataConfig
from nmt.data.file_checks import check_tsv, refuse_empty, why_unreadable
from nmt.errors import NMTError

log = logging.getLogger(__name__)

DEFAULT_HUB_DATASET = "bentrevett/multi30k"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # nmt/data/sources.py -> the checkout
# The default dataset: a local copy here (git-ignored) wins over the Hub.
DEFAULT_LOCAL_DIRS = (Path("data") / "multi30k", PROJECT_ROOT / "data" / "multi30k")
# suffix -> (datasets builder, its options). TSV is read without CSV quoting: a raw TSV cell
# such as `"Halt", sagte er` keeps its quotes.
FILE_BUILDERS = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".parquet": ("parquet", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t", "quoting": 3}),  # 3 = csv.QUOTE_NONE
}
# The names `datasets` gives the standard splits in a folder (its SPLIT_KEYWORDS).
SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_SEP = r"[-._ 0-9]"
_SHARD = re.compile(r"^(.*)-\d{5}-of-\d{5}$")  # train-00000-of-00004.parquet: one split


def split_flags(cfg: DataConfig) -> dict[str, tuple[str, str]]:
    """{split name: (flag, file)} for each --train/valid/test-file given."""
    given = (
        (cfg.train_split, "--train-file", cfg.train_file),
        (cfg.valid_split, "--valid-file", cfg.valid_file),
        (cfg.test_split, "--test-file", cfg.test_file),
    )
    return {split: (flag, path) for split, flag, path in given if path}


def _keywords(split: str) -> tuple[str, ...]:
    return SPLIT_KEYWORDS.get(split, (split,))


def _names(part: str, keyword: str) -> bool:
    """Whether a file stem or folder name names the keyword as a word (test_2017 names test)."""
    pattern = f"(^|{_SEP}){re.escape(keyword.lower())}({_SEP}|$)"
    return re.search(pattern, part.lower()) is not None


def data_files(folder: Path) -> list[Path]:
    """The data files under folder (any depth), hidden paths left out, in name order."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in FILE_BUILDERS
        and not any(p.startswith(".") for p in path.relative_to(folder).parts)
    )


def split_candidates(folder: Path, split: str, files: list[Path]) -> dict[str, list[Path]]:
    """{candidate: its files} for one split: a file, a folder named for the split, or shards.

    More than one candidate means the folder is ambiguous for that split.
    """
    found: dict[str, list[Path]] = {}
    for path in files:
        rel = path.relative_to(folder)
        keys = _keywords(split)
        dirs = [i for i, d in enumerate(rel.parts[:-1]) if any(_names(d, k) for k in keys)]
        stem = path.name[: -len(path.suffix)]
        shard = _SHARD.match(stem)
        if dirs:  # a folder named for the split holds all of its files
            key = str(Path(*rel.parts[: dirs[0] + 1])) + "/"
        elif any(_names(stem, k) for k in keys):
            key = str(rel.parent / shard.group(1)) + "-*" if shard else str(rel)
        else:
            continue
        found.setdefault(key, []).append(path)
    return found


def resolve_folder(folder: Path, splits: dict[str, str]) -> dict[str, list[Path]]:
    """{split: files} of a local folder; a split with two candidates is an error naming them.

    splits: {split name: its role, 'train', 'valid' or 'test'} (the role names the flags).
    """
    files = data_files(folder)
    if not files and not any(compressed_files(folder, s) for s in splits):
        raise NMTError(
            f"dataset folder {folder} holds no data files ({', '.join(FILE_BUILDERS)}); "
            "point --dataset at the folder with the train/validation/test files"
        )
    resolved: dict[str, list[Path]] = {}
    for split, role in splits.items():
        found = split_candidates(folder, split, files)
        if len(found) > 1:
            names = ", ".join(sorted(found))
            stems = [Path(k.rstrip("/-*")).name.split(".")[0] for k in sorted(found)]
            by_name = f" or --data.{role}_split NAME (e.g. {stems[-1]})"
            raise NMTError(
                f"split '{split}' matches {len(found)} files in {folder}: {names}; keep one, or "
                f"choose with --{role}-file FILE" + (by_name if len(set(stems)) > 1 else "")
            )
        if found:
            resolved[split] = next(iter(found.values()))
        elif packed := compressed_files(folder, split):
            raise NMTError(
                f"split '{split}' is only in compressed files in {folder} "
                f"({', '.join(str(p.relative_to(folder)) for p in packed)}); compressed files "
                "are not read: decompress them (e.g. gunzip) and run again"
            )
    used = {p for paths in resolved.values() for p in paths}
    ignored = [str(p.relative_to(folder)) for p in files if p not in used]
    if ignored:
        log.warning("data: not used from %s (no split asked for): %s", folder, ", ".join(ignored))
    return resolved


def load_files(split: str, paths: list[Path]):
    """One split from explicit files, as a datasets.Dataset."""
    import datasets

    suffixes = {p.suffix.lower() for p in paths}
    builders = {FILE_BUILDERS[s][0] for s in suffixes if s in FILE_BUILDERS}
    if len(builders) != 1 or not suffixes <= set(FILE_BUILDERS) or len(suffixes) != 1:
        raise NMTError(
            f"the files of split '{split}' must share one of {', '.join(FILE_BUILDERS)}; "
            f"got {', '.join(map(str, paths))}"
        )
    for path in paths:
        refuse_empty(path)
        if path.suffix.lower() == ".tsv":
            check_tsv(path)
    builder, options = FILE_BUILDERS[suffixes.pop()]
    try:
        return datasets.load_dataset(
            builder, data_files={split: [str(p) for p in paths]}, split=split, **options
        )
    except Exception as exc:  # pyarrow, pandas and datasets each raise their own types
        raise NMTError(why_unreadable(paths, exc)) from None


def default_dataset(candidates: tuple[Path, ...] = DEFAULT_LOCAL_DIRS) -> str:
    """The default dataset: the first local Multi30k copy that exists, else the Hub id."""
    for path in candidates:
        if path.is_dir():
            return str(path)
    return DEFAULT_HUB_DATASET


def _hub(cfg: DataConfig, source: str):
    import datasets

    log.info("data: loading Hub dataset %s %s", source, cfg.dataset_config or "")
    try:
        return datasets.load_dataset(source, cfg.dataset_config)
    except Exception as exc:  # datasets raises many types for missing/unreachable data
        text = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {text[0] if text else ''}"
        if cfg.dataset is None:
            raise NMTError(
                f"no local copy of the default data at data/multi30k and the Hub dataset "
                f"{DEFAULT_HUB_DATASET} could not be loaded ({reason}); link a local copy to "
                "data/multi30k/ (see data/README.md) or point --dataset at a folder with "
                "train/validation/test .jsonl files"
            ) from None
        raise NMTError(
            f"could not load Hub dataset '{source}' ({reason}); check the name, "
            "--dataset-config, or point --dataset at a local folder"
        ) from None


def load_dataset_dict(cfg: DataConfig, candidates: tuple[Path, ...] = DEFAULT_LOCAL_DIRS):
    """{split: datasets.Dataset} from files, a local folder or a Hub id, plus `.files`.

    `.files` maps each split to the exact files it was read from (for a Hub dataset, a
    description of the Hub source), for the log, config.yaml and results.json.
    """
    import datasets
    from huggingface_hub.utils import logging as hub_logging

    # The Hub warns about a missing dataset card even for local folders: keep errors only.
    hub_logging.set_verbosity_error()
    flags = split_flags(cfg)
    for flag, path in flags.values():
        if not Path(path).is_file():
            what = "is a folder, not a file" if Path(path).is_dir() else "does not exist"
            raise NMTError(f"data file {path} {what}; check {flag}")
        if Path(path).suffix.lower() not in FILE_BUILDERS:
            raise NMTError(
                f"{flag} {path}: a data file must end in one of {', '.join(FILE_BUILDERS)}"
            )
    roles = {cfg.train_split: "train", cfg.valid_split: "valid", cfg.test_split: "test"}
    wanted = {split: role for split, role in roles.items() if split not in flags}
    dd, files = datasets.DatasetDict(), {}
    if not (cfg.train_file and not cfg.dataset):  # --train-file alone: files only
        source = cfg.dataset or default_dataset(candidates)
        if Path(source).is_dir():
            log.info("data: local folder %s", source)
            for split, paths in resolve_folder(Path(source), wanted).items():
                dd[split], files[split] = load_files(split, paths), [str(p) for p in paths]
        elif Path(source).exists():
            raise NMTError(
                f"--dataset {source} is a file; use --train-file/--valid-file "
                "for single files, or point --dataset at their folder"
            )
        elif source.startswith((".", "/", "~")):
            raise NMTError(
                f"dataset folder {source} does not exist; pass --dataset with a folder "
                "holding train/validation/test files, or a Hub id"
            )
        else:
            hub = _hub(cfg, source)
            label = f"Hub dataset {source}" + (
                f" {cfg.dataset_config}" if cfg.dataset_config else ""
            )
            for split in hub:
                dd[split], files[split] = hub[split], [f"{label}, split {split}"]
    for split, (_, path) in flags.items():
        dd[split], files[split] = load_files(split, [Path(path)]), [path]
    for split in dd:
        log.info("data: %s <- %s", split, ", ".join(files[split]))
    dd.files = files
    return dd


COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip", ".tgz")


def compressed_files(folder: Path, split: str) -> list[Path]:
    """Compressed data files under folder that name split (they are not read)."""
    keys = _keywords(split)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in COMPRESSED
        and any(_names(part.split(".")[0], k) for part in p.relative_to(folder).parts for k in keys)
    )
