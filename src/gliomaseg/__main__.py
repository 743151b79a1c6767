"""``python -m gliomaseg``."""

from __future__ import annotations

from gliomaseg.cli.main import run

if __name__ == "__main__":
    run()
