"""Files Keel writes are owner-only by default: request logs, lists of subscribers, bundles, run records.

One umask for the whole process (the CLI and each serving worker set it at start), so no writer can
forget: KEEL_UMASK (octal, default 077 -> files 0600, directories 0700) opens it up on purpose,
e.g. KEEL_UMASK=027 for a group that reads the reports (docs/cli.md, Environment).
"""

from __future__ import annotations

import os
import sys

DEFAULT_UMASK = "077"


def apply_umask() -> int:
    """Set the process umask from KEEL_UMASK (default 077); returns the mask in force."""
    text = os.environ.get("KEEL_UMASK", DEFAULT_UMASK)
    try:
        mask = int(text, 8)
        if not 0 <= mask <= 0o777:
            raise ValueError(text)
    except ValueError:
        print(f"keel: KEEL_UMASK={text!r} is not an octal mask like 077; using {DEFAULT_UMASK}", file=sys.stderr)
        mask = int(DEFAULT_UMASK, 8)
    os.umask(mask)
    return mask
