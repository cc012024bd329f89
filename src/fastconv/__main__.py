"""``python -m fastconv``: the ``fastconv`` command (fastconv.cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
