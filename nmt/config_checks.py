"""Checking a resolved Config: the allowed values of enumerated keys, finite floats, ranges
and combinations that types alone cannot express; each failure is one NMTError naming the key."""

from __future__ import annotations

import itertools
import math
from typing import Any

from nmt.config import Config, flatten
from nmt.errors import NMTError
from nmt.objective import smoothing as registry


def choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of each enumerated key (the smoothing conventions as registered now)."""
    return {
        "train.device": ("auto", "cpu", "cuda"),
        "train.precision": ("auto", "fp32", "bf16", "fp16"),
        "train.smoothing_type": registry.names(),
        "model.activation": ("relu", "gelu"),
        "model.dropout_masks": ("bernoulli", "uniform"),
        "train.kernels": ("auto", "fast", "reference"),
        "train.smoothing_ramp_shape": ("linear", "cosine"),
        "train.masked_form": ("uniform", "chen"),
        "train.schedule": ("inverse_sqrt", "cosine", "linear"),
        "data.spm_model_type": ("unigram", "bpe", "char", "word"),
    }


def _float_fields(cfg: Config):
    """(dotted key, value) of every float in the config, tuple items included."""
    for key, value in flatten(cfg.to_dict(), "config").items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float):
                yield key, item


def _checks(cfg: Config):
    """(ok, key, message) in order; later checks may assume the earlier ones held."""
    d, m, t = cfg.data, cfg.model, cfg.train
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


def _decode_checks(dec):
    """(ok, key, message) for the decoding section."""
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


def _smoothing_checks(t):
    """(ok, key, message) for the smoothing convention's parameters and the eps schedule."""
    convention = registry.get(t.smoothing_type)
    yield t.smoothing_ramp >= 0, "train.smoothing_ramp", "must be >= 0 (0 = no eps schedule)"
    yield (
        0.0 <= t.smoothing_start < convention.upper,
        "train.smoothing_start",
        f"{convention.range_text} (the eps the schedule starts from)",
    )
    is_prior = t.smoothing_type == "prior"
    yield (
        not is_prior or bool(t.smoothing_prior),
        "train.smoothing_prior",
        "must name a file of 'piece<TAB>weight' lines for --smoothing-type prior",
    )
    yield (
        is_prior or t.smoothing_prior is None,
        "train.smoothing_prior",
        "is read by --smoothing-type prior only; drop it or pass --smoothing-type prior",
    )
    yield (
        t.smoothing_type == "graduated" or t.graduated_reference is None,
        "train.graduated_reference",
        "is read by --smoothing-type graduated only; drop it or pass --smoothing-type graduated",
    )
    low, high = t.graduated_bounds
    yield (
        0.0 <= low < high <= 1.0,
        "train.graduated_bounds",
        f"must be two probabilities in increasing order, e.g. 0.3,0.7; got {low:g},{high:g}",
    )
    top = t.smoothing * max(1.0, *t.graduated_factors)
    yield (
        min(t.graduated_factors) >= 0 and (t.smoothing_type != "graduated" or top < 1.0),
        "train.graduated_factors",
        f"must be >= 0 with every per-token eps (eps x factor) below 1; got "
        f"{t.graduated_factors[0]:g},{t.graduated_factors[1]:g} at eps {t.smoothing:g}",
    )


def _distill_checks(t):
    """(ok, key, message) for token-level distillation's keys."""
    yield 0.0 <= t.kd_alpha <= 1.0, "train.kd_alpha", f"must be in [0, 1], got {t.kd_alpha:g}"
    yield t.kd_temperature > 0, "train.kd_temperature", f"must be > 0, got {t.kd_temperature:g}"
    for key, default in (("kd_alpha", 0.5), ("kd_temperature", 1.0)):
        yield (
            bool(t.teacher) or getattr(t, key) == default,
            f"train.{key}",
            "is read with --train.teacher only; name the teacher checkpoint or drop it",
        )


def validate(cfg: Config) -> Config:
    """Check ranges and combinations that types alone cannot; raise NMTError naming the key."""
    flat = flatten(cfg.to_dict(), "config")
    for key, allowed in choices().items():
        if flat[key] not in allowed:
            raise NMTError(f"'{key}' must be one of {', '.join(allowed)}, got {flat[key]!r}")
    for key, value in _float_fields(cfg):
        if not math.isfinite(value):
            raise NMTError(f"'{key}' must be a finite number, got {value}")
    checks = (_checks(cfg), _decode_checks(cfg.decode), _smoothing_checks(cfg.train),
              _distill_checks(cfg.train))  # fmt: skip
    for ok, key, message in itertools.chain(*checks):
        if not ok:
            raise NMTError(f"'{key}' {message}")
    return cfg


# What a run may change when it is resumed (its budget and bookkeeping), and what two
# checkpoints of one run may differ in: nothing else changes what the weights mean.
BOOKKEEPING = (
    "train.max_steps",
    "train.max_epochs",
    "train.max_minutes",
    "train.patience",
    "train.valid_every",
    "train.save_every",
    "train.keep_last",
    "train.log_every",
    "train.num_samples",
    "train.max_skipped",
    "train.device",
    "train.precision",
    "train.compile",
    "train.kernels",
    "train.run_dir",
    "data.num_proc",
    "data.cache_dir",
)


def run_identity_changes(old: dict, new: dict) -> list[str]:
    """The dotted keys (outside BOOKKEEPING) whose values differ between two config dicts; a key
    only one of them has (added to the config since the other was written) is no change."""
    a, b = flatten(old, "config"), flatten(new, "config")
    return sorted(k for k in a.keys() & b.keys() if k not in BOOKKEEPING and a[k] != b[k])


def bookkeeping_changes(old: dict, new: dict) -> list[dict[str, Any]]:
    """[{"key", "from", "to"}] for the BOOKKEEPING keys whose values differ."""
    a, b = flatten(old, "config"), flatten(new, "config")
    keys = [k for k in BOOKKEEPING if k in a and k in b and a[k] != b[k]]
    return [{"key": k, "from": a[k], "to": b[k]} for k in keys]
