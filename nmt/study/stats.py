"""The report's statistics: seed means and deviations per objective, the paired bootstrap."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from nmt.errors import NMTError
from nmt.objective import smoothing as registry
from nmt.objective.smoothing import Smoothing

# (key in the metrics, column title, format) of the report's main tables.
COLUMNS = (
    ("bleu", "BLEU", "{:.2f}"),
    ("bleu_beam", "BLEU beam", "{:.2f}"),
    ("chrf", "chrF", "{:.2f}"),
    ("bleu_lc", "BLEU lc-tok", "{:.2f}"),
    ("nll_loss", "NLL", "{:.3f}"),
    ("ppl", "PPL", "{:.2f}"),
    ("accuracy", "accuracy", "{:.2%}"),
    ("ece", "ECE", "{:.4f}"),
    ("confidence", "confidence", "{:.3f}"),
    ("entropy", "entropy", "{:.3f}"),
    ("logit_gap", "logit gap", "{:.2f}"),
    ("prob_gap", "prob gap", "{:.2f}"),
)


# Columns that results.json written before they existed lack: shown as "–" for those runs.
OPTIONAL = ("prob_gap", "bleu_beam")


# The row every other is tested against unless --baseline names another: the unsmoothed NLL.
BASELINE = Smoothing().label


def paired_bootstrap(
    runs: list[dict], n_samples: int, hyps: str = "hyps", baseline: str = BASELINE
) -> dict[str, dict]:
    """sacreBLEU's paired bootstrap test of each run against the baseline (the runs labelled
    baseline, eps 0 unless told otherwise) with the same seed:
    {run name: {"p_value": sacreBLEU's p, "bleu_delta": run BLEU - baseline BLEU}}, on the
    greedy output (hyps="hyps") or the final beam search's (hyps="beam_hyps"; runs without it
    are left out).

    sacreBLEU counts only the resampled differences strictly larger than the observed one, so
    identical systems get p = 1 / (n_samples + 1); the table shows "–" where the observed
    difference is zero and never calls it significant (see significant())."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    baselines = {r["seed"]: r for r in runs if r["label"] == baseline and hyps in r}
    out = {}
    for run in runs:
        base = baselines.get(run["seed"])
        if run["label"] == baseline or base is None or hyps not in run:
            continue
        if base["refs"] != run["refs"] or base["split"] != run["split"]:
            raise NMTError(f"{run['dir']} and {base['dir']} were scored on different references")
        test = PairedTest(
            [("baseline", base[hyps]), (run["name"], run[hyps])],
            {"BLEU": BLEU()},
            [base["refs"]],
            test_type="bs",
            n_samples=n_samples,
        )
        _, scores = test()
        base_score, run_score = scores["BLEU"][0], scores["BLEU"][1]
        out[run["name"]] = {
            "p_value": float(run_score.p_value),
            "bleu_delta": float(run_score.score - base_score.score),
        }
    return out


SIGNIFICANCE = 0.05


def spread_of(a: dict, b: dict) -> float:
    """The larger seed-to-seed sd of two {"mean", "std"} statistics (0 with one seed each): a
    difference of means within it is not called better or worse."""
    return max(s.get("std") or 0.0 for s in (a, b))


def significant(test: dict) -> bool:
    """p below 0.05 with a non-zero observed difference (a zero difference never is)."""
    return test["bleu_delta"] != 0 and test["p_value"] < SIGNIFICANCE


def p_cell(test: dict | None) -> str:
    """One seed's p-value as the table shows it: '–' for a zero difference, * when significant."""
    if test is None:
        return ""
    if test["bleu_delta"] == 0:
        return "–"
    return f"{test['p_value']:.3f}" + ("*" if significant(test) else "")


def summarise(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (0 for one value) of the finite values."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "n": len(vals)}


def _order(run: dict) -> tuple:
    """Rows in reading order: eps 0, the default convention's by eps, the others' by name."""
    convention = run["smoothing_type"]
    return (
        run["label"] != BASELINE,
        convention != registry.DEFAULT,
        convention,
        run["smoothing"],
        run["label"],
    )


def aggregate(
    runs: list[dict], pvalues: dict[str, dict], beam_pvalues: dict[str, dict]
) -> list[dict]:
    """One row per objective (the runs' label): mean/std over seeds of every metric, per split."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["label"], []).append(run)
    rows = []
    # eps 0 first, then the default convention's rows, then the other conventions', by eps.
    for label in sorted(groups, key=lambda k: _order(groups[k][0])):
        members = sorted(groups[label], key=lambda r: r["seed"])
        row: dict = {
            "label": label,
            "smoothing_type": members[0]["smoothing_type"],
            "smoothing": members[0]["smoothing"],
            "seeds": [r["seed"] for r in members],
            "runs": [r["name"] for r in members],
            "optimal_logit_gap": members[0].get("optimal_logit_gap"),
            "p_values": [pvalues.get(r["name"], {}).get("p_value") for r in members],
            "bleu_deltas": [pvalues.get(r["name"], {}).get("bleu_delta") for r in members],
            "p_values_beam": [beam_pvalues.get(r["name"], {}).get("p_value") for r in members],
            "bleu_deltas_beam": [
                beam_pvalues.get(r["name"], {}).get("bleu_delta") for r in members
            ],
        }
        for split in ("test", "valid"):
            present = [r[split] for r in members if r.get(split)]
            row[split] = {col: summarise([m.get(col) for m in present]) for col, _, _ in COLUMNS}
            if any("optimal_prob_gap" in m for m in present):  # a gap varying by gold piece
                row[split]["optimal_prob_gap"] = summarise(
                    [m.get("optimal_prob_gap") for m in present]
                )
        rows.append(row)
    return rows


def cell(stat: dict, fmt: str) -> str:
    if stat["mean"] is None:
        return "–"
    text = fmt.format(stat["mean"])
    return text if stat["n"] < 2 else f"{text} ± {fmt.format(stat['std'])}"


def gap_cell(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "∞" if math.isinf(value) else f"{value:.2f}"
