"""The analyses' figures (matplotlib, no display): beam-size curves, reliability of generated
tokens, and Müller et al.'s projections."""

from __future__ import annotations

from pathlib import Path

from nmt.study.analyses.tables import curve_value, stat

CAPTIONS = {
    "analysis_beams.png": "Test BLEU (top) and length ratio (bottom) against beam size, length "
    "penalty 0 (left) and 1 (right): one line per objective (mean over seeds, band: standard "
    "deviation), dashed: rectified smoothing (Liang et al., 2022)",
    "analysis_generated.png": "Reliability of generated pieces (solid) and of teacher-forced "
    "reference tokens (dashed), seeds pooled, 15 bins; the diagonal is perfect calibration",
    "analysis_representations.png": "Decoder final hidden states at the three pieces' reference "
    "positions, projected onto the plane through their output-embedding rows (stars), one "
    "panel per objective (its first seed; Müller et al., 2019, Figure 1)",
}


def _beam_figure(plt, grouped):
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    beams = sorted({r["beam"] for _, ms in grouped for m in ms
                    for r in (m.get("beams") or {}).get("rows", [])})  # fmt: skip
    for col, alpha in enumerate((0.0, 1.0)):
        for row, key in enumerate(("bleu", "length_ratio")):
            ax = axes[row][col]
            for i, (label, ms) in enumerate(grouped):
                color = f"C{i}"
                for part, style in (("beams", "-"), ("rectified", "--")):
                    stats = [stat(ms, curve_value(part, b, alpha, key)) for b in beams]
                    xs = [b for b, s in zip(beams, stats) if s["mean"] is not None]
                    mean = [s["mean"] for s in stats if s["mean"] is not None]
                    sd = [s["std"] for s in stats if s["mean"] is not None]
                    if not xs:
                        continue
                    name = label if part == "beams" else f"{label}, rectified"
                    ax.plot(xs, mean, style, marker="o", ms=3, color=color, label=name)
                    low = [m - s for m, s in zip(mean, sd)]
                    high = [m + s for m, s in zip(mean, sd)]
                    ax.fill_between(xs, low, high, color=color, alpha=0.15)
            ax.set_xscale("log")
            ax.set_xticks(beams, [str(b) for b in beams])
            ax.set(xlabel="beam size", ylabel="BLEU" if key == "bleu" else "length ratio",
                   title=f"length penalty {alpha:g}")  # fmt: skip
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return fig


def _pooled(bins_list: list[list[dict]]) -> tuple[list[float], list[float]]:
    confs, accs = [], []
    for m in range(len(bins_list[0])):
        bins = [b[m] for b in bins_list]
        count = sum(b["count"] for b in bins)
        if count:
            confs.append(sum(b["confidence"] * b["count"] for b in bins if b["count"]) / count)
            accs.append(sum(b["accuracy"] * b["count"] for b in bins if b["count"]) / count)
    return confs, accs


def _generated_figure(plt, grouped):
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    for i, (label, ms) in enumerate(grouped):
        gen = [m["generated"]["generated"]["reliability"] for m in ms if m.get("generated")]
        tf = [m["temperature"]["test"]["before"]["reliability"] for m in ms
              if m.get("temperature")]  # fmt: skip
        if gen:
            ax.plot(*_pooled(gen), "-o", ms=3, color=f"C{i}", label=f"{label}, generated")
        if tf:
            ax.plot(*_pooled(tf), "--", color=f"C{i}", label=f"{label}, teacher-forced")
    ax.set(xlabel="mean confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _representation_figure(plt, grouped):
    shown = [(label, ms[0]["representations"]) for label, ms in grouped
             if ms[0].get("representations")]  # fmt: skip
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(4 * max(len(shown), 1), 4),
                             squeeze=False)  # fmt: skip
    for ax, (label, rep) in zip(axes[0], shown):
        for k, (piece, points) in enumerate(zip(rep["pieces"], rep["points"])):
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            ax.scatter(xs, ys, s=6, alpha=0.5, color=f"C{k}", label=piece)
            tx, ty = rep["templates"][k]
            ax.scatter([tx], [ty], marker="*", s=150, color=f"C{k}", edgecolor="black")
        ax.set_title(f"{label}\ntightness {rep['tightness']:.3f}", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(fontsize=7)
    return fig


FIGURES = {
    "analysis_beams.png": (_beam_figure, "beams"),
    "analysis_generated.png": (_generated_figure, "generated"),
    "analysis_representations.png": (_representation_figure, "representations"),
}


def plot_analyses(grouped, out_dir: Path) -> list[tuple[str, str]]:
    """Draw each figure whose part some run has into out_dir; (file name, caption) of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    for name, (draw, part) in FIGURES.items():
        if not any(m.get(part) for _, ms in grouped for m in ms):
            continue
        fig = draw(plt, grouped)
        fig.tight_layout()
        fig.savefig(Path(out_dir) / name, dpi=110)
        plt.close(fig)
        drawn.append((name, CAPTIONS[name]))
    return drawn
