"""The report's blocks (("h", level, text), ("p", text), ("table", header, rows),
("img", file, caption), ("code", text)) as Markdown, or as one self-contained HTML file."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def render_markdown(doc: list) -> str:
    out = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "table":
            header, body = block[1], block[2]
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})\n\n*{block[2]}*")
        elif kind == "code":
            out.append("```\n" + block[1] + "\n```")
    return "\n\n".join(out) + "\n"


def render_html(doc: list, folder: Path) -> str:
    """The same blocks as HTML, figures embedded as data URIs so the file stands alone."""
    out = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            out.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c.strip('`'))}</td>" for c in r) + "</tr>"
                for r in block[2]
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            data = base64.b64encode((folder / block[1]).read_bytes()).decode()
            caption = html.escape(block[2])
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        elif kind == "code":
            out.append(f"<pre>{html.escape(block[1])}</pre>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}pre{background:#f4f4f4;padding:8px;white-space:pre-wrap}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Label smoothing comparison"
        f"</title><style>{style}</style></head><body>{''.join(out)}</body></html>\n"
    )
