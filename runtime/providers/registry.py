"""Turn a provider URI into a provider: one table from URI scheme to provider class."""

from __future__ import annotations

import importlib
from pathlib import Path
from urllib.parse import urlsplit

from runtime.errors import ProviderConfigError
from runtime.providers.base import Provider

PROVIDERS: dict[str, str] = {
    "mlx": "runtime.providers.local.provider:LocalProvider",
    "local": "runtime.providers.local.provider:LocalProvider",
    "openai": "runtime.providers.openai_compatible:OpenAIProvider",
    "dspy": "runtime.providers.dspy_lm:DspyProvider",
    "dummy": "runtime.providers.dummy:DummyProvider",
    "fault": "runtime.providers.fault:FaultProvider",
}
"""Each scheme's provider class, imported only when a URI names it (mlx and DSPy are heavy); each has
a classmethod `open(uri, data_dir)` that raises `ProviderConfigError` for a URI it cannot serve."""


def open_provider(uri: str, data_dir: Path) -> Provider:
    """Open the provider `uri` names, e.g. `mlx://smollm2-135m` or `dummy://?order=4`.

    `data_dir` holds what a provider prepares once, such as the converted packaged model.
    """
    scheme = urlsplit(uri).scheme
    if scheme not in PROVIDERS:
        raise ProviderConfigError(
            f"unknown provider {uri!r}: expected a URI starting with one of " + ", ".join(f"{s}://" for s in PROVIDERS)
        )
    module, name = PROVIDERS[scheme].split(":")
    try:
        provider: Provider = getattr(importlib.import_module(module), name).open(uri, data_dir)
    except ImportError as exc:  # an optional library the provider needs is missing
        raise ProviderConfigError(f"{uri}: {exc}; run scripts/setup.sh to install what it needs") from None
    return provider
