"""Typed configuration: frozen dataclasses hold every default (the Multi30k tiny recipe), YAML
files and command-line overrides (nmt.cli) change them, validate() checks every value."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nmt.errors import NMTError
from nmt.objective import smoothing as registry


@dataclass(frozen=True)
class DataConfig:
    """Where the parallel data comes from and how it becomes batches."""

    # Hub id or local folder in Hub layout; None = data/multi30k if present, else the Hub copy.
    dataset: str | None = None
    dataset_config: str | None = None
    train_file: str | None = None
    valid_file: str | None = None
    test_file: str | None = None
    src: str = "en"
    tgt: str = "de"
    train_split: str = "train"
    valid_split: str = "validation"
    test_split: str = "test"
    max_train_pairs: int = 0  # 0 = all; a prefix of the training split for quick runs
    max_valid_pairs: int = 0  # 0 = all; else a prefix of validation (and of test)
    vocab_size: int = 4000
    spm_model_type: str = "unigram"
    character_coverage: float = 1.0
    max_len: int = 256  # tokens per side incl. BOS/EOS; longer training pairs are dropped
    max_tokens: int = 4096  # per batch, counted including padding
    cache_dir: str | None = None  # tokenizer cache; None = $NMT_CACHE or ~/.cache/nmt
    num_proc: int = 0  # processes tokenizing the training split; 0 = auto (from 100k pairs)
    spm_max_sentences: int = 500_000  # SentencePiece trains on a random sample this large


@dataclass(frozen=True)
class ModelConfig:
    """Transformer encoder-decoder sizes."""

    encoder_layers: int = 4
    decoder_layers: int = 4
    d_model: int = 128
    heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.2
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation: str = "relu"
    share_embeddings: bool = True
    tie_output: bool = True
    max_positions: int = 1024


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, validation and where the run is written."""

    smoothing: float = 0.1  # eps; the confidence penalty's beta with that smoothing_type
    smoothing_type: str = registry.DEFAULT  # a convention of nmt.objective.smoothing
    lr: float = 5e-3
    warmup_steps: int = 500
    betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-8
    weight_decay: float = 1e-4
    clip_norm: float = 1.0  # 0 = no clipping (the norm is still logged)
    update_freq: int = 1
    max_steps: int = 0  # 0 = no limit
    max_epochs: int = 100  # with max_steps and max_minutes, the schedule's budget
    patience: int = 10  # validations without a better BLEU before stopping; 0 = off
    valid_every: int = 1000  # updates
    log_every: int = 100  # updates
    seed: int = 1
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False  # torch.compile the model; batch lengths padded to a multiple of 8
    run_dir: str | None = None  # None = runs/<dataset>-<src>-<tgt>-ls<smoothing>
    num_samples: int = 3  # translations written to TensorBoard at each validation
    save_every: int = 0  # also save checkpoint_last.pt every N updates; 0 = at validations only
    keep_last: int = 0  # keep the newest K numbered checkpoint_step<N>.pt files of save_every
    max_skipped: int = 10  # consecutive updates with a non-finite loss/gradient before stopping
    max_minutes: float = 0.0  # stop after the update that ends this wall-clock budget; 0 = none
    schedule: str = "cosine"  # cosine/linear decay to 0 at the budget end, or inverse_sqrt
    ema_decay: float = 0.999  # exponential moving average of the weights; 0 = off


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding used for validation BLEU; translate.py's flags start from its own defaults."""

    beam: int = 1  # greedy validation: fast, and the BLEU curve ranks checkpoints the same way
    length_penalty: float = 1.0  # GNMT alpha: beam ranks logprob / ((5 + len) / 6) ** alpha
    max_len_a: float = 1.2
    max_len_b: int = 10
    max_tokens: int = 8192
    final_beam: int = 5  # the best checkpoint is also scored with this beam; 0 = not


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of one run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (tuples as lists) for YAML and checkpoints."""
        out: dict[str, dict[str, Any]] = {}
        for section in dataclasses.fields(self):
            values = dataclasses.asdict(getattr(self, section.name))
            out[section.name] = {
                k: list(v) if isinstance(v, tuple) else v for k, v in values.items()
            }
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Config:
        """Build from a nested dict on top of the defaults; unknown keys raise NMTError."""
        return apply_overrides(cls(), flatten(values, source), source)


def choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of each enumerated key (the smoothing conventions as registered now)."""
    return {
        "train.device": ("auto", "cpu", "cuda"),
        "train.precision": ("auto", "fp32", "bf16", "fp16"),
        "train.smoothing_type": registry.names(),
        "model.activation": ("relu", "gelu"),
        "train.schedule": ("inverse_sqrt", "cosine", "linear"),
        "data.spm_model_type": ("unigram", "bpe", "char", "word"),
    }


