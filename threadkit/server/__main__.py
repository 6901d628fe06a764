"""``python -m threadkit.server``: the same as ``threadkit serve``."""

from __future__ import annotations

import sys

from threadkit.server.cli import main

if __name__ == "__main__":
    sys.exit(main())
