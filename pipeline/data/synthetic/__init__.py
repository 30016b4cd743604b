"""Registry of synthetic data generators, addressed in specs as `synthetic:<name>`.

Generators need no network and take (rows, seed, scenario); a single-table generator
returns a DataFrame, a multi-table one a dict of them (the spec's `table` picks one).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from pipeline.data.synthetic import logged_policy, streamflow, streamrec
from pipeline.spec.schema import ScenarioSpec

Generator = Callable[[int, int, ScenarioSpec], pd.DataFrame | dict[str, pd.DataFrame]]

GENERATORS: dict[str, Generator] = {
    "streamflow": streamflow.generate,
    "streamflow_previous": streamflow.generate_previous,
    "streamrec": streamrec.generate,
    "streamrec_exposures": logged_policy.streamrec_exposures,  # causal evaluation: docs/adr/0015
    "streamflow_offers": logged_policy.streamflow_offers,
}
