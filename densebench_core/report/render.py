"""One document, two renderings: Markdown (``report.md``) and a self-contained HTML page (``report.html``).

The report is built once as a list of blocks; both files are rendered from the same blocks so they can never
disagree. Inline markup is the small subset both need: ```code``` and ``**bold**``.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def code(text: object) -> str:
    """Inline code for names (backends, operators); backticks inside are replaced so markup stays balanced."""
    return "`" + str(text).replace("`", "'") + "`"


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def _inline_html(text: str) -> str:
    """HTML for ```code``` and ``**bold**``, where bold may wrap code spans (``**`jit`**``).

    Code spans become placeholders first, so bold is matched across them but never inside them (asterisks in
    code stay literal); the placeholders, NUL-delimited, survive escaping and are swapped back last.
    """
    spans: list[str] = []

    def hold(match: re.Match) -> str:
        spans.append(f"<code>{html.escape(match.group(1))}</code>")
        return f"\x00{len(spans) - 1}\x00"

    marked = html.escape(_CODE.sub(hold, text.replace("\x00", "")))
    marked = _BOLD.sub(r"<strong>\1</strong>", marked)
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], marked)


def _md_cell(text: str) -> str:
    return one_line(text).replace("|", "\\|") or " "


@dataclass
class Image:
    path: Path  # the PNG on disk
    relative: str  # how report.md refers to it
    title: str
    caption: str


@dataclass
class Doc:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("heading", level, text))

    def para(self, text: str) -> None:
        if text:
            self.blocks.append(("para", text))

    def bullets(self, items: list[str]) -> None:
        items = [i for i in items if i]
        if items:
            self.blocks.append(("bullets", items))

    def table(self, headers: list[str], rows: list[list[str]], align: str | None = None) -> None:
        """``align``: one character per column, ``l`` or ``r`` (default: left)."""
        if rows:
            self.blocks.append(("table", headers, rows, align or "l" * len(headers)))

    def image(self, image: Image) -> None:
        self.blocks.append(("image", image))

    def images(self) -> list[Image]:
        return [b[1] for b in self.blocks if b[0] == "image"]

    # -- Markdown ------------------------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                out += [f"{'#' * (block[1] + 1)} {block[2]}", ""]
            elif kind == "para":
                out += [one_line(block[1]), ""]
            elif kind == "bullets":
                out += [f"- {one_line(item)}" for item in block[1]] + [""]
            elif kind == "table":
                _, headers, rows, align = block
                out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
                out.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                out.append("")
            elif kind == "image":
                image = block[1]
                out += [f"![{image.title}]({image.relative})", "", f"*{one_line(image.caption)}*", ""]
        return "\n".join(out).rstrip() + "\n"

    # -- HTML ----------------------------------------------------------------------------------------------------
    def to_html(self) -> str:
        body = [f"<h1>{_inline_html(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                level = min(block[1] + 1, 6)
                anchor = re.sub(r"[^a-z0-9]+", "-", block[2].lower()).strip("-")
                body.append(f'<h{level} id="{anchor}">{_inline_html(block[2])}</h{level}>')
            elif kind == "para":
                body.append(f"<p>{_inline_html(one_line(block[1]))}</p>")
            elif kind == "bullets":
                items = "".join(f"<li>{_inline_html(one_line(i))}</li>" for i in block[1])
                body.append(f"<ul>{items}</ul>")
            elif kind == "table":
                _, headers, rows, align = block
                cls = [' class="num"' if a == "r" else "" for a in align]
                head = "".join(f"<th{c}>{_inline_html(one_line(h))}</th>" for h, c in zip(headers, cls))
                lines = [
                    "<tr>" + "".join(f"<td{c}>{_inline_html(one_line(v))}</td>" for v, c in zip(row, cls)) + "</tr>"
                    for row in rows
                ]
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>")
            elif kind == "image":
                image = block[1]
                data = base64.b64encode(image.path.read_bytes()).decode("ascii")
                body.append(
                    f'<figure><img alt="{html.escape(image.title)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{_inline_html(one_line(image.caption))}</figcaption></figure>"
                )
        return _PAGE.format(title=html.escape(self.title), body="\n".join(body))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }}
h1 {{ border-bottom: 2px solid #ddd; padding-bottom: .3em; }}
h2 {{ border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.88em; display: block; overflow-x: auto; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }}
th {{ background: #f4f4f4; text-align: left; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tbody tr:nth-child(even) {{ background: #fafafa; }}
code {{ background: #f2f2f2; padding: 0 3px; border-radius: 3px; font-size: 0.92em; }}
figure {{ margin: 1.2em 0; }}
figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: 0.85em; color: #555; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
