"""Turn a provider URI into a provider."""

from __future__ import annotations

from urllib.parse import urlsplit

from runtime.providers.base import Provider, ProviderConfigError

SCHEMES = ("dummy",)


def open_provider(uri: str) -> Provider:
    """Open the provider `uri` names, e.g. `dummy://` or `dummy://?order=4`."""
    scheme = urlsplit(uri).scheme
    if scheme == "dummy":
        from runtime.providers.dummy import DummyProvider

        return DummyProvider.from_uri(uri)
    raise ProviderConfigError(
        f"unknown provider {uri!r}: expected a URI starting with one of " + ", ".join(f"{s}://" for s in SCHEMES)
    )
