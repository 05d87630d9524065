"""The report's distillation part: does a label-smoothed teacher teach a student worse?

Students (runs with a teacher: token-level, `train.teacher`, or sequence-level, a dataset that
`nmt.distill` wrote) are grouped by their own objective and by how they were taught (token-level
at one alpha and temperature, or sequence-level); within a group, by their teacher's objective.
Each smoothed teacher's student is set against the unsmoothed teacher's student of the same
seed: sacreBLEU's paired bootstrap between the two students (beam search where every student
was decoded with it, else greedy). The report's baseline (--baseline, the student without a
teacher) is compared with every row by the report's own table; this part adds the comparison
the distillation claim is about, and the three papers' claims beside it.
"""

from __future__ import annotations

from nmt.errors import NMTError
from nmt.objective.smoothing import Smoothing
from nmt.study.stats import cell, p_cell, paired_bootstrap, significant, summarise

UNSMOOTHED = Smoothing().short  # "eps 0": a teacher trained without smoothing

# (paper, what it reports) for the claim each verdict below answers.
MULLER = ("Müller, Kornblith and Hinton (2019)", "a teacher trained with label smoothing "
          "distils worse into a student than one trained without, though the teacher itself is "
          "more accurate (image classifiers, CIFAR-10)")  # fmt: skip
SHEN = ("Shen et al. (ICLR 2021)", "the incompatibility is one-sided and imperfect: across "
        "image classification, binary networks and translation, a smoothed teacher loses its "
        "effectiveness only in specific circumstances")  # fmt: skip
CHANDRASEGARAN = ("Chandrasegaran et al. (ICML 2022)", "a smoothed teacher's students lose "
                  "most at higher distillation temperatures (its 'systematic diffusion'); "
                  "with a smoothed teacher, distil at a low temperature")  # fmt: skip


def taught(run: dict) -> tuple[str, str, tuple] | None:
    """(how the run was taught, its teacher's objective, (alpha, T) of token-level teaching
    alone, else ()), or None for a run without a teacher."""
    objective = run.get("objective") or {}
    how, teachers, mix = [], [], ()
    if "teacher_sha256" in objective:
        mix = (float(objective["kd_alpha"]), float(objective["kd_temperature"]))
        how.append(f"token-level (alpha {mix[0]:g}, T {mix[1]:g})")
        teachers.append(str(objective.get("teacher_label")))
    if "data_teacher_sha256" in objective:
        how.insert(0, "sequence-level")
        teachers.insert(0, str(objective.get("data_teacher_label")))
        mix = ()
    if not how:
        return None
    return " + ".join(how), " / ".join(dict.fromkeys(teachers)), mix


def compare_teachers(runs: list[dict], n_samples: int) -> list[dict]:
    """One entry per group of students: {"student", "taught", "token" ([alpha, T] of
    token-level teaching alone, else []), "search", "teachers": {teacher: row label}, "tests":
    {smoothed teacher: {run name: {"seed", "p_value", "bleu_delta"}}}}, the tests against the
    unsmoothed teacher's student of the same seed (none without one)."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for run in runs:
        how = taught(run)
        if how is not None:
            student = run["label"].split(" + ", 1)[0]  # the student's own objective
            key = (student, how[0], how[2])
            groups.setdefault(key, {}).setdefault(how[1], []).append(run)
    out = []
    for (student, how, mix), by_teacher in sorted(groups.items()):
        _one_teacher_each(by_teacher)
        members = [r for group in by_teacher.values() for r in group]
        beam = all("beam_hyps" in r for r in members)
        entry = {"student": student, "taught": how, "token": list(mix),
                 "search": "beam" if beam else "greedy",
                 "teachers": {t: rs[0]["label"] for t, rs in sorted(by_teacher.items())},
                 "tests": {}}  # fmt: skip
        if UNSMOOTHED in by_teacher:
            base = by_teacher[UNSMOOTHED][0]["label"]
            tests = paired_bootstrap(members, n_samples, "beam_hyps" if beam else "hyps", base)
            seeds = {r["name"]: r["seed"] for r in members}
            for teacher, group in sorted(by_teacher.items()):
                named = {r["name"]: {"seed": seeds[r["name"]], **tests[r["name"]]}
                         for r in group if r["name"] in tests}  # fmt: skip
                if teacher != UNSMOOTHED and named:
                    entry["tests"][teacher] = named
        out.append(entry)
    return out


def _one_teacher_each(by_teacher: dict[str, list[dict]]) -> None:
    """Refuse two teacher files of one objective among students taught alike: which of them
    the other teacher's students should be paired with is not defined."""
    for teacher, group in by_teacher.items():
        labels = sorted({r["label"] for r in group})
        if len(labels) > 1:
            raise NMTError(
                f"students of {len(labels)} different {teacher} teachers were taught alike "
                f"({'; '.join(labels)}): give the report one teacher file per objective"
            )


