"""The PNG figures of the epsilon report (matplotlib, no display needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nmt.objective.smoothing import DEFAULT

PLOTS = {
    "bleu_vs_eps.png": "Test BLEU against eps, greedy (solid, dots) and beam search (dashed, "
    "crosses) where the runs have it: one mark per seed, the line joins the means (error "
    "bars: standard deviation over seeds)",
    "nll_ppl_vs_eps.png": "Unsmoothed NLL per token and perplexity against eps (test solid, "
    "validation dashed)",
    "ece_vs_eps.png": "Expected calibration error, and mean confidence against accuracy, "
    "against eps",
    "reliability.png": "Reliability diagrams (15 bins, seeds pooled): accuracy against mean "
    "confidence per bin; the diagonal is perfect calibration",
    "confidence_hist.png": "Share of target tokens per confidence bin (seeds pooled)",
    "valid_bleu_curves.png": "Validation BLEU over training updates, one line per run",
}


def by_objective(rows: list[dict]) -> bool:
    """Whether the figures set the rows side by side per objective instead of along eps: when
    they all share one eps, or two of one convention do (e.g. a constant and a ramped eps)."""
    keys = [(r["smoothing_type"], r["smoothing"]) for r in rows]
    return len({r["smoothing"] for r in rows}) == 1 or len(set(keys)) < len(keys)


def captions(rows: list[dict]) -> dict[str, str]:
    """PLOTS, with 'against eps' read as 'per objective' where the figures are drawn so."""
    if not by_objective(rows):
        return dict(PLOTS)
    return {name: text.replace("against eps", "per objective") for name, text in PLOTS.items()}


def _series(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by smoothing type; eps 0 starts every series (it is the same loss for all types).
    Per objective: each row its own series."""
    if by_objective(rows):
        return {r["label"]: [r] for r in rows}
    zero = [r for r in rows if r["smoothing"] == 0]
    kinds = sorted({r["smoothing_type"] for r in rows if r["smoothing"] != 0}) or [DEFAULT]
    return {
        k: zero + [r for r in rows if r["smoothing"] != 0 and r["smoothing_type"] == k]
        for k in kinds
    }


def _pooled_bins(runs: list[dict], split: str) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) per bin over runs; empty bins are skipped."""
    n_bins = len(runs[0][split]["reliability"])
    pooled = []
    for m in range(n_bins):
        bins = [r[split]["reliability"][m] for r in runs]
        count = sum(b["count"] for b in bins)
        if count:
            conf = sum(b["confidence"] * b["count"] for b in bins if b["count"]) / count
            acc = sum(b["accuracy"] * b["count"] for b in bins if b["count"]) / count
            pooled.append((conf, acc, count))
    return pooled


def plot_all(runs: list[dict], rows: list[dict], out_dir: Path) -> list[str]:
    """Write every figure in PLOTS into out_dir; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = _View(runs, rows, runs[0]["split"], _series(rows), by_objective(rows))
    for name, draw in FIGURES.items():
        fig = draw(plt, view)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
    return list(PLOTS)


@dataclass
class _View:
    """What every figure reads: the runs, the report's rows, the split, the rows by convention."""

    runs: list[dict]
    rows: list[dict]
    split: str
    series: dict[str, list[dict]]
    per_objective: bool = False  # x is the row's position, not its eps

    def x(self, item: dict) -> float:
        """Where a row or a run goes on the x axis: its eps, or its row's position."""
        if not self.per_objective:
            return item["smoothing"]
        return [r["label"] for r in self.rows].index(item["label"])

    def axis(self, ax, **labels) -> None:
        """_finish with the x axis named: eps, or the objectives' labels."""
        if self.per_objective:
            labels["xlabel"] = "objective"
            ax.set_xticks(range(len(self.rows)), [r["label"] for r in self.rows],
                          rotation=20, ha="right", fontsize=7)  # fmt: skip
        _finish(ax, **labels)

    def mean(self, row: dict, key: str, split: str | None = None) -> float | None:
        return row[split or self.split][key]["mean"]

    def groups(self) -> dict[str, list[dict]]:
        """Each row's label -> its runs (seeds pooled per setting)."""
        return {
            row["label"]: [r for r in self.runs if r["name"] in row["runs"]] for row in self.rows
        }


