"""What a run's objective adds to its name besides the smoothing convention: exact numbers for
run names, and token-level distillation's parameters (the teacher, its objective, alpha and
the temperature), which Smoothing.of reads from a TrainConfig with a teacher."""

from __future__ import annotations

from typing import Any

# The spec keys of distillation: token-level (TrainConfig teacher_sha256, teacher_label,
# kd_alpha, kd_temperature) and sequence-level (data_teacher_sha256, data_teacher_label: the
# teacher that translated the training data, from the dataset folder's distillation.yaml).
KD_KEYS = (
    "teacher_sha256",
    "teacher_label",
    "kd_alpha",
    "kd_temperature",
    "data_teacher_sha256",
    "data_teacher_label",
)


def exact(value: float) -> str:
    """The shortest text that reads back as exactly value (run names never merge two)."""
    text = f"{value + 0.0:g}"
    return text if float(text) == value else repr(value + 0.0)


def plain(value: Any) -> Any:
    """A config value as results.json and labels keep it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def kd_params(train) -> dict[str, Any]:
    """The distillation keys of a TrainConfig with a teacher or distilled data ({} without)."""
    out: dict[str, Any] = {}
    if getattr(train, "data_teacher_sha256", None):
        out.update(data_teacher_sha256=train.data_teacher_sha256,
                   data_teacher_label=train.data_teacher_label)  # fmt: skip
    if getattr(train, "teacher", None):
        out.update(teacher_sha256=train.teacher_sha256, teacher_label=train.teacher_label)
        out.update(kd_alpha=float(train.kd_alpha), kd_temperature=float(train.kd_temperature))
    return out


def kd_label(params: dict) -> str:
    """What the label adds for a distilled run: ' + KD from eps 0.1 (alpha 0.5, T 1,
    teacher 1a2b3c4d)', ' + seq-KD from eps 0 (teacher 5e6f7a8b)', or ''."""
    text = ""
    if "data_teacher_sha256" in params:
        text += (f" + seq-KD from {params.get('data_teacher_label')} (teacher "
                 f"{str(params['data_teacher_sha256'])[:8]})")  # fmt: skip
    if "teacher_sha256" in params:
        text += (
            f" + KD from {params.get('teacher_label')} (alpha {params['kd_alpha']:g}, T "
            f"{params['kd_temperature']:g}, teacher {str(params['teacher_sha256'])[:8]})"
        )
    return text


def kd_suffix(params: dict) -> str:
    """What a distilled run's name adds: '-seqkd-t5e6f7a8b', '-kd0.5-T1-t1a2b3c4d', or ''."""
    text = ""
    if "data_teacher_sha256" in params:
        text += f"-seqkd-t{str(params['data_teacher_sha256'])[:8]}"
    if "teacher_sha256" in params:
        alpha, temp = exact(params["kd_alpha"]), exact(params["kd_temperature"])
        text += f"-kd{alpha}-T{temp}-t{str(params['teacher_sha256'])[:8]}"
    return text
