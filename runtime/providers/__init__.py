"""Language-model providers, opened from URIs."""

from runtime.providers.base import Provider
from runtime.providers.registry import open_provider

__all__ = ["Provider", "open_provider"]
