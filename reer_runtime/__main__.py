"""`python -m reer_runtime`: the command line."""

import sys

from reer_runtime.cli import main

sys.exit(main())
