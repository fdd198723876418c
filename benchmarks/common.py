"""What every benchmark report says about where it ran."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime


def provenance() -> dict[str, str]:
    """The date and a description of this machine."""
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores",
    }
