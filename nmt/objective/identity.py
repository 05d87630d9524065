"""What a run's objective adds to its name besides the smoothing convention: exact numbers for
run names, and token-level distillation's parameters (the teacher, its objective, alpha and
the temperature), which Smoothing.of reads from a TrainConfig with a teacher."""

from __future__ import annotations

from typing import Any

# The spec keys of token-level distillation (TrainConfig teacher_sha256, teacher_label,
# kd_alpha, kd_temperature); a run without a teacher has none of them.
KD_KEYS = ("teacher_sha256", "teacher_label", "kd_alpha", "kd_temperature")


def exact(value: float) -> str:
    """The shortest text that reads back as exactly value (run names never merge two)."""
    text = f"{value + 0.0:g}"
    return text if float(text) == value else repr(value + 0.0)


def plain(value: Any) -> Any:
    """A config value as results.json and labels keep it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def kd_params(train) -> dict[str, Any]:
    """The distillation keys of a TrainConfig with a teacher ({} without one)."""
    if not getattr(train, "teacher", None):
        return {}
    return {
        "teacher_sha256": train.teacher_sha256,
        "teacher_label": train.teacher_label,
        "kd_alpha": float(train.kd_alpha),
        "kd_temperature": float(train.kd_temperature),
    }


def kd_label(params: dict) -> str:
    """What the label adds for a distilled run: ' + KD from eps 0.1 (alpha 0.5, T 1,
    teacher 1a2b3c4d)', or ''."""
    if "teacher_sha256" not in params:
        return ""
    return (
        f" + KD from {params.get('teacher_label')} (alpha {params['kd_alpha']:g}, T "
        f"{params['kd_temperature']:g}, teacher {str(params['teacher_sha256'])[:8]})"
    )


def kd_suffix(params: dict) -> str:
    """What a distilled run's name adds: '-kd0.5-T1-t1a2b3c4d', or ''."""
    if "teacher_sha256" not in params:
        return ""
    alpha, temp = exact(params["kd_alpha"]), exact(params["kd_temperature"])
    return f"-kd{alpha}-T{temp}-t{str(params['teacher_sha256'])[:8]}"
