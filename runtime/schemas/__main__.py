"""`python -m runtime.schemas --write` rewrites the schema files from the record types."""

import sys

from runtime.schemas import main

sys.exit(main())
