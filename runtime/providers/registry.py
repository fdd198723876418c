"""Turn a provider URI into a provider."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from runtime.errors import ProviderConfigError
from runtime.providers.base import Provider

SCHEMES = ("mlx", "openai", "dspy", "dummy", "fault")


def open_provider(uri: str, data_dir: Path) -> Provider:
    """Open the provider `uri` names, e.g. `mlx://smollm2-135m` or `dummy://?order=4`.

    `data_dir` holds what a provider prepares once, such as the converted packaged model.
    """
    scheme = urlsplit(uri).scheme
    if scheme == "mlx":
        try:
            from runtime.providers.mlx.provider import INSTALL_HINT, MlxProvider
        except ImportError as exc:
            raise ProviderConfigError(f"{uri}: mlx-lm is not installed ({exc})") from None
        try:
            return MlxProvider.open(uri, data_dir)
        except ImportError as exc:
            raise ProviderConfigError(f"{uri}: mlx-lm is not installed ({exc}); {INSTALL_HINT}") from None
    if scheme == "openai":
        from runtime.providers.server import ServerProvider

        return ServerProvider.from_uri(uri)
    if scheme == "dspy":
        from runtime.providers.dspy_lm import DspyProvider

        return DspyProvider.from_uri(uri)
    if scheme == "fault":
        from runtime.providers.fault import FaultProvider

        return FaultProvider.open(uri, data_dir, open_provider)
    if scheme == "dummy":
        from runtime.providers.dummy import DummyProvider

        return DummyProvider.from_uri(uri)
    raise ProviderConfigError(
        f"unknown provider {uri!r}: expected a URI starting with one of " + ", ".join(f"{s}://" for s in SCHEMES)
    )
