"""python -m nmt.distill --teacher RUN --out DIR: sequence-level knowledge distillation's data
(Kim and Rush, 2016).

Translates the training split's source side with the teacher (beam 5 by default, the teacher's
own length penalty and limits) and writes DIR as a dataset folder train.py reads: train.jsonl
holds {src: the original source, tgt: the teacher's translation} per line, the validation and
test files are copied unchanged (their references stay human), and distillation.yaml records
the teacher's SHA-256, its objective, the search, every file's origin and SHA-256, and the time
it took. Then: python train.py --dataset DIR --src SRC --tgt TGT ...

The folder is written beside DIR under a temporary name and renamed when complete, so DIR is
either the whole dataset or absent; an existing DIR is never replaced.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import yaml

from nmt.errors import ArgumentParser, NMTError, run_module

log = logging.getLogger("nmt.distill")
MANIFEST = "distillation.yaml"  # not a data suffix: the folder's loader never reads it


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m nmt.distill", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="the teacher's run folder or checkpoint")
    p.add_argument("--out", required=True, help="the dataset folder to create (must not exist)")
    p.add_argument("--dataset", help="data to distil (default: the teacher's own)")
    p.add_argument("--beam", type=int, default=5, help="the teacher's beam size (default 5)")
    p.add_argument("--max-tokens", type=int, default=8192, help="decoder positions per batch")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    return p


def _check(args) -> Path:
    for name in ("beam", "max_tokens"):
        if getattr(args, name) < 1:
            raise NMTError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    out = Path(args.out)
    if out.exists() or out.is_symlink():
        raise NMTError(f"--out {out} already exists; name a new folder (nothing is replaced)")
    if not out.parent.is_dir():
        raise NMTError(f"--out {out}: its parent folder {out.parent} does not exist")
    return out


def _local_files(dd, split: str) -> list[Path] | None:
    """The local files a split was read from (None when it came from the Hub)."""
    files = [Path(f) for f in getattr(dd, "files", {}).get(split, [])]
    return files if files and all(f.is_file() for f in files) else None


def _write_split(dd, split: str, folder: Path, cfg) -> list[dict]:
    """Copy a split's local files unchanged into folder (a Hub split is written as jsonl of its
    pairs); their origins for the manifest."""
    from nmt.data.dataset import read_split
    from nmt.files import file_sha256

    files = _local_files(dd, split)
    if files is None:
        src, tgt = read_split(dd, split, cfg)
        target = folder / f"{split}.jsonl"
        lines = (json.dumps({cfg.src: s, cfg.tgt: t}, ensure_ascii=False) for s, t in zip(src, tgt))
        target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return [{"split": split, "from": "the Hub", "file": target.name}]
    names = [f.name for f in files]
    if len(set(names)) != len(names) or any(n.startswith("train") for n in names):
        raise NMTError(
            f"the {split} split's files {', '.join(names)} cannot be copied under their own "
            "names into one folder; give --dataset a plain folder"
        )
    out = []
    for path in files:
        shutil.copyfile(path, folder / path.name)
        out.append({"split": split, "from": str(path), "file": path.name,
                    "sha256": file_sha256(path)})  # fmt: skip
    return out


def _translate(args) -> tuple:
    """(data config, the dataset, sources, the teacher's translations, manifest fields)."""
    from nmt.data.dataset import load_dataset_dict, read_split
    from nmt.decode.search import decode_corpus
    from nmt.decode.textio import encode_sources
    from nmt.files import file_sha256
    from nmt.objective.smoothing import Smoothing
    from nmt.train.checkpoint import checkpoint_file, load_for_inference
    from nmt.train.precision import AMP_DTYPES, resolve_device, resolve_precision

    path = checkpoint_file(args.teacher)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    model, tok, cfg, _ = load_for_inference(path, device)
    data = cfg.data
    if args.dataset is not None:
        files = dict(train_file=None, valid_file=None, test_file=None)
        data = dataclasses.replace(data, dataset=args.dataset, **files)
    dd = load_dataset_dict(data)
    src, _ = read_split(dd, data.train_split, data)
    search = dataclasses.replace(cfg.decode, beam=args.beam, max_tokens=args.max_tokens)
    started = time.monotonic()
    ids = encode_sources(tok, src, min(data.max_len, cfg.model.max_positions))
    found = decode_corpus(model, ids, search, device=device, progress=True,
                          amp_dtype=AMP_DTYPES[precision])  # fmt: skip
    hyps = tok.decode([h[0].tokens for h in found])
    manifest = {
        "teacher": str(path), "teacher_sha256": file_sha256(path),
        "teacher_label": Smoothing.of(cfg.train).short, "src": data.src, "tgt": data.tgt,
        "beam": search.beam, "length_penalty": search.length_penalty, "train_pairs": len(src),
        "empty_outputs": sum(not h.strip() for h in hyps),  # train.py skips these pairs
        "train_from": [str(f) for f in getattr(dd, "files", {}).get(data.train_split, [])],
        "device": str(device), "precision": precision,
        "decode_minutes": round((time.monotonic() - started) / 60, 2),
    }  # fmt: skip
    return data, dd, src, hyps, manifest


def distil(args, command: str) -> Path:
    """Translate the training source with the teacher and write the dataset folder."""
    out = _check(args)
    data, dd, src, hyps, manifest = _translate(args)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        rows = (json.dumps({data.src: s, data.tgt: h}, ensure_ascii=False) + "\n"
                for s, h in zip(src, hyps))  # fmt: skip
        (tmp / "train.jsonl").write_text("".join(rows), encoding="utf-8")
        manifest["copied"] = [c for split in (data.valid_split, data.test_split) if split in dd
                              for c in _write_split(dd, split, tmp, data)]  # fmt: skip
        manifest["command"] = command
        (tmp / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        tmp.rename(out)
    except OSError as exc:
        raise NMTError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%d training pairs translated by the teacher in %.1f minutes", len(src),
             manifest["decode_minutes"])  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    def work(args, command: str) -> str:
        out = distil(args, command)
        return f"wrote {out}: train with python train.py --dataset {out}"

    return run_module("nmt.distill", build_parser(), work, argv)
