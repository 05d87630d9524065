"""The report's section that sets each smoothing variant's published claim beside our number.

Only what the papers themselves state is quoted: a number where they give one for this kind of
comparison, else the claim in their words' substance. Our side is the row's paired difference
to the baseline of the same seed (BLEU, beam search where the runs were decoded with it, else
greedy) and its difference in ECE.
"""

from __future__ import annotations

from nmt.study.stats import BASELINE, significant, spread_of

# convention -> (paper, what it reports, BLEU gain it reports over uniform smoothing or None)
CLAIMS = {
    "masked": (
        "Chen et al. (ACL 2022)",
        "masked label smoothing raises IWSLT'14 De-En test BLEU from 35.20 (uniform 0.1) to "
        "35.76 (+0.56) and improves calibration",
        0.56,
    ),
    "unigram": (
        "Pereyra et al. (2017)",
        "smoothing toward the unigram distribution, like the confidence penalty, improves a "
        "state-of-the-art WMT'14 En-De model without changing its hyperparameters",
        None,
    ),
    "graduated": (
        "Wang et al. (ACL 2020)",
        "graduated label smoothing improves both inference calibration (of the tokens the "
        "model generates) and translation performance over uniform label smoothing",
        None,
    ),
}
RAMP_CLAIM = (
    "the exercises this project started from",
    "smoothing that increases with training (no published number to compare with)",
    None,
)


def _claim_of(row: dict, runs: list[dict]) -> tuple | None:
    objective = next((r.get("objective") or {} for r in runs if r["label"] == row["label"]), {})
    if objective.get("ramp"):
        return RAMP_CLAIM
    return CLAIMS.get(row["smoothing_type"])


def _ours(row: dict, base: dict, split: str) -> tuple[str, float | None, bool]:
    """Our sentence for the row, its mean BLEU difference and whether it is significant in
    most seeds."""
    beam = row[split]["bleu_beam"]["mean"] is not None and base[split]["bleu_beam"]["mean"]
    col, suffix, search = ("bleu_beam", "_beam", "beam") if beam else ("bleu", "", "greedy")
    deltas = [d for d in row["bleu_deltas" + suffix] if d is not None]
    tests = [{"p_value": p, "bleu_delta": d}
             for p, d in zip(row["p_values" + suffix], row["bleu_deltas" + suffix])
             if p is not None]  # fmt: skip
    margin = row[split][col]["mean"] - base[split][col]["mean"]
    sig = sum(significant(t) for t in tests)
    text = f"{split} BLEU ({search}) {margin:+.2f} against {base['label']}"
    if deltas:
        text += f" (per seed {', '.join(f'{d:+.2f}' for d in deltas)}; p < 0.05 in {sig} of "
        text += f"{len(tests)})"
    ece = row[split]["ece"]["mean"], base[split]["ece"]["mean"]
    if None not in ece:
        text += f", ECE {ece[0]:.4f} against {ece[1]:.4f}"
    return text, margin, bool(tests) and sig > len(tests) / 2


def _verdict(margin: float, real: bool, claimed: float | None, ece: str | None) -> str:
    if real and margin > 0:
        bleu = "we find a gain too" + (f" ({margin:+.2f} against their {claimed:+.2f})"
                                        if claimed is not None else "")  # fmt: skip
    elif real and margin < 0:
        bleu = "we find a loss instead"
    else:
        bleu = "we find no difference the paired bootstrap supports in most seeds"
    return bleu if ece is None else f"{bleu}; {ece}"


def _ece_verdict(row: dict, base: dict, split: str) -> str | None:
    """Teacher-forced calibration against the baseline's: better or worse only when the
    difference exceeds the larger seed-to-seed standard deviation of the two (with one seed
    each, the sign alone)."""
    ours, theirs = row[split]["ece"], base[split]["ece"]
    if ours["mean"] is None or theirs["mean"] is None:
        return None
    spread = spread_of(ours, theirs)
    diff = ours["mean"] - theirs["mean"]
    if abs(diff) <= spread:
        return (f"teacher-forced calibration (ECE) is level, the difference ({diff:+.4f}) "
                f"within the seeds' spread ({spread:.4f})")  # fmt: skip
    return f"teacher-forced calibration (ECE) is {'better' if diff < 0 else 'worse'} here"


def published_claims(rows: list[dict], runs: list[dict], split: str, baseline: str) -> list:
    """Blocks: one paragraph per variant row with a claim, or nothing when none has one."""
    base = next((r for r in rows if r["label"] == baseline), None)
    if base is None or baseline == BASELINE:
        return []
    paragraphs = []
    for row in rows:
        claim = _claim_of(row, runs) if row is not base else None
        if claim is None:
            continue
        paper, said, gain = claim
        ours, margin, real = _ours(row, base, split)
        verdict = _verdict(margin, real, gain, _ece_verdict(row, base, split))
        paragraphs.append(
            f"{row['label']}: {paper} report that {said}. Ours (Multi30k En-De, "
            f"{len(row['seeds'])} seed(s)): {ours}. So {verdict}."
        )
    if not paragraphs:
        return []
    return [("h", 2, "Against the papers"), *(("p", text) for text in paragraphs)]
