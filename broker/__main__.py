"""``python -m broker``: the same as ``tickbus broker`` (see :mod:`broker._cli`)."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
