"""A tiny document model rendered two ways: Markdown (images linked) and self-contained HTML (images inline).

Blocks: ``("h1"|"h2"|"h3", text)``, ``("p", text)``, ``("list", [text, ...])``, ``("table", headers, rows)``,
``("img", path, caption)``, ``("gallery", [(path, caption), ...])`` (thumbnails side by side),
``("pre", text)``, ``("details", summary, text)``.

Text in blocks is plain text, often from data (review texts, class names, run names, error messages).
HTML escapes it; Markdown escapes it too (:func:`md_text`): no HTML tag, link, image, code span or table
cell boundary can come from the text, and code blocks use a fence longer than any run of backticks inside.
"""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path
from urllib.parse import quote

CSS = """body{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .5em;
text-align:left;vertical-align:top}th{background:#f3f3f3}td{overflow-wrap:break-word}td.nowrap{white-space:nowrap}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
figcaption{color:#555;font-size:.9em}
.failed{color:#b00;font-weight:bold}.gallery{display:flex;flex-wrap:wrap;gap:.4em}
.gallery figure{margin:0;width:150px}.gallery img{width:128px;image-rendering:pixelated}
.gallery figcaption{font-size:.75em}"""


CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def md_plain(text: str) -> str:
    text = text.replace("\\", "\\\\")
    text = html.escape(text, quote=False)
    return text.replace("|", "\\|").replace("`", "\\`").replace("](", "]\\(")  # no code span, cell or link


def md_text(text) -> str:
    """Text made inert in Markdown. Code spans (matched backtick runs, as CommonMark reads them) stay code,
    where nothing is interpreted; everywhere else backslashes, HTML (``&``, ``<``, ``>``), ``|``, stray
    backticks and the ``](`` of a link or image are escaped. Line breaks fold into spaces; a leading ``#``
    or ``[`` is escaped (no heading, no link reference definition). ``[CLS]`` alone is no link and stays."""
    text = re.sub(r"[\r\n]+", " ", str(text))
    out, last = [], 0
    for span in CODE_SPAN.finditer(text):
        out += [md_plain(text[last:span.start()]), span.group(0).replace("|", "\\|")]
        last = span.end()
    out.append(md_plain(text[last:]))
    text = "".join(out)
    return "\\" + text if text[:1] in ("#", "[") else text


def fenced(text: str, info: str = "") -> str:
    """A code block whose fence is longer than any backtick run in ``text``, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def md_code(text: str) -> str:
    """Inline code whose backtick fence is longer than any backtick run in ``text`` (newlines folded)."""
    text = re.sub(r"[\r\n]+", " ", str(text))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if text.startswith("`") or text.endswith("`") else f"{fence}{text}{fence}"


def md_alt(text) -> str:
    """An image's alt text: :func:`md_text` with every bracket escaped, so the text cannot close it early."""
    return md_text(text).replace("[", "\\[").replace("]", "\\]")


def md_link(path, relative_to: Path) -> str:
    return quote(Path(os.path.relpath(path, relative_to)).as_posix(), safe="/._-~")


def md_table(headers, rows) -> str:
    return ("| " + " | ".join(md_text(h) for h in headers) + " |\n|" + "---|" * len(headers) + "\n" +
            "\n".join("| " + " | ".join(md_text(c) for c in row) + " |" for row in rows))


def to_markdown(blocks: list[tuple], relative_to: Path) -> str:
    out = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + md_text(args[0]))
        elif kind == "p":
            out.append(md_text(args[0]))
        elif kind == "list":
            out.append("\n".join(f"- {md_text(item)}" for item in args[0]))
        elif kind == "table":
            out.append(md_table(*args))
        elif kind == "img":
            path, caption = args
            out.append(f"![{md_alt(caption)}]({md_link(path, relative_to)})\n\n*{md_text(caption)}*")
        elif kind == "gallery":
            out.append(" ".join(f"![{md_alt(caption)}]({md_link(path, relative_to)})" for path, caption in args[0]))
        elif kind == "pre":
            out.append(fenced(args[0]))
        elif kind == "details":
            summary, text = args
            out.append(f"<details><summary>{html.escape(summary)}</summary>\n\n{fenced(text, 'yaml')}\n\n</details>")
    return "\n\n".join(out) + "\n"


def figure(path: str | Path, caption: str) -> str:
    """An image inlined as a data URI, so the HTML file stands alone."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


NOWRAP = 32  # a table cell this short (a figure with its interval) is kept on one line


def cell(value) -> str:
    text = str(value)
    return f'<td class="nowrap">{html.escape(text)}</td>' if len(text) <= NOWRAP else f"<td>{html.escape(text)}</td>"


def to_html(blocks: list[tuple], title: str) -> str:
    body = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(args[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(args[0])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in args[0]) + "</ul>")
        elif kind == "table":
            headers, rows = args
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
            cells = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
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