def _finish(ax, **labels) -> None:
    ax.set(**labels)
    ax.grid(alpha=0.3)
    ax.legend()


def bleu_figure(plt, v: _View):
    """BLEU against eps, greedy and beam, each seed a mark."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, rs in v.series.items():
        xs = [v.x(r) for r in rs]
        ys = [v.mean(r, "bleu") for r in rs]
        errs = [r[v.split]["bleu"]["std"] for r in rs]
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=kind)
        beam = [r for r in rs if v.mean(r, "bleu_beam") is not None]
        if beam:
            ax.errorbar(
                [v.x(r) for r in beam],
                [v.mean(r, "bleu_beam") for r in beam],
                yerr=[r[v.split]["bleu_beam"]["std"] for r in beam],
                marker="s",
                linestyle="--",
                capsize=3,
                label=f"{kind}, beam",
            )
    for r in v.runs:  # each seed once
        ax.plot(v.x(r), r[v.split]["bleu"], "k.", alpha=0.4)
        if r[v.split].get("bleu_beam") is not None:
            ax.plot(v.x(r), r[v.split]["bleu_beam"], "k+", alpha=0.4)
    v.axis(ax, xlabel="eps", ylabel=f"{v.split} BLEU (sacreBLEU)")
    return fig


def nll_ppl_figure(plt, v: _View):
    """Unsmoothed NLL and perplexity against eps."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in zip(axes, ("nll_loss", "ppl"), ("NLL (nats/token)", "perplexity")):
        for kind, rs in v.series.items():
            xs = [v.x(r) for r in rs]
            ax.plot(xs, [v.mean(r, key) for r in rs], "o-", label=f"{kind} {v.split}")
            if v.split == "test":
                ax.plot(xs, [v.mean(r, key, "valid") for r in rs], "o--", label=f"{kind} valid")
        v.axis(ax, xlabel="eps", ylabel=label)
    return fig


def ece_figure(plt, v: _View):
    """ECE, and mean confidence against accuracy, against eps."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind, rs in v.series.items():
        xs = [v.x(r) for r in rs]
        axes[0].plot(xs, [v.mean(r, "ece") for r in rs], "o-", label=kind)
        axes[1].plot(xs, [v.mean(r, "confidence") for r in rs], "o-", label=f"{kind} confidence")
        axes[1].plot(xs, [v.mean(r, "accuracy") for r in rs], "s--", label=f"{kind} accuracy")
    v.axis(axes[0], xlabel="eps", ylabel="ECE (15 bins)")
    v.axis(axes[1], xlabel="eps", ylabel="mean over target tokens")
    return fig


def reliability_figure(plt, v: _View):
    """Reliability diagrams, seeds pooled per setting."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    for label, members in v.groups().items():
        bins = _pooled_bins(members, v.split)
        ax.plot([b[0] for b in bins], [b[1] for b in bins], "o-", label=label)
    _finish(ax, xlabel="mean confidence in bin", ylabel="accuracy in bin", xlim=(0, 1),
            ylim=(0, 1))  # fmt: skip
    return fig


def confidence_hist_figure(plt, v: _View):
    """Share of target tokens per confidence bin, seeds pooled per setting."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, members in v.groups().items():
        edges = [b["lower"] for b in members[0][v.split]["reliability"]] + [1.0]
        counts = [
            sum(r[v.split]["reliability"][m]["count"] for r in members)
            for m in range(len(edges) - 1)
        ]
        total = max(sum(counts), 1)
        ax.stairs([c / total for c in counts], edges, label=label)
    _finish(ax, xlabel="confidence (largest probability)", ylabel="share of target tokens")
    return fig


def curves_figure(plt, v: _View):
    """Validation BLEU over training updates, one line per run."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in v.runs:
        hist = r.get("history") or []
        ax.plot([h["step"] for h in hist], [h["bleu"] for h in hist], "o-", label=r["name"])
    _finish(ax, xlabel="update", ylabel="validation BLEU")
    return fig


# One function per figure, in the order of PLOTS.
FIGURES = {
    "bleu_vs_eps.png": bleu_figure,
    "nll_ppl_vs_eps.png": nll_ppl_figure,
    "ece_vs_eps.png": ece_figure,
    "reliability.png": reliability_figure,
    "confidence_hist.png": confidence_hist_figure,
    "valid_bleu_curves.png": curves_figure,
}