def flatten(values: Any, source: str) -> dict[str, Any]:
    """{'train': {'lr': 1}} -> {'train.lr': 1}; a section that is not a mapping is an error."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise NMTError(f"{source}: expected a mapping of sections (data, model, train, decode)")
    flat: dict[str, Any] = {}
    for section, body in values.items():
        if not isinstance(body, dict):
            raise NMTError(f"{source}: '{section}' must be a mapping of keys, got {body!r}")
        for key, value in body.items():
            flat[f"{section}.{key}"] = value
    return flat


def known_keys() -> list[str]:
    """Every dotted key, e.g. 'train.lr'."""
    return [
        f"{s.name}.{f.name}"
        for s in dataclasses.fields(Config)
        for f in dataclasses.fields(s.default_factory())  # type: ignore[misc]
    ]


def _field_type(key: str) -> Any:
    section, name = key.split(".", 1)
    cls = type(getattr(Config(), section))
    return typing.get_type_hints(cls)[name]


def _parse_scalar(value: Any, tp: Any, key: str, source: str) -> Any:
    def bad(expected: str) -> NMTError:
        return NMTError(f"{source}: '{key}' expects {expected}, got {value!r}")

    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise bad("true or false")
    if tp is int:
        if isinstance(value, bool) or isinstance(value, float):
            raise bad("an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad("an integer") from None
    if tp is float:
        if isinstance(value, bool):
            raise bad("a number")
        try:  # PyYAML reads 5e-4 (no dot) as a string, so text is accepted here
            return float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
    if tp is str:
        if isinstance(value, (dict, list, bool)):
            raise bad("a string")
        return str(value)
    raise bad(str(tp))


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Turn a YAML value or CLI text into the field's type, or raise NMTError naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], key, source)
    if origin is tuple:
        item_types = typing.get_args(tp)
        items = value
        if isinstance(value, str):
            items = [v for v in value.strip("[]()").split(",") if v.strip()]
        if not isinstance(items, (list, tuple)) or len(items) != len(item_types):
            raise NMTError(f"{source}: '{key}' expects {len(item_types)} comma-separated values")
        return tuple(_parse_scalar(v, t, key, source) for v, t in zip(items, item_types))
    return _parse_scalar(value, tp, key, source)


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str) -> Config:
    """Return cfg with dotted-key overrides applied; unknown keys and bad types raise NMTError."""
    keys = known_keys()
    sections: dict[str, dict[str, Any]] = {}
    for raw_key, value in overrides.items():
        key = raw_key.replace("-", "_")
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise NMTError(f"{source}: unknown config key '{raw_key}'{hint}")
        section, name = key.split(".", 1)
        sections.setdefault(section, {})[name] = _coerce(value, _field_type(key), key, source)
    for section, changes in sections.items():
        cfg = dataclasses.replace(
            cfg, **{section: dataclasses.replace(getattr(cfg, section), **changes)}
        )
    return cfg


def format_eps(value: float) -> str:
    """The shortest text that reads back as exactly value: 0.1 -> '0.1', 0 -> '0'.

    Used in run names, so two different eps values never share one ('{:g}' alone would give
    0.1 and 0.1000001 the same name).
    """
    value = value + 0.0  # -0.0 becomes 0.0: one name for one value
    text = f"{value:g}"
    return text if float(text) == value else repr(value)


def _float_fields(cfg: Config):
    """(dotted key, value) of every float in the config, tuple items included."""
    for key, value in flatten(cfg.to_dict(), "config").items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float):
                yield key, item


def _checks(cfg: Config):
    """(ok, key, message) in order; later checks may assume the earlier ones held."""
    # Long by design: one line per rule, read top to bottom; grouping them would hide the order.
    d, m, t, dec = cfg.data, cfg.model, cfg.train, cfg.decode
    convention = registry.get(t.smoothing_type)
    yield 0.0 <= t.smoothing < convention.upper, "train.smoothing", convention.range_text
    yield 0 <= t.seed < 2**32, "train.seed", f"must be in [0, 2^32), got {t.seed}"
    yield d.vocab_size >= 8, "data.vocab_size", "must be at least 8"
    yield 0 < d.character_coverage <= 1, "data.character_coverage", "must be in (0, 1]"
    yield d.max_len >= 3, "data.max_len", "must be at least 3 (BOS, a token, EOS)"
    yield m.max_positions >= 1, "model.max_positions", "must be >= 1"
    yield d.max_len <= m.max_positions, "data.max_len", "must not exceed model.max_positions"
    yield (
        d.max_tokens >= d.max_len,
        "data.max_tokens",
        f"must be at least data.max_len ({d.max_len}) so that the longest pair fits a batch",
    )
    yield d.src != d.tgt, "data.tgt", "must differ from data.src"
    for name in ("src", "tgt", "train_split", "valid_split", "test_split"):
        yield bool(getattr(d, name).strip()), f"data.{name}", "must not be empty"
    yield (
        d.train_split not in (d.valid_split, d.test_split),
        "data.train_split",
        (
            "must differ from data.valid_split and data.test_split (scores on training data mean "
            "nothing)"
        ),
    )
    yield (
        min(d.max_train_pairs, d.max_valid_pairs) >= 0,
        "data.max_train_pairs",
        ("pair limits must be >= 0 (0 = all)"),
    )
    for name in ("encoder_layers", "decoder_layers", "d_model", "heads", "ffn_dim"):
        yield getattr(m, name) >= 1, f"model.{name}", f"must be >= 1, got {getattr(m, name)}"
    yield m.d_model % m.heads == 0, "model.d_model", f"must be divisible by model.heads ({m.heads})"
    for name in ("dropout", "attention_dropout", "activation_dropout"):
        yield 0 <= getattr(m, name) < 1, f"model.{name}", "must be in [0, 1)"
    yield t.lr > 0, "train.lr", "must be positive"
    yield all(0 <= b < 1 for b in t.betas), "train.betas", "must both be in [0, 1)"
    yield t.adam_eps > 0, "train.adam_eps", "must be positive"
    yield t.weight_decay >= 0, "train.weight_decay", "must be >= 0"
    yield t.clip_norm >= 0, "train.clip_norm", "must be >= 0 (0 = no clipping)"
    yield t.warmup_steps >= 0, "train.warmup_steps", "must be >= 0"
    yield t.update_freq >= 1, "train.update_freq", "must be >= 1"
    yield d.num_proc >= 0, "data.num_proc", "must be >= 0 (0 = auto)"
    yield d.spm_max_sentences >= 0, "data.spm_max_sentences", "must be >= 0 (0 = all)"
    yield t.max_steps >= 0, "train.max_steps", "must be >= 0 (0 = no limit)"
    yield t.max_epochs >= 1, "train.max_epochs", "must be >= 1"
    yield t.patience >= 0, "train.patience", "must be >= 0 (0 = off)"
    yield t.valid_every >= 1, "train.valid_every", "must be >= 1"
    yield t.log_every >= 1, "train.log_every", "must be >= 1"
    yield t.num_samples >= 0, "train.num_samples", "must be >= 0"
    yield t.save_every >= 0, "train.save_every", "must be >= 0 (0 = at validations only)"
    yield t.keep_last >= 0, "train.keep_last", "must be >= 0"
    yield t.max_skipped >= 1, "train.max_skipped", "must be >= 1"
    yield t.max_minutes >= 0, "train.max_minutes", "must be >= 0 (0 = no time limit)"
    yield 0 <= t.ema_decay < 1, "train.ema_decay", "must be in [0, 1) (0 = off)"
    yield dec.beam >= 1, "decode.beam", "must be >= 1"
    yield dec.length_penalty >= 0, "decode.length_penalty", "must be >= 0"
    yield dec.max_len_a >= 0, "decode.max_len_a", "must be >= 0"
    yield dec.max_len_b >= 0, "decode.max_len_b", "must be >= 0"
    yield (
        dec.max_len_a > 0 or dec.max_len_b >= 1,
        "decode.max_len_b",
        ("must be >= 1 when decode.max_len_a is 0 (no room for any output)"),
    )
    yield dec.max_tokens >= 1, "decode.max_tokens", "must be >= 1"
    yield dec.final_beam >= 0, "decode.final_beam", "must be >= 0 (0 = greedy scores only)"


def validate(cfg: Config) -> Config:
    """Check ranges and combinations that types alone cannot; raise NMTError naming the key."""
    flat = flatten(cfg.to_dict(), "config")
    for key, allowed in choices().items():
        if flat[key] not in allowed:
            raise NMTError(f"'{key}' must be one of {', '.join(allowed)}, got {flat[key]!r}")
    for key, value in _float_fields(cfg):
        if not math.isfinite(value):
            raise NMTError(f"'{key}' must be a finite number, got {value}")
    for ok, key, message in _checks(cfg):
        if not ok:
            raise NMTError(f"'{key}' {message}")
    return cfg


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; a missing or unparsable file raises NMTError."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise NMTError(f"config file {path} {what}; pass --config with a file from configs/")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise NMTError(
            f"config file {path} is not valid YAML{where}; fix it or start from configs/"
        ) from None
