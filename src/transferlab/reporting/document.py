"""A tiny document model rendered two ways: Markdown (images linked) and self-contained HTML (images inline).

Blocks: ``("h1"|"h2"|"h3", text)``, ``("p", text)``, ``("list", [text, ...])``, ``("table", headers, rows)``,
``("img", path, caption)``, ``("gallery", [(path, caption), ...])`` (thumbnails side by side),
``("pre", text)``, ``("details", summary, text)``.

Text in blocks is plain text, often from data (review texts, class names, run names, error messages).
HTML escapes it; Markdown escapes it too (:func:`md_text`): no HTML tag, link, image, code span or table
cell boundary can come from the text, and code blocks use a fence longer than any run of backticks inside.
Every text passes :func:`visible` first, in both renderings: bidirectional controls (an RTL override can make
a cell read backwards), zero-width and other control characters are dropped, and line breaks fold into
spaces everywhere but in code blocks.

Images: ``to_html`` inlines an image only when it is a regular file inside one of the folders it is given
(``reporting.output.readable``); any other is named, not read.
"""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import quote

from transferlab.reporting.output import readable, resolved_roots

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
# Bidirectional controls (LRM/RLM, ALM, the embeddings, overrides and isolates), the zero-width space, word
# joiners, the byte-order mark and the C0/C1 controls but tab and line breaks: nothing a reader sees, all of it
# able to change what the reader sees (the joiners ZWJ/ZWNJ that scripts and emoji need stay).
INVISIBLE = re.compile("[\u200b\u200e\u200f\u061c\u202a-\u202e\u2060-\u2069\ufeff"
                       "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
LINE_BREAKS = re.compile("[\r\n\u2028\u2029]+")
LINE_BREAK = re.compile("\r\n|[\r\u2028\u2029]")


def visible(text, lines: bool = False) -> str:
    """``text`` without invisible characters (see ``INVISIBLE``); line breaks folded into spaces unless
    ``lines`` (code blocks keep theirs, as ``\\n``)."""
    text = INVISIBLE.sub("", str(text))
    return LINE_BREAK.sub("\n", text) if lines else LINE_BREAKS.sub(" ", text)


def md_plain(text: str) -> str:
    text = text.replace("\\", "\\\\")
    text = html.escape(text, quote=False)
    return text.replace("|", "\\|").replace("`", "\\`").replace("](", "]\\(")  # no code span, cell or link


def md_text(text) -> str:
    """Text made inert in Markdown. Code spans (matched backtick runs, as CommonMark reads them) stay code,
    where nothing is interpreted; everywhere else backslashes, HTML (``&``, ``<``, ``>``), ``|``, stray
    backticks and the ``](`` of a link or image are escaped. Line breaks fold into spaces; a leading ``#``
    or ``[`` is escaped (no heading, no link reference definition). ``[CLS]`` alone is no link and stays."""
    text = visible(text)
    out, last = [], 0
    for span in CODE_SPAN.finditer(text):
        out += [md_plain(text[last:span.start()]), span.group(0).replace("|", "\\|")]
        last = span.end()
    out.append(md_plain(text[last:]))
    text = "".join(out)
    return "\\" + text if text[:1] in ("#", "[") else text


def fenced(text: str, info: str = "") -> str:
    """A code block whose fence is longer than any backtick run in ``text``, so the text cannot close it."""
    text = visible(text, lines=True)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def md_code(text: str) -> str:
    """Inline code whose backtick fence is longer than any backtick run in ``text`` (newlines folded)."""
    text = visible(text)
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
            out.append(f"<details><summary>{esc(summary)}</summary>\n\n{fenced(text, 'yaml')}\n\n</details>")
    return "\n\n".join(out) + "\n"


def esc(text, lines: bool = False) -> str:
    """Text for HTML: :func:`visible`, then escaped."""
    return html.escape(visible(text, lines))


def figure(path: str | Path, caption: str, roots: Sequence[Path]) -> str:
    """An image inlined as a data URI, so the HTML file stands alone; only a regular file inside ``roots``."""
    found = readable(path, roots)
    if found is None:
        return f'<p class="failed">{esc(caption)}: not shown ({esc(Path(path).name)} is no file inside the ' \
               f"folders this report covers)</p>"
    data = base64.b64encode(found.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


NOWRAP = 32  # a table cell this short (a figure with its interval) is kept on one line


def cell(value) -> str:
    text = visible(value)
    return f'<td class="nowrap">{html.escape(text)}</td>' if len(text) <= NOWRAP else f"<td>{html.escape(text)}</td>"


def to_html(blocks: list[tuple], title: str, roots: Iterable[str | Path] = ()) -> str:
    """The page; images are read only from regular files inside ``roots`` (the folders the report covers)."""
    roots = resolved_roots(roots)
    body = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{esc(args[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{esc(args[0])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in args[0]) + "</ul>")
        elif kind == "table":
            headers, rows = args
            head = "".join(f"<th>{esc(h)}</th>" for h in headers)
            cells = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        elif kind == "img":
            body.append(figure(*args, roots))
        elif kind == "gallery":
            body.append('<div class="gallery">' + "".join(figure(path, caption, roots) for path, caption in args[0])
                        + "</div>")
        elif kind == "pre":
            body.append(f"<pre>{esc(args[0], lines=True)}</pre>")
        elif kind == "details":
            summary, text = args
            body.append(f"<details><summary>{esc(summary)}</summary><pre>{esc(text, lines=True)}</pre></details>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
