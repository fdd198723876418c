"""The configuration file: which one is read, how, and the pack's keys mapped onto the settings.

One file is read: `--config FILE` or `$REER_CONFIG` when given, else the data dir's `config.toml`
or `config.json` (both there is an error). A key that is not a setting is refused with the closest
one, so that nothing written in a file is silently ignored.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError

NAMES = ("config.toml", "config.json")

PACK_KEYS = {
    "default_provider": "generator and scorer (a dspy:// model: generator only)",
    "trace_store_path": "trace_store",
    "log_level": "log_level",
    "rate_limiting.max_requests_per_minute": "limits.default.per_minute",
    "rate_limiting.max_requests_per_hour": "limits.default.per_hour",
    "logging.format": "log_format",
    "logging.file_enabled": "logging.file_enabled",
    "logging.performance_tracking": "logging.performance_tracking",
}
"""The REER x DSPy x MLX pack's `config.json` keys, and the settings each sets."""


def find(data_dir: Path, given: Path | None) -> Path | None:
    """The configuration file to read: `given`, else `$REER_CONFIG`, else the data dir's one."""
    named = given or (Path(os.environ["REER_CONFIG"]) if os.environ.get("REER_CONFIG") else None)
    if named is not None:
        named = named.expanduser()
        if not named.is_file():
            raise ConfigError(f"no configuration file {named} (--config, REER_CONFIG)")
        return named
    present = [data_dir / name for name in NAMES if (data_dir / name).exists()]
    if len(present) > 1:
        raise ConfigError(f"two configuration files in the data dir: {present[0]} and {present[1]}; keep one")
    return present[0] if present else None


PACK_FIELDS: dict[str, tuple[str, ...] | None] = {
    "default_provider": None,
    "trace_store_path": None,
    "rate_limiting": ("max_requests_per_minute", "max_requests_per_hour"),
    "logging": ("format",),
}


def read(path: Path, fields: dict[str, tuple[str, ...] | None]) -> dict[str, Any]:
    """The settings `path` holds (TOML, or JSON if it ends in .json), with the pack's keys mapped.

    `fields` maps each setting to its sub-settings (None when its keys are free, as the providers'
    `limits`); a key that is neither one nor a pack key is refused with the closest name."""
    try:
        text = path.read_text(encoding="utf-8")
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the configuration is a table of settings, not a {type(values).__name__}")
    allowed = dict(fields)
    for name, subs in PACK_FIELDS.items():
        allowed[name] = None if subs is None else (*(allowed.get(name) or ()), *subs)
    _check_keys(values, allowed, path)
    return _mapped(values)


def _check_keys(values: dict[str, Any], fields: dict[str, tuple[str, ...] | None], path: Path) -> None:
    known = [*fields, *(f"{name}.{sub}" for name, subs in fields.items() for sub in subs or ())]
    for key, value in values.items():
        if key not in fields:
            unknown = [key]
        elif (subs := fields[key]) is not None and isinstance(value, dict):
            unknown = [f"{key}.{sub}" for sub in value if sub not in subs]
        else:
            unknown = []
        for name in unknown:
            hint = difflib.get_close_matches(name, known, n=1)
            closest = f"; did you mean {hint[0]}?" if hint else ""
            raise ConfigError(f"{path}: {name} is not a setting{closest} (the README's configuration table lists them)")


def _mapped(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the pack's keys replaced by the settings they set."""
    out = dict(values)
    if "default_provider" in out:
        uri = out.pop("default_provider")
        out.setdefault("generator", [uri])
        if not str(uri).startswith("dspy://"):  # a chat API gives no prompt log-probabilities to score with
            out.setdefault("scorer", [uri])
    if "trace_store_path" in out:
        out.setdefault("trace_store", out.pop("trace_store_path"))
    if isinstance(out.get("log_level"), str):
        out["log_level"] = out["log_level"].upper()
    if isinstance(rate := out.pop("rate_limiting", None), dict):
        named = {"per_minute": "max_requests_per_minute", "per_hour": "max_requests_per_hour"}
        limits = out["limits"] = dict(out.get("limits", {}))
        limits["default"] = {**{k: rate[v] for k, v in named.items() if v in rate}, **limits.get("default", {})}
    if isinstance(logging := out.get("logging"), dict) and "format" in logging:
        out["logging"] = {k: v for k, v in logging.items() if k != "format"}
        out.setdefault("log_format", logging["format"])
    return out
