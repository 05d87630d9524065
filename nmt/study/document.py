"""The report as a document: its tables and sections in reading order, as blocks that
report_render turns into Markdown and HTML."""

from __future__ import annotations

from nmt.objective import smoothing as registry
from nmt.study.claims import published_claims
from nmt.study.prose import _ranked, answer_blocks, short, vaswani_comparison
from nmt.study.report_plots import captions
from nmt.study.stats import BASELINE, COLUMNS, cell, gap_cell, p_cell


def p_cells(row: dict, suffix: str = "") -> str:
    """The p-values of a row's seeds (greedy, or beam with suffix "_beam"), comma-separated."""
    tests = [
        {"p_value": p, "bleu_delta": d}
        for p, d in zip(row["p_values" + suffix], row["bleu_deltas" + suffix])
        if p is not None
    ]
    return ", ".join(p_cell(t) for t in tests) if tests else "–"


def metrics_table(
    rows: list[dict], split: str, baseline: str = BASELINE
) -> tuple[list[str], list[list[str]]]:
    header = ["smoothing", "seeds", *(title for _, title, _ in COLUMNS), "optimum gap"]
    if split == "test":
        header += [f"p vs {short(baseline)}", f"p beam vs {short(baseline)}"]
    body = []
    for row in rows:
        line = [row["label"], str(len(row["seeds"]))]
        line += [cell(row[split][col], fmt) for col, _, fmt in COLUMNS]
        per_token = row[split].get("optimal_prob_gap")  # its mean over the split's tokens
        gap = row["optimal_logit_gap"]
        line.append(
            gap_cell(gap) if gap is not None or not per_token else cell(per_token, "{:.2f}")
        )
        if split == "test":
            line += [p_cells(row), p_cells(row, "_beam")]
        body.append(line)
    return header, body


def table_notes(split: str, baseline: str = BASELINE) -> str:
    """The sentences under the main table: what the gap columns and the p column mean."""
    text = (
        "The logit gap (gold logit minus the mean of the other logits) equals the optimum "
        "gap at the loss's minimum only when the other logits are all equal; the prob gap "
        "(log p_gold minus the log of the mean other probability) reaches the same optimum "
        "whatever the others are, and is never larger than the logit gap."
    )
    if split == "test":
        text += (
            f" p: * marks p < 0.05; – marks a run with the same BLEU as {short(baseline)} of "
            "its seed, "
            "for which sacreBLEU's bootstrap (counting only resampled differences strictly "
            "larger than the observed one) reports p = 1/(resamples + 1), which means nothing: "
            "report.json keeps that number, the table never calls it significant."
        )
    return text


def _runs_table(runs: list[dict]) -> tuple:
    header = ["run", "eps", "type", "seed", "best step", "last step", "train command"]
    body = [
        [r["name"], f"{r['smoothing']:g}", r["smoothing_type"], str(r["seed"]), str(r["step"]),
         str(r["last_step"]), f"`{r.get('command') or '?'}`"]
        for r in runs
    ]  # fmt: skip
    return ("table", header, body)


def _method_notes(runs: list[dict], rows: list[dict], split: str, meta: dict, baseline: str):
    """The paragraph under the answer: the best row and how every number was measured."""
    ranked = _ranked(rows)
    best = max(ranked, key=lambda r: r[split]["bleu"]["mean"] or -1)
    among = "" if len(ranked) == len(rows) else ", among the settings with the most seeds"
    return (
        f"{len(runs)} runs, {len(rows)} settings. Best {split} BLEU: {best['label']} "
        f"({cell(best[split]['bleu'], '{:.2f}')}{among}). All metrics use each run's best "
        f"checkpoint (by validation BLEU). BLEU, chrF: sacreBLEU on detokenized, cased "
        "output; BLEU lc-tok: lowercased and 13a-tokenized, only for comparison with papers "
        "that report it. NLL (nats per token), PPL, accuracy and calibration are "
        "teacher-forced over non-pad target tokens and never include the smoothing term. "
        "ECE: 15 equal-width confidence bins, confidence = largest probability, correct = "
        "argmax equals the reference. Logit gap: mean of gold logit minus the mean of the "
        "other logits; optimum gap: its value at the minimum of the smoothed loss, "
        f"{registry.optimum_notes()}. "
        f"{registry.gap_notes(r['smoothing_type'] for r in rows)}"
        "p: sacreBLEU paired bootstrap "
        f"({meta['bootstrap_samples']} resamples) of BLEU against {short(baseline)} with the "
        "same seed, "
        "one value per seed. With several seeds: mean ± sample standard deviation. "
        "BLEU is greedy decoding (what validation uses); BLEU beam: the same checkpoint "
        f"decoded with {meta['beam']}, where the runs were."
    )


def build_document(
    runs: list[dict], rows: list[dict], figures: list[str], meta: dict, extra: dict | None = None
) -> list:
    """The report as blocks: ('h', level, text), ('p', text), ('table', header, rows),
    ('img', file, caption), ('code', text). extra: the distillation and inference-time
    analyses' blocks, 'question' (instead of the opening question), 'answer' (after the
    opening answer) and 'sections' (after the published claims)."""
    extra = extra or {}
    split = runs[0]["split"]
    doc: list = [("h", 1, "Label smoothing comparison")]
    baseline = meta.get("baseline", BASELINE)
    opening = answer_blocks(rows, split, baseline)
    if extra.get("question"):  # a study of distilled students asks its own question
        opening[0] = ("p", extra["question"])
    doc += opening + extra.get("answer", [])
    doc.append(("p", _method_notes(runs, rows, split, meta, baseline)))
    if meta.get("mixed"):
        doc.append(("p", "Averaged although they differ in more than their seed "
                         "(--allow-mixed): " + "; ".join(meta["mixed"]) + "."))  # fmt: skip
    doc.append(("h", 2, f"{'Test' if split == 'test' else 'Validation'} set"))
    doc.append(("table", *metrics_table(rows, split, baseline)))
    doc.append(("p", table_notes(split, baseline)))
    if split == "test":
        doc.append(("h", 2, "Validation set"))
        doc.append(("table", *metrics_table(rows, "valid", baseline)))
    doc += vaswani_comparison(rows, runs)
    doc += published_claims(rows, runs, split, baseline)
    doc += extra.get("sections", [])
    doc.append(("h", 2, "Figures"))
    for name in figures:
        doc.append(("img", name, captions(rows)[name]))
    doc.append(("h", 2, "Runs"))
    doc.append(_runs_table(runs))
    if meta.get("command"):
        doc.append(("p", "The command that wrote this report:"))
        doc.append(("code", meta["command"]))
    sigs = {
        f"{label}: {r[split][key]}"
        for r in runs
        for key, label in (
            ("bleu_signature", "BLEU"),
            ("chrf_signature", "chrF"),
            ("bleu_lc_signature", "BLEU lc-tok"),
        )
    }
    doc.append(("h", 2, "sacreBLEU signatures"))
    doc.append(("code", "\n".join(sorted(sigs))))
    return doc
