"""The user's documentation: every relative link in README.md and docs/ leads to a file that
exists (and, for a #fragment into Markdown, to one of its headings), and no user-facing text
points at a folder outside the repository (the developers' ../shared exists on their machine
only; users have data/multi30k/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import ROOT

DOCS = sorted(
    [ROOT / "README.md"]
    + [p for p in (ROOT / "docs").rglob("*.md") if "runs" not in p.relative_to(ROOT).parts]
)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for line in CODE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    text = CODE.sub("", path.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken_links(doc: Path) -> list[str]:
    broken = []
    for target in relative_links(doc):
        file, _, fragment = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    return broken


def test_the_checks_find_links_and_anchors(tmp_path):
    """Not vacuous: the README links into docs/, anchors follow GitHub's rule, and a page with
    a missing file, a missing heading and a good link gets exactly the first two reported."""
    assert "docs/training.md" in relative_links(ROOT / "README.md")
    assert slug("At inference (issue 32's analyses)") == "at-inference-issue-32s-analyses"
    assert slug("CPU speed, and reproducing a run") == "cpu-speed-and-reproducing-a-run"
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n\n## Top\n\nSee [a](gone.md), [b](page.md#nowhere), [c](#top-1), "
        "`[d](in-code.md)` and [e](https://example.org/x.md).\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "gone.md: no such file",
        "page.md#nowhere: no heading with that anchor",
    ]
    assert len(DOCS) > 10


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_relative_links_resolve(doc: Path):
    broken = broken_links(doc)
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_no_user_facing_text_points_outside_the_repository():
    files = DOCS + [ROOT / "train.py", ROOT / "translate.py"]
    files += sorted((ROOT / "nmt").rglob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    found = [
        f"{f.relative_to(ROOT)}:{n}"
        for f in files
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if "../shared" in line or "/work/shared" in line
    ]
    assert not found, "user-facing text names the developers' folder: " + ", ".join(found)


def test_ci_runs_exactly_the_readme_test_command():
    """The README's one command that runs the tests is the one .ci/run ends with."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^    (python -m pytest[^\n]*)$", readme, flags=re.M)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert len(commands) == 1 and ci[-1] == commands[0] == "python -m pytest -q -n auto"
