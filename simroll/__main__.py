"""``python -m simroll``: the same command line as ``simroll``."""

import sys

from simroll.cli import main

sys.exit(main())