def _verdict(tests: dict) -> tuple[float, str]:
    """Mean paired difference and what the bootstrap says of it over the seeds."""
    deltas = [t["bleu_delta"] for t in tests.values()]
    mean = summarise(deltas)["mean"]
    worse = sum(significant(t) and t["bleu_delta"] < 0 for t in tests.values())
    better = sum(significant(t) and t["bleu_delta"] > 0 for t in tests.values())
    n = len(tests)
    if 2 * worse > n:
        word = "worse"
    elif 2 * better > n:
        word = "better"
    else:
        word = "no difference the paired bootstrap supports in most seeds"
    return mean, f"{word} (p < 0.05 in {max(worse, better)} of {n} seed(s))"


def _row_bleu(rows: dict, label: str, entry: dict, split: str) -> str:
    col = "bleu_beam" if entry["search"] == "beam" else "bleu"
    return cell(rows[label][split][col], "{:.2f}")


def answer(groups: list[dict], rows: list[dict], split: str, baseline: str) -> str | None:
    """The opening answer's distillation sentences, one per group with a comparison."""
    by_label = {r["label"]: r for r in rows}
    parts = []
    for entry in groups:
        for teacher, tests in entry["tests"].items():
            mean, verdict = _verdict(tests)
            ours = _row_bleu(by_label, entry["teachers"][teacher], entry, split)
            theirs = _row_bleu(by_label, entry["teachers"][UNSMOOTHED], entry, split)
            parts.append(
                f"{entry['taught']}, students at {entry['student']}: the {teacher} teacher's "
                f"student scores {ours} {split} BLEU ({entry['search']}) against the "
                f"{UNSMOOTHED} teacher's student's {theirs}, {mean:+.2f} paired by seed: {verdict}"
            )
    if not parts:
        return None
    text = "Does the smoothed teacher teach worse? " + "; ".join(parts) + "."
    if baseline in by_label:
        col = "bleu_beam" if all(e["search"] == "beam" for e in groups) else "bleu"
        alone = cell(by_label[baseline][split][col], "{:.2f}")
        text += f" The student without a teacher ({baseline}): {alone}."
    return text


def teacher_blocks(groups: list[dict] | None, rows: list[dict], split: str, baseline: str):
    """The report's extra blocks for distilled students ({"answer": [], "sections": []} when
    there are none): the question, the answer's sentences and the section."""
    extra: dict = {"answer": [], "sections": []}
    if groups:
        text = answer(groups, rows, split, baseline)
        extra["question"] = question(baseline)
        extra["answer"] = [("p", text)] if text else []
        extra["sections"] = section(groups, rows, split, baseline)
    return extra


def question(baseline: str) -> str:
    return (
        "Question: does a label-smoothed teacher teach this student worse than an unsmoothed "
        "one, token-level (at each distillation temperature) and sequence-level; does any "
        f"student beat the one trained without a teacher ({baseline}) on BLEU, with greedy "
        "decoding and with beam search (paired bootstrap per seed, spread over seeds); and "
        "what does each do to calibration?"
    )


