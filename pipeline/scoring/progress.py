"""Progress bars on long steps (batch scoring's reasons, sweep jobs): on stderr, only where someone watches.

A bar shows when stderr is a terminal and `keel -q` was not given (it sets KEEL_PROGRESS=0,
pipeline/cli/output.py); piped or redirected output, CI logs and --json scripts get no bar. `disable`
is passed explicitly so keel's own TQDM_DISABLE=1 (meant for Great Expectations' per-metric bars)
does not hide these.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm

    from pipeline.models.base import TabularModel
    from pipeline.models.explain import FeatureReference

PROGRESS_ENV = "KEEL_PROGRESS"  # "0": never (keel -q); "1": always (a test, a log that wants it); unset: a terminal
REASON_CHUNK = 20_000  # rows per tree-SHAP call when a bar is shown: ~1 s each on the bench's LightGBM


def shown(progress: bool | None = None) -> bool | None:
    """True/False when forced (argument, then KEEL_PROGRESS), None: tqdm decides (stderr is a terminal)."""
    if progress is not None:
        return progress
    return {"0": False, "1": True}.get(os.environ.get(PROGRESS_ENV, ""))


def bar(total: int, desc: str, unit: str, progress: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr that shows only when `shown` says so (None: when stderr is a terminal)."""
    from tqdm import tqdm

    show = shown(progress)
    return tqdm(total=total, desc=desc, unit=unit, disable=None if show is None else not show, **kwargs)


def reasons_with_progress(
    model: TabularModel,
    features: Any,
    reference: FeatureReference,
    n: int,
    desc: str = "reasons",
    progress: bool | None = None,
) -> list[list[str]]:
    """`top_reasons` for every row, in chunks behind a bar when one is shown (one call otherwise).

    Tree SHAP is per row, so chunks give the same reasons as one call; chunking only when a bar
    shows keeps the scripted path exactly what it was.
    """
    from pipeline.models.explain import top_reasons

    rows = len(features)
    with bar(rows, desc, "row", progress) as shown_bar:
        if shown_bar.disable or rows <= REASON_CHUNK:
            worded = top_reasons(model, features, reference, n=n)
            shown_bar.update(rows)
            return worded
        worded = []
        for start in range(0, rows, REASON_CHUNK):
            chunk = features.iloc[start : start + REASON_CHUNK]
            worded += top_reasons(model, chunk, reference, n=n)
            shown_bar.update(len(chunk))
        return worded
