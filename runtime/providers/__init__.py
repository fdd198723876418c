"""Language-model providers, opened from URIs."""

from runtime.providers.base import Provider, ProviderConfigError, ProviderError
from runtime.providers.registry import open_provider

__all__ = ["Provider", "ProviderConfigError", "ProviderError", "open_provider"]
