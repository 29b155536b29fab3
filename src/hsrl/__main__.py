"""``python -m hsrl ...``: the same command line as the ``hsrl`` script."""

import sys

from hsrl.cli import main

sys.exit(main())
