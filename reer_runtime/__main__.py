"""`python -m reer_runtime`: the `reer-runtime` command line."""

import sys

from runtime.cli import main

sys.exit(main())
