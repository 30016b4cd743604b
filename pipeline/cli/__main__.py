"""`python -m pipeline.cli` is `keel`."""

import sys

from pipeline.cli import main

sys.exit(main())
