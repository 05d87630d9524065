"""Export a checkpoint for serving: a CTranslate2 model directory (python -m nmt.export).

    python -m nmt.export RUN_DIR_OR_CHECKPOINT --format ctranslate2 --out DIR
                         [--quantization int8|int8_float32|float16|bfloat16|...] [--overwrite]

DIR holds CTranslate2's model.bin, config.json and vocabulary, plus this project's
SentencePiece model (sentencepiece.model) and nmt_export.json (the checkpoint's hash and step,
its decode settings and length limits), so that the folder alone is enough to translate:
`translate.py --checkpoint DIR --engine ctranslate2`.

How the model maps onto CTranslate2 is in nmt/decode/ct2_spec.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

from nmt.decode.ct2_spec import build_spec, import_ctranslate2
from nmt.errors import ArgumentParser, NMTError
from nmt.files import cache_root, file_sha256, write_atomic
from nmt.train.checkpoint import checkpoint_file

log = logging.getLogger("nmt.export")

META = "nmt_export.json"
SPM_FILE = "sentencepiece.model"
META_VERSION = 1
# CTranslate2's weight types (ctranslate2.specs.model_spec.ACCEPTED_MODEL_TYPES).
QUANTIZATIONS = (
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)


# What an export made before exports listed their files consists of.
EXPORT_FILES = re.compile(r"model\.bin|config\.json|\w*vocabulary\.(json|txt)|sentencepiece\.model")


def _check_out(out: Path, overwrite: bool) -> None:
    """--out must be new, or (with overwrite) an earlier export holding nothing else; never
    another folder, never a file the export did not write."""
    if not out.exists():
        if not out.parent.is_dir():
            raise NMTError(f"--out {out}: folder {out.parent} does not exist")
        return
    if not out.is_dir():
        raise NMTError(f"--out {out} exists and is not a folder; choose another path")
    if not overwrite:
        raise NMTError(f"--out {out} already exists; choose another path or pass --overwrite")
    if not (out / META).is_file():
        raise NMTError(
            f"--out {out} is not an export of this project (no {META}); "
            "--overwrite only replaces an earlier export"
        )
    try:
        listed = set(json.loads((out / META).read_text()).get("files") or [])
    except (OSError, ValueError, AttributeError):
        listed = set()
    others = sorted(
        p.name
        for p in out.iterdir()
        if p.name != META
        and p.name not in listed
        and not (not listed and p.is_file() and EXPORT_FILES.fullmatch(p.name))
    )
    if others:
        raise NMTError(
            f"--out {out} holds files the export did not write ({', '.join(others[:5])}"
            f"{', ...' if len(others) > 5 else ''}); move them out first, or choose another "
            "--out: --overwrite replaces an export, never anything else"
        )


def export_ctranslate2(
    checkpoint: str | Path,
    out: str | Path,
    quantization: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write checkpoint's model as a CTranslate2 directory at out (atomically: a folder built
    beside it, then renamed); returns out."""
    from nmt.train.checkpoint import load_for_inference

    ct2 = import_ctranslate2()
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise NMTError(f"--quantization {quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
    out, path = Path(out), checkpoint_file(checkpoint)
    _check_out(out, overwrite)
    model, tok, cfg, state = load_for_inference(path, "cpu")
    spec = build_spec(model, tok)
    spec.validate()
    spec.optimize(quantization=quantization)
    meta = {
        "format_version": META_VERSION,
        "engine": "ctranslate2",
        "ctranslate2_version": ct2.__version__,
        "quantization": quantization or "float32",
        "checkpoint": str(path.resolve()),
        "checkpoint_sha256": file_sha256(path),
        "step": state.get("step"),
        "weights": "ema" if state.get("ema") is not None else "model",
        "tokenizer_sha256": hashlib.sha256(tok.proto).hexdigest(),
        "max_len": cfg.data.max_len,
        "max_positions": cfg.model.max_positions,
        "decode": cfg.to_dict()["decode"],
        "config": cfg.to_dict(),
    }
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        spec.save(str(tmp))
        tok.save(tmp / SPM_FILE)
        meta["files"] = sorted(p.name for p in tmp.iterdir())  # what --overwrite may replace
        write_atomic(tmp / META, (json.dumps(meta, indent=2) + "\n").encode())
        if out.exists():  # an earlier export, checked above: swap, then drop it
            out.rename(old)
        tmp.rename(out)
    except OSError as exc:
        raise NMTError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out


def read_export(folder: str | Path) -> dict:
    """nmt_export.json of an exported folder, checked; one NMTError if it is not one."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        raise NMTError(
            f"{folder} is not a CTranslate2 export of this project (no readable {META}); "
            "make one with python -m nmt.export"
        ) from None
    if meta.get("format_version") != META_VERSION or not (folder / "model.bin").is_file():
        raise NMTError(f"{folder}: unknown or incomplete export; export the checkpoint again")
    expected = meta.get("tokenizer_sha256")  # exports before it was recorded cannot be checked
    if expected is not None and _sha256_or_none(folder / SPM_FILE) != expected:
        raise NMTError(
            f"{folder / SPM_FILE} is not the tokenizer this model was exported with (its "
            "SHA-256 differs from nmt_export.json's); export the checkpoint again"
        )
    return meta


def _sha256_or_none(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def incomplete_export(path: str | Path) -> NMTError | None:
    """The error for a folder that holds CTranslate2 files but no nmt_export.json (an export
    that was copied or cut short), or None."""
    path = Path(path)
    if path.is_dir() and not (path / META).exists() and (path / "model.bin").exists():
        return NMTError(
            f"{path} holds a CTranslate2 model but no {META}: the export is incomplete (or not "
            "this project's); export the checkpoint again with python -m nmt.export"
        )
    return None


def is_export(path: str | Path) -> bool:
    """Whether path is a folder written by export_ctranslate2."""
    return (Path(path) / META).is_file()


def cached_export(checkpoint: str | Path) -> Path:
    """The CTranslate2 export of a checkpoint in $NMT_CACHE/ctranslate2/<sha256>, made on
    first use (float32; translate.py's --quantization converts on load)."""
    error = incomplete_export(checkpoint)
    if error is not None:
        raise error
    path = checkpoint_file(checkpoint)
    if not path.is_file():
        raise NMTError(f"checkpoint {path} does not exist")
    root = cache_root() / "ctranslate2"
    folder = root / file_sha256(path)[:32]
    if is_export(folder):
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NMTError(
            f"cannot write the export cache {root}: {exc.strerror or exc}; set NMT_CACHE "
            "to a writable folder, or export once with python -m nmt.export"
        ) from None
    log.info("exporting %s to CTranslate2 in %s", path, folder)
    try:
        return export_ctranslate2(path, folder, overwrite=folder.exists())
    except NMTError:
        if is_export(folder):  # another process exported the same checkpoint meanwhile
            return folder
        raise


def build_parser() -> ArgumentParser:
    """python -m nmt.export's flags."""
    p = ArgumentParser(
        prog="python -m nmt.export",
        description="Export a trained checkpoint to a serving engine.",
    )
    p.add_argument("checkpoint", help="run directory (uses its best) or .pt file")
    p.add_argument("--format", required=True, choices=("ctranslate2",), help="serving engine")
    p.add_argument("--out", required=True, help="the folder to write (must not exist)")
    p.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        help="weight type stored (default: float32); int8 is the CPU one",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export at --out")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the export; a user error is one line and exit 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = export_ctranslate2(args.checkpoint, args.out, args.quantization, args.overwrite)
    except NMTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = read_export(out)
    print(
        f"exported {meta['checkpoint']} (step {meta['step']}, {meta['weights']} weights) to "
        f"{out} as CTranslate2 {meta['quantization']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
