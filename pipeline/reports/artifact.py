"""Prefect markdown artifacts that show their charts in the Prefect UI.

A report file links its PNGs by relative path (`![chart](fairness_causal.png)`), which works
next to the file but not in the UI: the browser cannot read the worker's disk. The artifact
copy embeds each linked local PNG as a `data:image/png;base64,...` URI instead; the UI's
markdown renderer displays those (a supported pattern, see flint-crew/flint#38). Images over
`max_bytes` stay links with a note, so one artifact never grows past a few hundred KB.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

MAX_IMAGE_BYTES = 200_000
_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")


def embed_images(markdown: str, base_dir: Path, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """Each `![alt](local.png)` under base_dir becomes a data URI; remote, missing or large images stay as they are."""

    def replace(match: re.Match[str]) -> str:
        src = match["src"]
        if src.startswith(("data:", "http://", "https://")) or not src.lower().endswith(".png"):
            return match[0]
        path = Path(src) if Path(src).is_absolute() else Path(base_dir) / src
        if not path.is_file():
            return match[0]
        data = path.read_bytes()
        if len(data) > max_bytes:
            return f"{match[0]} (chart too large to embed: {len(data):,} bytes; open `{path}`)"
        return f"![{match['alt']}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"

    return _IMAGE.sub(replace, markdown)


def publish_markdown(markdown: str, key: str, description: str, base_dir: Path | None = None) -> None:
    """create_markdown_artifact with the report's local charts embedded (see the module docstring)."""
    from prefect.artifacts import create_markdown_artifact

    body = embed_images(markdown, base_dir) if base_dir is not None else markdown
    create_markdown_artifact(markdown=body, key=key, description=description)