def section(groups: list[dict], rows: list[dict], split: str, baseline: str) -> list:
    """'Distillation: the teacher's smoothing': the table, then the papers beside it."""
    by_label = {r["label"]: r for r in rows}
    header = ["taught", "student", "teacher", "seeds", "BLEU", "BLEU beam",
              f"vs the {UNSMOOTHED} teacher's student", "p per seed"]  # fmt: skip
    body = []
    for entry in groups:
        for teacher, label in entry["teachers"].items():
            row = by_label[label]
            tests = entry["tests"].get(teacher, {})
            delta = f"{_verdict(tests)[0]:+.2f} ({entry['search']})" if tests else ""
            body.append([entry["taught"], entry["student"], teacher, str(len(row["seeds"])),
                         cell(row[split]["bleu"], "{:.2f}"),
                         cell(row[split]["bleu_beam"], "{:.2f}"), delta,
                         ", ".join(p_cell(t) for t in tests.values())])  # fmt: skip
    notes = (
        f"Students grouped by how they were taught; each smoothed teacher's student is tested "
        f"against the {UNSMOOTHED} teacher's student of the same seed (sacreBLEU's paired "
        f"bootstrap on {split}; * marks p < 0.05). Against the student without a teacher "
        f"({baseline}) every row is tested in the table above."
    )
    return [("h", 2, "Distillation: the teacher's smoothing"), ("table", header, body),
            ("p", notes), *papers(groups)]  # fmt: skip


def _temperature_trend(groups: list[dict]) -> str | None:
    """How the smoothed teacher's paired difference moves from the lowest to the highest
    temperature of token-level teaching (same student, alpha and teacher), or None."""
    series: dict[tuple, list] = {}
    for entry in groups:
        if entry["token"]:
            alpha, temp = entry["token"]
            for teacher, tests in entry["tests"].items():
                key = (entry["student"], alpha, teacher)
                series.setdefault(key, []).append((temp, _verdict(tests)[0], len(tests)))
    lines = []
    for (student, alpha, teacher), points in sorted(series.items()):
        if len(points) > 1:
            (t0, d0, n0), (t1, d1, n1) = min(points), max(points)
            move = ("lower at the higher temperature, as they find" if d1 < d0
                    else "not lower at the higher temperature, unlike what they find")  # fmt: skip
            lines.append(f"the {teacher} teacher's difference (students at {student}, "
                         f"alpha {alpha:g}) goes from {d0:+.2f} at T {t0:g} ({n0} seed(s)) to "
                         f"{d1:+.2f} at T {t1:g} ({n1} seed(s)): {move}")  # fmt: skip
    return "; ".join(lines) or None


def papers(groups: list[dict]) -> list:
    """The three claims, each with the verdict our comparisons give."""
    found = [(e["taught"], *_verdict(t)) for e in groups for t in e["tests"].values()]
    if not found:
        return []
    worse = [how for how, _, verdict in found if verdict.startswith("worse")]
    ours = "; ".join(f"{how} {mean:+.2f}, {verdict}" for how, mean, verdict in found)
    blocks = [("h", 3, "Against the papers")]
    muller = (f"confirmed in {len(worse)} of {len(found)} comparisons ({', '.join(worse)})"
              if worse else f"not confirmed in any of the {len(found)} comparisons")  # fmt: skip
    blocks.append(("p", f"{MULLER[0]} report that {MULLER[1]}. Here (smoothed teacher's "
                        f"student minus the unsmoothed teacher's): {ours}. So their claim is "
                        f"{muller}."))  # fmt: skip
    shen = "agrees" if len(worse) * 2 < len(found) else "disagrees: here the loss is the rule"
    blocks.append(("p", f"{SHEN[0]} report that {SHEN[1]}. Our count {shen} "
                        f"({len(found) - len(worse)} of {len(found)} comparisons without a "
                        "supported loss)."))  # fmt: skip
    trend = _temperature_trend(groups)
    if trend:
        blocks.append(("p", f"{CHANDRASEGARAN[0]} report that {CHANDRASEGARAN[1]}. Here, "
                            f"token-level, {trend}."))  # fmt: skip
    return blocks
