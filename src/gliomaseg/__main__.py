"""``python -m gliomaseg``."""

from __future__ import annotations

import sys

from gliomaseg.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
