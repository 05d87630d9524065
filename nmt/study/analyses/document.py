"""The analyses as report blocks (nmt.study.report_render): four sections with their tables
and figures, the four answers the report opens with, and python -m nmt.analyze's analysis.md."""

from __future__ import annotations

from pathlib import Path

from nmt.errors import NMTError
from nmt.study.analyses.plots import plot_analyses
from nmt.study.analyses.prose import answers
from nmt.study.analyses.tables import curve_value, fmt, groups, read_analysis, stat
from nmt.study.report_render import render_markdown

LIANG = (
    "Liang, Wang and Cao (2022) report rectification gains of up to +0.3 BLEU at beam 4 and "
    "+2.8 at beam 200 on WMT"
)


def _temperature(grouped) -> list:
    header = ["objective", "seeds", "fitted T", "test NLL T=1", "test NLL fitted",
              "test ECE T=1", "test ECE fitted", "BLEU b5 T=1", "BLEU b5 fitted",
              "BLEU b50 T=1", "BLEU b50 fitted"]  # fmt: skip
    body = []
    for label, ms in grouped:
        body.append([
            label, str(len(ms)), fmt(stat(ms, "temperature", "fitted"), "{:.3f}"),
            fmt(stat(ms, "temperature", "test", "before", "nll_loss"), "{:.3f}"),
            fmt(stat(ms, "temperature", "test", "after", "nll_loss"), "{:.3f}"),
            fmt(stat(ms, "temperature", "test", "before", "ece"), "{:.4f}"),
            fmt(stat(ms, "temperature", "test", "after", "ece"), "{:.4f}"),
            fmt(stat(ms, curve_value("beams", 5, 1.0, "bleu"))),
            fmt(stat(ms, curve_value("temperature", 5, 1.0, "bleu"))),
            fmt(stat(ms, curve_value("beams", 50, 1.0, "bleu"))),
            fmt(stat(ms, curve_value("temperature", 50, 1.0, "bleu"))),
        ])  # fmt: skip
    return [("h", 3, "Temperature scaling"), ("table", header, body)]


def _beams(grouped) -> list:
    header = ["objective", "beam", "BLEU lp 0", "BLEU lp 1", "length ratio lp 0",
              "length ratio lp 1", "short lp 0", "rectified BLEU lp 0", "rectified BLEU lp 1",
              "rectified length ratio lp 0"]  # fmt: skip
    beams = sorted({r["beam"] for _, ms in grouped for m in ms
                    for r in (m.get("beams") or {}).get("rows", [])})  # fmt: skip
    body = []
    for label, ms in grouped:
        for beam in beams:
            cells = [label, str(beam)]
            for part, alpha, key, spec in (
                ("beams", 0.0, "bleu", "{:.2f}"), ("beams", 1.0, "bleu", "{:.2f}"),
                ("beams", 0.0, "length_ratio", "{:.3f}"), ("beams", 1.0, "length_ratio", "{:.3f}"),
                ("beams", 0.0, "short_share", "{:.1%}"), ("rectified", 0.0, "bleu", "{:.2f}"),
                ("rectified", 1.0, "bleu", "{:.2f}"), ("rectified", 0.0, "length_ratio", "{:.3f}"),
            ):  # fmt: skip
                cells.append(fmt(stat(ms, curve_value(part, beam, alpha, key)), spec))
            body.append(cells)
    return [("h", 3, "Beam size, length and rectification"), ("table", header, body)]


