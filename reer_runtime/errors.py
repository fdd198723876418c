"""The errors reer-runtime raises, one tree (see `runtime/errors.py` for what each means)."""

from runtime.errors import (
    ConfigError,
    CorruptRecordError,
    CrashLoopError,
    DataDirLockedError,
    InputError,
    NoPlanError,
    ProviderConfigError,
    ProviderError,
    ReerError,
    Refused,
    StoreError,
    StoreFullError,
    UsageError,
)

__all__ = [
    "ConfigError",
    "CorruptRecordError",
    "CrashLoopError",
    "DataDirLockedError",
    "InputError",
    "NoPlanError",
    "ProviderConfigError",
    "ProviderError",
    "ReerError",
    "Refused",
    "StoreError",
    "StoreFullError",
    "UsageError",
]
