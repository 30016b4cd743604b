"""Make great-expectations Data Docs readable offline and say Keel's verdict on every page.

GX's pages load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from CDNs; offline
they are unstyled and the index page's tables (filled by bootstrap-table from inline data)
are empty. After GX writes the site, each page gets: no http(s) script/link tags, the
JS-only tables rendered as plain HTML from the same inline data, the few status icons as
text glyphs, a small inline stylesheet (the Bootstrap classes GX uses), and a banner with
Keel's own verdict and row counts, so the page can never seem to disagree with
`validation_report.md`.
"""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path

_REMOTE_LINK = re.compile(r"<link\b[^>]*href=[\"']https?://[^>]*>\s*", re.I)
_REMOTE_SCRIPT = re.compile(r"<script\b[^>]*src=[\"']https?://[^>]*>\s*</script>\s*", re.I)
_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>(?P<body>.*?)</script>\s*", re.I | re.S)
_TABLE_INIT = re.compile(
    r"\$\('#(?P<id>[\w-]+)'\)\.bootstrapTable\(\s*Object\.assign\(\s*\{\s*columns:\s*(?P<columns>\[.*?\]),\s*"
    r"data:\s*(?P<data>\[.*?\]),\s*toolbar:",
    re.S,
)
_REMOTE_IMG = re.compile(r"(<img\b[^>]*src=[\"'])https?://[^\"']*?/(?P<name>[\w.-]+\.png)[^\"']*", re.I)
_REMOTE_URL = re.compile(r"url\(['\"]?https?://[^)]*\)", re.I)
NEEDS_JQUERY = ("$(", "bootstrapTable", "vegaEmbed", "jQuery")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;font-size:14px;color:#212529;
 margin:0;background:#fff;line-height:1.45}
a{color:#0b5cad;text-decoration:none}a:hover{text-decoration:underline}
.container-fluid{padding:0 16px}.row{display:flex;flex-wrap:wrap;margin:0 -8px}
.row>*{padding:0 8px;box-sizing:border-box}.col-12,.col-xs-12,.col-sm-12{width:100%}.col-6{width:50%}
@media(min-width:768px){.col-md-2{width:16.66%}.col-md-10{width:83.33%}}
@media(min-width:992px){.col-lg-2{width:16.66%}.col-lg-10{width:83.33%}}
.d-none,.invisible,.fixed-bottom,.navbar,.cooltip .top,.btn-group-toggle,[id$="-toolbar"]{display:none!important}
.card{border:1px solid #dee2e6;border-radius:6px;margin:8px 0;background:#fff}
.card-header{background:#f5f6f8;border-bottom:1px solid #dee2e6;padding:8px 12px;font-weight:600}
.card-body{padding:8px 12px}.bg-light{background:#f8f9fa}
.table{width:100%;border-collapse:collapse;margin:6px 0}.table td,.table th{border-top:1px solid #dee2e6;
 padding:4px 8px;vertical-align:top;text-align:left}.table-bordered td,.table-bordered th{border:1px solid #dee2e6}
.table-responsive{overflow-x:auto}.table thead th{border-bottom:2px solid #dee2e6}
.badge{display:inline-block;padding:1px 6px;border-radius:4px;background:#6c757d;color:#fff;font-size:12px}
.alert{padding:8px 12px;border-radius:6px;border:1px solid #d6d8db;background:#eef0f2;margin:8px 0}
.alert-info{background:#e7f3fb;border-color:#b8daff}.text-success{color:#198754}.text-danger{color:#c82333}
.nav{list-style:none;padding:0;margin:0}.nav-tabs{display:flex;gap:8px;border-bottom:1px solid #dee2e6}
.nav-link{display:block;padding:6px 10px}.breadcrumb{list-style:none;display:flex;gap:6px;padding:0}
.sticky{position:sticky;top:8px}.ge-section{clear:both;margin-bottom:24px}.lead{font-size:16px}
.fas{font-style:normal;font-weight:700}.fa-check-circle::before{content:"\\2714"}
.fa-times::before{content:"\\2718"}.fa-question-circle::before{content:"?"}
.keel-banner{margin:12px 16px;padding:10px 14px;border-radius:6px;border:1px solid;font-size:15px}
.keel-banner.ok{background:#e8f5ec;border-color:#9fd3ae}.keel-banner.failed{background:#fbe9eb;border-color:#eeb0b7}
.keel-banner p{margin:4px 0}#ge-cta-footer,footer{display:none!important}
"""


def make_offline(path: Path, banner_html: str, site_root: Path) -> None:
    """Rewrite one Data Docs page in place (see the module docstring); remote logos come from static/."""
    text = path.read_text(encoding="utf-8")
    static = "../" * (len(path.relative_to(site_root).parts) - 1) + "static/images/"
    text = _REMOTE_IMG.sub(lambda m: m[1] + static + m["name"], text)
    text = _REMOTE_URL.sub("none", text)
    text = _static_tables(text)
    text = _REMOTE_LINK.sub("", text)
    text = _REMOTE_SCRIPT.sub("", text)
    text = _INLINE_SCRIPT.sub(lambda m: "" if any(k in m["body"] for k in NEEDS_JQUERY) else m[0], text)
    text = text.replace("</head>", f"<style>{CSS}</style>\n</head>", 1)
    text = re.sub(r"(<body[^>]*>)", lambda m: m[1] + "\n" + banner_html, text, count=1)
    path.write_text(text, encoding="utf-8")


def banner(verdict: str, ok: bool, lines: list[str]) -> str:
    """The Keel verdict box at the top of every page."""
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    state = "ok" if ok else "failed"
    return f'<div class="keel-banner {state}"><strong>Keel verdict: {html.escape(verdict)}</strong>{body}</div>\n'


def _static_tables(text: str) -> str:
    """Fill each bootstrap-table `<table id=...>` from its inline `columns`/`data` as plain HTML rows."""
    for match in _TABLE_INIT.finditer(text):
        try:
            columns = ast.literal_eval(match["columns"])
            data = ast.literal_eval(match["data"])
        except (ValueError, SyntaxError):
            continue
        head = "".join(f"<th>{html.escape(str(c.get('title', c.get('field', ''))))}</th>" for c in columns)
        rows = []
        for row in data:
            cells = "".join(f"<td>{row.get(c.get('field'), '')}</td>" for c in columns)  # GX's own HTML snippets
            link = row.get("_table_row_link_path")
            if link:
                cells += f'<td><a href="{html.escape(link)}">open</a></td>'
            rows.append(f"<tr>{cells}</tr>")
        extra = "<th></th>" if any(r.get("_table_row_link_path") for r in data) else ""
        table = f"<thead><tr>{head}{extra}</tr></thead><tbody>{''.join(rows)}</tbody>"
        pattern = re.compile(rf'(<table\s+id="{re.escape(match["id"])}"[^>]*>)\s*</table>', re.S)
        text = pattern.sub(lambda m, t=table: m[1].replace("table-sm", "table table-sm") + t + "</table>", text)
    return text
