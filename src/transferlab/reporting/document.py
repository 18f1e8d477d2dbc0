"""A tiny document model rendered two ways: Markdown (images linked) and self-contained HTML (images inline).

Blocks: ``("h1"|"h2"|"h3", text)``, ``("p", text)``, ``("table", headers, rows)``,
``("img", path, caption)``, ``("gallery", [(path, caption), ...])`` (thumbnails side by side),
``("pre", text)``, ``("details", summary, text)``.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .6em;
text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}figcaption{color:#555;font-size:.9em}
.failed{color:#b00;font-weight:bold}.gallery{display:flex;flex-wrap:wrap;gap:.4em}
.gallery figure{margin:0;width:150px}.gallery img{width:128px;image-rendering:pixelated}
.gallery figcaption{font-size:.75em}"""


def to_markdown(blocks: list[tuple], relative_to: Path) -> str:
    out = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + args[0])
        elif kind == "p":
            out.append(args[0])
        elif kind == "table":
            headers, rows = args
            out.append("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers) + "\n" +
                       "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows))
        elif kind == "img":
            path, caption = args
            out.append(f"![{caption}]({Path(os.path.relpath(path, relative_to)).as_posix()})\n\n*{caption}*")
        elif kind == "gallery":
            out.append(" ".join(f"![{caption}]({Path(os.path.relpath(path, relative_to)).as_posix()})"
                                for path, caption in args[0]))
        elif kind == "pre":
            out.append("```\n" + args[0].rstrip() + "\n```")
        elif kind == "details":
            summary, text = args
            out.append(f"<details><summary>{html.escape(summary)}</summary>\n\n```yaml\n{text.rstrip()}\n```\n\n</details>")
    return "\n\n".join(out) + "\n"


def figure(path: str | Path, caption: str) -> str:
    """An image inlined as a data URI, so the HTML file stands alone."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def to_html(blocks: list[tuple], title: str) -> str:
    body = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(args[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(args[0])}</p>")
        elif kind == "table":
            headers, rows = args
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
            cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        elif kind == "img":
            body.append(figure(*args))
        elif kind == "gallery":
            body.append('<div class="gallery">' + "".join(figure(path, caption) for path, caption in args[0])
                        + "</div>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(args[0])}</pre>")
        elif kind == "details":
            summary, text = args
            body.append(f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
