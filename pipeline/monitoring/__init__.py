"""Daily monitoring: PSI per feature vs a reference, lineage groups, segment diagnosis, unit changes,
performance metrics history. Public API: `monitor()` -> `MonitorReport` (see docs/adr/0013-monitoring.md).
"""

from pipeline.monitoring.drift import LEVELS, FeatureDrift, Thresholds
from pipeline.monitoring.monitor import Outcomes, monitor, monitored_features, thresholds_of
from pipeline.monitoring.reference import MonitorReference, build_reference
from pipeline.monitoring.report import MonitorReport

__all__ = [
    "LEVELS",
    "FeatureDrift",
    "MonitorReference",
    "MonitorReport",
    "Outcomes",
    "Thresholds",
    "build_reference",
    "monitor",
    "monitored_features",
    "thresholds_of",
]
