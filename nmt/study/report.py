"""The epsilon comparison report (tables + plots) from finished runs.

    python -m nmt.report RUN_DIR [RUN_DIR ...] [--out DIR] [--bootstrap-samples 1000]

Reads each run's results.json (written by train.py with the best checkpoint's validation and
test metrics) and its test.hyp.txt / test.ref.txt, and writes report.md, report.html (the same
content with the figures embedded), report.json and the PNG figures into --out.
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from nmt.errors import ArgumentParser, NMTError
from nmt.study.report_plots import PLOTS, plot_all
from nmt.study.report_render import render_html, render_markdown

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


# What each split's metrics in results.json must hold for the report.
SPLIT_KEYS = (
    *(col for col, _, _ in COLUMNS if col not in OPTIONAL),
    "reliability",
    "calibration_accuracy",
    "bleu_signature",
    "chrf_signature",
    "bleu_lc_signature",
)


def _read_results(path: Path) -> dict:
    """results.json checked for what the report reads; a bad file is one NMTError."""
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NMTError(
            f"{path} is not readable JSON ({exc}); rerun train.py for that run"
        ) from None
    if not isinstance(run, dict):
        raise NMTError(f"{path} is not a results.json written by train.py")
    missing = [k for k in ("smoothing", "seed", "step", "last_step", "valid") if k not in run]
    if missing:
        raise NMTError(f"{path} lacks {', '.join(missing)}: it is incomplete; rerun that run")
    if not isinstance(run["smoothing"], (int, float)) or isinstance(run["smoothing"], bool):
        raise NMTError(f"{path}: 'smoothing' is not a number")
    for split in ("valid", "test"):
        metrics = run.get(split)
        if split == "valid" or metrics:
            if not isinstance(metrics, dict):
                raise NMTError(f"{path}: '{split}' holds no metrics; rerun that run")
            if "calibration_accuracy" not in metrics:
                raise NMTError(
                    f"{path} was written by an older version without calibration metrics"
                )
            lacking = [k for k in SPLIT_KEYS if k not in metrics]
            if lacking:
                raise NMTError(f"{path}: '{split}' lacks {', '.join(lacking)}; rerun that run")
    return run


def _read_lines(path: Path) -> list[str]:
    """Lines of a hypothesis/reference file (split on newlines only, as train.py writes them)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def load_run(run_dir: str | Path) -> dict:
    """A finished run: its results.json plus its test (or validation) hypotheses/references."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise NMTError(
            f"{run_dir} has no results.json: the run is missing or did not finish; "
            "finish it (or leave it out) and run the report again"
        )
    run = _read_results(path)
    split = "test" if run.get("test") else "valid"
    hyp, ref = run_dir / f"{split}.hyp.txt", run_dir / f"{split}.ref.txt"
    if not (hyp.is_file() and ref.is_file()):
        raise NMTError(f"{run_dir} lacks {hyp.name} or {ref.name}; the run did not finish")
    hyps, refs = _read_lines(hyp), _read_lines(ref)
    if len(hyps) != len(refs):
        raise NMTError(
            f"{hyp} has {len(hyps)} lines but {ref.name} has {len(refs)}: they are not aligned "
            "line by line, so no significance test can pair them; rewrite them with train.py"
        )
    run.update(name=run_dir.name, dir=str(run_dir), split=split, hyps=hyps, refs=refs)
    _read_beam(run, run_dir, path)
    return run


def _read_beam(run: dict, run_dir: Path, path: Path) -> None:
    """The final beam search's scores (results.json 'beam', train.py's decode.final_beam) as
    the metric bleu_beam of each split, and its hypotheses as run['beam_hyps']."""
    beam = run.get("beam")
    if beam is None:
        return
    if not (isinstance(beam, dict) and isinstance(beam.get("beam"), int)):
        raise NMTError(f"{path}: 'beam' is not the final beam search's scores; rerun that run")
    for split in ("valid", "test"):
        scores = beam.get(split)
        if run.get(split) and scores is not None:
            if not (isinstance(scores, dict) and isinstance(scores.get("bleu"), (int, float))):
                raise NMTError(f"{path}: 'beam' holds no BLEU for '{split}'; rerun that run")
            run[split]["bleu_beam"] = scores["bleu"]
    hyp = run_dir / f"{run['split']}.beam{beam['beam']}.hyp.txt"
    if not hyp.is_file():
        raise NMTError(f"{run_dir} lacks {hyp.name}, the beam search's output; rerun that run")
    run["beam_hyps"] = _read_lines(hyp)
    if len(run["beam_hyps"]) != len(run["refs"]):
        raise NMTError(
            f"{hyp} has {len(run['beam_hyps'])} lines but the references have "
            f"{len(run['refs'])}; rewrite it with train.py"
        )


def group_key(run: dict) -> tuple[str, float]:
    return run.get("smoothing_type", "uniform"), run["smoothing"]


def group_label(key: tuple[str, float]) -> str:
    kind, eps = key
    if eps == 0:
        return "eps 0 (no smoothing)"
    return {"uniform": f"eps {eps:g}", "fairseq": f"eps {eps:g} (fairseq)"}.get(
        kind, f"beta {eps:g} (confidence penalty)"
    )


def paired_bootstrap(runs: list[dict], n_samples: int, hyps: str = "hyps") -> dict[str, dict]:
    """sacreBLEU's paired bootstrap test of each run against eps 0 with the same seed:
    {run name: {"p_value": sacreBLEU's p, "bleu_delta": run BLEU - baseline BLEU}}, on the
    greedy output (hyps="hyps") or the final beam search's (hyps="beam_hyps"; runs without it
    are left out).

    sacreBLEU counts only the resampled differences strictly larger than the observed one, so
    identical systems get p = 1 / (n_samples + 1); the table shows "–" where the observed
    difference is zero and never calls it significant (see significant())."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    baselines = {r["seed"]: r for r in runs if r["smoothing"] == 0 and hyps in r}
    out = {}
    for run in runs:
        base = baselines.get(run["seed"])
        if run["smoothing"] == 0 or base is None or hyps not in run:
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


def aggregate(
    runs: list[dict], pvalues: dict[str, dict], beam_pvalues: dict[str, dict]
) -> list[dict]:
    """One row per (smoothing type, eps): mean/std over seeds of every metric, per split."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(run)
    rows = []
    # eps 0 first, then the uniform convention's rows, then the other conventions', by eps.
    for key in sorted(groups, key=lambda k: (k[1] != 0, k[0] != "uniform", k[0], k[1])):
        members = sorted(groups[key], key=lambda r: r["seed"])
        row: dict = {
            "label": group_label(key),
            "smoothing_type": key[0],
            "smoothing": key[1],
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


def p_cells(row: dict, suffix: str = "") -> str:
    """The p-values of a row's seeds (greedy, or beam with suffix "_beam"), comma-separated."""
    tests = [
        {"p_value": p, "bleu_delta": d}
        for p, d in zip(row["p_values" + suffix], row["bleu_deltas" + suffix])
        if p is not None
    ]
    return ", ".join(p_cell(t) for t in tests) if tests else "–"


def metrics_table(rows: list[dict], split: str) -> tuple[list[str], list[list[str]]]:
    header = ["smoothing", "seeds", *(title for _, title, _ in COLUMNS), "optimum gap"]
    if split == "test":
        header += ["p vs eps 0", "p beam vs eps 0"]
    body = []
    for row in rows:
        line = [row["label"], str(len(row["seeds"]))]
        line += [cell(row[split][col], fmt) for col, _, fmt in COLUMNS]
        line.append(gap_cell(row["optimal_logit_gap"]))
        if split == "test":
            line += [p_cells(row), p_cells(row, "_beam")]
        body.append(line)
    return header, body


def table_notes(split: str) -> str:
    """The sentences under the main table: what the gap columns and the p column mean."""
    text = (
        "The logit gap (gold logit minus the mean of the other logits) equals the optimum "
        "gap at the loss's minimum only when the other logits are all equal; the prob gap "
        "(log p_gold minus the log of the mean other probability) reaches the same optimum "
        "whatever the others are, and is never larger than the logit gap."
    )
    if split == "test":
        text += (
            " p: * marks p < 0.05; – marks a run with the same BLEU as eps 0 of its seed, "
            "for which sacreBLEU's bootstrap (counting only resampled differences strictly "
            "larger than the observed one) reports p = 1/(resamples + 1), which means nothing: "
            "report.json keeps that number, the table never calls it significant."
        )
    return text


# Vaswani et al. (2017), Table 3, rows of the base model that vary eps_ls: newstest2013 (their
# development set), per-wordpiece perplexity and BLEU (beam 4, no checkpoint averaging).
VASWANI = {0.0: (4.67, 25.3), 0.1: (4.92, 25.8), 0.2: (5.47, 25.7)}


def _uniform(rows: list[dict]) -> list[dict]:
    """eps 0 and the uniform-convention rows, by eps."""
    picked = [r for r in rows if r["smoothing"] == 0 or r["smoothing_type"] == "uniform"]
    return sorted(picked, key=lambda r: r["smoothing"])


def _short(row: dict) -> str:
    """'eps 0.1' (the label without the note that eps 0 is no smoothing)."""
    return "eps 0" if row["smoothing"] == 0 else row["label"]


def _mean(row: dict, split: str, col: str) -> float | None:
    return row[split][col]["mean"]


def _trend(values: list[float]) -> str:
    if all(b > a for a, b in zip(values, values[1:])):
        return "rises"
    if all(b < a for a, b in zip(values, values[1:])):
        return "falls"
    return "is not monotonic"


def _ranked(rows: list[dict]) -> list[dict]:
    """The rows a best value is chosen among: those with the most seeds. A one-seed extra
    beside three-seed settings is listed but never crowned: its single value is not a mean."""
    most = max(len(r["seeds"]) for r in rows)
    return [r for r in rows if len(r["seeds"]) == most]


def _unranked(present: list[dict], ranked: list[dict], split: str, col: str) -> str:
    """' Not ranked, with fewer seeds: eps 0.05 36.29, ... (1 seed(s) each).' or ''."""
    others = [r for r in present if r not in ranked]
    if not others:
        return ""
    counts = {len(r["seeds"]) for r in others}
    if len(counts) == 1:
        listed = ", ".join(f"{_short(r)} {_mean(r, split, col):.2f}" for r in others)
        return f" Not ranked, with fewer seeds: {listed} ({min(counts)} seed(s) each)."
    listed = ", ".join(
        f"{_short(r)} {_mean(r, split, col):.2f} ({len(r['seeds'])})" for r in others
    )
    return f" Not ranked, with fewer seeds: {listed}."


def bleu_answer(rows: list[dict], split: str, search: str) -> str | None:
    """The best eps on BLEU with one search (among the settings with the most seeds), its
    margin over eps 0 and whether the paired bootstrap and the spread over seeds say that
    margin is real; then the settings with fewer seeds, not ranked."""
    col = "bleu" if search == "greedy" else "bleu_beam"
    present = [r for r in rows if _mean(r, split, col) is not None]
    if not present:
        return None
    ranked = _ranked(present)
    best = max(ranked, key=lambda r: _mean(r, split, col))
    base = next((r for r in present if r["smoothing"] == 0), None)
    return _best_bleu_sentence(best, base, split, search) + _unranked(present, ranked, split, col)


def _best_bleu_sentence(best: dict, base: dict | None, split: str, search: str) -> str:
    col, suffix = ("bleu", "") if search == "greedy" else ("bleu_beam", "_beam")
    text = (
        f"With {search}, the best {split} BLEU is {_short(best)}'s, "
        f"{cell(best[split][col], '{:.2f}')} over {len(best['seeds'])} seed(s)"
    )
    if base is None:
        return text + "; no eps 0 run to compare with."
    if best is base:
        return text + ": no smoothing value beats eps 0 on average."
    tests = [
        {"p_value": p, "bleu_delta": d}
        for p, d in zip(best["p_values" + suffix], best["bleu_deltas" + suffix])
        if p is not None
    ]
    margin = _mean(best, split, col) - _mean(base, split, col)
    text += f", {margin:+.2f} over eps 0 ({cell(base[split][col], '{:.2f}')})"
    if tests:
        sig = sum(significant(t) for t in tests)
        text += (
            f"; the paired bootstrap finds the difference significant (p < 0.05) for {sig} of "
            f"{len(tests)} seed(s)"
        )
    spread = max(best[split][col]["std"] or 0.0, base[split][col]["std"] or 0.0)
    if len(best["seeds"]) > 1 and len(base["seeds"]) > 1:
        text += (
            f", and the margin is {'larger' if abs(margin) > spread else 'smaller'} than the "
            f"larger seed-to-seed standard deviation of the two ({spread:.2f})"
        )
    return text + "."


def perplexity_answer(rows: list[dict], split: str) -> str | None:
    uni = [r for r in _uniform(rows) if _mean(r, split, "ppl") is not None]
    if len(uni) < 2:
        return None
    ppls = [_mean(r, split, "ppl") for r in uni]
    listed = ", ".join(f"{v:.2f} ({_short(r)})" for v, r in zip(ppls, uni))
    return f"Perplexity on {split} {_trend(ppls)} with eps: {listed}."


def calibration_answer(rows: list[dict], split: str) -> str | None:
    uni = [r for r in _uniform(rows) if _mean(r, split, "ece") is not None]
    if not uni:
        return None
    parts = []
    for r in uni:
        gap = _mean(r, split, "confidence") - _mean(r, split, "accuracy")
        kind = (
            "over-confident" if gap > 0.01 else "under-confident" if gap < -0.01 else "calibrated"
        )
        parts.append(f"{_short(r)}: ECE {_mean(r, split, 'ece'):.4f}, confidence − accuracy "
                     f"{gap:+.3f} ({kind})")  # fmt: skip
    best = min(_ranked(uni), key=lambda r: _mean(r, split, "ece"))
    return f"Calibration on {split} is best at {_short(best)}. " + "; ".join(parts) + "."


def vaswani_comparison(rows: list[dict], runs: list[dict]) -> list:
    """Blocks setting our eps 0 / 0.1 / 0.2 validation rows beside Vaswani et al.'s Table 3
    (their numbers are on their development set, so ours are on validation)."""
    by_eps = {r["smoothing"]: r for r in _uniform(rows)}
    if not all(e in by_eps and _mean(by_eps[e], "valid", "ppl") for e in VASWANI):
        return []
    ours = [by_eps[e] for e in VASWANI]
    beam = all(_mean(r, "valid", "bleu_beam") is not None for r in ours)
    header = ["eps", "Vaswani PPL", "Vaswani BLEU", "our PPL", "our BLEU greedy"]
    header += ["our BLEU beam"] if beam else []
    body = []
    for eps, row in zip(VASWANI, ours):
        line = [f"{eps:g}", f"{VASWANI[eps][0]:.2f}", f"{VASWANI[eps][1]:.1f}"]
        line += [cell(row["valid"]["ppl"], "{:.2f}"), cell(row["valid"]["bleu"], "{:.2f}")]
        line += [cell(row["valid"]["bleu_beam"], "{:.2f}")] if beam else []
        body.append(line)
    their_ppl = [v[0] for v in VASWANI.values()]
    our_ppl = [_mean(r, "valid", "ppl") for r in ours]

    def rel(values):
        return ", ".join(f"{100 * (v / values[0] - 1):+.1f}%" for v in values[1:])

    def peak(values):
        return list(VASWANI)[max(range(3), key=lambda i: values[i])]

    their_bleu = [v[1] for v in VASWANI.values()]
    our_bleu = [_mean(r, "valid", "bleu_beam" if beam else "bleu") for r in ours]
    search = "beam" if beam else "greedy"
    ppl_agree = _trend(our_ppl) == _trend(their_ppl)
    bleu_agree = peak(our_bleu) == peak(their_bleu)
    better = all(b > our_bleu[0] for b in our_bleu[1:])
    lines = [
        f"Perplexity relative to eps 0 (eps 0.1, 0.2): theirs {rel(their_ppl)}, ours "
        f"{rel(our_ppl)}; {'both rise' if ppl_agree else 'ours ' + _trend(our_ppl)} with eps"
        f"{'' if ppl_agree else ', theirs rises'}.",
        f"BLEU relative to eps 0 (eps 0.1, 0.2): theirs "
        f"{', '.join(f'{b - their_bleu[0]:+.1f}' for b in their_bleu[1:])}, ours ({search}) "
        f"{', '.join(f'{b - our_bleu[0]:+.2f}' for b in our_bleu[1:])}. Theirs peaks at eps 0.1; "
        f"ours at eps {peak(our_bleu):g} ({'the same' if bleu_agree else 'a different'} peak), and "
        f"smoothing {'beats' if better else 'does not beat'} eps 0 at both values "
        f"({'as' if better else 'unlike'} theirs).",
        "Their rows: WMT14 En-De (4.5M pairs), Transformer base (65M parameters), 100k updates, "
        "a shared BPE vocabulary of about 37k, beam 4 with length penalty 0.6, perplexity per "
        f"wordpiece on newstest2013. Ours: these runs (vocabulary {runs[0].get('vocab_size')}, "
        f"best checkpoints at updates {', '.join(sorted({str(r['step']) for r in runs}))}), "
        "perplexity per SentencePiece token on the validation set; perplexities of different "
        "vocabularies are comparable only in their trend.",
    ]
    return [
        ("h", 2, "Against Vaswani et al. (2017), Table 3"),
        ("table", header, body),
        *(("p", line) for line in lines),
    ]


def answer_blocks(rows: list[dict], runs: list[dict], split: str) -> list:
    """The question and the answer the runs give, first in the report."""
    search = "beam" if any(_mean(r, split, "bleu_beam") is not None for r in rows) else None
    answers = [
        bleu_answer(rows, split, "greedy"),
        bleu_answer(rows, split, "beam search") if search else None,
        perplexity_answer(rows, split),
        calibration_answer(rows, split),
    ]
    return [
        (
            "p",
            "Question: which label smoothing eps gives the best BLEU, with greedy decoding and "
            "with beam search; is the difference real (paired bootstrap per seed, spread over "
            "seeds); and what does eps do to perplexity and to calibration?",
        ),
        ("p", "Answer: " + " ".join(a for a in answers if a)),
    ]


def build_document(runs: list[dict], rows: list[dict], figures: list[str], meta: dict) -> list:
    """The report as blocks: ('h', level, text), ('p', text), ('table', header, rows),
    ('img', file, caption), ('code', text)."""
    # Long by design: the report's sections in reading order, each a few appends.
    split = runs[0]["split"]
    ranked = _ranked(rows)
    best = max(ranked, key=lambda r: r[split]["bleu"]["mean"] or -1)
    among = "" if len(ranked) == len(rows) else ", among the settings with the most seeds"
    doc: list = [("h", 1, "Label smoothing comparison")]
    doc += answer_blocks(rows, runs, split)
    doc.append(
        (
            "p",
            f"{len(runs)} runs, {len(rows)} settings. Best {split} BLEU: {best['label']} "
            f"({cell(best[split]['bleu'], '{:.2f}')}{among}). All metrics use each run's best "
            f"checkpoint (by validation BLEU). BLEU, chrF: sacreBLEU on detokenized, cased "
            "output; BLEU lc-tok: lowercased and 13a-tokenized, only for comparison with papers "
            "that report it. NLL (nats per token), PPL, accuracy and calibration are "
            "teacher-forced over non-pad target tokens and never include the smoothing term. "
            "ECE: 15 equal-width confidence bins, confidence = largest probability, correct = "
            "argmax equals the reference. Logit gap: mean of gold logit minus the mean of the "
            "other logits; optimum gap: its value at the minimum of the smoothed loss, "
            "log((1 - eps + eps/K) / (eps/K)) for uniform smoothing over K entries "
            "(log((1 - eps) / (eps/(K - 1))) for fairseq's; none for the confidence penalty). "
            "p: sacreBLEU paired bootstrap "
            f"({meta['bootstrap_samples']} resamples) of BLEU against eps 0 with the same seed, "
            "one value per seed. With several seeds: mean ± sample standard deviation. "
            "BLEU is greedy decoding (what validation uses); BLEU beam: the same checkpoint "
            f"decoded with {meta['beam']}, where the runs were.",
        )
    )
    doc.append(("h", 2, f"{'Test' if split == 'test' else 'Validation'} set"))
    doc.append(("table", *metrics_table(rows, split)))
    doc.append(("p", table_notes(split)))
    if split == "test":
        doc.append(("h", 2, "Validation set"))
        doc.append(("table", *metrics_table(rows, "valid")))
    doc += vaswani_comparison(rows, runs)
    doc.append(("h", 2, "Figures"))
    for name in figures:
        doc.append(("img", name, PLOTS[name]))
    doc.append(("h", 2, "Runs"))
    doc.append(
        (
            "table",
            ["run", "eps", "type", "seed", "best step", "last step", "train command"],
            [
                [
                    r["name"],
                    f"{r['smoothing']:g}",
                    r.get("smoothing_type", "uniform"),
                    str(r["seed"]),
                    str(r["step"]),
                    str(r["last_step"]),
                    f"`{r.get('command') or '?'}`",
                ]
                for r in runs
            ],
        )
    )
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


def beam_of(runs: list[dict]) -> str:
    """The final beam search the runs share, e.g. 'beam 5 (length penalty 1)'; refused when
    runs used different ones, since their beam columns would not compare."""
    searches = {(r["beam"]["beam"], r["beam"].get("length_penalty")) for r in runs if r.get("beam")}
    if len(searches) > 1:
        listed = ", ".join(f"beam {b} (length penalty {a:g})" for b, a in sorted(searches))
        raise NMTError(
            f"the runs were scored with different final beam searches ({listed}); compare runs "
            "with the same decode.final_beam and decode.length_penalty"
        )
    if not searches:
        return "no beam search"
    beam, alpha = searches.pop()
    return f"beam {beam} (length penalty {alpha:g})"


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    bootstrap_samples: int = 1000,
    command: str | None = None,
) -> Path:
    """Load the runs, compute the tables, p-values and figures; return the report.md path."""
    if not run_dirs:
        raise NMTError("no run directories given")
    runs = [load_run(d) for d in run_dirs]
    names = [r["name"] for r in runs]
    if len(set(names)) != len(names):
        raise NMTError("two runs share a directory name; give each run its own name")
    with_test = sorted(r["dir"] for r in runs if r["split"] == "test")
    without = sorted(r["dir"] for r in runs if r["split"] != "test")
    if with_test and without:
        raise NMTError(
            f"{', '.join(with_test)} were scored on a test split but {', '.join(without)} were "
            "not; compare runs that used the same splits"
        )
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NMTError(f"--out {out_dir} is a file; name a folder for the report")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NMTError(f"cannot create the report folder {out_dir}: {exc.strerror}") from None
    pvalues = paired_bootstrap(runs, bootstrap_samples)
    beam_pvalues = paired_bootstrap(runs, bootstrap_samples, "beam_hyps")
    rows = aggregate(runs, pvalues, beam_pvalues)
    figures = plot_all(runs, rows, out_dir)
    meta = {"bootstrap_samples": bootstrap_samples, "command": command, "beam": beam_of(runs)}
    doc = build_document(runs, rows, figures, meta)
    for name, text in (
        ("report.md", render_markdown(doc)),
        ("report.html", render_html(doc, out_dir)),
        (
            "report.json",
            json.dumps({"rows": rows, "p_values": pvalues, "p_values_beam": beam_pvalues}, indent=2)
            + "\n",
        ),
    ):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / name)
    return out_dir / "report.md"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m nmt.report", description="Compare finished runs across label smoothing."
    )
    parser.add_argument("runs", nargs="+", help="run directories (each with results.json)")
    parser.add_argument("--out", default=".", help="folder for report.md/html/json and figures")
    parser.add_argument("--bootstrap-samples", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        if args.bootstrap_samples < 1:
            raise NMTError("--bootstrap-samples must be at least 1")
        command = shlex.join(["python", "-m", "nmt.report", *(argv or sys.argv[1:])])
        path = write_report(args.runs, args.out, args.bootstrap_samples, command)
    except NMTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
