"""Numbers as a reviewer reads them: counts with thousands separators, never `2e+04`.

`%g` turns 20000 into `2e+04`; a count is a count, so whole numbers print as `20,000` and
other values with four significant digits (or fixed point once they are large).
"""

from __future__ import annotations

import math
from numbers import Number
from typing import Any

MISSING = "n/a"


def fmt_number(value: Any, digits: int = 4) -> str:
    """`20,000` for whole numbers, `0.8670`-style significant digits for the rest, `n/a` for None/NaN."""
    if value is None or isinstance(value, bool) or not isinstance(value, Number):
        return MISSING if value is None else str(value)
    number = float(value)  # type: ignore[arg-type]
    if math.isnan(number):
        return MISSING
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    if isinstance(value, int) or (number.is_integer() and abs(number) >= 100):
        return f"{int(number):,}"
    if abs(number) >= 1000:
        return f"{number:,.1f}"
    if number != 0 and abs(number) < 1e-3:
        return f"{number:.{digits - 1}e}"
    return f"{number:.{digits}f}"


def fmt_count(value: Any) -> str:
    """A row or entity count: `19,800`."""
    return MISSING if value is None else f"{int(value):,}"


def save_png(fig: Any, path: Any, dpi: int = 80) -> None:
    """Write a matplotlib figure as a small palette PNG (a few dozen KB, not a few hundred).

    Charts are embedded in Prefect artifacts as data URIs; line charts with a handful of
    colours lose nothing visible when quantized to 64 colours.
    """
    import io
    from pathlib import Path

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