def _generated(grouped) -> list:
    header = [
        "objective",
        "generated ECE",
        "generated conf − acc",
        "generated accuracy",
        "teacher-forced ECE",
        "teacher-forced conf − acc",
        "generated ECE, fitted T",
    ]
    tf = ("temperature", "test", "before")

    def over(m: dict) -> float | None:  # teacher-forced confidence - accuracy
        conf, acc = stat([m], *tf, "confidence")["mean"], stat([m], *tf, "accuracy")["mean"]
        return None if conf is None or acc is None else conf - acc

    body = []
    for label, ms in grouped:
        body.append([
            label, fmt(stat(ms, "generated", "generated", "ece"), "{:.4f}"),
            fmt(stat(ms, "generated", "generated", "overconfidence"), "{:.4f}", signed=True),
            fmt(stat(ms, "generated", "generated", "accuracy"), "{:.4f}"),
            fmt(stat(ms, *tf, "ece"), "{:.4f}"),
            fmt(stat(ms, over), "{:.4f}", signed=True),
            fmt(stat(ms, "generated", "generated_fitted", "ece"), "{:.4f}"),
        ])  # fmt: skip
    return [("h", 3, "Calibration of generated tokens"), ("table", header, body)]


def _representations(grouped) -> list:
    header = ["objective", "seeds", "tightness", "tightness in the plane", "positions per piece"]
    body = []
    for label, ms in grouped:
        counts = (ms[0].get("representations") or {}).get("counts")
        body.append([label, str(len(ms)),
                     fmt(stat(ms, "representations", "tightness"), "{:.3f}"),
                     fmt(stat(ms, "representations", "tightness_plane"), "{:.3f}"),
                     "/".join(map(str, counts)) if counts else "–"])  # fmt: skip
    return [("h", 3, "Representations"), ("table", header, body)]


def method_notes(analyses: list[dict]) -> str:
    """How the analyses measured what they did, from their own records."""
    first = {part: next((a[part] for a in analyses if a.get(part)), {}) for part in
             ("temperature", "generated", "representations")}  # fmt: skip
    pieces = ", ".join(first["representations"].get("pieces", [])) or "–"
    return (
        "All on the test split with each run's best checkpoint. Temperature: "
        f"{first['temperature'].get('method', '–')}; NLL and ECE teacher-forced. Beam curves: "
        "cased sacreBLEU; length ratio = sacreBLEU's hypothesis/reference length; short = share "
        "of outputs with fewer than half their reference's words; lp: GNMT length penalty "
        "alpha; beam 1 is greedy. Rectified: p = max(q - prior, 0) / (1 - eps), renormalised, "
        f"before search; {LIANG}. Generated tokens: beam {first['generated'].get('beam', '–')} "
        f"output; {first['generated'].get('alignment', '–')}; confidence = the probability of "
        f"the generated piece. Representations: pieces {pieces}; tightness = "
        f"{first['representations'].get('measure', '–')}; the plane is the one through the "
        "three pieces' output-embedding rows (Müller et al., 2019)."
    )


def analysis_blocks(analyses: list[dict], out_dir: Path) -> list:
    """The four sections (tables, then the figures drawn into out_dir), or [] without any."""
    if not analyses:
        return []
    grouped = groups(analyses)
    doc: list = [("h", 2, "At inference"), ("p", method_notes(analyses))]
    doc += _temperature(grouped) + _beams(grouped) + _generated(grouped)
    doc += _representations(grouped)
    for name, caption in plot_analyses(grouped, out_dir):
        doc.append(("img", name, caption))
    return doc


def write_analysis(folders: list[Path], out: Path, command: str) -> Path:
    """DIR/analysis.md with the answers, the sections and their figures across the runs."""
    analyses = [a for a in (read_analysis(f) for f in folders) if a]
    try:
        out.mkdir(parents=True, exist_ok=True)
        doc = [("h", 1, "What label smoothing does at inference"), ("p", " ".join(answers(
            analyses)))] + analysis_blocks(analyses, out)  # fmt: skip
        doc += [("p", "The command that wrote this page:"), ("code", command)]
        path = out / "analysis.md"
        tmp = out / ".analysis.md.tmp"
        tmp.write_text(render_markdown(doc), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise NMTError(f"cannot write into --out {out}: {exc.strerror or exc}") from None
    return path
