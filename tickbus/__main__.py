"""``python -m tickbus``: the ``tickbus`` command."""

import sys

from ._cli import main

sys.exit(main())
