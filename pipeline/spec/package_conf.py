"""Where Keel's own config groups are: the installed package's, else the checkout's.

`conf/` at the repository root is the one source of truth (specs/, tests and docs name it). Building
the wheel copies it into the package as `pipeline/conf/` (setup.py), so an installed Keel composes a
user's spec anywhere with the same groups; a checkout has no `pipeline/conf/` and reads `conf/`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # .../pipeline


def keel_conf_dir() -> Path:
    """Keel's shipped config groups (contract/, model/, gates/, rollout/, triggers/, monitoring/, runtime/)."""
    installed = _PACKAGE / "conf"  # a wheel: package data
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / "conf"  # a checkout (an editable install too)
