"""The PNG figures of the epsilon report (matplotlib, no display needed)."""

from __future__ import annotations

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


def _series(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by smoothing type; eps 0 starts every series (it is the same loss for all types)."""
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
    # Long by design: one independent block per figure, in the order of PLOTS; split into
    # functions, each would take the same runs/rows/series and share nothing else.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = runs[0]["split"]
    series = _series(rows)

    def mean(row, key, s=split):
        return row[s][key]["mean"]

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)

    # BLEU against eps, each seed a dot.
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, rs in series.items():
        xs = [r["smoothing"] for r in rs]
        ax.errorbar(
            xs,
            [mean(r, "bleu") for r in rs],
            yerr=[r[split]["bleu"]["std"] for r in rs],
            marker="o",
            capsize=3,
            label=kind,
        )
        beam = [r for r in rs if mean(r, "bleu_beam") is not None]
        if beam:
            ax.errorbar(
                [r["smoothing"] for r in beam],
                [mean(r, "bleu_beam") for r in beam],
                yerr=[r[split]["bleu_beam"]["std"] for r in beam],
                marker="s",
                linestyle="--",
                capsize=3,
                label=f"{kind}, beam",
            )
        for r in runs:
            if r["smoothing_type"] == kind or r["smoothing"] == 0:
                ax.plot(r["smoothing"], r[split]["bleu"], "k.", alpha=0.4)
                if r[split].get("bleu_beam") is not None:
                    ax.plot(r["smoothing"], r[split]["bleu_beam"], "k+", alpha=0.4)
    ax.set(xlabel="eps", ylabel=f"{split} BLEU (sacreBLEU)")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "bleu_vs_eps.png")

    # NLL and perplexity.
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in zip(axes, ("nll_loss", "ppl"), ("NLL (nats/token)", "perplexity")):
        for kind, rs in series.items():
            xs = [r["smoothing"] for r in rs]
            ax.plot(xs, [mean(r, key) for r in rs], "o-", label=f"{kind} {split}")
            if split == "test":
                ax.plot(xs, [mean(r, key, "valid") for r in rs], "o--", label=f"{kind} valid")
        ax.set(xlabel="eps", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend()
    save(fig, "nll_ppl_vs_eps.png")

    # ECE, confidence and accuracy.
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind, rs in series.items():
        xs = [r["smoothing"] for r in rs]
        axes[0].plot(xs, [mean(r, "ece") for r in rs], "o-", label=kind)
        axes[1].plot(xs, [mean(r, "confidence") for r in rs], "o-", label=f"{kind} confidence")
        axes[1].plot(xs, [mean(r, "accuracy") for r in rs], "s--", label=f"{kind} accuracy")
    axes[0].set(xlabel="eps", ylabel="ECE (15 bins)")
    axes[1].set(xlabel="eps", ylabel="mean over target tokens")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    save(fig, "ece_vs_eps.png")

    # Reliability diagrams and confidence histograms, seeds pooled per setting.
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups[row["label"]] = [r for r in runs if r["name"] in row["runs"]]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    for label, members in groups.items():
        bins = _pooled_bins(members, split)
        ax.plot([b[0] for b in bins], [b[1] for b in bins], "o-", label=label)
    ax.set(xlabel="mean confidence in bin", ylabel="accuracy in bin", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "reliability.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, members in groups.items():
        edges = [b["lower"] for b in members[0][split]["reliability"]] + [1.0]
        counts = [
            sum(r[split]["reliability"][m]["count"] for r in members) for m in range(len(edges) - 1)
        ]
        total = max(sum(counts), 1)
        ax.stairs([c / total for c in counts], edges, label=label)
    ax.set(xlabel="confidence (largest probability)", ylabel="share of target tokens")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "confidence_hist.png")

    # Validation BLEU curves.
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        hist = r.get("history") or []
        ax.plot([h["step"] for h in hist], [h["bleu"] for h in hist], "o-", label=r["name"])
    ax.set(xlabel="update", ylabel="validation BLEU")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "valid_bleu_curves.png")
    return list(PLOTS)
