"""The four sentences the study's answer gains from the analyses: smoothing against a fitted
temperature; beam size and length bias (and what rectification recovers); generated-token
calibration against teacher-forced; cluster tightness against eps."""

from __future__ import annotations

from nmt.study.analyses.tables import curve_value, groups, stat


def _mean(ms: list[dict], *path) -> float | None:
    return stat(ms, *path)["mean"]


def _num(value: float | None, spec: str = "{:.2f}") -> str:
    return "–" if value is None else spec.format(value)


def _joined(parts: list[str]) -> str:
    return "; ".join(parts)


def _at(ms: list[dict], part: str, beam: int, alpha: float, key: str = "bleu") -> float | None:
    """The seeds' mean of one metric of a curve at (beam, alpha)."""
    return _mean(ms, curve_value(part, beam, alpha, key))


def temperature_sentence(grouped) -> str | None:
    """Whether a fitted temperature gives an unsmoothed model what smoothing gives it."""
    rows = [(label, ms) for label, ms in grouped if _mean(ms, "temperature", "fitted")]
    if not rows:
        return None
    parts = [
        f"{label}: T {_num(_mean(ms, 'temperature', 'fitted'), '{:.2f}')}, test ECE "
        f"{_num(_mean(ms, 'temperature', 'test', 'before', 'ece'), '{:.4f}')} → "
        f"{_num(_mean(ms, 'temperature', 'test', 'after', 'ece'), '{:.4f}')}, beam-5 BLEU "
        f"{_num(_at(ms, 'beams', 5, 1.0))} → {_num(_at(ms, 'temperature', 5, 1.0))}, beam-50 "
        f"{_num(_at(ms, 'beams', 50, 1.0))} → {_num(_at(ms, 'temperature', 50, 1.0))}"
        for label, ms in rows
    ]
    intro = "Smoothing against a temperature fitted on validation (means over seeds)"
    return f"{intro}: {_joined(parts)}."


def beam_sentence(grouped) -> str | None:
    """How BLEU and length move from beam 5 to the widest beam, and what rectification does."""
    widest = max((r["beam"] for _, ms in grouped for m in ms
                  for r in (m.get("beams") or {}).get("rows", [])), default=None)  # fmt: skip
    if widest is None:
        return None
    parts = []
    for label, ms in grouped:
        ratio = [_num(_at(ms, "beams", b, 0.0, "length_ratio"), "{:.3f}") for b in (5, widest)]
        text = (
            f"{label}: BLEU (lp 0) {_num(_at(ms, 'beams', 5, 0.0))} at beam 5 → "
            f"{_num(_at(ms, 'beams', widest, 0.0))} at beam {widest}, length ratio "
            f"{ratio[0]} → {ratio[1]}"
        )
        rect = _at(ms, "rectified", widest, 0.0)
        if rect is not None:
            text += (
                f", rectified {_num(rect)} (lp 1: {_num(_at(ms, 'rectified', widest, 1.0))} "
                f"against {_num(_at(ms, 'beams', widest, 1.0))})"
            )
        parts.append(text)
    return f"Beam size and length bias: {_joined(parts)}."


def generated_sentence(grouped) -> str | None:
    """Generated-token calibration next to teacher-forced calibration."""
    rows = [(label, ms) for label, ms in grouped if _mean(ms, "generated", "generated", "ece")]
    if not rows:
        return None
    parts = []
    for label, ms in rows:
        tf_conf = _mean(ms, "temperature", "test", "before", "confidence")
        tf_acc = _mean(ms, "temperature", "test", "before", "accuracy")
        tf = None if tf_conf is None or tf_acc is None else tf_conf - tf_acc
        gen = ("generated", "generated")
        parts.append(
            f"{label}: ECE {_num(_mean(ms, *gen, 'ece'), '{:.4f}')} (confidence − accuracy "
            f"{_num(_mean(ms, *gen, 'overconfidence'), '{:+.3f}')}) generated against "
            f"{_num(_mean(ms, 'temperature', 'test', 'before', 'ece'), '{:.4f}')} "
            f"({_num(tf, '{:+.3f}')}) teacher-forced"
        )
    return f"Calibration of generated tokens: {_joined(parts)}."


def tightness_sentence(grouped) -> str | None:
    """Cluster tightness (lower: tighter) against eps."""
    rows = [(label, ms) for label, ms in grouped if _mean(ms, "representations", "tightness")]
    if not rows:
        return None
    parts = [f"{label} {_num(_mean(ms, 'representations', 'tightness'), '{:.3f}')}"
             for label, ms in rows]  # fmt: skip
    return (
        "Representations: cluster tightness (within-piece over between-piece distance, lower "
        f"is tighter) {_joined(parts)}."
    )


def answers(analyses: list[dict]) -> list[str]:
    """The four sentences, those the analyses have numbers for."""
    grouped = groups(analyses)
    found = (temperature_sentence(grouped), beam_sentence(grouped),
             generated_sentence(grouped), tightness_sentence(grouped))  # fmt: skip
    return [s for s in found if s]
