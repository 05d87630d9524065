"""Typed configuration: frozen dataclasses hold every default (the Multi30k tiny recipe), YAML
files and command-line overrides (nmt.cli) change them, nmt.config_checks.validate() checks them."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from nmt.config_yaml import load_yaml as load_yaml  # re-exported: where callers look for it
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
    dropout_masks: str = "bernoulli"  # bernoulli (nn.Dropout) or uniform (rand < 1 - p, cheaper)
    activation: str = "relu"
    share_embeddings: bool = True
    tie_output: bool = True
    max_positions: int = 1024


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, validation and where the run is written."""

    smoothing: float = 0.1  # eps, the strength of the smoothing_type convention
    smoothing_type: str = registry.DEFAULT  # a convention of nmt.objective.smoothing
    # eps schedule: from smoothing_start to smoothing over the first smoothing_ramp updates
    smoothing_ramp: int = 0  # 0 = eps from the first update
    smoothing_start: float = 0.0
    smoothing_ramp_shape: str = "linear"  # or cosine
    smoothing_prior: str | None = None  # prior: 'piece<TAB>weight' lines
    smoothing_prior_sha256: str | None = None  # resolved from smoothing_prior, recorded
    masked_form: str = "uniform"  # masked: eps/|M| over M (uniform) or Chen et al.'s (chen)
    graduated_bounds: tuple[float, float] = (0.3, 0.7)  # graduated: p below / above these
    graduated_factors: tuple[float, float] = (0.0, 3.0)  # ... get these multiples of eps
    graduated_reference: str | None = None  # graduated: p from this frozen checkpoint instead
    graduated_reference_sha256: str | None = None  # resolved from graduated_reference, recorded
    # token-level distillation: (1 - kd_alpha) * CE + kd_alpha * T^2 * KL from this checkpoint
    teacher: str | None = None  # a finished run's checkpoint (or directory); its tokenizer too
    teacher_sha256: str | None = None  # resolved from teacher, recorded
    teacher_label: str | None = None  # the teacher's objective, resolved from it, recorded
    kd_alpha: float = 0.5
    kd_temperature: float = 1.0
    # sequence-level distillation: the teacher that translated the training data, read from
    # the dataset folder's distillation.yaml (python -m nmt.distill), recorded
    data_teacher_sha256: str | None = None
    data_teacher_label: str | None = None
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
    # fast: on the CPU the math attention path and the loss's kept softmax (equal to rounding);
    # reference: the arithmetic of runs before 2026-12; auto = fast. Recorded resolved.
    kernels: str = "auto"
    run_dir: str | None = None  # None = runs/<dataset>-<src>-<tgt>-ls<eps>[-<convention>]
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


def config_sections(values: Any) -> Any:
    """A run's saved config.yaml without what it records beside the config (data_files)."""
    if not isinstance(values, dict):
        return values
    return {k: v for k, v in values.items() if k != "data_files"}


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
